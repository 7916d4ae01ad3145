"""The core path through the real services: validated, normalised, named,
stored encrypted in MinIO and announced on Kafka, exactly once per key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from minio import Minio
from pantheon_api.events.v1 import events_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.events.topics import DATA_STORED, DEAD_LETTER, RECORDS
from pantheon.metadata.naming import parse_key
from tests.integration.support import (
    EventWatcher,
    from_source,
    ingest,
    ingest_stub,
    metadata,
    record,
    stored_keys,
    unique_source,
)
from tests.samples import make_jpeg, make_png, make_tiff

pytestmark = pytest.mark.timeout(120)

GEOJSON = json.dumps(
    {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [23.7, 37.9]}, "properties": {}}
        ],
    }
).encode()

# (declared media type, body, data type, format, stored bytes)
FORMATS = [
    (
        "application/json",
        b'{"b": 1, "a": [true, null]}',
        "weather.observation",
        md.FORMAT_JSON,
        b'{"a":[true,null],"b":1}\n',
    ),
    (
        "application/x-ndjson",
        b'{"t": 1}\n\n{"t": 2}\n',
        "sensor.temperature",
        md.FORMAT_NDJSON,
        b'{"t":1}\n{"t":2}\n',
    ),
    (
        "text/csv",
        b"entity_id,temp\r\nvie-1,21.5\r\n",
        "sensor.temperature",
        md.FORMAT_CSV,
        b"entity_id,temp\nvie-1,21.5\n",
    ),
    ("application/geo+json", GEOJSON, "report.incident", md.FORMAT_GEOJSON, None),
    ("image/png", make_png(), "imagery.uav", md.FORMAT_PNG, make_png()),
    ("image/jpeg", make_jpeg(), "imagery.uav", md.FORMAT_JPEG, make_jpeg()),
    ("image/tiff", make_tiff(), "imagery.satellite", md.FORMAT_TIFF, make_tiff()),
]


@pytest.fixture
def watcher(kafka_config: Any) -> Iterator[EventWatcher]:
    w = EventWatcher(kafka_config(), [DATA_STORED.name, RECORDS.name, DEAD_LETTER.name])
    yield w
    w.close()


def _bucket(data_type: str) -> str:
    return "pantheon-" + data_type.split(".")[0]


@pytest.mark.parametrize(
    ("media_type", "body", "data_type", "fmt", "stored"), FORMATS, ids=[f[0] for f in FORMATS]
)
async def test_each_format_is_stored_encrypted_and_announced(
    stack_env: dict[str, str],
    minio_root_client: Minio,
    watcher: EventWatcher,
    media_type: str,
    body: bytes,
    data_type: str,
    fmt: int,
    stored: bytes | None,
) -> None:
    source = unique_source()
    channel, stub = ingest_stub(stack_env)
    async with channel:
        result = await ingest(stub, metadata(source, data_type, entity_id="cam-7"), body, media_type)

    ref, meta = result.object, result.metadata
    assert meta.format == fmt and not result.replayed
    # The name embeds what people search by, and parses back.
    parsed = parse_key(ref.key)
    assert (parsed.data_type, parsed.source, parsed.id, parsed.format) == (data_type, source, meta.id, fmt)
    assert ref.bucket == _bucket(data_type)
    assert stored_keys(minio_root_client, ref.bucket, data_type, source) == [ref.key]

    # Bytes as normalised, SSE on, full metadata with the object.
    response = minio_root_client.get_object(ref.bucket, ref.key)
    data = response.read()
    response.close()
    assert data == (stored if stored is not None else data)
    assert len(data) == ref.size_bytes == meta.size_bytes
    info = minio_root_client.stat_object(ref.bucket, ref.key)
    assert info.metadata["x-amz-server-side-encryption"] == "AES256"
    readable = {
        k.removeprefix("x-amz-meta-"): v for k, v in info.metadata.items() if k.startswith("x-amz-meta-")
    }
    assert {
        k: readable[k] for k in ("pantheon-id", "pantheon-data-type", "pantheon-source", "pantheon-entity-id")
    } == {
        "pantheon-id": meta.id,
        "pantheon-data-type": data_type,
        "pantheon-source": source,
        "pantheon-entity-id": "cam-7",
    }
    assert sum(len(k) + len(v) for k, v in readable.items()) < 2048  # S3's user-metadata limit

    # One event, decoding to the same metadata and pointing at the object.
    (event,) = watcher.collect(from_source(source), count=1)
    assert event.topic == DATA_STORED.name and event.key == source
    assert isinstance(event.payload, events_pb2.DataStored)
    assert event.payload.metadata == meta and event.payload.object == ref
    h = event.headers
    assert (h["ce_id"], h["ce_type"], h["ce_specversion"], h["content-type"]) == (
        meta.id,
        "pantheon.data.stored.v1",
        "1.0",
        "application/protobuf",
    )
    assert h["ce_dataschema"] == "proto:pantheon_api.events.v1.DataStored"
    assert h["ce_requestid"] == meta.lineage.request_id != ""


async def test_the_pending_markers_of_committed_objects_are_removed(
    stack_env: dict[str, str], minio_root_client: Minio
) -> None:
    # Removed a moment after the commit (a keyed call's once its result is
    # recorded), several in one multi-object delete.
    source = unique_source()
    channel, stub = ingest_stub(stack_env)
    keys = ["", "", "", "key-1", "key-2"]
    async with channel:
        results = await asyncio.gather(
            *(
                ingest(stub, metadata(source, idempotency_key=k), b"entity_id,temp\nvie-1,21.5\n", "text/csv")
                for k in keys
            )
        )
    markers = {f"pending/{r.metadata.id}" for r in results}
    for _ in range(100):
        listed = {o.object_name for o in minio_root_client.list_objects("pantheon-index", "pending/")}
        if not markers & listed:
            break
        await asyncio.sleep(0.1)
    assert not markers & listed


async def test_records_are_batched_and_announced_in_order_per_entity(
    stack_env: dict[str, str], minio_root_client: Minio, watcher: EventWatcher
) -> None:
    source = unique_source()
    start = datetime.now(UTC) - timedelta(minutes=30)
    records = [record(f"vie-{i % 3}", start + timedelta(seconds=i), temp=20 + i / 10) for i in range(60)]
    channel, stub = ingest_stub(stack_env)
    async with channel:
        result = await stub.IngestRecords(
            pb.IngestRecordsRequest(data_type="sensor.temperature", source=source, records=records),
            timeout=30,
        )
    assert (result.accepted_count, result.rejected_count) == (60, 0)
    assert [r.index for r in result.results] == list(range(60))
    assert result.metadata.record_count == 60

    # One object for the whole batch, one line per record.
    (key,) = stored_keys(minio_root_client, "pantheon-sensor", "sensor.temperature", source)
    body = minio_root_client.get_object("pantheon-sensor", key).read().decode()
    lines = [json.loads(line) for line in body.splitlines()]
    assert [line["id"] for line in lines] == [r.id for r in result.results]

    events = watcher.collect(from_source(source), count=61)
    per_record = [e for e in events if e.topic == RECORDS.name]
    assert len(per_record) == 60
    assert len([e for e in events if e.topic == DATA_STORED.name]) == 1
    for entity in ("vie-0", "vie-1", "vie-2"):
        seen = [e.payload.batch_index for e in per_record if e.key == f"{source}/{entity}"]  # type: ignore[attr-defined]
        assert seen == sorted(seen) and len(seen) == 20
    first = next(e for e in per_record if e.payload.batch_index == 0)  # type: ignore[attr-defined]
    assert first.payload.payload["temp"] == 20  # type: ignore[attr-defined]
    assert first.payload.metadata.lineage.parent_ids == [result.metadata.id]  # type: ignore[attr-defined]


async def test_invalid_records_go_to_the_dead_letter_topic_and_valid_ones_proceed(
    stack_env: dict[str, str], watcher: EventWatcher
) -> None:
    source = unique_source()
    now = datetime.now(UTC)
    good = record("vie-1", now - timedelta(minutes=1))
    bad = record("vie-2", now - timedelta(minutes=1), lat=123.0)
    channel, stub = ingest_stub(stack_env)
    async with channel:
        result = await stub.IngestRecords(
            pb.IngestRecordsRequest(data_type="sensor.temperature", source=source, records=[good, bad]),
            timeout=30,
        )
    assert (result.accepted_count, result.rejected_count) == (1, 1)
    rejected = result.results[1]
    assert rejected.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    violations = error_details_pb2.BadRequest()
    assert any(d.Unpack(violations) for d in rejected.status.details)
    assert [v.field for v in violations.field_violations] == ["records[1].location.latitude"]

    events = watcher.collect(from_source(source), count=3)
    (letter,) = [e for e in events if e.topic == DEAD_LETTER.name]
    assert letter.headers["pantheon_reason"] == "invalid_record"
    assert isinstance(letter.payload, events_pb2.DeadLetter)
    assert pb.Record.FromString(letter.payload.original) == bad


def _future(m: md.Metadata) -> None:
    m.observed_at.FromDatetime(datetime.now(UTC) + timedelta(hours=2))


def _lat(m: md.Metadata) -> None:
    m.location.latitude = -97.5


def _data_type(m: md.Metadata) -> None:
    m.data_type = "Temperature"


# (name, mutate metadata, declared type, body, expected reason or field)
BAD_OBJECTS = [
    ("invalid coordinates", _lat, "text/csv", b"a\n1\n", "header.metadata.location.latitude"),
    ("future timestamp", _future, "text/csv", b"a\n1\n", "header.metadata.observed_at"),
    ("unknown data type", _data_type, "text/csv", b"a\n1\n", "header.metadata.data_type"),
    ("png declared as jpeg", None, "image/jpeg", make_png(), "format_mismatch"),
    ("truncated png", None, "image/png", make_png()[:-20], "corrupt_image"),
    ("csv with ragged rows", None, "text/csv", b"a,b\n1,2\n3\n", "invalid_csv"),
    ("csv without header", None, "text/csv", b"1,2\n3,4\n", "invalid_csv"),
    ("invalid json", None, "application/json", b'{"a": ', "invalid_json"),
    ("empty body", None, "application/json", b"", "empty_body"),
    ("unsupported type", None, "application/zip", b"PK\x03\x04", "unsupported_media_type"),
]


@pytest.mark.parametrize(
    ("name", "mutate", "media_type", "body", "expected"), BAD_OBJECTS, ids=[b[0] for b in BAD_OBJECTS]
)
async def test_bad_input_is_rejected_and_nothing_is_stored_or_published(
    stack_env: dict[str, str],
    minio_root_client: Minio,
    watcher: EventWatcher,
    name: str,
    mutate: Any,
    media_type: str,
    body: bytes,
    expected: str,
) -> None:
    source = unique_source()
    meta = metadata(source, idempotency_key=f"bad-{source}")
    if mutate is not None:
        mutate(meta)
    channel, stub = ingest_stub(stack_env)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ingest(stub, meta, body, media_type)
    error = caught.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, name
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found: set[str] = set()
    for detail in status.details:
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            found.add(info.reason)
            assert info.domain == "pantheon.scdt"
        elif detail.Unpack(bad):
            found.update(v.field for v in bad.field_violations)
    assert expected in found, found
    # Nothing stored under the source, nothing announced for it.
    for bucket in ("pantheon-sensor",):
        assert stored_keys(minio_root_client, bucket, meta.data_type, source) == []
    assert watcher.collect(from_source(source), wait_s=2) == []


async def test_batch_over_the_record_limit_is_rejected_whole(
    stack_env: dict[str, str], minio_root_client: Minio, watcher: EventWatcher
) -> None:
    source = unique_source()
    one = record("vie-1", datetime.now(UTC) - timedelta(minutes=1))
    channel, stub = ingest_stub(stack_env)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IngestRecords(
                pb.IngestRecordsRequest(data_type="sensor.temperature", source=source, records=[one] * 10001),
                timeout=30,
            )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert stored_keys(minio_root_client, "pantheon-sensor", "sensor.temperature", source) == []
    assert watcher.collect(from_source(source), wait_s=2) == []


async def test_concurrent_calls_with_one_key_store_one_object_and_one_event(
    stack_env: dict[str, str], minio_root_client: Minio, watcher: EventWatcher
) -> None:
    source = unique_source()
    meta = metadata(source, idempotency_key="same-key-20")
    body = b"entity_id,temp\nvie-1,21.5\n"
    channel, stub = ingest_stub(stack_env)

    async def call() -> pb.IngestObjectResponse:
        # ABORTED means "another call holds the key right now": retry.
        for _ in range(50):
            try:
                return await ingest(stub, meta, body, "text/csv")
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.ABORTED:
                    raise
                await asyncio.sleep(0.1)
        raise AssertionError("never completed")

    async with channel:
        results = await asyncio.gather(*(call() for _ in range(20)))
    assert len({r.metadata.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert len(stored_keys(minio_root_client, "pantheon-sensor", "sensor.temperature", source)) == 1
    events = watcher.collect(from_source(source), wait_s=4)
    assert len({e.headers["ce_id"] for e in events}) == 1


async def test_a_replay_returns_the_first_result_and_a_reused_key_is_refused(
    stack_env: dict[str, str],
) -> None:
    source = unique_source()
    meta = metadata(source, idempotency_key="once")
    channel, stub = ingest_stub(stack_env)
    async with channel:
        first = await ingest(stub, meta, b"a\n1\n", "text/csv")
        again = await ingest(stub, meta, b"a\n1\n", "text/csv")
        other = md.Metadata()
        other.CopyFrom(meta)
        other.entity_id = "someone-else"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ingest(stub, other, b"a\n1\n", "text/csv")
        looked_up = await stub.GetIngestResult(
            pb.GetIngestResultRequest(source=source, idempotency_key="once")
        )
    assert again.replayed and again.metadata.id == first.metadata.id and again.object == first.object
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert looked_up.object.metadata.id == first.metadata.id
