"""The golden wire corpus: how v1 messages looked on the wire.

tests/golden/v1/ holds, for every request, response and event message of the
v1 contracts (every message under pantheon_api/), a representative instance
in the protobuf binary encoding (`<name>.binpb`) and the protobuf JSON
mapping (`<name>.json`), where `<name>` is the full message name, plus a
variant suffix where a oneof has several shapes. `descriptors.binpb` is the
schema they were written with (a FileDescriptorSet, imports included).

The corpus is the evidence for both directions of compatibility
(tests/unit/test_golden.py):

- old producers, new consumers: today's generated code decodes every file to
  the same meaning;
- new producers, old consumers: what today's code encodes decodes with the
  corpus's schema.

    scripts/golden             verify (the default; changes nothing)
    scripts/golden --refresh   rewrite the corpus from `examples()` and the
                               current protos: a schema owner's decision

Refreshing replaces the evidence of what v1 looked like, so do it only to
extend the corpus (a new message, a new field worth pinning), never to make a
failing compatibility test pass.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc_tools
from google.protobuf import (
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    json_format,
    message_factory,
    timestamp_pb2,
)
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from google.rpc import code_pb2, error_details_pb2, status_pb2
from pantheon_api.events.v1 import events_pb2 as ev
from pantheon_api.ingest.v1 import ingest_service_pb2 as ing
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as st

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"
CORPUS = Path(__file__).resolve().parent / "v1"
DESCRIPTORS = CORPUS / "descriptors.binpb"
PACKAGE_ROOT = "pantheon_api."
# Statuses carry these details (AIP-193), so their schema goes into the snapshot too.
EXTRA_SCHEMA = ("google/rpc/error_details.proto",)

# --- realistic, deterministic values ----------------------------------------

BATCH_ID = "01J0BX5Q2S8R4T6V8W0Y2A4C6E"
RECORD_IDS = ("01J0BX5Q2S8R4T6V8W0Y2A4C6F", "01J0BX5Q2S8R4T6V8W0Y2A4C6G")
OBJECT_ID = "01J0BX7M3D5F7H9K1N3Q5S7V9X"
#: A call that took a stale claim of OBJECT_ID's key over.
HOLDER_ID = "01J0BX9C4E6G8J0M2P4R6T8W0Y"
PARENT_ID = "01J0BW0000AAAAAAAAAAAAAAAA"
REQUEST_ID = "6f1c2a9e8b7d4c3a9e1f2b3c4d5e6f70"
CSV = (
    b"entity_id,observed_at,lat,lon,temperature_c,humidity_pct\n"
    b"vie-temp-0042,2024-06-14T09:30:12Z,48.2082,16.3738,31.5,41\n"
)
GEOJSON = (
    b'{"features":[{"geometry":{"coordinates":[16.3738,48.2082],"type":"Point"},'
    b'"properties":{"severity":"moderate"},"type":"Feature"}],"type":"FeatureCollection"}\n'
)
#: The stored form of a two-record batch (canonical NDJSON, one record a line).
NDJSON = (
    b'{"entity_id":"vie-temp-0042","humidity_pct":41,"lat":48.2082,"lon":16.3738,'
    b'"observed_at":"2024-06-14T09:30:12.750Z","temperature_c":31.5}\n'
    b'{"entity_id":"vie-temp-0043","humidity_pct":41,"lat":48.2092,"lon":16.3738,'
    b'"observed_at":"2024-06-14T09:30:42.750Z","temperature_c":30.5}\n'
)
OBSERVED = datetime(2024, 6, 14, 9, 30, 12, 750_000, tzinfo=UTC)
INGESTED = datetime(2024, 6, 14, 9, 31, 2, 125_000, tzinfo=UTC)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def timestamp(t: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(t)
    return ts


def vienna() -> md.GeoPoint:
    return md.GeoPoint(latitude=48.2082, longitude=16.3738, altitude_m=171.5)


def bbox() -> md.BoundingBox:
    return md.BoundingBox(
        min_latitude=48.1182, min_longitude=16.1826, max_latitude=48.3233, max_longitude=16.5775
    )


def window() -> md.TimeWindow:
    return md.TimeWindow(start=timestamp(OBSERVED), end=timestamp(OBSERVED + timedelta(hours=6)))


def step(name: str, at: datetime) -> md.ProcessingStep:
    return md.ProcessingStep(name=name, version="0.1.0", at=timestamp(at))


def lineage() -> md.Lineage:
    return md.Lineage(
        request_id=REQUEST_ID,
        parent_ids=[PARENT_ID],
        steps=[step("normalise.csv", INGESTED), step("ingest.object", INGESTED + timedelta(milliseconds=40))],
    )


def object_ref(data: bytes = CSV, ident: str = OBJECT_ID, ext: str = "csv") -> md.ObjectRef:
    return md.ObjectRef(
        bucket="pantheon-sensor",
        key=f"v1/sensor.temperature/vienna-sensors/2024/06/14/09/u2edk/20240614T093012Z_{ident}.{ext}",
        version_id="3f1e2d4c-5b6a-4978-8a9b-0c1d2e3f4a5b",
        sha256=sha256(data),
        size_bytes=len(data),
        etag="9b2cf535f27731c974343645a3985328",
    )


def full_metadata(ident: str = OBJECT_ID, data: bytes = CSV) -> md.Metadata:
    """Every field of the standard set, as the services store it."""
    return md.Metadata(
        id=ident,
        idempotency_key="vienna-sensors:2024-06-14T09:30:12Z:batch-17",
        sha256=sha256(data),
        size_bytes=len(data),
        data_type="sensor.temperature",
        format=md.FORMAT_CSV,
        media_type="text/csv",
        schema_ref="https://schemas.pantheon.example/sensor/temperature/v1.json",
        record_count=1,
        location=vienna(),
        bbox=bbox(),
        geohash="u2edk85115y4",
        admin_area="AT-9",
        observed_at=timestamp(OBSERVED),
        ingested_at=timestamp(INGESTED),
        validity=window(),
        source="vienna-sensors",
        entity_id="vie-temp-0042",
        provider="City of Vienna",
        lineage=lineage(),
        classification=md.CLASSIFICATION_RESTRICTED,
        labels={"district": "innere-stadt", "network": "citizen-sensing"},
    )


def client_metadata() -> md.Metadata:
    """What a client sends: output-only fields unset."""
    return md.Metadata(
        idempotency_key="vienna-sensors:2024-06-14T09:30:12Z:batch-17",
        data_type="sensor.temperature",
        schema_ref="https://schemas.pantheon.example/sensor/temperature/v1.json",
        location=md.GeoPoint(latitude=48.2082, longitude=16.3738),
        observed_at=timestamp(OBSERVED),
        source="vienna-sensors",
        entity_id="vie-temp-0042",
        provider="City of Vienna",
        classification=md.CLASSIFICATION_INTERNAL,
        labels={"district": "innere-stadt"},
    )


def record(index: int) -> ing.Record:
    r = ing.Record(
        entity_id=f"vie-temp-00{42 + index}",
        observed_at=timestamp(OBSERVED + timedelta(seconds=30 * index)),
        location=md.GeoPoint(latitude=48.2082 + index / 1000, longitude=16.3738),
        labels={"mount": "lamp-post"},
    )
    r.payload.update({"temperature_c": 31.5 - index, "humidity_pct": 41, "ok": True, "tags": ["shade", None]})
    return r


def record_metadata(index: int) -> md.Metadata:
    r = record(index)
    m = md.Metadata(
        id=RECORD_IDS[index],
        data_type="sensor.temperature",
        format=md.FORMAT_JSON,
        media_type="application/json",
        location=r.location,
        observed_at=r.observed_at,
        ingested_at=timestamp(INGESTED),
        source="vienna-sensors",
        entity_id=r.entity_id,
        lineage=md.Lineage(
            request_id=REQUEST_ID, parent_ids=[BATCH_ID], steps=[step("ingest.records", INGESTED)]
        ),
        classification=md.CLASSIFICATION_INTERNAL,
        labels={"mount": "lamp-post"},
    )
    return m


def batch_metadata() -> md.Metadata:
    m = full_metadata(BATCH_ID, NDJSON)
    m.format, m.media_type, m.record_count = md.FORMAT_NDJSON, "application/x-ndjson", 2
    return m


def bad_request_status() -> status_pb2.Status:
    s = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="record 1 is invalid")
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field="records[1].location.latitude",
                description="must be between -90 and 90",
                reason="double.gte_lte",
            )
        ]
    )
    info = error_details_pb2.ErrorInfo(
        reason="invalid_record", domain="pantheon.scdt", metadata={"index": "1"}
    )
    for detail in (bad, info):
        s.details.add().Pack(detail, deterministic=True)
    return s


def packed(message: Message) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(message, deterministic=True)
    return a


def object_response() -> ing.IngestObjectResponse:
    m = full_metadata()
    # Packed into Any below: one label keeps its bytes independent of map order.
    del m.labels["network"]
    return ing.IngestObjectResponse(metadata=m, object=object_ref(), event_id=OBJECT_ID, replayed=False)


def document_header() -> ing.RecordDocumentHeader:
    return ing.RecordDocumentHeader(
        media_type="text/csv",
        data_type="sensor.temperature",
        source="vienna-sensors",
        idempotency_key="vienna-sensors:batch-17",
        batch_format=ing.BATCH_FORMAT_CSV,
        provider="City of Vienna",
        classification=md.CLASSIFICATION_INTERNAL,
        labels={"district": "07"},
    )


def records_response() -> ing.IngestRecordsResponse:
    bad = bad_request_status()
    return ing.IngestRecordsResponse(
        metadata=batch_metadata(),
        object=object_ref(NDJSON, BATCH_ID, "ndjson"),
        results=[
            ing.RecordResult(index=0, id=RECORD_IDS[0], event_id=RECORD_IDS[0], status=status_pb2.Status()),
            ing.RecordResult(index=1, status=bad),
        ],
        accepted_count=1,
        rejected_count=1,
        event_id=BATCH_ID,
        replayed=True,
    )


def stat_response() -> st.StatObjectResponse:
    return st.StatObjectResponse(object=object_ref(), metadata=full_metadata(), encryption="AES256")


def idempotency_record() -> st.IdempotencyRecord:
    return st.IdempotencyRecord(
        id=OBJECT_ID,
        request_digest=sha256(b"request:" + CSV),
        result=packed(object_response()),
        claimed_at=timestamp(INGESTED - timedelta(seconds=1)),
        completed_at=timestamp(INGESTED),
        released=False,
        holder=HOLDER_ID,
    )


def records_request() -> ing.IngestRecordsRequest:
    return ing.IngestRecordsRequest(
        data_type="sensor.temperature",
        source="vienna-sensors",
        idempotency_key="vienna-sensors:batch-17",
        batch_format=ing.BATCH_FORMAT_CSV,
        records=[record(0), record(1)],
        provider="City of Vienna",
        classification=md.CLASSIFICATION_PUBLIC,
        labels={"campaign": "heatwave-2024"},
        schema_ref="https://schemas.pantheon.example/sensor/temperature/v1.json",
    )


def batch_announcement() -> ing.BatchAnnouncement:
    """A record batch's announcement: its request, compressed, and the
    call's rejections."""
    return ing.BatchAnnouncement(
        request_zlib=zlib.compress(records_request().SerializeToString(), 1),
        rejected=[records_response().results[1]],
    )


def announcement() -> any_pb2.Any:
    return packed(batch_announcement())


def pending_marker() -> st.PendingMarker:
    return st.PendingMarker(id=OBJECT_ID, written_at=timestamp(INGESTED))


def examples() -> dict[str, Message]:
    """One or more realistic instances of every message under pantheon_api/,
    by corpus name (`<full name>` or `<full name>.<variant>`)."""
    found: list[tuple[str, Message]] = [
        # metadata.v1
        ("", full_metadata()),
        ("", vienna()),
        ("", bbox()),
        ("", window()),
        ("", lineage()),
        ("", step("normalise.csv", INGESTED)),
        ("", object_ref()),
        (
            "",
            md.Principal(
                name="vienna-sensors",
                data_types=["sensor.*", "weather.observation"],
                may_ingest=True,
                may_read=True,
                may_read_restricted=True,
            ),
        ),
        # events.v1
        ("", ev.DataStored(event_id=OBJECT_ID, metadata=full_metadata(), object=object_ref())),
        (
            "",
            ev.RecordIngested(
                event_id=RECORD_IDS[1],
                metadata=record_metadata(1),
                payload=record(1).payload,
                batch_object=object_ref(NDJSON, BATCH_ID, "ndjson"),
                batch_index=1,
            ),
        ),
        (
            "rejected_input",
            ev.DeadLetter(
                event_id="01J0BX5Q2S8R4T6V8W0Y2A4C6H",
                reason="invalid_record",
                status=bad_request_status(),
                metadata=client_metadata(),
                original=record(1).SerializeToString(deterministic=True),
            ),
        ),
        (
            "handler_failed",
            ev.DeadLetter(
                event_id=OBJECT_ID,
                reason="handler_failed",
                status=status_pb2.Status(code=code_pb2.INTERNAL, message="handler failed"),
                metadata=full_metadata(),
                original=ev.DataStored(event_id=OBJECT_ID, object=object_ref()).SerializeToString(
                    deterministic=True
                ),
                original_topic="pantheon.data-stored.v1",
            ),
        ),
        # ingest.v1
        (
            "header",
            ing.IngestObjectRequest(
                header=ing.ObjectHeader(
                    metadata=client_metadata(), declared_media_type="text/csv", expected_sha256=sha256(CSV)
                )
            ),
        ),
        ("chunk", ing.IngestObjectRequest(chunk=CSV)),
        ("", ing.ObjectHeader(metadata=client_metadata(), declared_media_type="application/geo+json")),
        ("", object_response()),
        ("", record(0)),
        ("", records_request()),
        ("", records_response()),
        ("", document_header()),
        ("header", ing.IngestRecordDocumentRequest(header=document_header())),
        (
            "chunk",
            ing.IngestRecordDocumentRequest(
                chunk=b"entity_id,observed_at,lat,lon,temperature_c\nvie-0042,2026-11-25T01:47:32Z,48.2,16.37,31.5\n"
            ),
        ),
        ("", ing.IngestRecordDocumentResponse(result=records_response())),
        ("accepted", records_response().results[0]),
        ("rejected", records_response().results[1]),
        ("", ing.GetIngestResultRequest(source="vienna-sensors", idempotency_key="vienna-sensors:batch-17")),
        ("object", ing.GetIngestResultResponse(object=object_response(), completed_at=timestamp(INGESTED))),
        (
            "records",
            ing.GetIngestResultResponse(records=records_response(), completed_at=timestamp(INGESTED)),
        ),
        # storage.v1
        ("header", st.PutObjectRequest(header=st.PutObjectHeader(metadata=full_metadata()))),
        ("chunk", st.PutObjectRequest(chunk=GEOJSON)),
        ("", st.PutObjectHeader(metadata=full_metadata())),
        ("", st.PutObjectResponse(object=object_ref(), metadata=full_metadata())),
        ("", st.GetObjectRequest(id=OBJECT_ID, offset=1024, length=4096)),
        ("info", st.GetObjectResponse(info=stat_response())),
        ("chunk", st.GetObjectResponse(chunk=CSV)),
        ("", st.StatObjectRequest(id=OBJECT_ID)),
        ("", stat_response()),
        (
            "",
            st.SearchObjectsRequest(
                data_type="sensor.temperature",
                source="vienna-sensors",
                observed_after=timestamp(OBSERVED - timedelta(days=1)),
                observed_before=timestamp(OBSERVED),
                bbox=bbox(),
                page_size=250,
                page_token="djE6c2Vuc29yLnRlbXBlcmF0dXJlOjIwMjQwNjE0MDk",
            ),
        ),
        ("", st.SearchObjectsResponse(objects=[stat_response()], next_page_token="djE6bmV4dA")),
        (
            "",
            st.ClaimIdempotencyKeyRequest(
                source="vienna-sensors",
                idempotency_key="vienna-sensors:batch-17",
                candidate_id=HOLDER_ID,
                request_digest=sha256(b"request:" + CSV),
                take_over_after=duration_pb2.Duration(seconds=60),
            ),
        ),
        ("", st.ClaimIdempotencyKeyResponse(claimed=False, record=idempotency_record())),
        ("", idempotency_record()),
        (
            "",
            st.CompleteIdempotencyKeyRequest(
                source="vienna-sensors",
                idempotency_key="vienna-sensors:batch-17",
                id=HOLDER_ID,
                result=packed(object_response()),
            ),
        ),
        ("", st.CompleteIdempotencyKeyResponse(completed_at=timestamp(INGESTED))),
        ("", st.GetIdempotencyKeyRequest(source="vienna-sensors", idempotency_key="vienna-sensors:batch-17")),
        ("", st.GetIdempotencyKeyResponse(record=idempotency_record())),
        (
            "",
            st.ReleaseIdempotencyKeyRequest(
                source="vienna-sensors", idempotency_key="vienna-sensors:batch-17", id=OBJECT_ID
            ),
        ),
        ("", st.ReleaseIdempotencyKeyResponse()),
        ("announcement", st.PutObjectRequest(announcement=announcement().SerializeToString())),
        (
            "existed",
            st.PutObjectResponse(
                object=object_ref(), metadata=full_metadata(), encryption="aws:kms", existed=True
            ),
        ),
        ("", st.CommitObjectRequest(object=stat_response())),
        ("", st.CommitObjectResponse()),
        (
            "",
            st.ListPendingObjectsRequest(
                older_than=duration_pb2.Duration(seconds=10), page_size=100, page_token=HOLDER_ID
            ),
        ),
        ("", st.ListPendingObjectsResponse(markers=[pending_marker()], next_page_token=OBJECT_ID)),
        ("", pending_marker()),
        ("", st.GetPendingObjectRequest(id=OBJECT_ID)),
        (
            "",
            st.GetPendingObjectResponse(
                state=st.PENDING_STATE_STORED,
                object=stat_response(),
                announcement=announcement(),
                written_at=timestamp(INGESTED),
            ),
        ),
        (
            "",
            st.PendingObject(
                metadata=full_metadata(),
                bucket=object_ref().bucket,
                key=object_ref().key,
                announcement=announcement(),
                written_at=timestamp(INGESTED),
            ),
        ),
        ("", st.HourManifest(objects=[stat_response()])),
        ("", st.DiscardPendingObjectRequest(id=OBJECT_ID, written_before=timestamp(INGESTED))),
        ("", batch_announcement()),
        ("", st.DiscardPendingObjectResponse()),
        ("", ing.ReconcileRequest(older_than=duration_pb2.Duration(seconds=30))),
        (
            "",
            ing.ReconcileResponse(
                announced=2,
                discarded=1,
                waiting=1,
                cleaned=3,
                oldest_waiting=duration_pb2.Duration(seconds=4),
            ),
        ),
    ]
    named: dict[str, Message] = {}
    for variant, message in found:
        name = message.DESCRIPTOR.full_name + (f".{variant}" if variant else "")
        assert name not in named, f"two examples named {name}"
        named[name] = message
    return named


# --- encodings --------------------------------------------------------------


def to_binary(message: Message) -> bytes:
    return message.SerializeToString(deterministic=True)


def to_json(message: Message, pool: descriptor_pool.DescriptorPool | None = None) -> str:
    """The protobuf JSON mapping, keys sorted, so the text is deterministic."""
    text = json_format.MessageToJson(
        message, indent=2, sort_keys=True, ensure_ascii=False, descriptor_pool=pool
    )
    return text + "\n"


def full_name(corpus_name: str) -> str:
    """`pantheon_api.x.v1.Message[.variant]` -> `pantheon_api.x.v1.Message`."""
    parts = corpus_name.split(".")
    # Message names are PascalCase, variants and packages are not.
    last = max(i for i, part in enumerate(parts) if part[:1].isupper())
    return ".".join(parts[: last + 1])


def corpus_names() -> list[str]:
    return sorted(p.name.removesuffix(".binpb") for p in CORPUS.glob("pantheon_api.*.binpb"))


def current_class(name: str) -> type[Message]:
    descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name(name))
    return message_factory.GetMessageClass(descriptor)


def snapshot_pool() -> descriptor_pool.DescriptorPool:
    """The schema the corpus was written with, independent of today's code."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return pool


def own_messages(pool: descriptor_pool.DescriptorPool, files: list[str]) -> set[str]:
    """Full names of every message (nested ones included) the files define."""
    found: set[str] = set()

    def walk(descriptor: Descriptor) -> None:
        if descriptor.GetOptions().map_entry:
            return
        found.add(descriptor.full_name)
        for nested in descriptor.nested_types:
            walk(nested)

    for name in files:
        for descriptor in pool.FindFileByName(name).message_types_by_name.values():
            walk(descriptor)
    return found


def own_proto_files() -> list[str]:
    return sorted(p.relative_to(PROTO).as_posix() for p in (PROTO / "pantheon_api").rglob("*.proto"))


def snapshot_files() -> list[str]:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes())
    return [f.name for f in files.file if f.name.startswith("pantheon_api/")]


# --- comparing decoded messages field by field -------------------------------


def differences(old: Message, new: Message, path: str = "") -> Iterator[str]:
    """Where `old` (decoded with one schema) and `new` (another) disagree on a
    field both schemas know; fields only one schema knows are ignored, and
    unknown fields in `old` must be fields its schema does not define."""
    old_fields = old.DESCRIPTOR.fields_by_number
    for number in sorted(old_fields):
        fd = old_fields[number]
        where = f"{path}{fd.name}"
        new_fd = new.DESCRIPTOR.fields_by_number.get(number)
        if new_fd is None:
            yield f"{where}: field {number} is gone from {new.DESCRIPTOR.full_name}"
            continue
        if new_fd.name != fd.name:
            yield f"{where}: field {number} is now named {new_fd.name}"
            continue
        yield from _field_differences(fd, getattr(old, fd.name), getattr(new, fd.name), where)
        if fd.has_presence and old.HasField(fd.name) != new.HasField(fd.name):
            yield f"{where}: present in one decoding only"
    unknown_fields = UnknownFieldSet(old)
    for i in range(len(unknown_fields)):
        unknown = unknown_fields[i]
        if unknown.field_number in old_fields:
            yield f"{path}#{unknown.field_number}: a known field decoded as unknown"


def _field_differences(fd: FieldDescriptor, old: object, new: object, where: str) -> Iterator[str]:
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        old_map, new_map = dict(old), dict(new)  # type: ignore[call-overload]
        if sorted(old_map) != sorted(new_map):
            yield f"{where}: map keys {sorted(old_map)} != {sorted(new_map)}"
            return
        value_fd = fd.message_type.fields_by_name["value"]
        for key in sorted(old_map):
            yield from _value_differences(value_fd, old_map[key], new_map[key], f"{where}[{key!r}]")
    elif fd.is_repeated:
        old_list, new_list = list(old), list(new)  # type: ignore[call-overload]
        if len(old_list) != len(new_list):
            yield f"{where}: {len(old_list)} items != {len(new_list)}"
            return
        for i, (a, b) in enumerate(zip(old_list, new_list, strict=True)):
            yield from _value_differences(fd, a, b, f"{where}[{i}]")
    else:
        yield from _value_differences(fd, old, new, where)


def _value_differences(fd: FieldDescriptor, old: object, new: object, where: str) -> Iterator[str]:
    if fd.message_type is not None:
        assert isinstance(old, Message) and isinstance(new, Message)
        yield from differences(old, new, where + ".")
    elif old != new:
        yield f"{where}: {old!r} != {new!r}"


# --- verify and refresh ------------------------------------------------------


def check_corpus() -> list[str]:
    """Everything wrong with the corpus as today's code and its snapshot see it."""
    problems: list[str] = []
    pool = snapshot_pool()
    names = corpus_names()
    expected = own_messages(pool, snapshot_files())
    covered = {full_name(n) for n in names}
    problems += [f"{m}: in the corpus's schema but has no corpus file" for m in sorted(expected - covered)]
    current = own_messages(descriptor_pool.Default(), own_proto_files())
    problems += [
        f"{m}: a message without a corpus file (add it to examples(), run scripts/golden --refresh)"
        for m in sorted(current - covered)
    ]
    for name in names:
        problems += [f"{name}: {p}" for p in decode_problems(name)]
    for name, message in examples().items():
        problems += [f"{name} (encoded now): {p}" for p in old_schema_problems(message, pool)]
    return problems


def decode_problems(name: str) -> list[str]:
    """Old producer, new consumer: today's code reads the corpus files alike."""
    cls = current_class(name)
    data = (CORPUS / f"{name}.binpb").read_bytes()
    text = (CORPUS / f"{name}.json").read_text()
    from_binary = cls.FromString(data)
    from_json = json_format.Parse(text, cls())
    problems = []
    if to_binary(from_binary) != data:
        problems.append("binary does not re-encode to the same bytes")
    if from_json != from_binary:
        problems.append("JSON and binary decode to different messages")
    if json.loads(to_json(from_binary)) != json.loads(text):
        problems.append("binary re-encodes to different JSON")
    if len(UnknownFieldSet(from_binary)) > 0:
        problems.append("binary holds fields today's schema does not know")
    return problems


def old_schema_problems(message: Message, pool: descriptor_pool.DescriptorPool) -> list[str]:
    """New producer, old consumer: the corpus's schema reads today's encodings alike."""
    try:
        descriptor = pool.FindMessageTypeByName(message.DESCRIPTOR.full_name)
    except KeyError:
        return []  # a message the old schema has never heard of: no old consumer
    cls = message_factory.GetMessageClass(descriptor)
    old = cls.FromString(to_binary(message))
    problems = list(differences(old, message))
    old_from_json = json_format.Parse(
        to_json(message), cls(), ignore_unknown_fields=True, descriptor_pool=pool
    )
    problems += [f"JSON: {d}" for d in differences(old_from_json, message)]
    return problems


def refresh(out: Callable[[str], None] = print) -> None:
    """Rewrite the corpus, reporting which files were added, changed or removed
    (a changed .binpb replaces evidence of how v1 looked: review it)."""
    before = {p.name: p.read_bytes() for p in CORPUS.glob("*")} if CORPUS.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "v1"
        fresh.mkdir()
        for name, message in examples().items():
            (fresh / f"{name}.binpb").write_bytes(to_binary(message))
            (fresh / f"{name}.json").write_text(to_json(message))
        well_known = Path(grpc_tools.__file__).parent / "_proto"
        done = subprocess.run(
            [
                sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}", f"-I{well_known}",
                f"--descriptor_set_out={fresh / DESCRIPTORS.name}", "--include_imports",
                *own_proto_files(), *EXTRA_SCHEMA,
            ],
            cwd=PROTO, capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"protoc failed:\n{done.stderr}")
        for old in CORPUS.glob("*"):
            old.unlink()
        CORPUS.mkdir(parents=True, exist_ok=True)
        for new in sorted(fresh.iterdir()):
            (CORPUS / new.name).write_bytes(new.read_bytes())
    after = {p.name: p.read_bytes() for p in CORPUS.glob("*")}
    for name in sorted(set(before) | set(after)):
        if name not in before:
            out(f"added: {name}")
        elif name not in after:
            out(f"removed: {name}")
        elif before[name] != after[name]:
            out(f"changed: {name}")


def stale_examples() -> list[str]:
    """Corpus files today's examples would write differently (informational)."""
    found = []
    for name, message in examples().items():
        path = CORPUS / f"{name}.binpb"
        if not path.exists() or path.read_bytes() != to_binary(message):
            found.append(name)
    return found


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--refresh", action="store_true", help="rewrite the corpus (a schema owner's decision)"
    )
    args = parser.parse_args(argv)
    if args.refresh:
        refresh(out)
        out(f"refreshed {len(corpus_names())} messages in {CORPUS.relative_to(ROOT)}")
    problems = check_corpus()
    for problem in problems:
        out(f"FAIL: {problem}")
    for name in stale_examples():
        out(f"note: examples() now encodes {name} differently; the corpus keeps the old encoding")
    if problems:
        return 1
    out(f"ok: {len(corpus_names())} corpus messages decode alike with today's code and the v1 schema")
    return 0


if __name__ == "__main__":
    sys.exit(main())
