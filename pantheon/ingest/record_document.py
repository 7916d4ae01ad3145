"""Record documents (JSON, NDJSON, CSV) as external systems send them, parsed
into one IngestRecordsRequest.

Only the shape is checked here: JSON that parses, the fields a record must
have and no others, times in RFC 3339 with an offset, numbers where numbers
belong. A record whose values break the metadata rules (a latitude of 95, a
time in the future) is passed on and rejected on its own by the ingestion
service, so one bad reading does not cost the batch. A wrong shape rejects
the whole document with one field violation per problem (at most
MAX_VIOLATIONS), and nothing is stored.

CSV cells are typed by the rules CSV objects use (pantheon/ingest/cells.py).
Parsing is CPU work: the service runs `parse` off its event loop.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime
from typing import Any

from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.errors import InvalidArgument
from pantheon.ingest import caps
from pantheon.ingest import records as batch
from pantheon.ingest.cells import typed
from pantheon.ingest.formats.json_text import JsonProblem, parse_json
from pantheon.validation import FieldViolation

#: Field violations reported at most for one malformed document.
MAX_VIOLATIONS = 100
#: Most records in one document (the proto's limit of a batch).
MAX_RECORDS = 10_000

JSON, NDJSON, CSV = "application/json", "application/x-ndjson", "text/csv"

#: CSV columns that make up a record; every other column goes to the payload.
CSV_RECORD_COLUMNS = ("entity_id", "observed_at", "lat", "lon", "alt")
_CSV_REQUIRED = ("entity_id", "observed_at", "lat", "lon")
_RECORD_FIELDS = frozenset({"entity_id", "observed_at", "location", "payload", "labels"})
_LOCATION_FIELDS = frozenset({"lat", "lon", "alt"})
_BATCH_FIELDS = frozenset(
    {"data_type", "records", "batch_format", "source", "provider", "classification", "labels", "schema_ref"}
)
_MAX_TIME_CHARS = 64

#: The JSON body's enum fields: their REST names are the proto names
#: lower-case suffixes (`restricted` is CLASSIFICATION_RESTRICTED).
_ENUMS = {
    "classification": (md.Classification, "CLASSIFICATION_"),
    "batch_format": (pb.BatchFormat, "BATCH_FORMAT_"),
}


class _Violations:
    """Collects field violations, up to MAX_VIOLATIONS."""

    def __init__(self) -> None:
        self.found: list[FieldViolation] = []

    def add(self, field: str, rule: str, description: str) -> None:
        if len(self.found) < MAX_VIOLATIONS:
            self.found.append(FieldViolation(field, rule, description))

    def raise_if_any(self, what: str) -> None:
        if self.found:
            raise InvalidArgument(
                f"the {what} is malformed; see the field violations",
                reason="malformed_document",
                violations=self.found,
            )


def _malformed(field: str, rule: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        description, reason="malformed_document", violations=[FieldViolation(field, rule, description)]
    )


def _too_many() -> InvalidArgument:
    return InvalidArgument(f"a batch may hold at most {MAX_RECORDS} records", reason="too_many_records")


def _number(value: Any) -> float | None:
    """A finite JSON number (never a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value: Any) -> bool:
    """A string protobuf can carry: JSON allows lone surrogate escapes, UTF-8 does not."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _time(value: Any) -> datetime | None:
    """An RFC 3339 time with an offset that has a UTC form (`0001-01-01T00:00:00+14:00` has none)."""
    if not isinstance(value, str) or len(value) > _MAX_TIME_CHARS:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None


def _strings(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict) or not all(_text(k) and _text(v) for k, v in value.items()):
        return None
    return value


def record_from(raw: Any, where: str, violations: _Violations) -> pb.Record | None:
    """One record object as a protobuf Record, or None with its violations added."""
    if not isinstance(raw, dict):
        violations.add(where, "type", "a record is a JSON object")
        return None
    before = len(violations.found)
    for name in sorted(set(raw) - _RECORD_FIELDS):
        violations.add(f"{where}.{name[:64]}", "unknown_field", "not a record field")
    entity = raw.get("entity_id")
    if not _text(entity):
        violations.add(f"{where}.entity_id", "required", "a UTF-8 string is required")
    observed = _time(raw.get("observed_at"))
    if observed is None:
        violations.add(f"{where}.observed_at", "rfc3339", "an RFC 3339 time with an offset is required")
    location = raw.get("location")
    lat = lon = alt = None
    if not isinstance(location, dict):
        violations.add(f"{where}.location", "required", "an object with lat and lon is required")
    else:
        for name in sorted(set(location) - _LOCATION_FIELDS):
            violations.add(f"{where}.location.{name[:64]}", "unknown_field", "not a location field")
        lat, lon = _number(location.get("lat")), _number(location.get("lon"))
        for name, value in (("lat", lat), ("lon", lon)):
            if value is None:
                violations.add(f"{where}.location.{name}", "number", "a finite number is required")
        if location.get("alt") is not None:
            alt = _number(location["alt"])
            if alt is None:
                violations.add(f"{where}.location.alt", "number", "a finite number is required")
    payload = raw.get("payload", {})
    if not isinstance(payload, dict):
        violations.add(f"{where}.payload", "type", "the payload is a JSON object")
    labels = _strings(raw.get("labels", {}))
    if labels is None:
        violations.add(f"{where}.labels", "type", "labels map names to strings")
    if len(violations.found) > before or observed is None or lat is None or lon is None:
        return None
    record = pb.Record(
        entity_id=str(entity), location=md.GeoPoint(latitude=lat, longitude=lon), labels=labels
    )
    if alt is not None:
        record.location.altitude_m = alt
    record.observed_at.FromDatetime(observed)
    if payload:
        try:
            record.payload.update(payload)
        except (ValueError, TypeError):
            violations.add(f"{where}.payload", "type", "the payload holds values JSON cannot carry")
            return None
    return record


def _decode(body: bytes, what: str) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _malformed("body", "utf8", f"the {what} is not valid UTF-8 (byte {exc.start})") from None


def _json_batch(body: bytes, request: pb.IngestRecordsRequest) -> None:
    try:
        document = parse_json(_decode(body, "JSON document"))
    except JsonProblem as problem:
        raise _malformed(
            "body", problem.reason or "json", f"the body is not acceptable JSON: {problem.detail}"
        ) from None
    if not isinstance(document, dict):
        raise _malformed("body", "type", 'the body is a JSON object {"data_type": ..., "records": [...]}')
    violations = _Violations()
    for name in sorted(set(document) - _BATCH_FIELDS):
        violations.add(name[:64], "unknown_field", "not a batch field")
    records = document.get("records")
    if not isinstance(records, list):
        violations.add("records", "required", "a list of records is required")
        records = []
    if len(records) > MAX_RECORDS:
        raise _too_many()
    _batch_fields(document, request, violations)
    for index, raw in enumerate(records):
        record = record_from(raw, f"records[{index}]", violations)
        if record is not None:
            request.records.append(record)
    violations.raise_if_any("JSON batch")


def _batch_fields(
    document: dict[str, Any], request: pb.IngestRecordsRequest, violations: _Violations
) -> None:
    """A JSON document's own batch fields, over the header's."""
    for name in ("data_type", "source", "provider", "schema_ref"):
        value = document.get(name)
        if value is None:
            continue
        if _text(value):
            setattr(request, name, value)
        else:
            violations.add(name, "type", "a UTF-8 string is required")
    for name, (enum, prefix) in _ENUMS.items():
        value = document.get(name)
        if value is None:
            continue
        names = [n.removeprefix(prefix).lower() for n in enum.keys() if not n.endswith("UNSPECIFIED")]  # noqa: SIM118
        if isinstance(value, str) and value in names:
            setattr(request, name, enum.Value(prefix + value.upper()))
        else:
            violations.add(name, "enum", f"one of {', '.join(names)}")
    labels = document.get("labels")
    if labels is not None:
        checked = _strings(labels)
        if checked is None:
            violations.add("labels", "type", "labels map names to strings")
        else:
            request.labels.update(checked)


def _ndjson(body: bytes, request: pb.IngestRecordsRequest) -> None:
    violations = _Violations()
    index = 0
    for number, line in enumerate(_decode(body, "NDJSON document").split("\n"), start=1):
        if not line.strip():
            continue
        if index >= MAX_RECORDS:
            raise _too_many()
        where = f"records[{index}]"
        index += 1
        if len(line) > caps.MAX_NDJSON_LINE_BYTES:
            violations.add(where, "line_too_long", f"line {number} exceeds the cap max_ndjson_line_bytes")
            continue
        try:
            raw = parse_json(line)
        except JsonProblem as problem:
            violations.add(
                where, problem.reason or "json", f"line {number} is not acceptable JSON: {problem.detail}"
            )
            continue
        record = record_from(raw, where, violations)
        if record is not None:
            request.records.append(record)
    violations.raise_if_any("NDJSON document")


def _csv(body: bytes, request: pb.IngestRecordsRequest) -> None:
    reader = csv.reader(io.StringIO(_decode(body, "CSV document"), newline=""), strict=True)
    violations = _Violations()
    try:
        header = next(reader, None)
        if header is None:
            raise _malformed("body", "header", "the CSV has no header row")
        header = [name.strip() for name in header]
        if len(header) > caps.MAX_CSV_COLUMNS:
            raise InvalidArgument(
                f"the CSV has {len(header)} columns; the cap max_csv_columns is {caps.MAX_CSV_COLUMNS}",
                reason="too_many_columns",
            )
        seen: set[str] = set()
        for name in header:
            if not name:
                violations.add("columns", "empty", "a column has no name")
            elif name in seen:
                violations.add(f"columns.{name[:64]}", "repeated", f"column {name[:64]} appears twice")
            seen.add(name)
        for name in _CSV_REQUIRED:
            if name not in seen:
                violations.add(f"columns.{name}", "required", f"column {name} is required")
        violations.raise_if_any("CSV header")
        index = 0
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if index >= MAX_RECORDS:
                raise _too_many()
            if (index + 1) * len(header) > caps.MAX_RECORD_DOCUMENT_CELLS:
                cap = caps.RECORD_DOCUMENT_CELLS
                raise InvalidArgument(cap.describe(f"row {index + 1}"), reason=cap.reason)
            where = f"records[{index}]"
            index += 1
            if len(row) != len(header):
                violations.add(
                    where, "columns", f"line {reader.line_num} has {len(row)} cells, not {len(header)}"
                )
                continue
            if any(len(cell) > caps.MAX_CSV_CELL_CHARS for cell in row):
                violations.add(
                    where,
                    "cell_too_long",
                    f"a cell exceeds the cap max_csv_cell_chars = {caps.MAX_CSV_CELL_CHARS}",
                )
                continue
            cells = dict(zip(header, row, strict=True))
            alt = cells.get("alt", "").strip()
            raw = {
                "entity_id": cells["entity_id"],
                "observed_at": cells["observed_at"].strip(),
                "location": {
                    "lat": typed(cells["lat"].strip()),
                    "lon": typed(cells["lon"].strip()),
                    "alt": typed(alt) if alt else None,
                },
                "payload": {n: typed(v) for n, v in cells.items() if n not in CSV_RECORD_COLUMNS and v},
            }
            record = record_from(raw, where, violations)
            if record is not None:
                request.records.append(record)
    except csv.Error:
        raise _malformed("body", "csv", f"line {reader.line_num} is not valid CSV") from None
    violations.raise_if_any("CSV document")


_PARSERS = {JSON: _json_batch, NDJSON: _ndjson, CSV: _csv}


def parse(header: pb.RecordDocumentHeader, body: bytes) -> pb.IngestRecordsRequest:
    """The batch a document holds, with the header's fields (a JSON body's win)."""
    request = pb.IngestRecordsRequest(
        data_type=header.data_type,
        source=header.source,
        idempotency_key=header.idempotency_key,
        batch_format=header.batch_format,
        provider=header.provider,
        classification=header.classification,
        labels=header.labels,
        schema_ref=header.schema_ref,
    )
    _PARSERS[header.media_type](body, request)
    if not request.records:
        raise _malformed("records", "required", "the batch has no records")
    if not request.data_type:
        raise _malformed(
            "data_type", "required", "data_type is required (a header field or in the JSON body)"
        )
    return request


def parse_and_decide(
    header: pb.RecordDocumentHeader, body: bytes, batch_id: str
) -> tuple[pb.IngestRecordsRequest, batch.Decision]:
    """`parse`, then the batch's `batch.decision` under `batch_id`: a
    document's whole CPU work in one worker call."""
    request = parse(header, body)
    return request, batch.decision(request, batch_id)
