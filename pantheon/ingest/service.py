"""The IngestionService gRPC servicer: validate, normalise, store, announce.

A call is acknowledged only after the storage service has the object and
Kafka has acknowledged every event of the call. Every ingest RPC runs the
same pipeline (claim, store, announce, commit, complete), which is in
pantheon.ingest.pipeline. Idempotency keys are claimed in the index before
anything is stored, so concurrent calls with one key produce one object,
and a retry after a failure resumes under the same id: the object is stored
at most once (conditional write) and the events keep their ids, so
consumers see no second distinct event. The key's claim, renewal,
completion and release are in pantheon.ingest.claims.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, TypeAlias

import grpc
from google.protobuf import any_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as pb_grpc
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as spb_grpc

from pantheon import context as ctx
from pantheon.config import KafkaSettings
from pantheon.errors import InvalidArgument, NotFound
from pantheon.events.producer import EventPublisher
from pantheon.ingest import announce, record_document, workers
from pantheon.ingest import records as batch
from pantheon.ingest.claims import Content, digest, storage_error
from pantheon.ingest.normalise import open_normaliser
from pantheon.ingest.pipeline import CHUNK, Call, Pipeline
from pantheon.ingest.reconciler import Reconciler
from pantheon.interceptors import check
from pantheon.metadata.ulid import new_ulid
from pantheon.policy import current_grant
from pantheon.streams import pieces, prepend, split_upload

# Subscripted only for the type checker: the runtime class is not generic.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

#: Deadline of an upload stream: the longest an upload may take.
STREAM_DEADLINE_S = 3600.0


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
        self._topics = topics
        self._max_bytes = max_object_bytes
        self._max_document_bytes = max_document_bytes
        self._deadline_s = deadline_s
        self._pipeline = Pipeline(storage, publisher, deadline_s=deadline_s, stale_claim=stale_claim)
        self._reconciler = reconciler

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

        content = Content(normalised())

        async def prepare(object_id: str, resumed: bool) -> tuple[md.Metadata, Content, any_pb2.Any]:
            meta.id = object_id
            return meta, content, any_pb2.Any()  # an object's events need nothing more

        async def check_replay(replay: pb.IngestObjectResponse) -> None:
            await content.same_as(replay.metadata.sha256)

        return await self._pipeline.run(
            Call(
                source=meta.source,
                key=meta.idempotency_key,
                digest=digest(header, extra=b"object"),
                response=pb.IngestObjectResponse,
                step="ingest.object",
                # The stream may take as long as the caller allows (up to the
                # longest upload), not the fixed deadline of short backend calls.
                deadline_s=min(context.time_remaining() or STREAM_DEADLINE_S, STREAM_DEADLINE_S),
                prepare=prepare,
                check_replay=check_replay,
                events=lambda m, ref: announce.object_events(self._topics, m, ref),
                result=lambda stored: announce.object_result(stored.metadata, stored.object),
            )
        )

    # -- IngestRecords --------------------------------------------------------

    async def IngestRecords(
        self, request: pb.IngestRecordsRequest, context: Context
    ) -> pb.IngestRecordsResponse:
        current_grant.get().check_ingest(request.source, request.data_type)
        # The batch's id is chosen before its records are checked, as their
        # ids derive from it: checking, naming and encoding them is one step.
        batch_id = new_ulid()
        return await self._ingest_batch(request, batch_id, await announce.decide(request, batch_id))

    async def _ingest_batch(
        self,
        request: pb.IngestRecordsRequest,
        batch_id: str,
        decided: tuple[list[batch.Accepted], list[batch.Rejected], bytes],
    ) -> pb.IngestRecordsResponse:
        """Store and announce `request` as decided under `batch_id`; a call
        that resumes an earlier attempt stores under that attempt's id instead,
        and the batch that attempt stored, if it got so far."""
        accepted, rejected, encoded = decided
        if not accepted:
            raise InvalidArgument.from_violations(
                [v for r in rejected for v in r.violations], "records (every record is invalid)"
            )
        csv_batch = request.batch_format == pb.BATCH_FORMAT_CSV

        async def prepare(object_id: str, resumed: bool) -> tuple[md.Metadata, Content, any_pb2.Any]:
            nonlocal accepted, rejected, encoded
            if resumed:
                # The records' ids derive from the earlier attempt's id, and
                # its decision stands whatever the checks say now.
                if (earlier := await self._earlier_decision(object_id)) is not None:
                    accepted, rejected = earlier
                accepted = batch.identify(object_id, accepted)
                encoded = await self._encode(request, accepted, csv_batch)
            meta = batch.batch_metadata(request, object_id, accepted)
            return meta, Content(pieces(encoded, CHUNK)), await announce.of_batch(request, rejected)

        async def check_replay(replay: pb.IngestRecordsResponse) -> None:
            pass  # the claim's digest covers the whole request

        return await self._pipeline.run(
            Call(
                source=request.source,
                key=request.idempotency_key,
                digest=digest(request, extra=b"records"),
                response=pb.IngestRecordsResponse,
                step="ingest.records",
                deadline_s=self._deadline_s,
                prepare=prepare,
                check_replay=check_replay,
                events=lambda m, ref: announce.batch_events(self._topics, m, ref, accepted, rejected),
                result=lambda done: announce.batch_result(done.metadata, done.object, accepted, rejected),
                candidate=batch_id,
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
            raise storage_error(exc, "reading the first attempt") from exc
        _, accepted, rejected = await announce.decided(found.announcement)
        return accepted, rejected

    @staticmethod
    async def _encode(
        request: pb.IngestRecordsRequest, accepted: list[batch.Accepted], csv_batch: bool
    ) -> bytes:
        """The batch object of records decided earlier; a large batch is encoded in a worker process."""
        if len(accepted) <= batch.INLINE_MAX_RECORDS:
            return batch.encode(accepted, csv_batch)
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
        # Parsing, typing and checking up to 10000 records is CPU work that
        # holds the GIL (json decoding): in one worker call, off the event loop.
        batch_id = new_ulid()
        request, decided = await workers.pool().run_in_process(
            record_document.parse_and_decide, header, bytes(document), batch_id
        )
        del document
        check(request)  # the batch's own rules; records are checked one by one
        grant.check_ingest(request.source, request.data_type)
        result = await self._ingest_batch(request, batch_id, batch.applied(request, decided))
        return pb.IngestRecordDocumentResponse(result=result)

    # -- Reconcile ------------------------------------------------------------

    async def Reconcile(self, request: pb.ReconcileRequest, context: Context) -> pb.ReconcileResponse:
        older_than = request.older_than.ToTimedelta() if request.HasField("older_than") else None
        try:
            report = await self._reconciler.reconcile(older_than)
        except grpc.aio.AioRpcError as exc:
            raise storage_error(exc, "listing pending objects") from exc
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
            raise storage_error(exc, "reading the result") from exc
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
