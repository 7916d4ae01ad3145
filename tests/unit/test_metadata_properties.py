"""Properties of the metadata standard, for any valid Metadata: it round-trips
through the protobuf binary encoding, the protobuf JSON mapping, object names
(name -> metadata -> name) and the CloudEvents Kafka headers."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta

from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from pantheon_api.events.v1 import events_pb2
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.events.cloudevents import EVENT_TYPES, decode, headers_for, parse_headers
from pantheon.metadata import geohash
from pantheon.metadata.naming import EXTENSIONS, metadata_from_key, object_key, parse_key
from pantheon.validation import violations
from tests.unit.test_naming import data_types, sources, ulids

# The past only: observed_at may be at most five minutes in the future.
EPOCH_PLUS_ONE = datetime(1970, 1, 1, 0, 0, 1)
past = st.datetimes(min_value=EPOCH_PLUS_ONE, max_value=datetime(2026, 1, 1), timezones=st.just(UTC))
latitudes = st.floats(min_value=-90, max_value=90)
longitudes = st.floats(min_value=-180, max_value=180)
hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
idempotency_keys = st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True)
entity_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", fullmatch=True)
label_keys = st.from_regex(r"[a-z][a-z0-9_.-]{0,62}", fullmatch=True)
media_types = st.sampled_from(
    ["text/csv", "application/json", "application/x-ndjson", "image/png", "image/tiff"]
)
schema_refs = st.builds(
    "https://schemas.example.org/{}/v{}.json".format,
    st.text(alphabet=string.ascii_lowercase + "-", min_size=1, max_size=30),
    st.integers(min_value=1, max_value=99),
)
# Any Unicode text without surrogates (protobuf strings are UTF-8).
texts = st.text(max_size=128)


@st.composite
def bounding_boxes(draw: st.DrawFn) -> md.BoundingBox:
    lat = sorted([draw(latitudes), draw(latitudes)])
    lon = sorted([draw(longitudes), draw(longitudes)])
    return md.BoundingBox(
        min_latitude=lat[0], min_longitude=lon[0], max_latitude=lat[1], max_longitude=lon[1]
    )


@st.composite
def valid_metadata(draw: st.DrawFn) -> md.Metadata:
    """Any Metadata the standard accepts: required fields always, every other
    field sometimes, values anywhere in their documented ranges."""
    m = md.Metadata(
        id=draw(ulids),
        data_type=draw(data_types),
        source=draw(sources),
        format=draw(st.sampled_from(sorted(EXTENSIONS))),
        location=md.GeoPoint(latitude=draw(latitudes), longitude=draw(longitudes)),
    )
    observed = draw(past)
    m.observed_at.FromDatetime(observed)
    maybe = st.booleans()
    if draw(maybe):
        m.location.altitude_m = draw(st.floats(min_value=-12000, max_value=100000))
    if draw(maybe):
        m.idempotency_key = draw(idempotency_keys)
    if draw(maybe):
        m.sha256, m.size_bytes = draw(hex64), draw(st.integers(min_value=0, max_value=5 * 2**40))
    if draw(maybe):
        m.media_type, m.schema_ref = draw(media_types), draw(schema_refs)
    if draw(maybe):
        m.record_count = draw(st.integers(min_value=0, max_value=2**64 - 1))
    if draw(maybe):
        m.bbox.CopyFrom(draw(bounding_boxes()))
    if draw(maybe):
        m.geohash = geohash.encode(m.location.latitude, m.location.longitude)
    if draw(maybe):
        m.admin_area, m.provider = draw(texts), draw(texts)
    if draw(maybe):
        m.ingested_at.FromDatetime(observed + draw(st.timedeltas(timedelta(0), timedelta(days=30))))
    if draw(maybe):
        m.validity.start.FromDatetime(observed)
        m.validity.end.FromDatetime(
            observed + draw(st.timedeltas(timedelta(microseconds=1), timedelta(days=7)))
        )
    if draw(maybe):
        m.entity_id = draw(entity_ids)
    if draw(maybe):
        m.lineage.request_id = draw(st.text(alphabet=string.hexdigits, max_size=32))
        m.lineage.parent_ids.extend(draw(st.lists(ulids, max_size=3)))
        for name in draw(st.lists(st.text(min_size=1, max_size=64), max_size=3)):
            step = m.lineage.steps.add(name=name, version=draw(st.text(max_size=32)))
            step.at.FromDatetime(observed)
    m.classification = draw(st.sampled_from(md.Classification.values()))
    m.labels.update(draw(st.dictionaries(label_keys, st.text(max_size=256), max_size=32)))
    return m


@given(valid_metadata())
@settings(deadline=None)
def test_the_strategy_yields_only_valid_metadata(m: md.Metadata) -> None:
    assert violations(m) == []


@given(valid_metadata())
def test_binary_round_trip(m: md.Metadata) -> None:
    data = m.SerializeToString(deterministic=True)
    back = md.Metadata.FromString(data)
    assert back == m
    assert back.SerializeToString(deterministic=True) == data


@given(valid_metadata(), st.booleans())
def test_json_round_trip(m: md.Metadata, proto_names: bool) -> None:
    text = json_format.MessageToJson(m, preserving_proto_field_name=proto_names)
    assert json_format.Parse(text, md.Metadata()) == m


@given(valid_metadata())
def test_name_to_metadata_to_name(m: md.Metadata) -> None:
    key = object_key(m)
    embedded = metadata_from_key(key)
    # What the name embeds equals the metadata it was made from...
    assert (embedded.id, embedded.data_type, embedded.source, embedded.format) == (
        m.id,
        m.data_type,
        m.source,
        m.format,
    )
    assert embedded.observed_at.seconds == m.observed_at.seconds
    assert embedded.geohash == geohash.encode(m.location.latitude, m.location.longitude, 5)
    # ...and names the same object again once the cell stands in for the point.
    min_lat, min_lon, max_lat, max_lon = geohash.decode_bbox(embedded.geohash)
    embedded.location.latitude, embedded.location.longitude = (min_lat + max_lat) / 2, (min_lon + max_lon) / 2
    assert object_key(embedded) == key
    assert parse_key(object_key(embedded)) == parse_key(key)


@given(
    valid_metadata(),
    st.sampled_from([events_pb2.DataStored, events_pb2.RecordIngested]),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
)
def test_kafka_headers_round_trip(
    m: md.Metadata, payload_type: type[events_pb2.DataStored], at: datetime, request_id: str
) -> None:
    payload = payload_type(event_id=m.id, metadata=m)
    headers = headers_for(
        payload,
        event_id=m.id,
        source=m.source,
        subject=m.id,
        extensions={"ce_requestid": request_id},
        time=at,
    )
    # As a Kafka client hands them over: (str, bytes) pairs.
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in headers)
    attributes, decoded = decode(parse_headers(headers), payload.SerializeToString())
    assert decoded == payload
    assert isinstance(decoded, payload_type)
    assert attributes.id == m.id
    assert attributes.subject == m.id
    assert attributes.source == f"/pantheon/{m.source}"
    assert attributes.type == EVENT_TYPES[payload.DESCRIPTOR.full_name]
    assert attributes.dataschema == f"proto:{payload.DESCRIPTOR.full_name}"
    assert attributes.time == at.replace(microsecond=at.microsecond // 1000 * 1000)
    assert attributes.extensions == {"ce_requestid": request_id}
