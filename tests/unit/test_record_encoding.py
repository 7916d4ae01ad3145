"""A stored batch's encoding (pantheon/ingest/records.py): record payloads
are converted to JSON directly, as protobuf's generic converter would."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.ingest import records as batch

_scalars = st.none() | st.booleans() | st.text(max_size=8) | st.floats(allow_nan=False, allow_infinity=False)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _json, max_size=6))
def test_a_payload_converts_as_protobufs_own_converter_does(payload: dict[str, Any]) -> None:
    struct = _struct(payload)
    plain = batch.plain_struct(struct)
    assert plain == json_format.MessageToDict(struct)
    # Same JSON types too (1.0 stays a float, never the int 1).
    assert json.dumps(plain, sort_keys=True) == json.dumps(json_format.MessageToDict(struct), sort_keys=True)


def test_a_value_with_no_kind_is_null() -> None:
    struct = struct_pb2.Struct()
    struct.fields["empty"].SetInParent()
    assert batch.plain_struct(struct) == json_format.MessageToDict(struct) == {"empty": None}


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_has_no_json_form(number: float) -> None:
    # Triage refuses such a record before it is encoded; encoding refuses it too.
    with pytest.raises(ValueError):
        batch.plain_struct(_struct({"deep": [{"x": number}]}))


def test_an_ndjson_batch_is_one_canonical_object_per_line() -> None:
    record = pb.Record(entity_id="s-1", location=md.GeoPoint(latitude=48.2, longitude=16.37))
    record.observed_at.FromJsonString("2026-12-02T03:16:05.825Z")
    record.payload.update({"b": 1.0, "a": "ü", "n": None})
    record.labels["k"] = "v"
    line = batch.encode_ndjson([batch.Accepted(0, "01JID", record), batch.Accepted(1, "01JID2", record)])
    first, second, end = line.split(b"\n")
    assert end == b"" and second.startswith(b'{"entity_id":"s-1","id":"01JID2"')
    assert first.decode() == (
        '{"entity_id":"s-1","id":"01JID","labels":{"k":"v"},"location":{"lat":48.2,"lon":16.37},'
        '"observed_at":"2026-12-02T03:16:05.825Z","payload":{"a":"ü","b":1.0,"n":null}}'
    )
