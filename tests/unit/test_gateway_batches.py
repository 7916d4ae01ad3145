"""REST record batches: per-record outcomes back as JSON, REST field names,
labels from the query (the documents themselves are parsed by the ingestion
service: tests/unit/test_record_document.py)."""

from __future__ import annotations

import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb

from gateway.batches import outcomes
from gateway.mapping import object_field, parse_labels, record_field
from gateway.problems import Problem


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
