"""Announce or nothing: an object is visible only once its events are
acknowledged, and the reconciler announces what a failed or dead call
stored, with the events the call itself built (pantheon.ingest.announce,
pantheon.ingest.reconciler). In-process services on an in-memory store and
publisher; the real-backend cases are in the reliability scenarios."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from pantheon_api.events.v1 import events_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as pb_grpc
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as spb_grpc

from pantheon.config import KafkaSettings, S3Settings
from pantheon.devstack.mesh import DEV_CLIENT, INGEST, SIMULATION
from pantheon.errors import FailedPrecondition, InvalidArgument, Unavailable, reason_of
from pantheon.events.producer import Event
from pantheon.ingest import announce
from pantheon.ingest import records as batch
from pantheon.ingest.claims import Claims
from pantheon.ingest.service import STREAM_DEADLINE_S
from pantheon.metadata.ulid import new_ulid
from pantheon.policy import INTERNAL_GRANT, current_grant
from pantheon.server import Running, create_server, secure_channel
from pantheon.storage.buckets import INDEX_BUCKET
from pantheon.storage.index import PENDING_PREFIX, Index, _idempotency_key
from pantheon.storage.object_store import StoredObject
from pantheon.storage.page_tokens import PageTokens
from pantheon.storage.s3 import S3ObjectStore
from pantheon.storage.service import StorageServicer
from pantheon.streams import split_announced_upload
from tests.integration.support import metadata, object_requests
from tests.unit.fakes import MemoryObjectStore, RecordingPublisher
from tests.unit.mesh import Mesh, make_mesh

CSV = b"entity_id,temp\nvie-1,21.5\n"
EVERYTHING = duration_pb2.Duration()  # older_than 0: every marker


@dataclass
class Peeking(RecordingPublisher):
    """Records every batch it is asked to publish (failed ones too) and
    whether the object was visible at that moment."""

    store: MemoryObjectStore = field(default_factory=MemoryObjectStore)
    attempts: list[list[Event]] = field(default_factory=list)
    visible_at_publish: list[bool] = field(default_factory=list)

    async def publish(self, events: Sequence[Event]) -> None:
        self.attempts.append(list(events))
        ids = [e.event_id for e in events if isinstance(e.payload, events_pb2.DataStored)]
        self.visible_at_publish += [(INDEX_BUCKET, f"ids/{i}") in self.store.objects for i in ids]
        await super().publish(events)


@dataclass
class Served:
    running: Running
    ingest: pb_grpc.IngestionServiceAsyncStub
    storage: spb_grpc.StorageServiceAsyncStub
    store: MemoryObjectStore
    publisher: Peeking

    def pending(self) -> list[str]:
        return sorted(k for b, k in self.store.objects if b == INDEX_BUCKET and k.startswith(PENDING_PREFIX))

    async def reconcile(self) -> pb.ReconcileResponse:
        response: pb.ReconcileResponse = await self.ingest.Reconcile(
            pb.ReconcileRequest(older_than=EVERYTHING)
        )
        return response

    async def visible(self, object_id: str) -> bool:
        try:
            await self.storage.StatObject(spb.StatObjectRequest(id=object_id))
        except grpc.aio.AioRpcError as exc:
            assert exc.code() is grpc.StatusCode.NOT_FOUND
            return False
        return True

    async def marker_removed(self) -> bool:
        """The background removal after a commit has run (it needs a few loop turns)."""
        for _ in range(200):
            if not self.pending():
                return True
            await asyncio.sleep(0.01)
        return False


@pytest.fixture(scope="module")
def dev_mesh(tmp_path_factory: pytest.TempPathFactory) -> Mesh:
    return make_mesh(tmp_path_factory.mktemp("mesh"))


@pytest.fixture
async def served(dev_mesh: Mesh) -> AsyncIterator[Served]:
    # The loop would only race the passes the tests run.
    settings = dev_mesh.service_settings(reconcile_interval_s=3600.0)
    store = MemoryObjectStore()
    publisher = Peeking(store=store)
    running = await create_server(settings, store=store, publisher=publisher)
    channel = secure_channel(f"localhost:{running.port}", dev_mesh.tls.ca_file, dev_mesh.identity(DEV_CLIENT))
    yield Served(
        running,
        pb_grpc.IngestionServiceStub(channel),  # type: ignore[arg-type]
        spb_grpc.StorageServiceStub(channel),  # type: ignore[arg-type]
        store,
        publisher,
    )
    await channel.close()
    await running.stop(0)


def _records(valid: int, invalid: int = 0, key: str = "") -> pb.IngestRecordsRequest:
    request = pb.IngestRecordsRequest(data_type="sensor.temperature", source="src-a", idempotency_key=key)
    for i in range(valid + invalid):
        record = request.records.add(
            entity_id=f"e-{i % 2}", location=md.GeoPoint(latitude=48.2, longitude=16.37)
        )
        record.observed_at.FromDatetime(datetime.now(UTC) - timedelta(minutes=5, seconds=-i))
        record.payload.update({"seq": i})
        if i >= valid:
            record.location.latitude = 200.0  # out of range: rejected
    return request


def _wire(events: Sequence[Event]) -> list[tuple[str, str, str, bytes]]:
    return [(e.topic, e.key, e.event_id, e.payload.SerializeToString(deterministic=True)) for e in events]


# -- visible only when announced ------------------------------------------------------------


async def test_an_object_is_invisible_until_its_event_is_acknowledged(served: Served) -> None:
    result = await served.ingest.IngestObject(object_requests(metadata("src-a"), CSV, "text/csv"))
    assert served.publisher.visible_at_publish == [False]
    assert await served.visible(result.metadata.id)
    assert await served.marker_removed()


async def test_a_keyless_object_whose_publish_failed_is_announced_by_the_reconciler(served: Served) -> None:
    served.publisher.fail = Unavailable("event backbone did not acknowledge, retry later")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.ingest.IngestObject(object_requests(metadata("src-a"), CSV, "text/csv"))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    (key,) = served.store.stored()
    object_id = key.rsplit("_", 1)[1].split(".")[0]
    assert served.pending() == [f"{PENDING_PREFIX}{object_id}"]
    assert not await served.visible(object_id)  # stored, unannounced: not visible

    # While the backbone is still down, a pass announces nothing and shows nothing.
    report = await served.reconcile()
    assert (report.announced, report.waiting) == (0, 1)
    assert not await served.visible(object_id)

    served.publisher.fail = None
    report = await served.reconcile()
    assert (report.announced, report.waiting) == (1, 0)
    assert [e.event_id for e in served.publisher.events] == [object_id]
    (event,) = served.publisher.events
    assert isinstance(event.payload, events_pb2.DataStored) and event.payload.object.key == key
    assert await served.visible(object_id)
    assert await served.marker_removed()
    again = await served.reconcile()
    assert (again.announced, again.waiting, len(served.publisher.events)) == (0, 0, 1)


async def test_a_failed_batch_is_announced_with_the_events_its_call_built(served: Served) -> None:
    served.publisher.fail = Unavailable("event backbone did not acknowledge, retry later")
    with pytest.raises(grpc.aio.AioRpcError):
        await served.ingest.IngestRecords(_records(valid=3, invalid=1))
    (attempted,) = served.publisher.attempts
    # Three record events, the batch's DataStored, one dead letter.
    assert [type(e.payload).__name__ for e in attempted] == ["RecordIngested"] * 3 + [
        "DataStored",
        "DeadLetter",
    ]
    served.publisher.fail = None
    assert (await served.reconcile()).announced == 1
    assert _wire(served.publisher.events) == _wire(attempted)
    batch_id = attempted[3].event_id
    assert await served.visible(batch_id)


async def test_a_retry_after_the_reconciler_replays_the_result_it_recorded(served: Served) -> None:
    request = _records(valid=2, key="k-1")
    served.publisher.fail = Unavailable("event backbone did not acknowledge, retry later")
    with pytest.raises(grpc.aio.AioRpcError):
        await served.ingest.IngestRecords(request)
    served.publisher.fail = None
    assert (await served.reconcile()).announced == 1
    assert await served.marker_removed()
    retried = await served.ingest.IngestRecords(request)
    assert retried.replayed and len(served.store.stored()) == 1
    announced = [e.event_id for e in served.publisher.events]
    assert sorted(announced) == sorted([r.id for r in retried.results] + [retried.metadata.id])


async def test_content_found_bad_mid_stream_leaves_no_marker(served: Served) -> None:
    ragged = b"a,b\n" + b"1,2\n" * 5000 + b"3\n"
    with pytest.raises(grpc.aio.AioRpcError):
        await served.ingest.IngestObject(object_requests(metadata("src-a"), ragged, "text/csv", chunk=1024))
    assert served.store.stored() == [] and served.pending() == []


async def test_young_markers_wait_and_markers_of_dead_uploads_are_discarded(served: Served) -> None:
    meta = metadata("src-a")
    meta.id, meta.format = new_ulid(), md.FORMAT_CSV
    await Index(served.store).put_pending(
        spb.PendingObject(metadata=meta, bucket="pantheon-sensor", key="v1/x")
    )
    (marker,) = served.pending()
    # An upload may still be streaming: nothing is decided before the longest upload.
    report = await served.reconcile()
    assert (report.discarded, report.waiting) == (0, 1)
    # Aged by the time written in the marker (the services' clock).
    aged = spb.PendingObject.FromString(served.store.objects[(INDEX_BUCKET, marker)])
    aged.written_at.FromDatetime(datetime.now(UTC) - timedelta(seconds=STREAM_DEADLINE_S + 3600))
    served.store.objects[(INDEX_BUCKET, marker)] = aged.SerializeToString()
    report = await served.reconcile()
    assert (report.discarded, report.waiting) == (1, 0)
    assert served.pending() == [] and served.publisher.events == []


async def test_a_marker_left_behind_a_visible_object_is_cleaned_without_events(served: Served) -> None:
    result = await served.ingest.IngestObject(object_requests(metadata("src-a"), CSV, "text/csv"))
    assert await served.marker_removed()
    token = current_grant.set(INTERNAL_GRANT)
    try:
        await Index(served.store).put_pending(
            spb.PendingObject(metadata=result.metadata, bucket=result.object.bucket, key=result.object.key)
        )
    finally:
        current_grant.reset(token)
    report = await served.reconcile()
    assert (report.cleaned, report.announced) == (1, 0)
    assert len(served.publisher.events) == 1 and await served.marker_removed()


async def test_only_operators_may_reconcile(served: Served, dev_mesh: Mesh) -> None:
    channel = secure_channel(
        f"localhost:{served.running.port}", dev_mesh.tls.ca_file, dev_mesh.identity(SIMULATION)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.IngestionServiceStub(channel).Reconcile(pb.ReconcileRequest())
    await channel.close()
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


# -- the events, built once ---------------------------------------------------------------


async def test_events_built_before_the_store_equal_those_rebuilt_from_the_announcement() -> None:
    topics = KafkaSettings(bootstrap="unused:1", username="u", password="p", ca_file="/ca.pem")
    request = _records(valid=3, invalid=2)
    accepted, rejected = batch.triage(request.records)
    batch_id = new_ulid()
    accepted = batch.identify(batch_id, accepted)
    before = batch.batch_metadata(request, batch_id, accepted)
    events = announce.batch_events(topics, before, announce.placeholder(), accepted, rejected)
    announce.check_sizes(events)

    stored_meta = md.Metadata()
    stored_meta.CopyFrom(before)
    stored_meta.sha256, stored_meta.size_bytes, stored_meta.geohash = "a" * 64, 123, "u2edk"
    ref = md.ObjectRef(bucket="pantheon-sensor", key="v1/k", sha256="a" * 64, size_bytes=123, etag="e")
    announce.with_stored(events, spb.PutObjectResponse(object=ref, metadata=stored_meta))
    announcement = await announce.of_batch(request, rejected)
    info = spb.StatObjectResponse(object=ref, metadata=stored_meta)
    assert _wire(events) == _wire(await announce.rebuild(topics, announcement, info))
    answer = await announce.rebuild_result(announcement, info)
    assert answer == announce.batch_result(stored_meta, ref, accepted, rejected)


@pytest.mark.parametrize("key", ["a_longish_payload_key_{}", "😀" * 300 + "{}"])
async def test_a_rejection_rebuilt_from_the_announcement_is_the_calls(key: str) -> None:
    # The reconciler and a resumed call announce the same dead letters and
    # results as the call, however many and long the record's violations.
    request = _records(valid=1, invalid=1)
    for k in range(40):
        request.records[1].payload.fields[key.format(k)].number_value = float("nan")
    _, rejected, _ = batch.decide(request, new_ulid())
    _, _, rebuilt = await announce.decided(await announce.of_batch(request, rejected))
    assert [batch.rejection(r) for r in rebuilt] == [batch.rejection(r) for r in rejected]
    assert all(r.status.details and len(r.status.details) == 2 for r in map(batch.rejection, rejected))


def test_an_event_over_kafkas_message_size_is_refused_before_anything_is_stored() -> None:
    big = events_pb2.DataStored(event_id="x", metadata=md.Metadata(provider="p" * announce.MAX_EVENT_BYTES))
    with pytest.raises(InvalidArgument) as caught:
        announce.check_sizes([Event("t", "k", big, "x", "s")])
    assert caught.value.reason == "event_too_large"


# -- the PutObject stream -----------------------------------------------------------------


async def _stream(*parts: spb.PutObjectRequest) -> AsyncIterator[spb.PutObjectRequest]:
    for part in parts:
        yield part


async def test_announcement_pieces_come_before_the_content_and_within_the_limit() -> None:
    header = spb.PutObjectRequest(header=spb.PutObjectHeader(metadata=metadata("src-a")))
    _, joined, chunks = await split_announced_upload(
        _stream(
            header,
            spb.PutObjectRequest(announcement=b"ab"),
            spb.PutObjectRequest(announcement=b"cd"),
            spb.PutObjectRequest(chunk=b"x"),
        ),
        limit=4,
    )
    assert joined == b"abcd" and [c async for c in chunks] == [b"x"]

    with pytest.raises(InvalidArgument) as caught:
        await split_announced_upload(
            _stream(
                header, spb.PutObjectRequest(announcement=b"abc"), spb.PutObjectRequest(announcement=b"de")
            ),
            limit=4,
        )
    assert caught.value.reason == "too_large"

    _, _, chunks = await split_announced_upload(
        _stream(header, spb.PutObjectRequest(chunk=b"x"), spb.PutObjectRequest(announcement=b"late")), limit=4
    )
    with pytest.raises(InvalidArgument) as caught:
        _ = [c async for c in chunks]
    assert caught.value.reason == "misplaced_announcement"


async def test_pending_markers_are_listed_completely_page_by_page(served: Served, dev_mesh: Mesh) -> None:
    # Storage's own methods: the ingestion identity's only.
    channel = secure_channel(
        f"localhost:{served.running.port}", dev_mesh.tls.ca_file, dev_mesh.identity(INGEST)
    )
    storage: Any = spb_grpc.StorageServiceStub(channel)
    index = Index(served.store)
    ids = sorted(new_ulid() for _ in range(5))
    token = current_grant.set(INTERNAL_GRANT)
    try:
        for object_id in ids:
            meta = metadata("src-a")
            meta.id = object_id
            await index.put_pending(spb.PendingObject(metadata=meta, bucket="pantheon-sensor", key="v1/x"))
    finally:
        current_grant.reset(token)
    for size in range(1, 7):
        listed, page_token = [], ""
        while True:
            page = await storage.ListPendingObjects(
                spb.ListPendingObjectsRequest(page_size=size, page_token=page_token)
            )
            listed += [m.id for m in page.markers]
            page_token = page.next_page_token
            if not page_token:
                break
        assert listed == ids, size
    # Only markers written before the cut-off.
    young = await storage.ListPendingObjects(
        spb.ListPendingObjectsRequest(older_than=duration_pb2.Duration(seconds=3600))
    )
    await channel.close()
    assert list(young.markers) == []


# -- the call's decision is kept ------------------------------------------------------------


@pytest.fixture
def clocked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Record checks depend on the clock: a record five minutes and a second
    ahead is refused now and accepted a second later. Simulated here: the
    first check refuses record 0, every later one accepts everything."""
    checks = 0
    real_decide = announce.decide

    async def decide(
        request: pb.IngestRecordsRequest, batch_id: str
    ) -> tuple[list[batch.Accepted], list[batch.Rejected], bytes]:
        nonlocal checks
        checks += 1
        accepted, rejected, encoded = await real_decide(request, batch_id)
        if checks == 1:
            refused = [r for r in accepted if r.index == 0]
            kept = [a for a in accepted if a.index != 0]
            reason = batch.FieldViolation(
                "records[0].observed_at", "metadata.observed_at.not_future", "ahead"
            )
            return kept, [batch.Rejected(0, refused[0].record, [reason])], batch.encode(kept, False)
        return accepted, rejected, encoded

    monkeypatch.setattr(announce, "decide", decide)


def _named(events: list[Event]) -> list[tuple[str, str, str, str]]:
    return [(e.topic, e.key, e.event_id, type(e.payload).__name__) for e in events]


def _as_first_decided(response: pb.IngestRecordsResponse) -> None:
    """`response` is the answer to the first check of `clocked`: record 0 refused."""
    assert [r.index for r in response.results if r.status.code != 0] == [0]
    assert response.accepted_count == 2


@pytest.mark.usefixtures("clocked")
async def test_a_resumed_batch_keeps_the_first_attempts_decision(served: Served) -> None:
    request = _records(valid=3, key="clocked")
    served.publisher.fail = Unavailable("event backbone did not acknowledge, retry later")
    with pytest.raises(grpc.aio.AioRpcError):
        await served.ingest.IngestRecords(request)
    (first_key,) = served.store.stored()
    served.publisher.fail = None
    retried = await served.ingest.IngestRecords(request)  # resumes the released key
    assert served.store.stored() == [first_key] == [retried.object.key]
    _as_first_decided(retried)
    # The retry announced what the first attempt would have: the same events
    # (their times and request ids are the retry's).
    (attempted, announced) = served.publisher.attempts
    assert _named(attempted) == _named(announced)


class _LostCompletion:
    """Index.complete fails `times` times: the call committed, but its result is not recorded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, times: int = 1) -> None:
        self.left = times
        real = Index.complete

        async def complete(index: Index, request: spb.CompleteIdempotencyKeyRequest) -> spb.IdempotencyRecord:
            if self.left:
                self.left -= 1
                raise Unavailable("the store is away, retry later")
            return await real(index, request)

        monkeypatch.setattr(Index, "complete", complete)


async def _answer_lost(
    served: Served, monkeypatch: pytest.MonkeyPatch, key: str, *, losses: int = 1
) -> pb.IngestRecordsRequest:
    """A keyed batch of three records that is stored, announced and visible,
    but whose call failed to record its result (`losses` completions fail)."""
    _LostCompletion(monkeypatch, times=losses)
    request = _records(valid=3, key=key)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.ingest.IngestRecords(request)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    return request


@pytest.mark.usefixtures("clocked")
async def test_a_retry_after_a_commit_whose_result_was_lost_answers_the_first_decision(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = await _answer_lost(served, monkeypatch, "lost-result")
    (first_key,) = served.store.stored()
    for _ in range(50):  # the marker's removal would come a few loop turns later
        await asyncio.sleep(0.01)
    # The checks now accept record 0: the retry still answers, stores and
    # announces the batch its first attempt made visible.
    retried = await served.ingest.IngestRecords(request)
    assert served.store.stored() == [first_key] == [retried.object.key]
    _as_first_decided(retried)
    (attempted, announced) = served.publisher.attempts
    assert _named(attempted) == _named(announced)
    assert await served.marker_removed()
    assert await served.ingest.IngestRecords(request) == _replayed(retried)


def _replayed(response: pb.IngestRecordsResponse) -> pb.IngestRecordsResponse:
    replay = pb.IngestRecordsResponse()
    replay.CopyFrom(response)
    replay.replayed = True
    return replay


@pytest.mark.usefixtures("clocked")
async def test_the_reconciler_records_the_result_of_a_call_that_failed_after_its_commit(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = await _answer_lost(served, monkeypatch, "reconciled-result")
    report = await served.reconcile()
    assert (report.cleaned, report.waiting) == (1, 0)
    assert await served.marker_removed()
    found = await served.ingest.GetIngestResult(
        pb.GetIngestResultRequest(source="src-a", idempotency_key="reconciled-result")
    )
    _as_first_decided(found.records)
    retried = await served.ingest.IngestRecords(request)
    assert retried.replayed and retried == _replayed(found.records)
    assert len(served.publisher.attempts) == 1  # the retry announced nothing again


async def test_the_reconciler_leaves_a_key_to_the_live_call_that_holds_it(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    completing, go_on = asyncio.Event(), asyncio.Event()
    real = Index.complete

    async def slow(index: Index, request: spb.CompleteIdempotencyKeyRequest) -> spb.IdempotencyRecord:
        completing.set()
        await go_on.wait()
        return await real(index, request)

    monkeypatch.setattr(Index, "complete", slow)

    async def ingest() -> pb.IngestRecordsResponse:
        response: pb.IngestRecordsResponse = await served.ingest.IngestRecords(_records(valid=2, key="live"))
        return response

    call = asyncio.create_task(ingest())
    await completing.wait()
    report = await served.reconcile()  # the call's marker is there, its object visible
    assert (report.cleaned, report.waiting) == (0, 1)
    assert not (await Index(served.store).record("src-a", "live")).HasField("result")
    go_on.set()
    answered = await call
    assert not answered.replayed and await served.marker_removed()


@pytest.mark.usefixtures("clocked")
async def test_a_key_the_reconciler_took_over_and_could_not_complete_is_released(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The call's completion fails, then the reconciler's.
    request = await _answer_lost(served, monkeypatch, "released-again", losses=2)
    report = await served.reconcile()
    assert (report.cleaned, report.waiting) == (0, 1)
    assert (await Index(served.store).record("src-a", "released-again")).released
    retried = await served.ingest.IngestRecords(request)  # at once, not ABORTED until the claim is stale
    _as_first_decided(retried)
    assert not retried.replayed and await served.marker_removed()


async def test_a_dead_calls_announcement_is_counted_while_its_key_is_not_yet_stale(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def died(claims: Claims, source: str, key: str, holder_id: str) -> None:
        pass  # the call died: nobody released its key

    monkeypatch.setattr(Claims, "_release", died)
    served.publisher.fail = Unavailable("event backbone did not acknowledge, retry later")
    with pytest.raises(grpc.aio.AioRpcError):
        await served.ingest.IngestRecords(_records(valid=2, key="died"))
    served.publisher.fail = None
    report = await served.reconcile()
    # Announced and visible; the marker waits until the claim goes stale.
    assert (report.announced, report.waiting) == (1, 1)
    assert not (await Index(served.store).record("src-a", "died")).HasField("result")


async def test_a_keyed_marker_whose_key_is_gone_waits_and_is_counted(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _answer_lost(served, monkeypatch, "gone")
    del served.store.objects[(INDEX_BUCKET, _idempotency_key("src-a", "gone"))]  # a damaged index
    before = dict(served.store.written)
    for _ in range(2):
        report = await served.reconcile()
        assert (report.cleaned, report.waiting) == (0, 1)
    assert served.store.written == before  # a waiting pass writes nothing (no commit again)


async def test_a_keyed_object_whose_result_was_lost_is_answered_and_recorded(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    _LostCompletion(monkeypatch)
    meta = metadata("src-a", idempotency_key="object-lost")
    with pytest.raises(grpc.aio.AioRpcError):
        await served.ingest.IngestObject(object_requests(meta, CSV, "text/csv"))
    (first_key,) = served.store.stored()
    retried = await served.ingest.IngestObject(object_requests(meta, CSV, "text/csv"))
    assert retried.object.key == first_key and not retried.replayed
    assert await served.marker_removed()
    again = await served.ingest.IngestObject(object_requests(meta, CSV, "text/csv"))
    assert again.replayed and again.metadata == retried.metadata


async def test_a_marker_left_behind_a_completed_key_is_removed_by_the_reconciler(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Index.drop_pending_soon
    monkeypatch.setattr(Index, "drop_pending_soon", lambda index, object_id: None)  # the removal is lost
    request = _records(valid=2, key="left-behind")
    answered = await served.ingest.IngestRecords(request)
    assert served.pending()
    monkeypatch.setattr(Index, "drop_pending_soon", real)
    report = await served.reconcile()
    assert (report.cleaned, report.waiting) == (1, 0)
    assert await served.marker_removed()
    assert await served.ingest.IngestRecords(request) == _replayed(answered)


async def test_a_retry_after_an_attempt_that_stored_nothing_names_its_records_after_that_attempt(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The call checks and names its records under an id of its own before
    # the claim; resuming an earlier attempt's id, it names them again.
    request = _records(valid=3, key="stored-nothing")
    real = Index.put_pending

    async def away(self: Index, pending: spb.PendingObject) -> None:
        raise Unavailable("the store is away, retry later")

    monkeypatch.setattr(Index, "put_pending", away)
    with pytest.raises(grpc.aio.AioRpcError):
        await served.ingest.IngestRecords(request)
    first = (await Index(served.store).record("src-a", "stored-nothing")).id
    monkeypatch.setattr(Index, "put_pending", real)
    retried = await served.ingest.IngestRecords(request)
    assert retried.metadata.id == first
    named = batch.identify(first, [batch.Accepted(i, "", r) for i, r in enumerate(request.records)])
    assert [r.id for r in retried.results] == [a.id for a in named]
    (key,) = served.store.stored()
    stored = bytes(served.store.objects[(retried.object.bucket, key)])
    assert stored == batch.encode(named, False)


async def test_a_marker_for_the_id_of_another_object_is_refused(served: Served) -> None:
    index = Index(served.store)
    meta = metadata("src-a")
    meta.id = new_ulid()
    await index.put_pending(spb.PendingObject(metadata=meta, bucket="pantheon-sensor", key="v1/a"))
    await index.put_pending(spb.PendingObject(metadata=meta, bucket="pantheon-sensor", key="v1/a"))  # a retry
    with pytest.raises(FailedPrecondition) as caught:
        await index.put_pending(spb.PendingObject(metadata=meta, bucket="pantheon-sensor", key="v1/b"))
    assert caught.value.reason == "id_in_use"


async def test_a_corrupt_marker_does_not_stop_the_pass(served: Served) -> None:
    served.store.objects[(INDEX_BUCKET, f"{PENDING_PREFIX}{'0' * 26}")] = b"\xff not a marker"
    served.store.written[(INDEX_BUCKET, f"{PENDING_PREFIX}{'0' * 26}")] = datetime.now(UTC)
    served.publisher.fail = Unavailable("event backbone did not acknowledge, retry later")
    with pytest.raises(grpc.aio.AioRpcError):
        await served.ingest.IngestObject(object_requests(metadata("src-a"), CSV, "text/csv"))
    served.publisher.fail = None
    report = await served.reconcile()
    assert (report.announced, report.waiting) == (1, 1)  # the good one announced, the bad one left


async def test_a_cancelled_store_call_returns_only_once_its_thread_is_done() -> None:
    # A PUT cannot be stopped once sent: whoever handles the cancellation
    # must know that it has landed or failed (else a marker is dropped for
    # bytes that land afterwards).
    store = S3ObjectStore(
        S3Settings(endpoint="https://127.0.0.1:9", access_key="a", secret_key="s", ca_file=None)
    )
    release, finished = threading.Event(), threading.Event()

    def slow_put() -> None:
        release.wait(30)
        finished.set()

    task = asyncio.create_task(store._run(slow_put))
    await asyncio.sleep(0.05)
    task.cancel()
    for _ in range(10):
        await asyncio.sleep(0.01)
    assert not task.done()  # still waiting for the thread
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()


async def test_a_commit_that_fails_after_the_publish_is_finished_by_the_reconciler(served: Served) -> None:
    store = served.store
    real_publish = served.publisher.publish

    async def publish_then_lose_the_store(events: Sequence[Event]) -> None:
        await real_publish(events)
        store.fail = Unavailable("object store is unavailable, retry later")  # before the commit

    served.publisher.publish = publish_then_lose_the_store  # type: ignore[method-assign]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.ingest.IngestRecords(_records(valid=2))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    served.publisher.publish = real_publish  # type: ignore[method-assign]
    store.fail = None
    batch_id = served.publisher.events[-1].event_id
    assert not await served.visible(batch_id)  # announced, not committed: not visible
    report = await served.reconcile()
    assert (report.announced, report.waiting) == (1, 0)
    assert await served.visible(batch_id) and await served.marker_removed()


def _upload_header() -> spb.PutObjectRequest:
    """The first message of a PutObject stream, for a CSV object under a new id."""
    meta = metadata("src-a")
    meta.id, meta.format = new_ulid(), md.FORMAT_CSV
    return spb.PutObjectRequest(header=spb.PutObjectHeader(metadata=meta))


async def test_a_chunk_over_the_cap_sent_to_storage_is_refused_and_leaves_nothing() -> None:
    # The cap is checked where storage reads the chunk (pantheon/streams.py):
    # after the marker was written, which the refusal removes again.
    store = MemoryObjectStore()
    servicer = StorageServicer(store, PageTokens(b"k" * 32))

    async def requests() -> AsyncIterator[spb.PutObjectRequest]:
        yield _upload_header()
        yield spb.PutObjectRequest(chunk=CSV)
        yield spb.PutObjectRequest(chunk=b"x" * (4 * 2**20 + 1))

    token = current_grant.set(INTERNAL_GRANT)
    try:
        with pytest.raises(InvalidArgument) as caught:
            await servicer.PutObject(requests(), None)  # type: ignore[arg-type]
    finally:
        current_grant.reset(token)
    assert [(v.field, v.rule_id) for v in caught.value.violations] == [("chunk", "bytes.max_len")]
    assert store.stored() == [] and not [k for _, k in store.objects if k.startswith(PENDING_PREFIX)]


async def test_an_upload_cancelled_while_its_marker_is_written_leaves_no_marker() -> None:
    # The caller cancels (its content turned out invalid) while storage waits
    # for the store's answer to the marker PUT, which has already landed.
    class SlowAnswers(MemoryObjectStore):
        answered = asyncio.Event()

        async def put_bytes(
            self, bucket: str, key: str, data: bytes, *, if_absent: bool, if_match: str = ""
        ) -> StoredObject:
            written = await super().put_bytes(bucket, key, data, if_absent=if_absent, if_match=if_match)
            if key.startswith(PENDING_PREFIX):
                await self.answered.wait()
            return written

    store = SlowAnswers()
    servicer = StorageServicer(store, PageTokens(b"k" * 32))

    async def requests() -> AsyncIterator[spb.PutObjectRequest]:
        yield _upload_header()
        yield spb.PutObjectRequest(chunk=CSV)
        await asyncio.Event().wait()  # the rest never comes

    token = current_grant.set(INTERNAL_GRANT)
    try:
        upload = asyncio.create_task(servicer.PutObject(requests(), None))  # type: ignore[arg-type]
        for _ in range(100):
            if any(k.startswith(PENDING_PREFIX) for _, k in store.objects):
                break
            await asyncio.sleep(0.01)
        assert any(k.startswith(PENDING_PREFIX) for _, k in store.objects)  # it landed
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload
    finally:
        current_grant.reset(token)
    assert not [k for _, k in store.objects if k.startswith(PENDING_PREFIX)]
    assert store.stored() == []


async def test_bad_storage_input_is_refused_and_changes_nothing(served: Served, dev_mesh: Mesh) -> None:
    channel = secure_channel(
        f"localhost:{served.running.port}", dev_mesh.tls.ca_file, dev_mesh.identity(INGEST)
    )
    storage: Any = spb_grpc.StorageServiceStub(channel)
    meta = metadata("src-a")
    meta.id, meta.format = new_ulid(), md.FORMAT_CSV

    async def put(*extra: spb.PutObjectRequest) -> AsyncIterator[spb.PutObjectRequest]:
        yield spb.PutObjectRequest(header=spb.PutObjectHeader(metadata=meta))
        for part in extra:
            yield part

    async def refused(call: Any) -> str:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        return reason_of(caught.value) or ""

    try:
        # An announcement that is not a google.protobuf.Any.
        assert (
            await refused(
                storage.PutObject(
                    put(spb.PutObjectRequest(announcement=b"\xff\xff"), spb.PutObjectRequest(chunk=CSV))
                )
            )
            == "undecodable"
        )
        # A commit whose reference is not where its metadata puts it.
        forged = spb.StatObjectResponse(metadata=meta)
        forged.object.bucket, forged.object.key = "pantheon-sensor", "v1/elsewhere"
        assert (
            await refused(storage.CommitObject(spb.CommitObjectRequest(object=forged)))
            == "reference_mismatch"
        )
        # A page token that is not an id.
        assert (
            await refused(storage.ListPendingObjects(spb.ListPendingObjectsRequest(page_token="../ids/x")))
            == "invalid_page_token"
        )
    finally:
        await channel.close()
    assert served.store.objects == {} and served.publisher.events == []
