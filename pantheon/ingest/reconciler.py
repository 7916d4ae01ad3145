"""The reconciler: announce what dead or failed calls stored, then make it visible.

An ingest call leaves a pending marker from before its first byte is stored
until its object is committed (pantheon.storage.service). A marker that
outlives its call means the call died or failed somewhere between the store
and the commit (for a keyed call, the recording of its result): a crash, a
publish that failed, a lost connection. Every
pass lists the markers older than `after` (a younger one most likely
belongs to a call still running) and settles each by the state of its
object:

- stored, not visible: rebuild the call's events from the announcement in
  the marker (pantheon.ingest.announce), publish them under the same event
  ids, then commit. This covers keyless calls, which no retry repairs.
- visible: the call committed, but the marker's removal did not happen; the
  commit is repeated, which removes it.
- not stored: an upload still streaming, or one that never completed. The
  marker is discarded once it is older than `discard_after`, the longest an
  upload may take, with a margin. The parts of an incomplete multipart
  upload are MinIO's to expire (see the README, "Reconciler").

A call with an idempotency key keeps its marker until its result is
recorded under the key. Once its object is visible, the reconciler records
the result it rebuilds from the announcement (the key taken over as a retry
would take it, never from a live call), which removes the marker; a later
retry replays that result. Until then the marker counts as waiting.

A failure, whatever it is, leaves the marker for the next pass, and the
pass goes on with the next marker. Nothing becomes visible before its
events are acknowledged, here as in the call itself.

With the defaults (a pass every 10 s, markers older than 10 s), an object
whose call died is announced within about 20 s of its store, plus the time
the backends need to come back.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.storage.v1 import storage_service_pb2 as spb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as spb_grpc
from prometheus_client import Counter, Gauge

from pantheon import context as ctx
from pantheon.config import KafkaSettings
from pantheon.events.producer import EventPublisher
from pantheon.ingest import announce
from pantheon.ingest.claims import Claims

log = logging.getLogger(__name__)

WAITING = Gauge(
    "pantheon_unannounced_objects",
    "Pending markers after the last reconciler pass: objects stored (or being stored) "
    "whose announcement is not confirmed yet, or whose keyed call's result is not recorded yet.",
)
OLDEST = Gauge(
    "pantheon_unannounced_oldest_seconds", "Age of the oldest pending marker after the last reconciler pass."
)
SETTLED = Counter(
    "pantheon_reconciled_total",
    "Pending markers the reconciler settled, by outcome (announced, discarded, cleaned).",
    ["outcome"],
)

#: Markers read per listing page.
_PAGE = 100


@dataclass
class Report:
    """What one pass did."""

    announced: int = 0
    discarded: int = 0
    cleaned: int = 0
    waiting: int = 0
    oldest: timedelta = timedelta(0)

    def to_proto(self) -> pb.ReconcileResponse:
        response = pb.ReconcileResponse(
            announced=self.announced, discarded=self.discarded, waiting=self.waiting, cleaned=self.cleaned
        )
        response.oldest_waiting.FromTimedelta(self.oldest)
        return response


class Reconciler:
    """Settles pending markers through the storage service and the publisher."""

    def __init__(
        self,
        storage: spb_grpc.StorageServiceAsyncStub,
        publisher: EventPublisher,
        topics: KafkaSettings,
        *,
        after: timedelta,
        discard_after: timedelta,
        deadline_s: float,
        read_deadline_s: float,
        stale_claim: timedelta,
    ) -> None:
        self._storage = storage
        self._claims = Claims(storage, deadline_s=deadline_s, stale_claim=stale_claim)
        self._publisher = publisher
        self._topics = topics
        self._after = after
        self._discard_after = discard_after
        self._deadline_s = deadline_s
        # Settling a stored object reads it whole once (to hash it): the
        # deadline of the longest upload, not of a short call.
        self._read_deadline_s = read_deadline_s
        # One pass at a time: the loop's and an operator's would only race.
        self._lock = asyncio.Lock()

    async def run(self, interval_s: float) -> None:
        """A pass every `interval_s` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                report = await self.reconcile()
            except Exception as exc:  # the loop must outlive any one failure
                log.warning("reconciler pass failed (retried in %.0f s): %r", interval_s, exc)
                continue
            if report.announced or report.discarded:
                log.info(
                    "reconciler announced %d, discarded %d, %d waiting",
                    report.announced,
                    report.discarded,
                    report.waiting,
                )

    async def reconcile(self, older_than: timedelta | None = None) -> Report:
        """One pass over the markers older than `older_than` (default: `after`)."""
        async with self._lock:
            return await self._pass(self._after if older_than is None else older_than)

    async def _pass(self, older_than: timedelta) -> Report:
        report = Report()
        now = datetime.now(UTC)
        token = ""
        while True:
            request = spb.ListPendingObjectsRequest(page_size=_PAGE, page_token=token)
            page = await self._storage.ListPendingObjects(request, timeout=self._deadline_s)
            for marker in page.markers:
                age = now - marker.written_at.ToDatetime(tzinfo=UTC)
                if age < older_than or not await self._settle(marker.id, age, report):
                    report.waiting += 1
                    report.oldest = max(report.oldest, age)
            token = page.next_page_token
            if not token:
                break
        WAITING.set(report.waiting)
        OLDEST.set(report.oldest.total_seconds())
        return report

    async def _settle(self, object_id: str, age: timedelta, report: Report) -> bool:
        """Settle one marker; False when it stays for a later pass."""
        try:
            found = await self._storage.GetPendingObject(
                spb.GetPendingObjectRequest(id=object_id), timeout=self._read_deadline_s
            )
            meta = found.object.metadata
            # The announcement carries the call's request id, as its own would have.
            ctx.request_id.set(meta.lineage.request_id)
            if found.state == spb.PENDING_STATE_UPLOADING:
                # Aged by the marker's own time (the services' clock, not the store's).
                written = found.written_at.ToDatetime(tzinfo=UTC)
                if datetime.now(UTC) - written < self._discard_after:
                    return False
                request = spb.DiscardPendingObjectRequest(id=object_id)
                request.written_before.FromDatetime(written + timedelta(microseconds=1))
                await self._storage.DiscardPendingObject(request, timeout=self._deadline_s)
                outcome = "discarded"
            else:
                outcome = "cleaned"
                if found.state == spb.PENDING_STATE_STORED:
                    events = await announce.rebuild(self._topics, found.announcement, found.object)
                    await self._publisher.publish(events)
                    outcome = "announced"
                key = meta.idempotency_key
                if found.state == spb.PENDING_STATE_STORED or not key:
                    # Visible now; a keyless call's marker goes with the commit.
                    await self._storage.CommitObject(
                        spb.CommitObjectRequest(object=found.object), timeout=self._deadline_s
                    )
                # A keyed call's marker goes once its result is recorded, so a
                # retry replays that result rather than deciding anew.
                if key and not await self._claims.settle(
                    meta.source,
                    key,
                    object_id,
                    lambda: announce.rebuild_result(found.announcement, found.object),
                ):
                    if outcome == "announced":
                        self._count(report, outcome, object_id, age)
                    return False
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return True  # settled meanwhile, by its call or another pass
            log.warning("could not settle pending object %s: %s", object_id, exc.code().name)
            return False
        except Exception as exc:  # one bad marker must not stop the others
            log.warning("could not settle pending object %s: %r", object_id, exc)
            return False
        self._count(report, outcome, object_id, age)
        return True

    @staticmethod
    def _count(report: Report, outcome: str, object_id: str, age: timedelta) -> None:
        setattr(report, outcome, getattr(report, outcome) + 1)
        SETTLED.labels(outcome).inc()
        log.info("reconciler: %s object %s (pending for %.0f s)", outcome, object_id, age.total_seconds())
