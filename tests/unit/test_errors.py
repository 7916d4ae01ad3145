"""Errors as callers receive them: bounded, whatever the input they describe."""

from __future__ import annotations

import base64

from google.rpc import error_details_pb2

from pantheon.errors import InvalidArgument
from pantheon.ingest import records
from pantheon.validation import FieldViolation

#: gRPC's default limit on a response's metadata (its trailers included).
GRPC_MAX_METADATA = 8192


def test_an_error_about_thousands_of_long_violations_fits_a_callers_trailers() -> None:
    quoted = "x" * 100_000  # what a caller sent, quoted back
    found = [FieldViolation(f"records[{i}].{quoted}", "rule", quoted) for i in range(10_000)]
    status = InvalidArgument.from_violations(found, "records").to_status()
    on_the_wire = len(base64.b64encode(status.SerializeToString())) + len(status.message)
    assert on_the_wire < GRPC_MAX_METADATA - 1024  # room for the other headers
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    reported = len(bad.field_violations)
    assert 0 < reported < 10_000
    assert bad.field_violations[0].field.startswith("records[0].")
    assert len(status.message) < 400
    assert status.message.startswith("invalid records: records[0].")
    assert status.message.endswith(f" more ({10_000 - reported} more violations not listed)")


def test_a_few_violations_are_all_reported_as_they_are() -> None:
    found = [FieldViolation("records[0].location.lat", "double.gte_lte", "must be within -90 and 90")]
    status = InvalidArgument.from_violations(found, "records").to_status()
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    assert [(v.field, v.reason, v.description) for v in bad.field_violations] == [
        ("records[0].location.lat", "double.gte_lte", "must be within -90 and 90")
    ]
    assert status.message == "invalid records: records[0].location.lat"


def test_a_rejected_records_result_is_small_however_many_and_long_its_violations() -> None:
    # 10000 such records answer in a few MiB, within the 16 MiB a response may take.
    quoted = "k" * 10_000  # a payload key as the caller sent it
    found = [
        FieldViolation(f"records[9999].payload.fields['{quoted}{i}']", "value.well_formed", "must be finite")
        for i in range(records.MAX_VIOLATIONS)
    ]
    result = records.rejection(records.Rejected(9999, records.pb.Record(), found))
    assert result.ByteSize() < 1024
    bad = error_details_pb2.BadRequest()
    assert result.status.details[1].Unpack(bad) and len(bad.field_violations) >= 1


def test_one_violation_too_long_for_the_budget_is_still_reported_shorter() -> None:
    long = "😀" * 1000
    found = [FieldViolation(long, "rule", long)]
    status = InvalidArgument.from_violations(found, "record", violation_bytes=512).to_status()
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    (only,) = bad.field_violations
    assert 0 < len(only.field.encode()) <= 64 and only.reason == "rule"
    assert "not listed" not in status.message
