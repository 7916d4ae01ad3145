"""The protovalidate rules of the metadata standard, one violating example each."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from buf.validate import validate_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as ingest
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as storage

from pantheon.storage.buckets import DOMAINS
from pantheon.validation import violations


def valid_metadata() -> md.Metadata:
    m = md.Metadata(
        data_type="sensor.temperature",
        source="vienna-sensors",
        entity_id="vie-temp-0042",
        location=md.GeoPoint(latitude=48.2082, longitude=16.3738, altitude_m=171.0),
        format=md.FORMAT_CSV,
        media_type="text/csv",
        classification=md.CLASSIFICATION_PUBLIC,
        labels={"district": "innere-stadt"},
    )
    m.observed_at.FromDatetime(datetime.now(UTC) - timedelta(minutes=1))
    return m


def test_valid_metadata_passes() -> None:
    assert violations(valid_metadata()) == []


def test_small_clock_skew_is_tolerated() -> None:
    m = valid_metadata()
    m.observed_at.FromDatetime(datetime.now(UTC) + timedelta(minutes=2))
    assert violations(m) == []


def _set_future(m: md.Metadata) -> None:
    m.observed_at.FromDatetime(datetime.now(UTC) + timedelta(hours=1))


def _set_bbox_reversed(m: md.Metadata) -> None:
    m.bbox.CopyFrom(
        md.BoundingBox(min_latitude=48.3, min_longitude=16.2, max_latitude=48.1, max_longitude=16.5)
    )


def _set_validity_reversed(m: md.Metadata) -> None:
    m.validity.start.FromDatetime(datetime(2026, 1, 2, tzinfo=UTC))
    m.validity.end.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))


# (name, mutation, field path expected in the violation, rule id)
CASES: list[tuple[str, Callable[[md.Metadata], object], str, str]] = [
    (
        "latitude above 90",
        lambda m: setattr(m.location, "latitude", 90.5),
        "location.latitude",
        "double.gte_lte",
    ),
    (
        "latitude below -90",
        lambda m: setattr(m.location, "latitude", -91),
        "location.latitude",
        "double.gte_lte",
    ),
    (
        "longitude above 180",
        lambda m: setattr(m.location, "longitude", 181),
        "location.longitude",
        "double.gte_lte",
    ),
    (
        "altitude absurd",
        lambda m: setattr(m.location, "altitude_m", 1e7),
        "location.altitude_m",
        "double.gte_lte",
    ),
    ("location missing", lambda m: m.ClearField("location"), "location", "required"),
    ("observed_at missing", lambda m: m.ClearField("observed_at"), "observed_at", "required"),
    ("observed_at in the future", _set_future, "observed_at", "observed_at.not_future"),
    (
        "observed_at before 1970",
        lambda m: setattr(m.observed_at, "seconds", -5),
        "observed_at",
        "timestamp.gt",
    ),
    ("data type missing", lambda m: m.ClearField("data_type"), "data_type", "required"),
    (
        "data type without domain",
        lambda m: setattr(m, "data_type", "temperature"),
        "data_type",
        "string.pattern",
    ),
    (
        "data type of unknown domain",
        lambda m: setattr(m, "data_type", "music.jazz"),
        "data_type",
        "string.pattern",
    ),
    ("data type upper case", lambda m: setattr(m, "data_type", "sensor.Temp"), "data_type", "string.pattern"),
    ("source missing", lambda m: m.ClearField("source"), "source", "required"),
    ("source with spaces", lambda m: setattr(m, "source", "vienna sensors"), "source", "string.pattern"),
    ("id not a ULID", lambda m: setattr(m, "id", "not-a-ulid"), "id", "string.pattern"),
    (
        "idempotency key too long",
        lambda m: setattr(m, "idempotency_key", "k" * 129),
        "idempotency_key",
        "string.pattern",
    ),
    ("sha256 not hex", lambda m: setattr(m, "sha256", "xyz"), "sha256", "string.pattern"),
    ("size over 5 TiB", lambda m: setattr(m, "size_bytes", 6 * 2**40), "size_bytes", "uint64.lte"),
    ("format not defined", lambda m: setattr(m, "format", 99), "format", "enum.defined_only"),
    ("media type malformed", lambda m: setattr(m, "media_type", "csv"), "media_type", "string.pattern"),
    ("schema ref not a URI", lambda m: setattr(m, "schema_ref", "not a uri"), "schema_ref", "string.uri"),
    ("geohash with bad letter", lambda m: setattr(m, "geohash", "u2eda"), "geohash", "string.pattern"),
    ("admin area too long", lambda m: setattr(m, "admin_area", "a" * 129), "admin_area", "string.max_len"),
    ("entity id with slash", lambda m: setattr(m, "entity_id", "a/b"), "entity_id", "string.pattern"),
    ("provider too long", lambda m: setattr(m, "provider", "p" * 129), "provider", "string.max_len"),
    (
        "classification not defined",
        lambda m: setattr(m, "classification", 42),
        "classification",
        "enum.defined_only",
    ),
    ("label key upper case", lambda m: m.labels.update({"BAD": "x"}), "labels['BAD']", "string.pattern"),
    ("label value too long", lambda m: m.labels.update({"k": "v" * 257}), "labels['k']", "string.max_len"),
    (
        "too many labels",
        lambda m: m.labels.update({f"k{i}": "v" for i in range(33)}),
        "labels",
        "map.max_pairs",
    ),
    ("bbox reversed", _set_bbox_reversed, "bbox", "bbox.ordered"),
    ("validity reversed", _set_validity_reversed, "validity", "time_window.ordered"),
    (
        "lineage parent not a ULID",
        lambda m: m.lineage.parent_ids.append("nope"),
        "lineage.parent_ids[0]",
        "string.pattern",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "field", "rule"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_rejects_its_violation(
    name: str, mutate: Callable[[md.Metadata], object], field: str, rule: str
) -> None:
    m = valid_metadata()
    mutate(m)
    found = {(v.field, v.rule_id) for v in violations(m)}
    assert (field, rule) in found, f"{name}: got {found}"


def test_record_batch_items_are_validated_one_by_one() -> None:
    """A bad record must not reject the whole batch message: items are ignored
    by the message-level check and validated individually by ingestion."""
    bad = ingest.Record(entity_id="!")
    batch = ingest.IngestRecordsRequest(
        data_type="sensor.temperature", source="vienna-sensors", records=[bad]
    )
    assert violations(batch) == []
    fields = {v.field for v in violations(bad, "records[0]")}
    assert fields == {"records[0].entity_id", "records[0].observed_at", "records[0].location"}


def test_only_a_batchs_records_are_left_to_be_checked_one_by_one() -> None:
    """`items.ignore = IGNORE_ALWAYS` also exempts a field's items from the
    checks no rule states (validation.py), which is right only where every
    path checks the items itself (records: triage). A new such field must
    get the same, then be added here."""
    found = set()
    for module in (ingest, md, storage):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            for f in message.fields:
                rules = f.GetOptions().Extensions[validate_pb2.field]
                if rules.repeated.items.ignore == validate_pb2.IGNORE_ALWAYS:
                    found.add(f.full_name)
    assert found == {"pantheon_api.ingest.v1.IngestRecordsRequest.records"}


def test_record_batch_items_with_non_finite_values_are_validated_one_by_one() -> None:
    """The same for values no proto rule can state (NaN, out-of-range times):
    the batch message passes, each record reports its own, at any depth."""
    bad = ingest.Record(entity_id="e-1", location=md.GeoPoint(latitude=48.2, longitude=16.3))
    bad.observed_at.seconds = 253402300800  # year 10000
    bad.payload.update({"ok": 1.5, "pm10": float("nan"), "deep": {"list": [1, float("-inf")]}})
    batch = ingest.IngestRecordsRequest(
        data_type="sensor.temperature", source="vienna-sensors", records=[bad]
    )
    assert violations(batch) == []
    found = {(v.field, v.rule_id) for v in violations(bad, "records[0]")}
    assert {f for f, rule in found if rule == "value.well_formed"} == {
        "records[0].observed_at",
        "records[0].payload.fields['pm10']",
        "records[0].payload.fields['deep'].struct_value.fields['list'].list_value.values[1]",
    }


def test_batch_limits() -> None:
    empty = ingest.IngestRecordsRequest(data_type="sensor.temperature", source="vienna-sensors")
    assert [(v.field, v.rule_id) for v in violations(empty)] == [("records", "repeated.min_items")]
    many = ingest.IngestRecordsRequest(
        data_type="sensor.temperature", source="vienna-sensors", records=[ingest.Record()] * 10001
    )
    assert ("records", "repeated.max_items") in {(v.field, v.rule_id) for v in violations(many)}


def test_object_stream_chunks_are_bounded() -> None:
    big = ingest.IngestObjectRequest(chunk=b"x" * (4 * 2**20 + 1))
    assert [(v.field, v.rule_id) for v in violations(big)] == [("chunk", "bytes.max_len")]
    assert [(v.field, v.rule_id) for v in violations(ingest.IngestObjectRequest())] == [("part", "required")]


def test_search_time_range_is_bounded() -> None:
    req = storage.SearchObjectsRequest(data_type="sensor.temperature")
    req.observed_after.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    req.observed_before.FromDatetime(datetime(2026, 3, 1, tzinfo=UTC))
    assert ("", "search.time_range") in {(v.field, v.rule_id) for v in violations(req)}
    req.observed_before.FromDatetime(datetime(2026, 1, 2, tzinfo=UTC))
    assert violations(req) == []


def test_data_type_domains_match_buckets() -> None:
    """The proto's data-type pattern and the bucket domains must agree, or a
    valid data type would have no bucket."""
    for domain in DOMAINS:
        m = valid_metadata()
        m.data_type = f"{domain}.anything"
        assert violations(m) == [], domain


def test_values_a_rule_cannot_evaluate_are_a_violation_not_a_crash() -> None:
    req = storage.SearchObjectsRequest(data_type="sensor.temperature")
    req.observed_after.FromDatetime(datetime(207, 5, 13, tzinfo=UTC))
    req.observed_before.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    assert [v.rule_id for v in violations(req)] == ["evaluation_failed"]
