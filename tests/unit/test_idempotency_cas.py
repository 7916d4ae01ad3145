"""Idempotency records under compare-and-swap: leases, renewals, takeovers
and late writers (pantheon/storage/index.py), over the in-memory store and
through the services in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from pantheon_api.events.v1 import events_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as ipb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as ipb_grpc
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.devstack.mesh import DEV_CLIENT
from pantheon.errors import FailedPrecondition, Unavailable
from pantheon.ingest import records
from pantheon.ingest.claims import Claims
from pantheon.metadata.ulid import new_ulid
from pantheon.server import create_server, secure_channel
from pantheon.storage.buckets import INDEX_BUCKET
from pantheon.storage.index import PENDING_PREFIX, Index
from pantheon.validation import FieldViolation
from tests.integration.support import metadata
from tests.unit.fakes import MemoryObjectStore, RecordingPublisher
from tests.unit.mesh import Mesh, make_mesh

SOURCE, KEY, DIGEST = "src-a", "key-1", "ab" * 32
CSV = b"entity_id,temp\nvie-1,21.5\n"


class PausingStore(MemoryObjectStore):
    """A store that can hold a read-modify-write between its read and its write."""

    def __init__(self) -> None:
        super().__init__()
        self._gates: list[tuple[asyncio.Event, asyncio.Event]] = []

    def pause_next_read(self) -> tuple[asyncio.Event, asyncio.Event]:
        """(read, go): the next versioned read sets `read` once it has read,
        then returns only when `go` is set."""
        gate = asyncio.Event(), asyncio.Event()
        self._gates.append(gate)
        return gate

    async def get_bytes_versioned(self, bucket: str, key: str) -> tuple[bytes, str]:
        found = await super().get_bytes_versioned(bucket, key)
        if self._gates:
            read, go = self._gates.pop(0)
            read.set()
            await go.wait()
        return found


def _claim(candidate: str, take_over_after: float | None = None) -> pb.ClaimIdempotencyKeyRequest:
    request = pb.ClaimIdempotencyKeyRequest(
        source=SOURCE, idempotency_key=KEY, candidate_id=candidate, request_digest=DIGEST
    )
    if take_over_after is not None:
        request.take_over_after.FromTimedelta(timedelta(seconds=take_over_after))
    return request


def _result(tag: str) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(ipb.IngestObjectResponse(event_id=tag))
    return packed


def _complete(holder: str, tag: str) -> pb.CompleteIdempotencyKeyRequest:
    return pb.CompleteIdempotencyKeyRequest(
        source=SOURCE, idempotency_key=KEY, id=holder, result=_result(tag)
    )


def _release(holder: str) -> pb.ReleaseIdempotencyKeyRequest:
    return pb.ReleaseIdempotencyKeyRequest(source=SOURCE, idempotency_key=KEY, id=holder)


async def _paused(store: PausingStore, work: Any) -> tuple[asyncio.Task[Any], asyncio.Event]:
    """Start `work` and return once it has read the record and waits to write."""
    read, go = store.pause_next_read()
    task = asyncio.ensure_future(work)
    await read.wait()
    return task, go


# -- the index ----------------------------------------------------------------


async def test_a_late_release_after_completion_changes_nothing() -> None:
    store = MemoryObjectStore()
    index = Index(store)
    x = new_ulid()
    assert (await index.claim(_claim(x))).claimed
    await index.complete(_complete(x, "first"))
    before = dict(store.objects)
    with pytest.raises(FailedPrecondition) as caught:
        await index.release(_release(x))
    assert caught.value.reason == "key_held"
    assert store.objects == before


async def test_a_release_that_read_before_a_completion_is_refused_when_it_writes() -> None:
    store = PausingStore()
    index = Index(store)
    x = new_ulid()
    await index.claim(_claim(x))
    release, go = await _paused(store, index.release(_release(x)))
    await index.complete(_complete(x, "done"))  # while the release holds its stale read
    go.set()
    with pytest.raises(FailedPrecondition):
        await release
    record = await index.record(SOURCE, KEY)
    assert record.HasField("completed_at") and not record.released
    assert record.result == _result("done")


async def test_a_completion_that_read_before_a_release_decides_again_and_completes() -> None:
    store = PausingStore()
    index = Index(store)
    x = new_ulid()
    await index.claim(_claim(x))
    complete, go = await _paused(store, index.complete(_complete(x, "done")))
    await index.release(_release(x))
    go.set()
    completed = await complete
    record = await index.record(SOURCE, KEY)
    assert record == completed
    assert record.result == _result("done") and not record.released


async def test_a_repeated_completion_keeps_the_first_result() -> None:
    store = PausingStore()
    index = Index(store)
    x = new_ulid()
    await index.claim(_claim(x))
    second, go = await _paused(store, index.complete(_complete(x, "second")))
    first = await index.complete(_complete(x, "first"))
    go.set()
    assert await second == first
    assert (await index.record(SOURCE, KEY)).result == _result("first")


async def test_of_two_concurrent_takeovers_one_wins() -> None:
    store = PausingStore()
    index = Index(store)
    x, y, z = new_ulid(), new_ulid(), new_ulid()
    await index.claim(_claim(x))
    await index.release(_release(x))
    by_y, go = await _paused(store, index.claim(_claim(y, take_over_after=60)))
    by_z = await index.claim(_claim(z, take_over_after=60))
    go.set()
    lost = await by_y
    assert by_z.claimed and by_z.record.holder == z and by_z.record.id == x
    assert not lost.claimed and lost.record.holder == z


async def test_renewal_keeps_the_lease_and_stops_once_it_is_lost() -> None:
    index = Index(MemoryObjectStore())
    x, y = new_ulid(), new_ulid()
    first = (await index.claim(_claim(x))).record
    await asyncio.sleep(0.02)
    renewed = await index.renew(SOURCE, KEY, x)
    assert renewed.claimed_at.ToNanoseconds() > first.claimed_at.ToNanoseconds()
    # Renewing by claiming again with the holder's own id does the same.
    again = await index.claim(_claim(x))
    assert again.claimed and again.record.holder == x
    # A claim renewed within `take_over_after` is not taken over.
    assert not (await index.claim(_claim(y, take_over_after=60))).claimed
    await asyncio.sleep(0.05)
    taken = await index.claim(_claim(y, take_over_after=0.04))
    assert taken.claimed and taken.record.holder == y and taken.record.id == x
    with pytest.raises(FailedPrecondition):
        await index.renew(SOURCE, KEY, x)
    assert not (await index.claim(_claim(x))).claimed


async def test_a_takeover_refuses_the_former_holders_late_writes() -> None:
    store = PausingStore()
    index = Index(store)
    x, y = new_ulid(), new_ulid()
    await index.claim(_claim(x))
    await asyncio.sleep(0.05)  # x misses its renewals
    # x's release has read the record, then y takes it over.
    late_release, go = await _paused(store, index.release(_release(x)))
    assert (await index.claim(_claim(y, take_over_after=0.04))).claimed
    go.set()
    with pytest.raises(FailedPrecondition):
        await late_release
    record = await index.record(SOURCE, KEY)
    assert record.holder == y and not record.released
    # x finishes late, before and after y completes: refused both times.
    with pytest.raises(FailedPrecondition):
        await index.complete(_complete(x, "late"))
    await index.complete(_complete(y, "new"))
    for late in (index.complete(_complete(x, "late")), index.release(_release(x))):
        with pytest.raises(FailedPrecondition):
            await late
    record = await index.record(SOURCE, KEY)
    assert record.holder == y and record.result == _result("new") and not record.released


async def test_a_different_request_never_takes_a_claim_over() -> None:
    index = Index(MemoryObjectStore())
    x = new_ulid()
    await index.claim(_claim(x))
    await index.release(_release(x))
    other = _claim(new_ulid(), take_over_after=0)
    other.request_digest = "cd" * 32
    other.take_over_after.FromTimedelta(timedelta(seconds=1))
    found = await index.claim(other)
    assert not found.claimed and found.record.holder == x


async def test_records_written_before_takeovers_are_held_by_their_id() -> None:
    store = MemoryObjectStore()
    index = Index(store)
    x = new_ulid()
    await index.claim(_claim(x))
    ((bucket, name),) = [k for k in store.objects if "idempotency/" in k[1]]
    old = pb.IdempotencyRecord.FromString(store.objects[(bucket, name)])
    old.ClearField("holder")
    store.objects[(bucket, name)] = old.SerializeToString()
    await index.complete(_complete(x, "done"))
    assert (await index.record(SOURCE, KEY)).result == _result("done")


# -- through the services -------------------------------------------------------

STALE_S = 0.5


@pytest.fixture(scope="module")
def dev_mesh(tmp_path_factory: pytest.TempPathFactory) -> Mesh:
    return make_mesh(tmp_path_factory.mktemp("mesh"))


@pytest.fixture
async def served(
    dev_mesh: Mesh,
) -> AsyncIterator[tuple[ipb_grpc.IngestionServiceAsyncStub, MemoryObjectStore, RecordingPublisher]]:
    settings = dev_mesh.service_settings(max_object_bytes=64 * 1024, stale_claim_s=STALE_S)
    store, publisher = MemoryObjectStore(), RecordingPublisher()
    running = await create_server(settings, store=store, publisher=publisher)
    channel = secure_channel(f"localhost:{running.port}", dev_mesh.tls.ca_file, dev_mesh.identity(DEV_CLIENT))
    yield ipb_grpc.IngestionServiceStub(channel), store, publisher
    await channel.close()
    await running.stop(0)


async def _slow_upload(meta: md.Metadata, go: asyncio.Event) -> AsyncIterator[ipb.IngestObjectRequest]:
    """An upload that sends the rest of its content only once `go` is set
    (the call claims its key on the first chunk)."""
    yield ipb.IngestObjectRequest(header=ipb.ObjectHeader(metadata=meta, declared_media_type="text/csv"))
    yield ipb.IngestObjectRequest(chunk=CSV[:10])
    await go.wait()
    yield ipb.IngestObjectRequest(chunk=CSV[10:])


async def _upload(meta: md.Metadata) -> AsyncIterator[ipb.IngestObjectRequest]:
    yield ipb.IngestObjectRequest(header=ipb.ObjectHeader(metadata=meta, declared_media_type="text/csv"))
    yield ipb.IngestObjectRequest(chunk=CSV)


async def test_renewal_keeps_a_long_call_from_being_taken_over(served: tuple) -> None:  # type: ignore[type-arg]
    stub, store, publisher = served
    meta = metadata(SOURCE, idempotency_key="slow-1")
    go = asyncio.Event()
    slow = asyncio.ensure_future(stub.IngestObject(_slow_upload(meta, go)))
    await asyncio.sleep(STALE_S * 3)  # the claim is three stale ages old, renewed all along
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestObject(_upload(meta))
    assert caught.value.code() is grpc.StatusCode.ABORTED
    go.set()
    result = await slow
    assert store.stored() == [result.object.key]
    assert [e.event_id for e in publisher.events] == [result.metadata.id]
    assert (await stub.IngestObject(_upload(meta))).replayed


@pytest.fixture
def no_renewals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Holders stop renewing, as a stalled process would."""

    async def stalled(self: Claims, lease: Any) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(Claims, "renew", stalled)
    yield


async def test_a_takeover_after_missed_renewals_stands_against_the_late_holder(
    served: tuple,  # type: ignore[type-arg]
    no_renewals: None,
) -> None:
    stub, store, publisher = served
    meta = metadata(SOURCE, idempotency_key="stalled-1")
    go = asyncio.Event()
    stalled = asyncio.ensure_future(stub.IngestObject(_slow_upload(meta, go)))
    await asyncio.sleep(STALE_S * 1.5)
    taken = await stub.IngestObject(_upload(meta))  # takes the stale claim over
    assert not taken.replayed
    go.set()  # the former holder finishes late: refused, and it changes nothing
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stalled
    assert caught.value.code() is grpc.StatusCode.ABORTED
    assert store.stored() == [taken.object.key]
    assert {e.event_id for e in publisher.events} == {taken.metadata.id}
    again = await stub.IngestObject(_upload(meta))
    assert again.replayed and again.metadata.id == taken.metadata.id
    assert again.object == taken.object


class _StalledHolder:
    """A keyed batch of two records (e-0, then e-1 a little later) whose
    first holder stalls before storage writes its marker. Its records are
    checked by a clock: the checks after `flip` refuse `refused`, as a
    record check that depends on the time could (refusing e-0 moves the
    batch's object key, refusing e-1 does not)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, key: str, refused: str) -> None:
        self.request = ipb.IngestRecordsRequest(
            data_type="sensor.temperature", source=SOURCE, idempotency_key=key
        )
        for i, (lat, lon) in enumerate([(40.0, 10.0), (48.2, 16.37)]):
            record = self.request.records.add(
                entity_id=f"e-{i}", location=md.GeoPoint(latitude=lat, longitude=lon)
            )
            record.observed_at.GetCurrentTime()
            record.observed_at.seconds -= 600 * (1 - i)
        self.flipped = False
        self.arrived, self.go = asyncio.Event(), asyncio.Event()
        real_violations, real_put_pending = records.violations, Index.put_pending

        def clocked(record: ipb.Record, path: str) -> list[FieldViolation]:
            found = real_violations(record, path)
            if self.flipped and record.entity_id == refused:
                found.append(FieldViolation(f"{path}.observed_at", "stand_in", "refused by the later check"))
            return found

        async def first_waits(index: Index, pending: pb.PendingObject) -> None:
            if not self.arrived.is_set():
                self.arrived.set()
                await self.go.wait()
            await real_put_pending(index, pending)

        monkeypatch.setattr(records, "violations", clocked)
        monkeypatch.setattr(Index, "put_pending", first_waits)

    async def start(
        self, stub: ipb_grpc.IngestionServiceAsyncStub
    ) -> asyncio.Future[ipb.IngestRecordsResponse]:
        """The first holder's call, once it has stalled past its claim; the checks flip."""
        late = asyncio.ensure_future(stub.IngestRecords(self.request))
        await self.arrived.wait()
        await asyncio.sleep(STALE_S * 1.5)
        self.flipped = True
        return late


async def test_a_holder_that_stalled_past_its_claim_stores_no_second_object(
    served: tuple,  # type: ignore[type-arg]
    no_renewals: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The stalled holder's store reaches storage only once the retry that
    # took its key over has stored, committed and answered (its marker
    # removed); the retry refused e-0, so its object is under another key.
    stub, store, publisher = served
    stalled = _StalledHolder(monkeypatch, "late", refused="e-0")
    late = await stalled.start(stub)
    taken = await stub.IngestRecords(stalled.request)  # takes the stale claim over, stores, answers
    assert taken.rejected_count == 1
    for _ in range(200):  # the completed call's marker is removed a moment later
        if not _markers(store):
            break
        await asyncio.sleep(0.01)
    assert not _markers(store)
    stalled.go.set()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await late
    assert caught.value.code() is grpc.StatusCode.ABORTED  # retry to get the result
    assert store.stored() == [taken.object.key]
    announced = [e.payload for e in publisher.events if isinstance(e.payload, events_pb2.DataStored)]
    assert [e.object.key for e in announced] == [taken.object.key]
    assert not _markers(store)  # the stalled holder's own was removed with its refusal
    again = await stub.IngestRecords(stalled.request)
    assert again.replayed and again.object == taken.object


async def test_a_stalled_holder_cannot_rewrite_the_marker_of_the_call_that_took_its_key_over(
    served: tuple,  # type: ignore[type-arg]
    no_renewals: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The retry refused e-1: the same object key, another decision. It
    # stored and committed, but its result was not recorded, so its marker
    # (its decision) is what the next retry and the reconciler go by.
    stub, store, publisher = served
    stalled = _StalledHolder(monkeypatch, "late-same-key", refused="e-1")
    real_complete = Index.complete
    losses = 1

    async def lost_once(index: Index, request: pb.CompleteIdempotencyKeyRequest) -> pb.IdempotencyRecord:
        nonlocal losses
        if losses:
            losses -= 1
            raise Unavailable("the store is away, retry later")
        return await real_complete(index, request)

    monkeypatch.setattr(Index, "complete", lost_once)
    late = await stalled.start(stub)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.IngestRecords(stalled.request)  # took over, stored, committed; result lost
    (stored,) = store.stored()
    stalled.go.set()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await late
    assert caught.value.code() is grpc.StatusCode.ABORTED
    answered = await stub.IngestRecords(stalled.request)  # resumes with the marker's decision
    assert (answered.accepted_count, answered.object.key) == (1, stored)
    assert store.stored() == [stored]
    counts = {
        e.payload.metadata.record_count
        for e in publisher.events
        if isinstance(e.payload, events_pb2.DataStored)
    }
    assert counts == {1}


def _markers(store: MemoryObjectStore) -> list[str]:
    return [k for b, k in store.objects if b == INDEX_BUCKET and k.startswith(PENDING_PREFIX)]
