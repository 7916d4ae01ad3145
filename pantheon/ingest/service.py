"""The IngestionService gRPC servicer: validate, normalise, store, announce.

A call is acknowledged only after the storage service has the object and
Kafka has acknowledged every event of the call. Idempotency keys are claimed
in the index before anything is stored, so concurrent calls with one key
produce one object, and a retry after a failure resumes under the same id:
the object is stored at most once (conditional write) and the events keep
their ids, so consumers see no second distinct event.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeAlias, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as pb_grpc
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as spb_grpc

from pantheon import __version__, faults
from pantheon import context as ctx
from pantheon.config import KafkaSettings
from pantheon.errors import (
    Aborted,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PantheonError,
    Unavailable,
    reason_of,
)
from pantheon.events.producer import Event, EventPublisher
from pantheon.ingest import announce, record_document, workers
from pantheon.ingest import records as batch
from pantheon.ingest.normalise import open_normaliser
from pantheon.ingest.reconciler import Reconciler
from pantheon.interceptors import check
from pantheon.metadata.ulid import new_ulid
from pantheon.policy import current_grant
from pantheon.streams import pieces, prepend, split_upload

log = logging.getLogger(__name__)

# Subscripted only for the type checker: the runtime class is not generic.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
M = TypeVar("M", bound=Message)
#: What an ingest call answers.
R = TypeVar("R", pb.IngestObjectResponse, pb.IngestRecordsResponse)

#: Chunk size of the stream to storage.
CHUNK = 1 << 20
#: Deadline of an upload stream: the longest an upload may take.
STREAM_DEADLINE_S = 3600.0

#: The claim this call holds (its candidate id is the holder's id): renewed
#: while the call runs, named when it completes or releases the key.
_lease: ContextVar[spb.ClaimIdempotencyKeyRequest | None] = ContextVar("lease", default=None)


def _holder(object_id: str) -> str:
    lease = _lease.get()
    return lease.candidate_id if lease is not None else object_id


def _storage_error(exc: grpc.aio.AioRpcError, what: str) -> PantheonError:
    """A caller-safe error for a failed storage call, by status code only."""
    code = exc.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable("storage is unavailable, retry later")
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        # Storage's reason (such as `too_large`) tells the caller what to fix.
        return InvalidArgument(f"{what} was refused by storage", reason=reason_of(exc) or "storage_rejected")
    log.error("storage %s failed: %s", what, code.name)
    return Internal(f"{what} failed")


def _digest(*messages: Message, extra: bytes = b"") -> str:
    h = hashlib.sha256(extra)
    for m in messages:
        h.update(m.SerializeToString(deterministic=True))
    return h.hexdigest()


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _unpack(packed: any_pb2.Any, cls: type[M]) -> M:
    found = cls()
    if not packed.Unpack(found):
        raise FailedPrecondition(
            "idempotency key was used for a different kind of call", reason="idempotency_key_reused"
        )
    return found


@dataclass(frozen=True)
class _Call(Generic[R]):
    """One ingest call, as the pipeline (`IngestionServicer._ingest`) runs it."""

    source: str
    key: str  # the idempotency key ("" for none)
    digest: str  # of the request, for the claim
    response: type[R]
    step: str  # the lineage step
    deadline_s: float  # of the store
    #: The metadata and content to store under the claimed id (true when the
    #: call resumes an earlier attempt's id), and the announcement the
    #: reconciler rebuilds the events from (see pantheon.ingest.announce).
    prepare: Callable[[str, bool], Awaitable[tuple[md.Metadata, Digested, any_pb2.Any]]]
    #: Refuses a replay whose content differs from the first call's.
    check_replay: Callable[[R], Awaitable[None]]
    #: The events announcing the object, for its metadata and reference.
    events: Callable[[md.Metadata, md.ObjectRef], list[Event]]
    result: Callable[[spb.PutObjectResponse], R]


class IngestionServicer(pb_grpc.IngestionServiceServicer):
    """Serves the IngestionService contract on a storage stub and a publisher."""

    def __init__(
        self,
        storage: spb_grpc.StorageServiceAsyncStub,
        publisher: EventPublisher,
        topics: KafkaSettings,
        *,
        max_object_bytes: int,
        max_document_bytes: int = 16 * 2**20,
        deadline_s: float,
        stale_claim: timedelta,
        reconciler: Reconciler,
    ) -> None:
        self._storage = storage
        self._publisher = publisher
        self._topics = topics
        self._max_bytes = max_object_bytes
        self._max_document_bytes = max_document_bytes
        self._deadline_s = deadline_s
        self._stale_claim = stale_claim
        self._reconciler = reconciler

    # -- shared steps ---------------------------------------------------------

    def _require_events(self) -> None:
        # Checked before storing anything: an object nobody hears of is worse
        # than a fast, retryable refusal.
        if not self._publisher.ready():
            raise Unavailable("event backbone is unavailable, retry later")

    async def _claim(self, source: str, key: str, digest: str, cls: type[M]) -> tuple[str, M | None]:
        """The id to store under, or the first call's result to replay."""
        if not key:
            return new_ulid(), None
        request = spb.ClaimIdempotencyKeyRequest(
            source=source, idempotency_key=key, candidate_id=new_ulid(), request_digest=digest
        )
        # Storage takes over a claim its holder released or stopped renewing.
        request.take_over_after.FromTimedelta(self._stale_claim)
        try:
            claim = await self._storage.ClaimIdempotencyKey(
                request, timeout=self._deadline_s, metadata=ctx.outgoing_metadata()
            )
        except grpc.aio.AioRpcError as exc:
            raise _storage_error(exc, "claiming the idempotency key") from exc
        record = claim.record
        if claim.claimed:
            if record.id != request.candidate_id:
                # The holder failed or died; the object is written at most
                # once and the events keep their ids, and the former holder
                # can no longer complete or release the key.
                log.info("took over the idempotency key of a failed call (id %s)", record.id)
            request.ClearField("take_over_after")
            _lease.set(request)
            return record.id, None
        if record.request_digest != digest:
            raise FailedPrecondition(
                "idempotency key was already used for a different request", reason="idempotency_key_reused"
            )
        if record.HasField("result"):
            return record.id, _unpack(record.result, cls)
        raise Aborted("a call with this idempotency key is in progress, retry later", reason="in_progress")

    async def _renew(self, lease: spb.ClaimIdempotencyKeyRequest) -> None:
        """Renew the claim `lease` holds every third of the stale-claim age, until cancelled."""
        every = max(self._stale_claim.total_seconds() / 3, 0.05)
        while True:
            await asyncio.sleep(every)
            try:
                renewed = await self._storage.ClaimIdempotencyKey(
                    lease, timeout=every, metadata=ctx.outgoing_metadata()
                )
            except grpc.aio.AioRpcError as exc:
                log.warning("could not renew idempotency key: %s", exc.code().name)
                continue
            if not renewed.claimed:
                # Taken over after missed renewals: this call's result will
                # not be recorded (the new holder's stands).
                log.warning("idempotency key was taken over (id %s)", renewed.record.id)
                return

    @asynccontextmanager
    async def _holding(self, source: str, key: str, object_id: str) -> AsyncIterator[None]:
        """Renew the claim while the call runs; give the key up if the call
        fails, so a retry need not wait."""
        lease = _lease.get() if key else None
        renewing = asyncio.create_task(self._renew(lease)) if lease is not None else None
        try:
            yield
        except BaseException:
            if renewing is not None:
                renewing.cancel()
            if key:
                try:
                    await self._storage.ReleaseIdempotencyKey(
                        spb.ReleaseIdempotencyKeyRequest(
                            source=source, idempotency_key=key, id=_holder(object_id)
                        ),
                        timeout=5.0,
                        metadata=ctx.outgoing_metadata(),
                    )
                except grpc.aio.AioRpcError as exc:
                    log.warning("could not release idempotency key: %s", exc.code().name)
            raise
        finally:
            if renewing is not None:
                renewing.cancel()

    async def _complete(self, source: str, key: str, object_id: str, result: Message) -> None:
        if not key:
            return
        try:
            await self._storage.CompleteIdempotencyKey(
                spb.CompleteIdempotencyKeyRequest(
                    source=source, idempotency_key=key, id=_holder(object_id), result=_pack(result)
                ),
                timeout=self._deadline_s,
                metadata=ctx.outgoing_metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
                # A retry took the key over after this call stopped renewing it.
                raise Aborted(
                    "a retry of this call took its idempotency key over, retry to get its result",
                    reason="in_progress",
                ) from exc
            raise _storage_error(exc, "recording the result") from exc

    async def _store(
        self, meta: md.Metadata, announcement: any_pb2.Any, content: Digested, deadline_s: float
    ) -> spb.PutObjectResponse:
        """Stream `content` to storage (stored, not yet visible); an error in
        `content` cancels the upload.

        An id already stored (a retry after a failure that came after the
        store) resolves to the object stored first, if the content is the
        same: different content under the same key is FAILED_PRECONDITION,
        and the caller learns nothing of the stored object.
        """
        call = self._storage.PutObject(timeout=deadline_s, metadata=ctx.outgoing_metadata())
        try:
            await call.write(spb.PutObjectRequest(header=spb.PutObjectHeader(metadata=meta)))
            encoded = announcement.SerializeToString() if announcement.type_url else b""
            for start in range(0, len(encoded), CHUNK):
                await call.write(spb.PutObjectRequest(announcement=encoded[start : start + CHUNK]))
            async for piece in content:
                await call.write(spb.PutObjectRequest(chunk=piece))
            await call.done_writing()
            response: spb.PutObjectResponse = await call
        except grpc.aio.AioRpcError as exc:
            raise _storage_error(exc, "storing the object") from exc
        except BaseException:
            # Invalid content found mid-stream: storage sees a cancelled
            # upload and discards it, so nothing is stored.
            call.cancel()
            raise
        if response.existed:
            await content.same_as(response.metadata.sha256)
        return response

    async def _commit(self, stored: spb.PutObjectResponse) -> None:
        """Make the announced object visible."""
        try:
            await self._storage.CommitObject(
                spb.CommitObjectRequest(
                    object=spb.StatObjectResponse(
                        object=stored.object, metadata=stored.metadata, encryption=stored.encryption
                    )
                ),
                timeout=self._deadline_s,
                metadata=ctx.outgoing_metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            raise _storage_error(exc, "making the object visible") from exc

    def _lineage(self, meta: md.Metadata, step: str) -> None:
        meta.lineage.request_id = ctx.request_id.get()
        s = meta.lineage.steps.add(name=step, version=__version__)
        s.at.GetCurrentTime()

    # -- the pipeline ---------------------------------------------------------

    async def _ingest(self, call: _Call[R]) -> R:
        """Claim → store → announce → commit → complete, for every kind of call.

        Nothing is visible before its events are acknowledged (commit comes
        after publish), and nothing stored stays unannounced: from the first
        byte on, the object's pending marker lets the reconciler finish what
        a call that dies leaves undone, with the same event ids.
        """
        self._require_events()
        object_id, replay = await self._claim(call.source, call.key, call.digest, call.response)
        if replay is not None:
            await call.check_replay(replay)
            replay.replayed = True
            return replay
        async with self._holding(call.source, call.key, object_id):
            meta, content, announcement = await call.prepare(object_id, _holder(object_id) != object_id)
            meta.ingested_at.GetCurrentTime()
            self._lineage(meta, call.step)
            # Every event is built and checked before anything is stored.
            events = call.events(meta, announce.placeholder())
            announce.check_sizes(events)
            stored = await self._store(meta, announcement, content, call.deadline_s)
            announce.with_stored(events, stored)
            faults.crash_point(faults.AFTER_STORE)  # test stacks only: a no-op unless armed
            await self._publisher.publish(events)
            await self._commit(stored)
            result = call.result(stored)
            await self._complete(call.source, call.key, object_id, result)
            log.info("ingested %s as %s/%s", object_id, stored.object.bucket, stored.object.key)
            return result

    # -- IngestObject ---------------------------------------------------------

    async def IngestObject(
        self, request_iterator: AsyncIterator[pb.IngestObjectRequest], context: Context
    ) -> pb.IngestObjectResponse:
        header, body = await split_upload(request_iterator)
        current_grant.get().check_ingest(header.metadata.source, header.metadata.data_type)
        meta = md.Metadata()
        meta.CopyFrom(header.metadata)
        for output_only in ("id", "sha256", "size_bytes", "geohash", "ingested_at", "record_count"):
            meta.ClearField(output_only)
        meta.classification = meta.classification or md.CLASSIFICATION_INTERNAL

        head = await anext(body, b"")
        normaliser = open_normaliser(header.declared_media_type, head)
        meta.format = normaliser.format
        meta.media_type = normaliser.media_type

        async def normalised() -> AsyncIterator[bytes]:
            received = 0
            sha = hashlib.sha256()
            async for piece in prepend(head, body):
                received += len(piece)
                if received > self._max_bytes:
                    raise InvalidArgument(
                        f"object is larger than {self._max_bytes} bytes", reason="too_large"
                    )
                if header.expected_sha256:
                    sha.update(piece)
                if out := await workers.feed(normaliser, piece):
                    yield out
            # Checked before the last piece is sent, so storage never
            # completes an upload whose content turns out to be wrong.
            if header.expected_sha256 and sha.hexdigest() != header.expected_sha256:
                raise InvalidArgument("content does not match expected_sha256", reason="sha256_mismatch")
            if out := await workers.finish(normaliser):
                yield out

        content = Digested(normalised())

        async def prepare(object_id: str, resumed: bool) -> tuple[md.Metadata, Digested, any_pb2.Any]:
            meta.id = object_id
            return meta, content, any_pb2.Any()  # an object's events need nothing more

        async def check_replay(replay: pb.IngestObjectResponse) -> None:
            await content.same_as(replay.metadata.sha256)

        def result(stored: spb.PutObjectResponse) -> pb.IngestObjectResponse:
            return pb.IngestObjectResponse(
                metadata=stored.metadata, object=stored.object, event_id=stored.metadata.id
            )

        return await self._ingest(
            _Call(
                source=meta.source,
                key=meta.idempotency_key,
                digest=_digest(header, extra=b"object"),
                response=pb.IngestObjectResponse,
                step="ingest.object",
                # The stream may take as long as the caller allows (up to the
                # longest upload), not the fixed deadline of short backend calls.
                deadline_s=min(context.time_remaining() or STREAM_DEADLINE_S, STREAM_DEADLINE_S),
                prepare=prepare,
                check_replay=check_replay,
                events=lambda m, ref: announce.object_events(self._topics, m, ref),
                result=result,
            )
        )

    # -- IngestRecords --------------------------------------------------------

    async def IngestRecords(
        self, request: pb.IngestRecordsRequest, context: Context
    ) -> pb.IngestRecordsResponse:
        current_grant.get().check_ingest(request.source, request.data_type)
        accepted, rejected = await announce.triage(request)
        if not accepted:
            raise InvalidArgument.from_violations(
                [v for r in rejected for v in r.violations], "records (every record is invalid)"
            )
        csv_batch = request.batch_format == pb.BATCH_FORMAT_CSV

        async def prepare(batch_id: str, resumed: bool) -> tuple[md.Metadata, Digested, any_pb2.Any]:
            nonlocal accepted, rejected
            if resumed and (earlier := await self._earlier_decision(batch_id)) is not None:
                accepted, rejected = earlier  # the batch the first attempt stored
            accepted = batch.identify(batch_id, accepted)
            content = await self._encode(request, accepted, csv_batch)
            meta = batch.batch_metadata(request, batch_id, accepted)
            return meta, Digested(pieces(content, CHUNK)), await announce.of_batch(request, rejected)

        async def check_replay(replay: pb.IngestRecordsResponse) -> None:
            pass  # the claim's digest covers the whole request

        def result(stored: spb.PutObjectResponse) -> pb.IngestRecordsResponse:
            results = [
                pb.RecordResult(
                    index=i.index, id=i.id, event_id=i.id, status=status_pb2.Status(code=code_pb2.OK)
                )
                for i in accepted
            ] + [batch.rejection(r) for r in rejected]
            results.sort(key=lambda r: r.index)
            return pb.IngestRecordsResponse(
                metadata=stored.metadata,
                object=stored.object,
                results=results,
                accepted_count=len(accepted),
                rejected_count=len(rejected),
                event_id=stored.metadata.id,
            )

        return await self._ingest(
            _Call(
                source=request.source,
                key=request.idempotency_key,
                digest=_digest(request, extra=b"records"),
                response=pb.IngestRecordsResponse,
                step="ingest.records",
                deadline_s=self._deadline_s,
                prepare=prepare,
                check_replay=check_replay,
                events=lambda m, ref: announce.batch_events(self._topics, m, ref, accepted, rejected),
                result=result,
            )
        )

    async def _earlier_decision(
        self, batch_id: str
    ) -> tuple[list[batch.Accepted], list[batch.Rejected]] | None:
        """How the first attempt at `batch_id` split its records, if it got as
        far as storing them: a resumed call stores and announces that batch."""
        try:
            found = await self._storage.GetPendingObject(
                spb.GetPendingObjectRequest(id=batch_id), timeout=STREAM_DEADLINE_S
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None  # the first attempt stored nothing
            raise _storage_error(exc, "reading the first attempt") from exc
        _, accepted, rejected = await announce.decided(found.announcement)
        return accepted, rejected

    @staticmethod
    async def _encode(
        request: pb.IngestRecordsRequest, accepted: list[batch.Accepted], csv_batch: bool
    ) -> bytes:
        """The batch object's bytes; a large batch is encoded in a worker process."""
        if len(accepted) <= batch.INLINE_MAX_RECORDS:
            return batch.encode_csv(accepted) if csv_batch else batch.encode_ndjson(accepted)
        ids = [(a.index, a.id) for a in accepted]
        return await workers.pool().run_in_process(
            batch.encode_ids, request.SerializeToString(), ids, csv_batch
        )

    # -- IngestRecordDocument -------------------------------------------------

    async def IngestRecordDocument(
        self, request_iterator: AsyncIterator[pb.IngestRecordDocumentRequest], context: Context
    ) -> pb.IngestRecordDocumentResponse:
        header, body = await split_upload(request_iterator)
        # Who may send it is known from the header: refuse before reading it.
        grant = current_grant.get()
        grant.check_source(header.source)
        if header.data_type:
            grant.check_ingest(header.source, header.data_type)
        document = bytearray()
        async for piece in body:
            if len(document) + len(piece) > self._max_document_bytes:
                raise InvalidArgument(
                    f"record documents are limited to {self._max_document_bytes} bytes", reason="too_large"
                )
            document += piece
        # Parsing and typing up to 10000 records is CPU work that holds the
        # GIL (json decoding): in a worker process, off the event loop.
        request = await workers.pool().run_in_process(record_document.parse, header, bytes(document))
        del document
        check(request)  # the batch's own rules; records are checked one by one
        return pb.IngestRecordDocumentResponse(result=await self.IngestRecords(request, context))

    # -- Reconcile ------------------------------------------------------------

    async def Reconcile(self, request: pb.ReconcileRequest, context: Context) -> pb.ReconcileResponse:
        older_than = request.older_than.ToTimedelta() if request.HasField("older_than") else None
        try:
            report = await self._reconciler.reconcile(older_than)
        except grpc.aio.AioRpcError as exc:
            raise _storage_error(exc, "listing pending objects") from exc
        return report.to_proto()

    # -- GetIngestResult ------------------------------------------------------

    async def GetIngestResult(
        self, request: pb.GetIngestResultRequest, context: Context
    ) -> pb.GetIngestResultResponse:
        grant = current_grant.get()
        grant.check_source(request.source)  # the results of the caller's own sources only
        try:
            found = await self._storage.GetIdempotencyKey(
                spb.GetIdempotencyKeyRequest(source=request.source, idempotency_key=request.idempotency_key),
                timeout=self._deadline_s,
                metadata=ctx.outgoing_metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                raise NotFound("no call used this idempotency key", reason="key_not_found") from None
            raise _storage_error(exc, "reading the result") from exc
        record = found.record
        if not record.HasField("result"):
            raise NotFound("the call with this idempotency key has not completed", reason="in_progress")
        response = pb.GetIngestResultResponse(completed_at=record.completed_at)
        if record.result.Is(pb.IngestObjectResponse.DESCRIPTOR):
            record.result.Unpack(response.object)
            grant.check_read(response.object.metadata)
        else:
            record.result.Unpack(response.records)
            grant.check_read(response.records.metadata)
        return response


class Digested:
    """An upload's content that keeps the SHA-256 of what passed through it.

    The idempotency claim covers the request's header; the content of a
    replay or a resumed call is compared by this digest of its normalised
    form, on those rare paths only.
    """

    def __init__(self, content: AsyncIterator[bytes]) -> None:
        self._sha = hashlib.sha256()
        self._pieces = self._digesting(content)

    async def _digesting(self, content: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for piece in content:
            self._sha.update(piece)
            yield piece

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces

    async def same_as(self, sha256: str) -> None:
        """Read the rest; refuse content whose digest is not `sha256`."""
        async for _ in self._pieces:
            pass
        if self._sha.hexdigest() != sha256:
            raise FailedPrecondition(
                "idempotency key was already used for different content", reason="idempotency_key_reused"
            )
