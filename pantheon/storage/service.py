"""The StorageService gRPC servicer: named, encrypted objects and the index.

Objects go to the bucket of their data type's domain and classification
(`pantheon.storage.buckets.bucket_for`: RESTRICTED data to the domain's
restricted bucket) under the v1 naming scheme. The fields people filter by
travel as readable object user metadata (within S3's 2 KiB); the complete
metadata, with size and SHA-256, is written to the index once the bytes are
stored.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
from google.protobuf import any_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as ingest_pb
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as pb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as pb_grpc

from pantheon import metrics
from pantheon.errors import AlreadyExists, InvalidArgument, NotFound, OutOfRange
from pantheon.metadata import geohash
from pantheon.metadata.naming import EXTENSIONS, MEDIA_TYPES, object_key
from pantheon.policy import current_grant
from pantheon.storage.buckets import bucket_for, buckets_to_search
from pantheon.storage.index import Index
from pantheon.storage.object_store import ObjectStore
from pantheon.storage.page_tokens import PageTokens
from pantheon.storage.search import Searcher
from pantheon.streams import prepend, split_upload

log = logging.getLogger(__name__)

# Subscripted only for the type checker: the runtime class is not generic.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


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

    def __init__(self, store: ObjectStore, tokens: PageTokens) -> None:
        self.store = store
        self._index = Index(store)
        self._tokens = tokens

    async def PutObject(
        self, request_iterator: AsyncIterator[pb.PutObjectRequest], context: Context
    ) -> pb.PutObjectResponse:
        header, content = await split_upload(request_iterator)
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

        head = await anext(content, None)
        if head is None:
            raise InvalidArgument("the object is empty", reason="empty_body")

        try:
            stored = await self.store.put_stream(
                bucket, key, prepend(head, content), meta.media_type, user_metadata(meta)
            )
        except AlreadyExists:
            await self._ensure_indexed(bucket, key, meta)
            raise AlreadyExists(f"object {meta.id} is already stored", reason="object_exists") from None
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
        await self._index.put_object_info(
            pb.StatObjectResponse(object=ref, metadata=meta, encryption=stored.encryption)
        )
        metrics.STORED_BYTES.labels(bucket).inc(stored.size)
        log.info("stored %s/%s (%d bytes)", bucket, key, stored.size)
        return pb.PutObjectResponse(object=ref, metadata=meta)

    async def _ensure_indexed(self, bucket: str, key: str, meta: md.Metadata) -> None:
        """Index an object a crashed call stored but never indexed.

        Its id may then be resumed by a retry; reading the bytes back once is
        the price of that rare path.
        """
        try:
            await self._index.object_info(meta.id)
            return
        except NotFound:
            pass
        digest = hashlib.sha256()
        size = 0
        async for piece in self.store.get_stream(bucket, key):
            digest.update(piece)
            size += len(piece)
        stat = await self.store.stat(bucket, key)
        meta.sha256, meta.size_bytes = digest.hexdigest(), size
        ref = md.ObjectRef(
            bucket=bucket,
            key=key,
            version_id=stat.version_id,
            sha256=meta.sha256,
            size_bytes=size,
            etag=stat.etag,
        )
        await self._index.put_object_info(
            pb.StatObjectResponse(object=ref, metadata=meta, encryption=stat.encryption)
        )

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
        searcher = Searcher(self.store, self._index, buckets, grant.may_read, self._tokens)
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
        response = pb.CompleteIdempotencyKeyResponse()
        response.completed_at.FromDatetime(await self._index.complete(request))
        return response

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
