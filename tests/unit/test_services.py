"""The gRPC services in-process (port 0, TLS) with an in-memory store and
publisher: the branches that are hard to reach against real backends."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as pb_grpc
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb
from prometheus_client import REGISTRY

from pantheon.devstack.mesh import DEV_CLIENT, INGEST
from pantheon.envconfig import heap
from pantheon.errors import Unavailable
from pantheon.ingest.records import MAX_RECORD_BYTES
from pantheon.policy import INTERNAL_GRANT, current_grant
from pantheon.server import Running, create_server, secure_channel
from pantheon.storage.service import StorageServicer
from tests.integration.support import metadata, object_requests
from tests.unit.fakes import MemoryObjectStore, RecordingPublisher
from tests.unit.mesh import Mesh, make_mesh

CSV = b"entity_id,temp\nvie-1,21.5\n"


@pytest.fixture(scope="module")
def dev_mesh(tmp_path_factory: pytest.TempPathFactory) -> Mesh:
    return make_mesh(tmp_path_factory.mktemp("mesh"))


@pytest.fixture
async def served(
    dev_mesh: Mesh,
) -> AsyncIterator[tuple[Running, pb_grpc.IngestionServiceAsyncStub, MemoryObjectStore, RecordingPublisher]]:
    settings = dev_mesh.service_settings(max_object_bytes=64 * 1024)
    store, publisher = MemoryObjectStore(), RecordingPublisher()
    running = await create_server(settings, store=store, publisher=publisher)
    channel = secure_channel(f"localhost:{running.port}", dev_mesh.tls.ca_file, dev_mesh.identity(DEV_CLIENT))
    yield running, pb_grpc.IngestionServiceStub(channel), store, publisher  # type: ignore[misc]
    await channel.close()
    await running.stop(0)


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    raise AssertionError("no ErrorInfo")


async def test_an_object_is_stored_and_announced(served: tuple) -> None:  # type: ignore[type-arg]
    _, stub, store, publisher = served
    result = await stub.IngestObject(object_requests(metadata("src-a"), CSV, "text/csv"))
    assert store.stored() == [result.object.key]
    assert [e.event_id for e in publisher.events] == [result.metadata.id]


async def test_events_down_refuses_before_storing(served: tuple) -> None:  # type: ignore[type-arg]
    _, stub, store, publisher = served
    publisher.up = False
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestObject(object_requests(metadata("src-a"), CSV, "text/csv"))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert store.stored() == []


async def test_store_down_is_unavailable(served: tuple) -> None:  # type: ignore[type-arg]
    _, stub, store, publisher = served
    store.fail = Unavailable("object store is unavailable, retry later")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestObject(object_requests(metadata("src-a", idempotency_key="k1"), CSV, "text/csv"))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert publisher.events == []


async def test_a_failed_publish_releases_the_key_and_the_retry_resumes_once(served: tuple) -> None:  # type: ignore[type-arg]
    _, stub, store, publisher = served
    meta = metadata("src-a", idempotency_key="retry-me")
    publisher.fail = Unavailable("event backbone did not acknowledge, retry later")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestObject(object_requests(meta, CSV, "text/csv"))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    (first_key,) = store.stored()  # stored, but not acknowledged

    publisher.fail = None
    result = await stub.IngestObject(object_requests(meta, CSV, "text/csv"))  # no wait: the key was released
    assert store.stored() == [first_key] == [result.object.key]
    assert [e.event_id for e in publisher.events] == [result.metadata.id]
    again = await stub.IngestObject(object_requests(meta, CSV, "text/csv"))
    assert again.replayed and len(publisher.events) == 1


async def test_content_found_bad_mid_stream_is_never_stored(served: tuple) -> None:  # type: ignore[type-arg]
    _, stub, store, publisher = served
    ragged = b"a,b\n" + b"1,2\n" * 5000 + b"3\n"  # the bad row comes after many chunks
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestObject(object_requests(metadata("src-a"), ragged, "text/csv", chunk=1024))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert _reason(caught.value) == "invalid_csv"
    assert store.stored() == [] and store.aborted_uploads == 1 and publisher.events == []


async def test_an_object_over_the_size_limit_is_refused(served: tuple) -> None:  # type: ignore[type-arg]
    _, stub, store, _ = served
    big = b"a\n" + b"1\n" * 40_000  # 80 KB over a 64 KiB limit
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestObject(object_requests(metadata("src-a"), big, "text/csv"))
    assert _reason(caught.value) == "too_large"
    assert store.stored() == []


async def test_unexpected_errors_are_internal_without_details(served: tuple) -> None:  # type: ignore[type-arg]
    _, stub, _, publisher = served
    publisher.fail = RuntimeError("secret connection string user:pass@host")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestObject(object_requests(metadata("src-a"), CSV, "text/csv"))
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in (caught.value.details() or "")
    assert "request id" in (caught.value.details() or "")


async def test_a_header_in_the_middle_of_the_stream_is_refused(served: tuple) -> None:  # type: ignore[type-arg]
    _, stub, store, _ = served

    async def twice() -> AsyncIterator[pb.IngestObjectRequest]:
        header = pb.ObjectHeader(metadata=metadata("src-a"), declared_media_type="text/csv")
        yield pb.IngestObjectRequest(header=header)
        yield pb.IngestObjectRequest(chunk=CSV)
        yield pb.IngestObjectRequest(header=header)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestObject(twice())
    assert _reason(caught.value) == "duplicate_header"
    assert store.stored() == []


def test_fakes_are_not_used_by_integration_tests() -> None:
    integration = Path(__file__).resolve().parents[1] / "integration"
    assert not any("fakes" in p.read_text() for p in integration.glob("*.py"))


async def test_ingestion_can_use_a_remote_storage_service(dev_mesh: Mesh) -> None:
    """Ingestion in one server, storage in another, over mutual TLS gRPC as
    the ingest identity."""
    base = dev_mesh.service_settings()
    storage_store, unused_store, publisher = MemoryObjectStore(), MemoryObjectStore(), RecordingPublisher()
    storage_side = await create_server(base, store=storage_store, publisher=RecordingPublisher())
    remote = dev_mesh.service_settings(
        storage_target=f"localhost:{storage_side.port}", identity=dev_mesh.identity(INGEST)
    )
    ingest_side = await create_server(remote, store=unused_store, publisher=publisher)
    channel = secure_channel(
        f"localhost:{ingest_side.port}", dev_mesh.tls.ca_file, dev_mesh.identity(DEV_CLIENT)
    )
    try:
        stub = pb_grpc.IngestionServiceStub(channel)
        result = await stub.IngestObject(object_requests(metadata("src-a"), CSV, "text/csv"))
    finally:
        await channel.close()
        await ingest_side.stop(0)
        await storage_side.stop(0)
    assert storage_store.stored() == [result.object.key]
    assert unused_store.objects == {}
    assert [e.event_id for e in publisher.events] == [result.metadata.id]


async def test_calls_and_rejects_are_counted(served: tuple) -> None:  # type: ignore[type-arg]
    _, stub, _, _ = served
    method = "/pantheon_api.ingest.v1.IngestionService/IngestObject"

    def sample(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    ok_before = sample("pantheon_rpc_requests_total", {"method": method, "code": "OK"})
    bad_before = sample("pantheon_rpc_requests_total", {"method": method, "code": "INVALID_ARGUMENT"})
    csv_before = sample("pantheon_rejected_total", {"reason": "invalid_csv"})
    await stub.IngestObject(object_requests(metadata("src-a"), CSV, "text/csv"))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.IngestObject(object_requests(metadata("src-a"), b"a,b\n1\n", "text/csv"))
    assert sample("pantheon_rpc_requests_total", {"method": method, "code": "OK"}) == ok_before + 1
    assert (
        sample("pantheon_rpc_requests_total", {"method": method, "code": "INVALID_ARGUMENT"})
        == bad_before + 1
    )
    assert sample("pantheon_rejected_total", {"reason": "invalid_csv"}) == csv_before + 1


async def test_a_key_reused_for_different_content_is_refused(served: tuple) -> None:  # type: ignore[type-arg]
    _, stub, store, publisher = served
    meta = metadata("src-a", idempotency_key="content-check")
    await stub.IngestObject(object_requests(meta, CSV, "text/csv"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestObject(object_requests(meta, b"entity_id,temp\nvie-1,99.9\n", "text/csv"))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert _reason(caught.value) == "idempotency_key_reused"
    # The same content again (even chunked differently) is a replay.
    again = await stub.IngestObject(object_requests(meta, CSV, "text/csv", chunk=3))
    assert again.replayed and len(store.stored()) == 1 and len(publisher.events) == 1


async def test_a_chunk_over_the_proto_cap_is_refused(served: tuple) -> None:  # type: ignore[type-arg]
    _, stub, store, publisher = served
    big = b"a\n" + b"1\n" * (2 * 2**20)  # one 4 MiB + 2 byte chunk
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestObject(object_requests(metadata("src-a"), big, "text/csv", chunk=len(big)))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert _reason(caught.value) == "validation_failed"
    assert store.stored() == [] and publisher.events == []


async def test_a_failed_call_asks_for_a_collection(served: tuple, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[type-arg]
    # What the failed call held sits in reference cycles (its traceback):
    # collected soon (pantheon/envconfig/heap.py), not after 20,000 objects.
    _, stub, store, _ = served
    asked: list[None] = []
    monkeypatch.setattr(heap, "collect_after_failure", lambda: asked.append(None))
    header = pb.ObjectHeader(
        metadata=metadata("src-a"), declared_media_type="text/csv", expected_sha256="0" * 64
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.IngestObject(
            iter([pb.IngestObjectRequest(header=header), pb.IngestObjectRequest(chunk=CSV)])
        )
    assert asked and store.stored() == []


async def test_a_resumed_call_with_other_content_is_refused_and_learns_nothing(served: tuple) -> None:  # type: ignore[type-arg]
    _, stub, store, publisher = served
    meta = metadata("src-a", idempotency_key="resume-me")
    publisher.fail = Unavailable("event backbone did not acknowledge, retry later")
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.IngestObject(object_requests(meta, CSV, "text/csv"))
    (first_key,) = store.stored()  # stored, not announced: the next call resumes under its id
    publisher.fail = None
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestObject(object_requests(meta, b"entity_id,temp\nother,1.0\n", "text/csv"))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert _reason(caught.value) == "idempotency_key_reused"
    assert first_key not in (caught.value.details() or "")
    assert store.stored() == [first_key] and publisher.events == []


async def test_storage_reports_the_digest_of_the_content_it_received(served: tuple) -> None:  # type: ignore[type-arg]
    running, _, _, _ = served
    storage = running.storage
    meta = metadata("src-a")
    meta.id, meta.format = "01JB3ZQ5X4Y8W9V6T2R1P0N7M5", md.FORMAT_CSV
    first = await _put(storage, meta, CSV)
    assert not first.existed and first.sent_sha256 == first.metadata.sha256 == hashlib.sha256(CSV).hexdigest()
    other = b"entity_id,temp\nother,1.0\n"
    again = await _put(storage, meta, other)
    # The first object is kept and described; what this call sent is told apart by its digest.
    assert again.existed and again.metadata.sha256 == first.metadata.sha256
    assert again.sent_sha256 == hashlib.sha256(other).hexdigest()


async def _put(storage: StorageServicer, meta: md.Metadata, data: bytes) -> spb.PutObjectResponse:
    async def requests() -> AsyncIterator[spb.PutObjectRequest]:
        yield spb.PutObjectRequest(header=spb.PutObjectHeader(metadata=meta))
        yield spb.PutObjectRequest(chunk=data)

    token = current_grant.set(INTERNAL_GRANT)
    try:
        return await storage.PutObject(requests(), None)  # type: ignore[arg-type]
    finally:
        current_grant.reset(token)


async def test_a_resumed_call_is_refused_while_storage_cannot_say_what_it_received(
    served: tuple,  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, stub, store, publisher = served
    meta = metadata("src-a", idempotency_key="old-storage")
    publisher.fail = Unavailable("event backbone did not acknowledge, retry later")
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.IngestObject(object_requests(meta, CSV, "text/csv"))
    publisher.fail = None
    put = StorageServicer.PutObject

    async def older(self: StorageServicer, *args: Any) -> spb.PutObjectResponse:
        response = await put(self, *args)
        response.ClearField("sent_sha256")  # as a storage service older than the field answers
        return response

    monkeypatch.setattr(StorageServicer, "PutObject", older)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestObject(object_requests(meta, CSV, "text/csv"))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert _reason(caught.value) == "storage_outdated"
    assert len(store.stored()) == 1 and publisher.events == []


async def test_a_record_over_the_event_budget_is_rejected_alone(served: tuple) -> None:  # type: ignore[type-arg]
    _, stub, store, publisher = served

    def record(entity: str, size: int) -> pb.Record:
        r = pb.Record(entity_id=entity, location=md.GeoPoint(latitude=48.2, longitude=16.3))
        r.observed_at.GetCurrentTime()
        r.payload.update({"blob": "x" * size})
        return r

    request = pb.IngestRecordsRequest(
        data_type="sensor.temperature",
        source="src-a",
        records=[record("ok", 10), record("big", MAX_RECORD_BYTES)],
    )
    result = await stub.IngestRecords(request)
    assert (result.accepted_count, result.rejected_count) == (1, 1)
    assert result.results[1].status.code == 3  # INVALID_ARGUMENT, for that record only
    assert len(store.stored()) == 1
    letters = [e for e in publisher.events if e.topic.endswith("dead-letter.v1")]
    assert len(letters) == 1 and all(len(e.payload.SerializeToString()) < 1_000_000 for e in publisher.events)


async def test_a_record_with_a_non_finite_value_is_rejected_alone(served: tuple) -> None:  # type: ignore[type-arg]
    # The request-level check leaves records to their own checks: a NaN in
    # one record's payload refuses that record, not its batch.
    _, stub, store, publisher = served

    def record(entity: str, value: float) -> pb.Record:
        r = pb.Record(entity_id=entity, location=md.GeoPoint(latitude=48.2, longitude=16.3))
        r.observed_at.GetCurrentTime()
        r.payload.update({"pm10": value})
        return r

    request = pb.IngestRecordsRequest(
        data_type="sensor.temperature",
        source="src-a",
        records=[record("ok-1", 1.0), record("nan", float("nan")), record("ok-2", 2.0)],
    )
    result = await stub.IngestRecords(request)
    assert (result.accepted_count, result.rejected_count) == (2, 1)
    assert [r.status.code for r in result.results] == [0, 3, 0]
    bad = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad) for detail in result.results[1].status.details)
    assert [(v.field, v.reason) for v in bad.field_violations] == [
        ("records[1].payload.fields['pm10']", "value.well_formed")
    ]
    assert len(store.stored()) == 1
    assert len([e for e in publisher.events if e.topic.endswith("dead-letter.v1")]) == 1


def _batch(n: int) -> pb.IngestRecordsRequest:
    where = md.GeoPoint(latitude=48.2, longitude=16.3)
    records = [pb.Record(entity_id=f"e-{i}", location=where) for i in range(n)]
    for r in records:
        r.observed_at.GetCurrentTime()
        r.payload.update({"t": 1.5})
    return pb.IngestRecordsRequest(data_type="sensor.temperature", source="src-a", records=records)


@pytest.mark.parametrize("n", [3, 70])  # checked inline, and in a worker process
async def test_a_batch_of_invalid_records_only_is_refused_and_changes_nothing(
    served: tuple,  # type: ignore[type-arg]
    n: int,
) -> None:
    from pantheon.storage.index import INDEX_BUCKET

    _, stub, store, publisher = served
    request = _batch(n)
    for r in request.records:
        r.location.latitude = 95  # out of range
    request.idempotency_key = f"all-bad-{n}"
    for _attempt in range(2):  # refused before the key is claimed: a retry is refused alike
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IngestRecords(request)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "every record is invalid" in (caught.value.details() or "")
    assert store.stored() == [] and publisher.events == []
    assert [k for (b, k) in store.objects if b == INDEX_BUCKET] == []  # no claim, marker or id


async def test_a_key_refused_with_an_invalid_batch_still_serves_the_corrected_batch(
    served: tuple,  # type: ignore[type-arg]
) -> None:
    # The refusal comes before the claim: the key keeps no digest of the bad request.
    _, stub, store, _ = served
    bad = _batch(3)
    for r in bad.records:
        r.location.latitude = 95
    bad.idempotency_key = "fix-and-retry"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestRecords(bad)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    good = _batch(3)
    good.idempotency_key = "fix-and-retry"
    assert (await stub.IngestRecords(good)).accepted_count == 3
    assert len(store.stored()) == 1


async def test_the_largest_batch_of_badly_broken_records_still_gets_its_answer(
    served: tuple,  # type: ignore[type-arg]
) -> None:
    # 9999 records breaking 32 rules each: every rejection is reported within
    # the 16 MiB a response may take (before, 25 MiB: stored and announced,
    # then refused as RESOURCE_EXHAUSTED on the way back).
    _, stub, store, _ = served
    request = _batch(10_000)
    for r in request.records[1:]:
        r.location.latitude = 95
        for k in range(40):
            r.payload[f"value-{k}"] = float("nan")
    result = await stub.IngestRecords(request, timeout=120)
    assert (result.accepted_count, result.rejected_count) == (1, 9999)
    assert result.ByteSize() < 16 * 2**20
    assert len(store.stored()) == 1


async def test_a_batch_whose_checks_fail_is_refused_before_storage_is_called(
    served: tuple,  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A large batch is checked and encoded in a worker before the storage
    # call opens: a busy worker pool costs storage nothing.
    from pantheon.ingest import announce

    _, stub, store, publisher = served

    async def busy(*_: Any) -> Any:
        raise Unavailable("the worker pool is busy, retry later", reason="busy")

    opened: list[object] = []
    put = StorageServicer.PutObject

    def counted(self: StorageServicer, requests: Any, context: Any) -> Any:
        opened.append(requests)
        return put(self, requests, context)

    monkeypatch.setattr(announce, "decide", busy)
    monkeypatch.setattr(StorageServicer, "PutObject", counted)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestRecords(_batch(3))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE and _reason(caught.value) == "busy"
    assert opened == [] and store.stored() == [] and publisher.events == []


async def test_a_large_batch_is_checked_and_encoded_off_the_loop_alike(served: tuple) -> None:  # type: ignore[type-arg]
    from pantheon.ingest import records as batch

    _, stub, store, _ = served
    good = [
        pb.Record(entity_id=f"e-{i}", location=md.GeoPoint(latitude=48.2, longitude=16.3))
        for i in range(batch.INLINE_MAX_RECORDS + 10)
    ]
    for r in good:
        r.observed_at.GetCurrentTime()
        r.payload.update({"t": 1.5})
    bad = pb.Record(entity_id="bad", location=md.GeoPoint(latitude=95, longitude=16.3))
    bad.observed_at.GetCurrentTime()
    request = pb.IngestRecordsRequest(data_type="sensor.temperature", source="src-a", records=[*good, bad])
    inline_accepted, inline_rejected = batch.triage(request.records)
    result = await stub.IngestRecords(request)
    assert (
        (result.accepted_count, result.rejected_count)
        == (len(inline_accepted), len(inline_rejected))
        == (
            len(good),
            1,
        )
    )
    (key,) = store.stored()
    ids = [r.id for r in result.results if r.id]
    expected = batch.encode_ndjson(
        [batch.Accepted(i, record_id, request.records[i]) for i, record_id in enumerate(ids)]
    )
    assert bytes(store.objects[(result.object.bucket, key)]) == expected  # what the inline encoder writes
