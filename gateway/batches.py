"""Record batches as they arrive over REST (JSON, NDJSON, CSV), mapped to protobuf.

Only the shape is checked here: JSON that parses, the fields a record must
have, times in RFC 3339 with an offset, numbers where numbers belong. A
record whose values break the rules (a latitude of 95, a time in the
future) is sent on and reported per record by the ingestion service.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from google.rpc import code_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pydantic import ValidationError

from gateway.problems import FieldError, Problem, read_status, request_invalid, validation_errors
from gateway.schemas import BatchFormat, Classification, RecordBatchIn, RecordIn

#: Field errors reported at most for one malformed request.
MAX_ERRORS = 100

#: CSV columns that make up a record; every other column goes to the payload.
CSV_RECORD_COLUMNS = ("entity_id", "observed_at", "lat", "lon", "alt")
_CSV_REQUIRED = ("entity_id", "observed_at", "lat", "lon")
_INT = re.compile(r"[+-]?(0|[1-9][0-9]*)")
# Leading zeros ("007", a code, not a number) keep a cell text.
_FLOAT = re.compile(r"[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")

CLASSIFICATIONS: Mapping[str, md.Classification.ValueType] = {
    "public": md.CLASSIFICATION_PUBLIC,
    "internal": md.CLASSIFICATION_INTERNAL,
    "restricted": md.CLASSIFICATION_RESTRICTED,
}
BATCH_FORMATS: Mapping[str, pb.BatchFormat.ValueType] = {
    "ndjson": pb.BATCH_FORMAT_NDJSON,
    "csv": pb.BATCH_FORMAT_CSV,
}


def too_many_records(limit: int) -> Problem:
    return Problem(413, "too_many_records", f"A batch may hold at most {limit} records.")


class _Errors:
    """Collects field errors across records, up to MAX_ERRORS."""

    def __init__(self) -> None:
        self.found: list[FieldError] = []

    def add(self, errors: Iterable[FieldError]) -> None:
        for error in errors:
            if len(self.found) < MAX_ERRORS:
                self.found.append(error)

    def raise_if_any(self, what: str) -> None:
        if self.found:
            raise request_invalid(self.found, f"The {what} is malformed; see `errors`.")


def _record(raw: Any, index: int, errors: _Errors) -> RecordIn | None:
    try:
        return RecordIn.model_validate(raw)
    except ValidationError as exc:
        errors.add(validation_errors(exc.errors(include_url=False), prefix=f"records[{index}]"))
        return None


def parse_json_batch(body: bytes, max_records: int) -> RecordBatchIn:
    """A JSON batch `{"data_type": ..., "records": [...]}`."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise request_invalid(
            [FieldError(field="body", reason="invalid_json", description="The body is not valid JSON.")]
        ) from None
    records = document.get("records") if isinstance(document, dict) else None
    if isinstance(records, list) and len(records) > max_records:
        raise too_many_records(max_records)
    try:
        return RecordBatchIn.model_validate(document)
    except ValidationError as exc:
        raise request_invalid(
            validation_errors(exc.errors(include_url=False))[:MAX_ERRORS],
            "The JSON batch is malformed; see `errors`.",
        ) from None


def _lines(body: bytes) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(body.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if line.strip():
            yield number, line


def parse_ndjson(body: bytes, max_records: int) -> list[RecordIn]:
    """One JSON record per line; blank lines are skipped."""
    records: list[RecordIn] = []
    errors = _Errors()
    for index, (number, line) in enumerate(_lines(body.removeprefix(b"\xef\xbb\xbf"))):
        if index >= max_records:
            raise too_many_records(max_records)
        try:
            raw = json.loads(line)
        except (ValueError, RecursionError):
            errors.add(
                [
                    FieldError(
                        field=f"records[{index}]",
                        reason="invalid_json",
                        description=f"Line {number} is not valid JSON.",
                    )
                ]
            )
            continue
        record = _record(raw, index, errors)
        if record is not None:
            records.append(record)
    errors.raise_if_any("NDJSON body")
    return records


def csv_value(cell: str) -> bool | int | float | str:
    """A CSV cell typed: true/false, integer, finite decimal number, or text."""
    lowered = cell.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INT.fullmatch(cell):
        return int(cell)
    if _FLOAT.fullmatch(cell):
        value = float(cell)
        if math.isfinite(value):
            return value
    return cell


def parse_csv(body: bytes, max_records: int) -> list[RecordIn]:
    """CSV with a header row: `entity_id,observed_at,lat,lon[,alt]`, other columns are the payload."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise request_invalid(
            [FieldError(field="body", reason="invalid_encoding", description="The CSV is not UTF-8.")]
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise request_invalid(
                [FieldError(field="body", reason="missing_header", description="The CSV has no header row.")]
            )
        header = [name.strip() for name in header]
        missing = [c for c in _CSV_REQUIRED if c not in header]
        repeated = sorted({name for name in header if header.count(name) > 1})
        if missing or repeated or "" in header:
            problems = [
                FieldError(field=f"columns.{c}", reason="missing", description=f"Column {c} is required.")
                for c in missing
            ] + [
                FieldError(field=f"columns.{c}", reason="repeated", description=f"Column {c} appears twice.")
                for c in repeated
            ]
            if "" in header:
                problems.append(
                    FieldError(field="columns", reason="empty", description="A column has no name.")
                )
            raise request_invalid(problems, "The CSV header is malformed; see `errors`.")
        records: list[RecordIn] = []
        errors = _Errors()
        index = 0
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if index >= max_records:
                raise too_many_records(max_records)
            if len(row) != len(header):
                errors.add(
                    [
                        FieldError(
                            field=f"records[{index}]",
                            reason="column_count",
                            description=f"Line {reader.line_num} has {len(row)} cells, not {len(header)}.",
                        )
                    ]
                )
                index += 1
                continue
            cells = dict(zip(header, row, strict=True))
            alt = cells.get("alt", "").strip()
            raw = {
                "entity_id": cells["entity_id"],
                "observed_at": cells["observed_at"].strip(),
                "location": {"lat": cells["lat"].strip(), "lon": cells["lon"].strip(), "alt": alt or None},
                "payload": {
                    name: csv_value(value)
                    for name, value in cells.items()
                    if name not in CSV_RECORD_COLUMNS and value
                },
            }
            record = _record(raw, index, errors)
            if record is not None:
                records.append(record)
            index += 1
    except csv.Error:
        raise request_invalid(
            [
                FieldError(
                    field="body",
                    reason="invalid_csv",
                    description=f"Line {reader.line_num} is not valid CSV.",
                )
            ]
        ) from None
    errors.raise_if_any("CSV body")
    return records


def to_proto(record: RecordIn) -> pb.Record:
    out = pb.Record(
        entity_id=record.entity_id,
        location=md.GeoPoint(latitude=record.location.lat, longitude=record.location.lon),
        labels=record.labels,
    )
    if record.location.alt is not None:
        out.location.altitude_m = record.location.alt
    out.observed_at.FromDatetime(record.observed_at)
    if record.payload:
        out.payload.update(record.payload)
    return out


def build_request(
    *,
    data_type: str,
    source: str,
    records: Iterable[RecordIn],
    idempotency_key: str | None,
    batch_format: BatchFormat | None,
    provider: str | None,
    classification: Classification | None,
    labels: Mapping[str, str],
    schema_ref: str | None,
) -> pb.IngestRecordsRequest:
    request = pb.IngestRecordsRequest(
        data_type=data_type,
        source=source,
        idempotency_key=idempotency_key or "",
        batch_format=BATCH_FORMATS[batch_format] if batch_format else pb.BATCH_FORMAT_UNSPECIFIED,
        provider=provider or "",
        classification=CLASSIFICATIONS[classification] if classification else md.CLASSIFICATION_UNSPECIFIED,
        labels=labels,
        schema_ref=schema_ref or "",
    )
    request.records.extend(to_proto(r) for r in records)
    return request


def outcomes(
    response: pb.IngestRecordsResponse, rename: Callable[[str], str] = lambda path: path
) -> list[dict[str, Any]]:
    """Every record's outcome, in request order (field paths passed through `rename`)."""
    found = []
    for result in response.results:
        if result.status.code == code_pb2.OK:
            found.append(
                {"index": result.index, "id": result.id, "status": "accepted", "reason": None, "errors": []}
            )
            continue
        rich = read_status(result.status)
        found.append(
            {
                "index": result.index,
                "id": None,
                "status": "rejected",
                "reason": rich.reason or "invalid_record",
                "errors": [{**e.model_dump(), "field": rename(e.field)} for e in rich.errors],
            }
        )
    return found
