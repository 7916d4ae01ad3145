"""Record documents (JSON, NDJSON, CSV) parsed by the ingestion service into
one IngestRecordsRequest: shapes, typed CSV cells, field violations, limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.errors import InvalidArgument
from pantheon.ingest.record_document import CSV, JSON, MAX_RECORDS, NDJSON, parse

RECORD = {
    "entity_id": "station-42",
    "observed_at": "2024-11-20T10:00:00+01:00",
    "location": {"lat": 48.2082, "lon": 16.3738},
    "payload": {"pm10": 17.5, "nested": {"ok": True, "list": [1, "a"]}},
}


def _parse(media_type: str, body: bytes, **header: object) -> pb.IngestRecordsRequest:
    fields = {"data_type": "sensor.air_quality", "source": "demo-city", **header}
    return parse(pb.RecordDocumentHeader(media_type=media_type, **fields), body)  # type: ignore[arg-type]


def _fields(media_type: str, body: bytes) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        _parse(media_type, body)
    assert caught.value.reason == "malformed_document"
    return [v.field for v in caught.value.violations]


def test_a_json_batch_maps_to_protobuf_records_and_its_fields_win() -> None:
    body = {"data_type": "weather.observation", "records": [RECORD], "batch_format": "csv",
            "classification": "restricted", "labels": {"a": "1"}}  # fmt: skip
    request = _parse(JSON, json.dumps(body).encode(), idempotency_key="k-1", labels={"b": "2"})
    assert request.data_type == "weather.observation" and request.batch_format == pb.BATCH_FORMAT_CSV
    assert request.classification == md.CLASSIFICATION_RESTRICTED
    assert request.idempotency_key == "k-1" and dict(request.labels) == {"a": "1", "b": "2"}
    record = request.records[0]
    assert record.entity_id == "station-42"
    assert record.observed_at.ToDatetime(tzinfo=UTC) == datetime(2024, 11, 20, 9, 0, tzinfo=UTC)
    assert record.location.latitude == 48.2082 and not record.location.HasField("altitude_m")
    assert record.payload["pm10"] == 17.5
    assert record.payload["nested"]["ok"] is True
    assert list(record.payload["nested"]["list"]) == [1, "a"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b"{not json", ["body"]),
        (b"[]", ["body"]),
        (
            json.dumps({"records": [{**RECORD, "observed_at": "yesterday"}]}).encode(),
            ["records[0].observed_at"],
        ),
        (
            json.dumps({"records": [{**RECORD, "observed_at": "2024-11-20T10:00:00"}]}).encode(),
            ["records[0].observed_at"],
        ),
        (
            json.dumps({"records": [{**RECORD, "location": {"lat": "north", "lon": 1}}]}).encode(),
            ["records[0].location.lat"],
        ),
        (
            json.dumps({"records": [{**RECORD, "location": {"lat": True, "lon": 1}}]}).encode(),
            ["records[0].location.lat"],
        ),
        (
            json.dumps({"records": [{"entity_id": "x"}]}).encode(),
            ["records[0].observed_at", "records[0].location"],
        ),
        (json.dumps({"records": [RECORD], "colour": "blue"}).encode(), ["colour"]),
        (json.dumps({"records": [RECORD], "batch_format": "xml"}).encode(), ["batch_format"]),
        (json.dumps({"records": [{**RECORD, "extra": 1}]}).encode(), ["records[0].extra"]),
        (json.dumps({"records": [{**RECORD, "labels": {"a": 1}}]}).encode(), ["records[0].labels"]),
        (json.dumps({"records": "many"}).encode(), ["records"]),
    ],
)
def test_a_json_batch_of_the_wrong_shape_is_refused_whole(body: bytes, fields: list[str]) -> None:
    assert _fields(JSON, body) == fields


def test_too_many_records_is_refused_before_validating_them() -> None:
    for media_type, body in (
        (JSON, json.dumps({"records": [{"junk": i} for i in range(MAX_RECORDS + 1)]}).encode()),
        (NDJSON, b"\n".join(json.dumps(RECORD).encode() for _ in range(MAX_RECORDS + 1))),
        (CSV, b"entity_id,observed_at,lat,lon\n" + b"a,2024-01-01T00:00:00Z,1,2\n" * (MAX_RECORDS + 1)),
    ):
        with pytest.raises(InvalidArgument) as caught:
            _parse(media_type, body)
        assert caught.value.reason == "too_many_records"


def test_ndjson_lines_are_records_and_blank_lines_are_skipped() -> None:
    body = b"\xef\xbb\xbf" + json.dumps(RECORD).encode() + b"\r\n\n  \n" + json.dumps(RECORD).encode()
    assert len(_parse(NDJSON, body).records) == 2


def test_ndjson_errors_name_the_record_and_line() -> None:
    body = (
        json.dumps(RECORD).encode() + b"\n{oops\n" + json.dumps({**RECORD, "location": {"lat": 1}}).encode()
    )
    with pytest.raises(InvalidArgument) as caught:
        _parse(NDJSON, body)
    assert [v.field for v in caught.value.violations] == ["records[1]", "records[2].location.lon"]
    assert "line 2" in caught.value.violations[0].description


def test_csv_rows_become_records_with_typed_payloads() -> None:
    body = (
        b"entity_id,observed_at,lat,lon,alt,pm10,calibrated,name,code,empty\n"
        b's-1,2024-11-20T10:00:00Z,48.2,16.3,180.5,17.5,true,"Ring, West",007,\n'
        b"s-2,2024-11-20T10:01:00Z,48.3,16.4,,3,false,x,12,\n"
    )
    records = _parse(CSV, body).records
    assert [r.entity_id for r in records] == ["s-1", "s-2"]
    assert records[0].location.altitude_m == 180.5 and not records[1].location.HasField("altitude_m")
    assert dict(records[0].payload) == {"pm10": 17.5, "calibrated": True, "name": "Ring, West", "code": "007"}
    assert dict(records[1].payload) == {"pm10": 3, "calibrated": False, "name": "x", "code": 12}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b"", ["body"]),
        (b"entity_id,lat,lon\nx,1,2\n", ["columns.observed_at"]),
        (b"entity_id,observed_at,lat,lon,lat\n", ["columns.lat"]),
        (b"entity_id,observed_at,lat,lon\nx,2024-01-01T00:00:00Z,1\n", ["records[0]"]),
        (b"entity_id,observed_at,lat,lon\nx,2024-01-01T00:00:00Z,north,2\n", ["records[0].location.lat"]),
        (b"entity_id,observed_at,lat,lon\n\xff\xfe,1,2,3\n", ["body"]),
        (b'entity_id,observed_at,lat,lon\n"x"y,2024-01-01T00:00:00Z,1,2\n', ["body"]),
    ],
)
def test_malformed_csv_is_refused_with_field_names(body: bytes, fields: list[str]) -> None:
    assert _fields(CSV, body) == fields


def test_a_wide_csv_header_with_repeats_is_checked_in_linear_time() -> None:
    names = ["entity_id", "observed_at", "lat", "lon"] + [f"c{i}" for i in range(1_990)] + ["c7"]
    assert _fields(CSV, (",".join(names) + "\n").encode()) == ["columns.c7"]


def test_violations_are_capped() -> None:
    body = b"\n".join(b"{}" for _ in range(500))
    assert len(_fields(NDJSON, body)) == 100


def test_a_document_without_records_or_data_type_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="no records"):
        _parse(NDJSON, b"\n\n")
    with pytest.raises(InvalidArgument, match="data_type"):
        _parse(NDJSON, json.dumps(RECORD).encode(), data_type="")


def test_the_caps_of_csv_objects_hold_for_record_documents() -> None:
    from pantheon.ingest import caps

    wide = ",".join(
        ["entity_id", "observed_at", "lat", "lon"] + [f"c{i}" for i in range(caps.MAX_CSV_COLUMNS)]
    )
    with pytest.raises(InvalidArgument) as caught:
        _parse(CSV, (wide + "\n").encode())
    assert caught.value.reason == "too_many_columns" and "max_csv_columns" in caught.value.message
    long_cell = "x" * (caps.MAX_CSV_CELL_CHARS + 1)
    body = f"entity_id,observed_at,lat,lon,note\ns,2024-01-01T00:00:00Z,1,2,{long_cell}\n".encode()
    assert _fields(CSV, body) == ["records[0]"]
    deep = b'{"entity_id": "x", "payload": ' + b"[" * 100 + b"]" * 100 + b"}"
    with pytest.raises(InvalidArgument) as caught_deep:
        _parse(NDJSON, deep)
    assert caught_deep.value.violations[0].rule_id == "json_too_deep"


def test_a_csv_document_over_the_cell_cap_is_refused_early() -> None:
    from pantheon.ingest import caps

    columns = ["entity_id", "observed_at", "lat", "lon"] + [f"c{i}" for i in range(696)]
    row = ",".join(["s", "2024-01-01T00:00:00Z", "1", "2"] + ["1"] * 696)
    rows = caps.MAX_RECORD_DOCUMENT_CELLS // len(columns) + 1
    body = (",".join(columns) + "\n" + (row + "\n") * rows).encode()
    with pytest.raises(InvalidArgument) as caught:
        _parse(CSV, body)
    assert caught.value.reason == "too_many_cells" and "max_record_document_cells" in caught.value.message


@pytest.mark.parametrize(
    "record",
    [
        {**RECORD, "entity_id": "\ud800"},
        {**RECORD, "labels": {"a": "\ud800"}},
        {**RECORD, "observed_at": "0001-01-01T00:00:00+14:00"},
        {**RECORD, "observed_at": "9999-12-31T23:59:59-14:00"},
    ],
)
def test_strings_and_times_protobuf_cannot_carry_are_shape_errors(record: dict[str, object]) -> None:
    body = json.dumps({"records": [record]}).encode()
    assert _fields(JSON, body)[0].startswith("records[0].")
    assert _fields(JSON, json.dumps({"records": [RECORD], "provider": "\ud800"}).encode()) == ["provider"]
