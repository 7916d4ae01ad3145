"""Errors as callers receive them: bounded, whatever the input they describe."""

from __future__ import annotations

import base64

from google.rpc import error_details_pb2

from pantheon.errors import MAX_LISTED_FIELDS, InvalidArgument
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
    assert status.message.endswith(
        f"and {10_000 - MAX_LISTED_FIELDS} more ({10_000 - reported} more violations not listed)"
    )


def test_a_few_violations_are_all_reported_as_they_are() -> None:
    found = [FieldViolation("records[0].location.lat", "double.gte_lte", "must be within -90 and 90")]
    status = InvalidArgument.from_violations(found, "records").to_status()
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    assert [(v.field, v.reason, v.description) for v in bad.field_violations] == [
        ("records[0].location.lat", "double.gte_lte", "must be within -90 and 90")
    ]
    assert status.message == "invalid records: records[0].location.lat"
