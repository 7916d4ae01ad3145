"""REST record batches (JSON, NDJSON, CSV) to protobuf, and per-record outcomes back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md

from gateway.batches import (
    build_request,
    csv_value,
    outcomes,
    parse_csv,
    parse_json_batch,
    parse_ndjson,
    to_proto,
)
from gateway.mapping import object_field, parse_labels, record_field
from gateway.problems import Problem

RECORD = {
    "entity_id": "station-42",
    "observed_at": "2024-11-20T10:00:00+01:00",
    "location": {"lat": 48.2082, "lon": 16.3738},
    "payload": {"pm10": 17.5, "nested": {"ok": True, "list": [1, "a"]}},
}


def problem_of(excinfo: pytest.ExceptionInfo[Problem]) -> tuple[int, list[str]]:
    return excinfo.value.status, [e.field for e in excinfo.value.errors]


def test_a_json_batch_maps_to_protobuf_records() -> None:
    batch = parse_json_batch(
        json.dumps({"data_type": "sensor.air_quality", "records": [RECORD], "batch_format": "csv"}).encode(),
        10,
    )
    assert batch.data_type == "sensor.air_quality" and batch.batch_format == "csv"
    record = to_proto(batch.records[0])
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
        (b"[]", ["request"]),
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
            json.dumps({"records": [{"entity_id": "x"}]}).encode(),
            ["records[0].observed_at", "records[0].location"],
        ),
        (json.dumps({"records": [RECORD], "colour": "blue"}).encode(), ["colour"]),
        (json.dumps({"records": [RECORD], "batch_format": "xml"}).encode(), ["batch_format"]),
    ],
)
def test_a_json_batch_of_the_wrong_shape_is_refused_whole(body: bytes, fields: list[str]) -> None:
    with pytest.raises(Problem) as caught:
        parse_json_batch(body, 10)
    status, found = problem_of(caught)
    assert status == 422
    assert found == fields


def test_too_many_records_is_413_before_validating_them() -> None:
    body = json.dumps({"records": [{"junk": i} for i in range(11)]}).encode()
    with pytest.raises(Problem) as caught:
        parse_json_batch(body, 10)
    assert caught.value.status == 413 and caught.value.reason == "too_many_records"
    ndjson = b"\n".join(json.dumps(RECORD).encode() for _ in range(11))
    with pytest.raises(Problem) as caught_nd:
        parse_ndjson(ndjson, 10)
    assert caught_nd.value.status == 413
    csv_body = b"entity_id,observed_at,lat,lon\n" + b"a,2024-01-01T00:00:00Z,1,2\n" * 11
    with pytest.raises(Problem) as caught_csv:
        parse_csv(csv_body, 10)
    assert caught_csv.value.status == 413


def test_ndjson_lines_are_records_and_blank_lines_are_skipped() -> None:
    body = b"\xef\xbb\xbf" + json.dumps(RECORD).encode() + b"\r\n\n  \n" + json.dumps(RECORD).encode()
    records = parse_ndjson(body, 10)
    assert len(records) == 2


def test_ndjson_errors_name_the_record_and_line() -> None:
    body = (
        json.dumps(RECORD).encode() + b"\n{oops\n" + json.dumps({**RECORD, "location": {"lat": 1}}).encode()
    )
    with pytest.raises(Problem) as caught:
        parse_ndjson(body, 10)
    assert problem_of(caught) == (422, ["records[1]", "records[2].location.lon"])
    assert "Line 2" in caught.value.errors[0].description


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("17", 17),
        ("-3", -3),
        ("007", "007"),
        ("17.5", 17.5),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("true", True),
        ("FALSE", False),
        ("nan", "nan"),
        ("inf", "inf"),
        ("1_000", "1_000"),
        ("station 4", "station 4"),
    ],
)
def test_csv_cells_are_typed(cell: str, value: object) -> None:
    found = csv_value(cell)
    assert found == value and type(found) is type(value)


def test_csv_rows_become_records_with_typed_payloads() -> None:
    body = (
        b"entity_id,observed_at,lat,lon,alt,pm10,calibrated,name,empty\n"
        b's-1,2024-11-20T10:00:00Z,48.2,16.3,180.5,17.5,true,"Ring, West",\n'
        b"s-2,2024-11-20T10:01:00Z,48.3,16.4,,3,false,x,\n"
    )
    records = parse_csv(body, 10)
    assert [r.entity_id for r in records] == ["s-1", "s-2"]
    assert records[0].location.alt == 180.5 and records[1].location.alt is None
    assert records[0].payload == {"pm10": 17.5, "calibrated": True, "name": "Ring, West"}
    assert records[1].payload == {"pm10": 3, "calibrated": False, "name": "x"}


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
    with pytest.raises(Problem) as caught:
        parse_csv(body, 10)
    assert problem_of(caught) == (422, fields)


def test_build_request_fills_the_batch_fields() -> None:
    records = parse_ndjson(json.dumps(RECORD).encode(), 10)
    request = build_request(
        data_type="sensor.air_quality",
        source="demo-city",
        records=records,
        idempotency_key="k-1",
        batch_format="csv",
        provider="City",
        classification="restricted",
        labels={"a": "1"},
        schema_ref=None,
    )
    assert request.batch_format == pb.BATCH_FORMAT_CSV
    assert request.classification == md.CLASSIFICATION_RESTRICTED
    assert request.idempotency_key == "k-1" and request.source == "demo-city"
    assert len(request.records) == 1 and dict(request.labels) == {"a": "1"}


def test_outcomes_report_every_record_with_reasons_and_rest_field_names() -> None:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="validation_failed", domain="pantheon.scdt"))
    bad = any_pb2.Any()
    bad.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="records[1].location.latitude", reason="double.gte_lte", description="out of range"
                )
            ]
        )
    )
    response = pb.IngestRecordsResponse(
        results=[
            pb.RecordResult(
                index=0, id="01JD5Q3W6Z8K4T2M9N7P5R3S1V", status=status_pb2.Status(code=code_pb2.OK)
            ),
            pb.RecordResult(index=1, status=status_pb2.Status(code=3, details=[info, bad])),
        ]
    )
    found = outcomes(response, record_field)
    assert found[0] == {
        "index": 0,
        "id": "01JD5Q3W6Z8K4T2M9N7P5R3S1V",
        "status": "accepted",
        "reason": None,
        "errors": [],
    }
    assert found[1]["status"] == "rejected" and found[1]["reason"] == "validation_failed"
    assert found[1]["errors"] == [
        {"field": "records[1].location.lat", "reason": "double.gte_lte", "description": "out of range"}
    ]


def test_field_names_of_the_contract_become_rest_names() -> None:
    assert object_field("header.metadata.location.latitude") == "lat"
    assert object_field("header.metadata.idempotency_key") == "Idempotency-Key"
    assert object_field("header.metadata.data_type") == "data_type"
    assert record_field("records[7].location.altitude_m") == "records[7].location.alt"


def test_labels_from_query_parameters() -> None:
    assert parse_labels(["a=1,b=2", "c=x=y", ""]) == {"a": "1", "b": "2", "c": "x=y"}
    with pytest.raises(Problem) as caught:
        parse_labels(["novalue"])
    assert caught.value.status == 422
