"""Record batches: per-record checks, ids, and the stored batch object.

A batch of small records is stored as one object (NDJSON or CSV), because an
object store answers a few thousand PUTs a second while a batch of a
thousand readings is one PUT. Each record still gets its own id, derived
from the batch id and its position, so a retried batch yields the same ids.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.errors import InvalidArgument, reported_violations
from pantheon.metadata.ulid import ulid_from_key
from pantheon.validation import FieldViolation, violations

#: Largest encoded record. Each accepted record travels in its own Kafka
#: event (a RecordIngested with its metadata), and a Kafka message is at most
#: 1 MB by default: a record over this budget is rejected on its own, before
#: anything is stored, so no event can be refused half-way through a batch.
MAX_RECORD_BYTES = 512 * 1024

#: Violations kept per rejected record: enough to fix it, and a bound on its
#: result and its dead letter (a record of NaNs breaks a rule per value).
MAX_VIOLATIONS = 32
#: Most bytes of violations one rejected record's result reports (the first
#: ones): a batch of 10000 rejected records then answers in a few MiB, well
#: within the 16 MiB a response may take, however long its field names.
RECORD_VIOLATION_BYTES = 512

#: Columns every CSV batch starts with; payload keys follow in name order.
CSV_COLUMNS = ("id", "entity_id", "observed_at", "lat", "lon", "alt")


@dataclass(frozen=True)
class Accepted:
    """A valid record, with the id it is stored under."""

    index: int
    id: str
    record: pb.Record


@dataclass(frozen=True)
class Rejected:
    """An invalid record and why."""

    index: int
    record: pb.Record
    violations: list[FieldViolation]


def triage(records: Iterable[pb.Record]) -> tuple[list[Accepted], list[Rejected]]:
    """Split records into valid (without ids yet) and invalid ones."""
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    for index, record in enumerate(records):
        found = violations(record, f"records[{index}]")
        if record.ByteSize() > MAX_RECORD_BYTES:
            found.append(
                FieldViolation(
                    f"records[{index}]",
                    "record.max_bytes",
                    f"an encoded record may be at most {MAX_RECORD_BYTES} bytes (one Kafka event)",
                )
            )
        if found:
            # Kept as its result reports them, so a rejection stored with the
            # call's announcement and rebuilt from it is the same.
            rejected.append(
                Rejected(index, record, reported_violations(found[:MAX_VIOLATIONS], RECORD_VIOLATION_BYTES))
            )
        else:
            accepted.append(Accepted(index, "", record))
    return accepted, rejected


def rejection(item: Rejected) -> pb.RecordResult:
    """The result of a rejected record: INVALID_ARGUMENT with its violations."""
    return pb.RecordResult(
        index=item.index,
        status=InvalidArgument.from_violations(
            item.violations, "record", violation_bytes=RECORD_VIOLATION_BYTES
        ).to_status(),
    )


def split(
    records: Sequence[pb.Record], rejected: Iterable[pb.RecordResult]
) -> tuple[list[Accepted], list[Rejected]]:
    """Records as decided before: those with a rejection are rejected (with
    its violations), every other one accepted (without an id yet)."""
    refused = {r.index: r for r in rejected}
    accepted = [Accepted(i, "", r) for i, r in enumerate(records) if i not in refused]
    return accepted, [
        Rejected(i, records[i], _violations_of(result)) for i, result in sorted(refused.items())
    ]


def _violations_of(result: pb.RecordResult) -> list[FieldViolation]:
    bad = error_details_pb2.BadRequest()
    for detail in result.status.details:
        if detail.Unpack(bad):
            return [FieldViolation(v.field, v.reason, v.description) for v in bad.field_violations]
    return []


#: Batches of up to this many records are checked and encoded on the event
#: loop (a hop costs more than the work); larger ones in a worker process,
#: since per-record validation and JSON encoding hold the GIL.
INLINE_MAX_RECORDS = 64


#: A batch decided in a worker process (`decide_serialized`): the (index, id)
#: of each accepted record, the (index, violations) of each rejected one,
#: and the batch object's bytes.
Decision = tuple[list[tuple[int, str]], list[tuple[int, list[FieldViolation]]], bytes]


def decide(request: pb.IngestRecordsRequest, batch_id: str) -> tuple[list[Accepted], list[Rejected], bytes]:
    """The records checked (`triage`), the valid ones given their ids
    (`identify`), and the batch object of those (`encode`; empty if none)."""
    accepted, rejected = triage(request.records)
    accepted = identify(batch_id, accepted)
    csv_batch = request.batch_format == pb.BATCH_FORMAT_CSV
    return accepted, rejected, encode(accepted, csv_batch) if accepted else b""


def decision(request: pb.IngestRecordsRequest, batch_id: str) -> Decision:
    """`decide`, as a worker returns it."""
    accepted, rejected, encoded = decide(request, batch_id)
    return [(a.index, a.id) for a in accepted], [(r.index, r.violations) for r in rejected], encoded


def decide_serialized(request_bytes: bytes, batch_id: str) -> Decision:
    """`decision` on a serialized request, in one pass: for a worker process."""
    return decision(pb.IngestRecordsRequest.FromString(request_bytes), batch_id)


def applied(
    request: pb.IngestRecordsRequest, decided: Decision
) -> tuple[list[Accepted], list[Rejected], bytes]:
    """A worker's `decision`, back on `request`'s records."""
    ids, bad, encoded = decided
    records = request.records
    return (
        [Accepted(i, record_id, records[i]) for i, record_id in ids],
        [Rejected(i, records[i], violations) for i, violations in bad],
        encoded,
    )


def encode_ids(request_bytes: bytes, ids: list[tuple[int, str]], csv_batch: bool) -> bytes:
    """The batch object of a serialized request's records `ids` (index, id)."""
    request = pb.IngestRecordsRequest.FromString(request_bytes)
    return encode([Accepted(index, record_id, request.records[index]) for index, record_id in ids], csv_batch)


def identify(batch_id: str, accepted: list[Accepted]) -> list[Accepted]:
    """Give each record its id: time-sortable by observation, stable per batch."""
    return [
        Accepted(
            a.index,
            ulid_from_key(a.record.observed_at.ToMilliseconds(), f"{batch_id}/{a.index}".encode()),
            a.record,
        )
        for a in accepted
    ]


def _as_row(item: Accepted) -> dict[str, Any]:
    r = item.record
    row: dict[str, Any] = {
        "id": item.id,
        "entity_id": r.entity_id,
        "observed_at": r.observed_at.ToJsonString(),
        "location": {"lat": r.location.latitude, "lon": r.location.longitude},
        "payload": plain_struct(r.payload),
    }
    if r.location.HasField("altitude_m"):
        row["location"]["alt"] = r.location.altitude_m
    if r.labels:
        row["labels"] = dict(r.labels)
    return row


def plain_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain Python values, as `json_format.MessageToDict` gives
    it, read directly: the generic converter was half the cost of encoding a
    batch. A non-finite number has no JSON form (ValueError, as there)."""
    fields = struct.fields
    return {key: _plain(fields[key]) for key in fields}


def _plain(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise ValueError(f"{number} has no JSON form")
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return plain_struct(value.struct_value)
    if kind == "list_value":
        return [_plain(v) for v in value.list_value.values]
    return None  # null_value, or no kind at all (JSON null, as MessageToDict has it)


def encode(items: list[Accepted], csv_batch: bool) -> bytes:
    """The batch object of `items`: CSV or NDJSON, as the request asked."""
    return encode_csv(items) if csv_batch else encode_ndjson(items)


#: Canonical JSON: sorted keys, no spaces, UTF-8 as is. One encoder for every
#: line (`json.dumps` with options builds a new one per call).
_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def encode_ndjson(items: list[Accepted]) -> bytes:
    """One canonical JSON object per record and line."""
    encode = _CANONICAL.encode
    return "".join([encode(_as_row(i)) + "\n" for i in items]).encode()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return _CANONICAL.encode(value)


def encode_csv(items: list[Accepted]) -> bytes:
    """A CSV table: the fixed columns, then every payload key in name order."""
    rows = [_as_row(i) for i in items]
    keys = sorted({k for row in rows for k in row["payload"]})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *keys])
    for row in rows:
        loc = row["location"]
        fixed = [row["id"], row["entity_id"], row["observed_at"], loc["lat"], loc["lon"], loc.get("alt")]
        writer.writerow([_cell(v) for v in fixed] + [_cell(row["payload"].get(k)) for k in keys])
    return out.getvalue().encode()


def batch_metadata(request: pb.IngestRecordsRequest, batch_id: str, items: list[Accepted]) -> md.Metadata:
    """Metadata of the batch object: where and when its records are."""
    lats = [i.record.location.latitude for i in items]
    lons = [i.record.location.longitude for i in items]
    earliest = min(items, key=lambda i: i.record.observed_at.ToNanoseconds())
    csv_batch = request.batch_format == pb.BATCH_FORMAT_CSV
    meta = md.Metadata(
        id=batch_id,
        idempotency_key=request.idempotency_key,
        data_type=request.data_type,
        source=request.source,
        format=md.FORMAT_CSV if csv_batch else md.FORMAT_NDJSON,
        schema_ref=request.schema_ref,
        record_count=len(items),
        # The batch sits where its first record is; the bbox covers them all.
        location=md.GeoPoint(latitude=lats[0], longitude=lons[0]),
        bbox=md.BoundingBox(
            min_latitude=min(lats), min_longitude=min(lons), max_latitude=max(lats), max_longitude=max(lons)
        ),
        observed_at=earliest.record.observed_at,
        provider=request.provider,
        classification=request.classification or md.CLASSIFICATION_INTERNAL,
        labels=dict(request.labels),
    )
    latest = max(i.record.observed_at.ToNanoseconds() for i in items)
    meta.validity.start.CopyFrom(earliest.record.observed_at)
    meta.validity.end.FromNanoseconds(latest + 1)
    return meta


class RecordMetadata:
    """Metadata of a batch's records: each inherits the batch's who, how and access.

    Built once per batch and copied per record (one C-level copy, where
    building each record's metadata field by field took twice as long).
    """

    def __init__(self, batch: md.Metadata) -> None:
        self._template = md.Metadata(
            data_type=batch.data_type,
            source=batch.source,
            format=md.FORMAT_JSON,
            media_type="application/json",
            schema_ref=batch.schema_ref,
            ingested_at=batch.ingested_at,
            provider=batch.provider,
            classification=batch.classification,
            labels=batch.labels,
            lineage=batch.lineage,
        )
        self._template.lineage.parent_ids.append(batch.id)

    def fill(self, meta: md.Metadata, item: Accepted) -> None:
        """Write `item`'s metadata into `meta`."""
        r = item.record
        meta.CopyFrom(self._template)
        meta.id = item.id
        meta.entity_id = r.entity_id
        meta.location.CopyFrom(r.location)
        meta.observed_at.CopyFrom(r.observed_at)
        if r.labels:
            meta.labels.update(r.labels)  # a record's own labels win
