"""The ingest pipeline every ingest call runs: claim, store, announce, commit, complete.

The servicer (pantheon.ingest.service) turns each RPC into a `Call`: what to
store and announce under the claimed id; `Pipeline.run` does the rest, the
same way for every kind of call. A call is acknowledged only after the
storage service has the object and Kafka has acknowledged every event of
the call; nothing is visible before its events are acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Generic, TypeVar

import grpc
from google.protobuf import any_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as spb_grpc

from pantheon import __version__, faults
from pantheon import context as ctx
from pantheon.errors import Aborted, Unavailable, reason_of
from pantheon.events.producer import Event, EventPublisher
from pantheon.ingest import announce
from pantheon.ingest.claims import Claims, Content, holder, same_content, storage_error
from pantheon.metadata.ulid import new_ulid

log = logging.getLogger(__name__)

#: What an ingest call answers.
R = TypeVar("R", pb.IngestObjectResponse, pb.IngestRecordsResponse)

#: Chunk size of the stream to storage.
CHUNK = 1 << 20


@dataclass(frozen=True)
class Call(Generic[R]):
    """One ingest call, as the pipeline (`Pipeline.run`) runs it."""

    source: str
    key: str  # the idempotency key ("" for none)
    digest: str  # of the request, for the claim
    response: type[R]
    step: str  # the lineage step
    deadline_s: float  # of the store
    #: The metadata and content to store under the claimed id (true when the
    #: call resumes an earlier attempt's id), and the announcement the
    #: reconciler rebuilds the events from (see pantheon.ingest.announce).
    prepare: Callable[[str, bool], Awaitable[tuple[md.Metadata, Content, any_pb2.Any]]]
    #: Refuses a replay whose content differs from the first call's.
    check_replay: Callable[[R], Awaitable[None]]
    #: The events announcing the object, for its metadata and reference.
    events: Callable[[md.Metadata, md.ObjectRef], list[Event]]
    result: Callable[[spb.PutObjectResponse], R]
    #: The id to store under, unless the call resumes an earlier attempt's
    #: (a record batch chooses it before the claim: its records' ids derive from it).
    candidate: str = field(default_factory=new_ulid)


class Pipeline:
    """Runs ingest calls on a storage stub and a publisher."""

    def __init__(
        self,
        storage: spb_grpc.StorageServiceAsyncStub,
        publisher: EventPublisher,
        *,
        deadline_s: float,
        stale_claim: timedelta,
    ) -> None:
        self._storage = storage
        self._publisher = publisher
        self._deadline_s = deadline_s
        self._claims = Claims(storage, deadline_s=deadline_s, stale_claim=stale_claim)

    def _require_events(self) -> None:
        # Checked before storing anything: an object nobody hears of is worse
        # than a fast, retryable refusal.
        if not self._publisher.ready():
            raise Unavailable("event backbone is unavailable, retry later")

    async def _store(
        self, meta: md.Metadata, announcement: any_pb2.Any, content: Content, deadline_s: float
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
            if reason_of(exc) == "id_in_use":
                # Another attempt of this call is storing, or has stored, under its id.
                raise Aborted(
                    "another attempt of this call stored under its id, retry to get its result",
                    reason="in_progress",
                ) from exc
            raise storage_error(exc, "storing the object") from exc
        except BaseException:
            # Invalid content found mid-stream: storage sees a cancelled
            # upload and discards it, so nothing is stored.
            call.cancel()
            raise
        if response.existed:
            if not response.sent_sha256:
                # A storage service older than the field cannot say what it received.
                raise Unavailable(
                    "storage cannot confirm the content of a resumed upload yet, retry later",
                    reason="storage_outdated",
                )
            same_content(response.sent_sha256, response.metadata.sha256)
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
            raise storage_error(exc, "making the object visible") from exc

    def _lineage(self, meta: md.Metadata, step: str) -> None:
        meta.lineage.request_id = ctx.request_id.get()
        s = meta.lineage.steps.add(name=step, version=__version__)
        s.at.GetCurrentTime()

    async def run(self, call: Call[R]) -> R:
        """Claim → store → announce → commit → complete, for every kind of call.

        Nothing is visible before its events are acknowledged (commit comes
        after publish), and nothing stored stays unannounced: from the first
        byte on, the object's pending marker lets the reconciler finish what
        a call that dies leaves undone, with the same event ids.
        """
        self._require_events()
        object_id, replay = await self._claims.claim(
            call.source, call.key, call.digest, call.response, call.candidate
        )
        if replay is not None:
            await call.check_replay(replay)
            replay.replayed = True
            return replay
        async with self._claims.holding(call.source, call.key, object_id):
            meta, content, announcement = await call.prepare(object_id, holder(object_id) != object_id)
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
            await self._claims.complete(call.source, call.key, object_id, result)
            log.info("ingested %s as %s/%s", object_id, stored.object.bucket, stored.object.key)
            return result
