"""The StorageService gRPC servicer: named, encrypted objects and the index.

Objects go to the bucket of their data type's domain and classification
(`pantheon.storage.buckets.bucket_for`: RESTRICTED data to the domain's
restricted bucket) under the v1 naming scheme. The fields people filter by
travel as readable object user metadata (within S3's 2 KiB).

An object is stored in three steps, so that nothing is visible that was not
announced and nothing stored is left unannounced: PutObject writes a pending
marker (metadata and the caller's announcement), then the bytes; the caller
publishes the object's events; CommitObject then writes the complete
metadata, with size and SHA-256, to the index, which is what Get, Stat and
Search read, and removes the marker (for a call with an idempotency key,
CompleteIdempotencyKey removes it, once the call's result is recorded). A marker whose call died is found by
the reconciler (ListPendingObjects, GetPendingObject), which announces and
commits the object, or discards the marker of an upload that never
completed (pantheon.ingest.reconciler).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, TypeAlias

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from pantheon_api.ingest.v1 import ingest_service_pb2 as ingest_pb
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as pb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as pb_grpc

from pantheon import metrics
from pantheon.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PantheonError,
)
from pantheon.metadata import geohash
from pantheon.metadata.naming import EXTENSIONS, MEDIA_TYPES, object_key
from pantheon.metadata.ulid import is_ulid
from pantheon.policy import current_grant
from pantheon.storage.buckets import bucket_for, buckets_to_search
from pantheon.storage.index import Index
from pantheon.storage.listing import LISTS_PER_PAGE
from pantheon.storage.manifests import Manifests
from pantheon.storage.object_store import ExistingObject, ObjectStore
from pantheon.storage.page_tokens import PageTokens
from pantheon.storage.search import Searcher
from pantheon.streams import prepend, split_announced_upload

log = logging.getLogger(__name__)

# Subscripted only for the type checker: the runtime class is not generic.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

#: Largest announcement a PutObject may carry: a record batch's request
#: (at most 16 MiB, the services' message limit) with room to spare.
MAX_ANNOUNCEMENT_BYTES = 32 * 2**20
#: Pending markers per ListPendingObjects page when the caller names no size.
DEFAULT_PENDING_PAGE = 100


def user_metadata(m: md.Metadata) -> dict[str, str]:
    """Object user metadata: the readable fields people filter by.

    S3 allows 2 KiB of user metadata per object; these fields fit it for
    every metadata the proto accepts (their rules bound each one). The whole
    message, labels and lineage included, is in the index (`ids/<id>`).
    """
    found = {
        "pantheon-id": m.id,
        "pantheon-data-type": m.data_type,
        "pantheon-source": m.source,
        "pantheon-observed-at": m.observed_at.ToJsonString(),
        "pantheon-location": f"{m.location.latitude},{m.location.longitude}",
        "pantheon-classification": md.Classification.Name(m.classification)
        .removeprefix("CLASSIFICATION_")
        .lower(),
    }
    if m.entity_id:
        found["pantheon-entity-id"] = m.entity_id
    return found


def _result_metadata(result: any_pb2.Any) -> md.Metadata:
    """The metadata of a recorded ingest result (an object's or a batch's)."""
    for kind in (ingest_pb.IngestObjectResponse, ingest_pb.IngestRecordsResponse):
        if result.Is(kind.DESCRIPTOR):
            found = kind()
            result.Unpack(found)
            return found.metadata
    return md.Metadata(classification=md.CLASSIFICATION_RESTRICTED)  # unknown: assume the worst


class StorageServicer(pb_grpc.StorageServiceServicer):
    """Serves the StorageService contract from an ObjectStore."""

    def __init__(self, store: ObjectStore, tokens: PageTokens, search_lists: int = LISTS_PER_PAGE) -> None:
        self.store = store
        self._index = Index(store)
        self._manifests = Manifests(store)
        self._tokens = tokens
        #: LIST calls a search page may make (listing.py).
        self._search_lists = search_lists

    async def PutObject(
        self, request_iterator: AsyncIterator[pb.PutObjectRequest], context: Context
    ) -> pb.PutObjectResponse:
        header, announcement, content = await split_announced_upload(request_iterator, MAX_ANNOUNCEMENT_BYTES)
        # Only the ingestion identity may call this (the policy), and only for
        # the sources and data types its rule allows.
        current_grant.get().check_ingest(header.metadata.source, header.metadata.data_type)
        meta = md.Metadata()
        meta.CopyFrom(header.metadata)
        if not meta.id or meta.format not in EXTENSIONS:
            raise InvalidArgument(
                "metadata.id and metadata.format are required", reason="incomplete_metadata"
            )
        meta.geohash = geohash.encode(meta.location.latitude, meta.location.longitude)
        meta.ClearField("sha256")
        meta.size_bytes = 0
        if not meta.media_type:
            meta.media_type = MEDIA_TYPES[meta.format]
        bucket, key = bucket_for(meta.data_type, meta.classification), object_key(meta)
        try:
            recipe = any_pb2.Any.FromString(announcement)
        except DecodeError:
            raise InvalidArgument(
                "the announcement is not a google.protobuf.Any", reason="undecodable"
            ) from None

        head = await anext(content, None)
        if head is None:
            raise InvalidArgument("the object is empty", reason="empty_body")

        # The marker first: whatever happens after it, the reconciler can
        # find the object and announce it (or see that it never got stored).
        try:
            await self._index.put_pending(
                pb.PendingObject(metadata=meta, bucket=bucket, key=key, announcement=recipe)
            )
        except FailedPrecondition:
            raise  # the marker names another object: not ours to remove
        except BaseException:
            # Cancelled (the caller found its content invalid) or failed while
            # the marker was being written: it may have landed all the same.
            await asyncio.shield(self._forget_unstored(meta.id, bucket, key))
            raise
        try:
            if meta.idempotency_key:
                await self._refuse_bound_elsewhere(meta.id, bucket, key)
            stored = await self.store.put_stream(
                bucket, key, prepend(head, content), meta.media_type, user_metadata(meta)
            )
        except ExistingObject as exc:
            first = await self._stored_info(bucket, key, meta)
            return pb.PutObjectResponse(
                object=first.object,
                metadata=first.metadata,
                encryption=first.encryption,
                existed=True,
                sent_sha256=exc.sent_sha256,
            )
        except BaseException:
            await asyncio.shield(self._forget_unstored(meta.id, bucket, key))
            raise
        meta.sha256 = stored.sha256
        meta.size_bytes = stored.size
        ref = md.ObjectRef(
            bucket=bucket,
            key=key,
            version_id=stored.version_id,
            sha256=stored.sha256,
            size_bytes=stored.size,
            etag=stored.etag,
        )
        metrics.STORED_BYTES.labels(bucket).inc(stored.size)
        log.debug("stored %s/%s (%d bytes), not yet visible", bucket, key, stored.size)
        return pb.PutObjectResponse(
            object=ref, metadata=meta, encryption=stored.encryption, sent_sha256=stored.sha256
        )

    async def _refuse_bound_elsewhere(self, object_id: str, bucket: str, key: str) -> None:
        """Refuse (FAILED_PRECONDITION `id_in_use`) an upload under an id
        already visible as another object.

        A keyed call that stalled past its claim (a frozen process, a lost
        connection) may find a retry took its key over, stored, committed and
        completed meanwhile, and removed its marker: a record batch checked
        at another time is another object, which must not be stored and
        announced under the id. Checked once the marker is written: until its
        completion a retry's marker refuses this call's, and it is removed
        only after the retry's object is visible. (Keyless calls have fresh ids.)
        """
        try:
            bound = await self._index.object_info(object_id)
        except NotFound:
            return
        if (bound.object.bucket, bound.object.key) != (bucket, key):
            raise FailedPrecondition("the id is already bound to another object", reason="id_in_use")

    async def _forget_unstored(self, object_id: str, bucket: str, key: str) -> None:
        """Drop the marker of a failed upload, if nothing was stored after all.

        A failure may come after the store completed (its answer lost): then
        the marker stays, and the reconciler announces the object.
        """
        try:
            await self.store.stat(bucket, key)
        except NotFound:
            with contextlib.suppress(PantheonError):
                await self._index.drop_pending(object_id)
        except PantheonError:
            pass  # the store is away: the reconciler decides later

    async def _stored_info(self, bucket: str, key: str, meta: md.Metadata) -> pb.StatObjectResponse:
        """The object stored at `bucket`/`key` for `meta`'s id (NOT_FOUND when nothing is).

        Visible objects are described by their index entry; an object a dead
        call stored is read back once to hash it, the price of that rare path.
        """
        try:
            return await self._index.object_info(meta.id)
        except NotFound:
            pass
        stat = await self.store.stat(bucket, key)
        digest = hashlib.sha256()
        size = 0
        async for piece in self.store.get_stream(bucket, key):
            digest.update(piece)
            size += len(piece)
        found = md.Metadata()
        found.CopyFrom(meta)
        found.sha256, found.size_bytes = digest.hexdigest(), size
        ref = md.ObjectRef(
            bucket=bucket,
            key=key,
            version_id=stat.version_id,
            sha256=found.sha256,
            size_bytes=size,
            etag=stat.etag,
        )
        return pb.StatObjectResponse(object=ref, metadata=found, encryption=stat.encryption)

    async def CommitObject(
        self, request: pb.CommitObjectRequest, context: Context
    ) -> pb.CommitObjectResponse:
        info = request.object
        meta = info.metadata
        current_grant.get().check_ingest(meta.source, meta.data_type)
        if not meta.id or (info.object.bucket, info.object.key) != (
            bucket_for(meta.data_type, meta.classification),
            object_key(meta),
        ):
            raise InvalidArgument(
                "the object reference does not match its metadata", reason="reference_mismatch"
            )
        await self._index.put_object_info(info)
        if not meta.idempotency_key:
            # Off the caller's path, with others: a marker left behind is
            # removed by the reconciler, which finds its object visible. A
            # keyed call's marker stays until its key is completed: a retry
            # after a lost result stores and answers what the marker says.
            self._index.drop_pending_soon(meta.id)
        return pb.CommitObjectResponse()

    async def close(self) -> None:
        """Finish the work left in the background (the markers queued for
        removal, the manifests to write)."""
        await self._index.sweep()
        await self._manifests.close()

    async def ListPendingObjects(
        self, request: pb.ListPendingObjectsRequest, context: Context
    ) -> pb.ListPendingObjectsResponse:
        if request.page_token and not is_ulid(request.page_token):
            raise InvalidArgument("malformed page token", reason="invalid_page_token")
        written_before = datetime.now(UTC) - request.older_than.ToTimedelta()
        markers, last = await self._index.pending_markers(
            written_before, request.page_token, request.page_size or DEFAULT_PENDING_PAGE
        )
        return pb.ListPendingObjectsResponse(markers=markers, next_page_token=last)

    async def GetPendingObject(
        self, request: pb.GetPendingObjectRequest, context: Context
    ) -> pb.GetPendingObjectResponse:
        pending = await self._index.pending(request.id)
        meta = pending.metadata
        current_grant.get().check_ingest(meta.source, meta.data_type)
        response = pb.GetPendingObjectResponse(
            announcement=pending.announcement, written_at=pending.written_at
        )
        try:
            response.object.CopyFrom(await self._index.object_info(request.id))
            response.state = pb.PENDING_STATE_VISIBLE
        except NotFound:
            try:
                response.object.CopyFrom(await self._stored_info(pending.bucket, pending.key, meta))
                response.state = pb.PENDING_STATE_STORED
            except NotFound:
                response.object.metadata.CopyFrom(meta)
                response.object.object.bucket, response.object.object.key = pending.bucket, pending.key
                response.state = pb.PENDING_STATE_UPLOADING
        return response

    async def DiscardPendingObject(
        self, request: pb.DiscardPendingObjectRequest, context: Context
    ) -> pb.DiscardPendingObjectResponse:
        try:
            pending = await self._index.pending(request.id)
        except NotFound:
            return pb.DiscardPendingObjectResponse()
        current_grant.get().check_ingest(pending.metadata.source, pending.metadata.data_type)
        if pending.written_at.ToDatetime(tzinfo=UTC) >= request.written_before.ToDatetime(tzinfo=UTC):
            raise FailedPrecondition("the marker was written again since", reason="marker_rewritten")
        try:
            await self.store.stat(pending.bucket, pending.key)
        except NotFound:
            await self._index.drop_pending(request.id)
            return pb.DiscardPendingObjectResponse()
        raise FailedPrecondition("the object is stored: announce and commit it", reason="object_stored")

    async def GetObject(
        self, request: pb.GetObjectRequest, context: Context
    ) -> AsyncIterator[pb.GetObjectResponse]:
        info = await self._index.object_info(request.id)
        current_grant.get().check_read(info.metadata)
        size = info.object.size_bytes
        if request.offset and request.offset >= size:
            raise OutOfRange(
                f"offset {request.offset} is past the end ({size} bytes)", reason="range_not_satisfiable"
            )
        yield pb.GetObjectResponse(info=info)
        length = min(request.length, size - request.offset) if request.length else 0
        async for piece in self.store.get_stream(info.object.bucket, info.object.key, request.offset, length):
            yield pb.GetObjectResponse(chunk=piece)

    async def StatObject(self, request: pb.StatObjectRequest, context: Context) -> pb.StatObjectResponse:
        info = await self._index.object_info(request.id)
        current_grant.get().check_read(info.metadata)
        return info

    async def SearchObjects(
        self, request: pb.SearchObjectsRequest, context: Context
    ) -> pb.SearchObjectsResponse:
        grant = current_grant.get()
        grant.check_read_type(request.data_type)
        # The restricted bucket is listed only for a grant that may read what it holds.
        buckets = buckets_to_search(request.data_type, restricted=grant.may_read_restricted)
        searcher = Searcher(
            self.store,
            self._index,
            self._manifests,
            buckets,
            grant.may_read,
            self._tokens,
            self._search_lists,
        )
        return await searcher.search(request)

    async def ClaimIdempotencyKey(
        self, request: pb.ClaimIdempotencyKeyRequest, context: Context
    ) -> pb.ClaimIdempotencyKeyResponse:
        current_grant.get().check_source(request.source)
        return await self._index.claim(request)

    async def CompleteIdempotencyKey(
        self, request: pb.CompleteIdempotencyKeyRequest, context: Context
    ) -> pb.CompleteIdempotencyKeyResponse:
        current_grant.get().check_source(request.source)
        record = await self._index.complete(request)
        # The call is answered for good: a retry replays the result, so its
        # object's marker (kept by CommitObject) is no longer needed.
        self._index.drop_pending_soon(record.id)
        return pb.CompleteIdempotencyKeyResponse(completed_at=record.completed_at)

    async def GetIdempotencyKey(
        self, request: pb.GetIdempotencyKeyRequest, context: Context
    ) -> pb.GetIdempotencyKeyResponse:
        grant = current_grant.get()
        grant.check_source(request.source)
        record = await self._index.record(request.source, request.idempotency_key)
        if record.HasField("result"):
            grant.check_read(_result_metadata(record.result))
        return pb.GetIdempotencyKeyResponse(record=record)

    async def ReleaseIdempotencyKey(
        self, request: pb.ReleaseIdempotencyKeyRequest, context: Context
    ) -> pb.ReleaseIdempotencyKeyResponse:
        current_grant.get().check_source(request.source)
        await self._index.release(request)
        return pb.ReleaseIdempotencyKeyResponse()
