"""Naming scheme v1: building, parsing and listing object names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pantheon_api.metadata.v1 import metadata_pb2 as md

import pantheon.metadata
from pantheon.metadata import geohash, naming
from pantheon.metadata.naming import (
    EXTENSIONS,
    FORMAT_BY_EXTENSION,
    hour_prefixes,
    metadata_from_key,
    object_key,
    parse_key,
    source_prefix,
)
from pantheon.metadata.ulid import new_ulid

ULID = "01J0BX5Q2S8R4T6V8W0Y2A4C6E"
KEY = f"v1/sensor.temperature/vienna-sensors/2024/06/14/09/u2edk/20240614T093012Z_{ULID}.csv"


def vienna() -> md.Metadata:
    m = md.Metadata(
        id=ULID,
        data_type="sensor.temperature",
        source="vienna-sensors",
        location=md.GeoPoint(latitude=48.2082, longitude=16.3738),
        format=md.FORMAT_CSV,
    )
    m.observed_at.FromDatetime(datetime(2024, 6, 14, 9, 30, 12, 750_000, tzinfo=UTC))
    return m


def test_object_key_of_known_metadata() -> None:
    assert object_key(vienna()) == KEY


def test_parse_known_key() -> None:
    parsed = parse_key(KEY)
    assert parsed.scheme == "v1"
    assert parsed.data_type == "sensor.temperature"
    assert parsed.source == "vienna-sensors"
    assert parsed.observed_at == datetime(2024, 6, 14, 9, 30, 12, tzinfo=UTC)
    assert parsed.geohash5 == "u2edk"
    assert parsed.id == ULID
    assert parsed.format == md.FORMAT_CSV
    assert parsed.extension == "csv"


def test_metadata_from_key_gives_the_embedded_fields() -> None:
    m = metadata_from_key(KEY)
    assert m.id == ULID
    assert m.data_type == "sensor.temperature"
    assert m.source == "vienna-sensors"
    assert m.observed_at.ToDatetime(tzinfo=UTC) == datetime(2024, 6, 14, 9, 30, 12, tzinfo=UTC)
    assert m.format == md.FORMAT_CSV
    assert m.geohash == "u2edk"
    assert not m.HasField("location")


def test_scheme_example_in_docstring_parses() -> None:
    doc = naming.__doc__ or ""
    example = next(line.strip() for line in doc.splitlines() if line.strip().startswith("v1/sensor"))
    assert parse_key(example).geohash5 == "u2edk"


def test_package_exports_resolve() -> None:
    exported = set(pantheon.metadata.__all__)
    assert {"object_key", "parse_key", "metadata_from_key", "hour_prefixes", "new_ulid"} <= exported
    assert all(hasattr(pantheon.metadata, name) for name in exported)


def test_every_format_has_a_distinct_extension() -> None:
    storable = set(md.Format.values()) - {md.FORMAT_UNSPECIFIED}
    assert set(EXTENSIONS) == storable
    assert {FORMAT_BY_EXTENSION[ext] for ext in EXTENSIONS.values()} == storable
    assert EXTENSIONS[md.FORMAT_JPEG] == "jpg"
    assert EXTENSIONS[md.FORMAT_TIFF] == "tif"


@pytest.mark.parametrize("field", ["id", "data_type", "source", "observed_at", "location", "format"])
def test_object_key_names_the_missing_field(field: str) -> None:
    m = vienna()
    m.ClearField(field)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=field):
        object_key(m)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "not-a-ulid"),
        ("data_type", "Sensor.temperature"),
        ("data_type", "sensor"),
        ("source", "Vienna"),
        ("source", "../etc"),
    ],
)
def test_object_key_refuses_invalid_values(field: str, value: str) -> None:
    m = vienna()
    setattr(m, field, value)
    with pytest.raises(ValueError, match=field):
        object_key(m)


def test_object_key_refuses_invalid_location() -> None:
    m = vienna()
    m.location.latitude = 91.0
    with pytest.raises(ValueError, match="location"):
        object_key(m)


def test_object_key_pads_early_years() -> None:
    m = vienna()
    m.observed_at.FromDatetime(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC))
    key = object_key(m)
    assert "/0999/01/02/03/" in key
    assert "/09990102T030405Z_" in key
    assert parse_key(key).observed_at == datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)


def replace(old: str, new: str) -> str:
    assert old in KEY
    return KEY.replace(old, new)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(replace("v1/", "v2/"), id="other-scheme"),
        pytest.param(replace("v1/", "V1/"), id="upper-case-scheme"),
        pytest.param("/" + KEY, id="leading-slash"),
        pytest.param(KEY + "/", id="trailing-slash"),
        pytest.param(KEY + "\n", id="trailing-newline"),
        pytest.param("", id="empty"),
        pytest.param(replace("/u2edk/", "/"), id="missing-geohash"),
        pytest.param(replace("/vienna-sensors/", "/"), id="missing-source"),
        pytest.param(replace("/09/", "/09/x/"), id="extra-segment"),
        pytest.param(replace("sensor.temperature", "Sensor.temperature"), id="upper-data-type"),
        pytest.param(replace("sensor.temperature", "sensor"), id="data-type-without-name"),
        pytest.param(replace("sensor.temperature", "traffic.count"), id="unknown-domain"),
        pytest.param(replace("sensor.temperature", "sensor." + "a" * 60), id="data-type-too-long"),
        pytest.param(replace("vienna-sensors", ".."), id="dot-dot-source"),
        pytest.param(replace("vienna-sensors", "vienna_sensors"), id="underscore-source"),
        pytest.param(replace("sensor.temperature/", "sensor.temperature/../"), id="traversal"),
        pytest.param(replace("/u2edk/", "/../"), id="dot-dot-geohash"),
        pytest.param(replace("u2edk", "u2eda"), id="geohash-letter-a"),
        pytest.param(replace("u2edk", "U2EDK"), id="upper-geohash"),
        pytest.param(replace("u2edk", "u2ed"), id="short-geohash"),
        pytest.param(
            replace("2024/06/14/09/u2edk/20240614T", "2024/02/30/09/u2edk/20240230T"),
            id="february-30",
        ),
        pytest.param(
            replace("2024/06/14/09/u2edk/20240614T09", "2024/13/14/09/u2edk/20241314T09"),
            id="month-13",
        ),
        pytest.param(replace("/09/u2edk/20240614T093012Z", "/24/u2edk/20240614T243012Z"), id="hour-24"),
        pytest.param(replace("T093012Z", "T096012Z"), id="minute-60"),
        pytest.param(replace("/06/14/", "/6/14/"), id="unpadded-month"),
        pytest.param(replace("2024/06/14/09", "2024/06/15/09"), id="day-disagrees"),
        pytest.param(replace("/09/u2edk/", "/10/u2edk/"), id="hour-disagrees"),
        pytest.param(replace("2024/06", "\uff12\uff10\uff12\uff14/06"), id="unicode-digits"),
        pytest.param(replace("20240614T093012Z", "20240614093012Z"), id="timestamp-without-t"),
        pytest.param(replace("20240614T093012Z", "20240614T093012"), id="timestamp-without-z"),
        pytest.param(replace(ULID, ULID[:-1]), id="short-ulid"),
        pytest.param(replace(ULID, ULID[:-1] + "U"), id="ulid-with-u"),
        pytest.param(replace(ULID, ULID.lower()), id="lower-case-ulid"),
        pytest.param(replace(ULID, "8" + ULID[1:]), id="ulid-overflow"),
        pytest.param(replace(".csv", ".txt"), id="unknown-extension"),
        pytest.param(replace(".csv", ".jpeg"), id="jpeg-extension"),
        pytest.param(replace(".csv", ".CSV"), id="upper-extension"),
        pytest.param(replace(".csv", ".csv.gz"), id="double-extension"),
        pytest.param(replace(".csv", ""), id="no-extension"),
    ],
)
def test_malformed_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        parse_key(key)
    with pytest.raises(ValueError):
        metadata_from_key(key)


def test_source_prefix() -> None:
    assert source_prefix("imagery.uav") == "v1/imagery.uav/"
    assert KEY.startswith(source_prefix("sensor.temperature"))
    with pytest.raises(ValueError):
        source_prefix("imagery")


def prefix(day: str, hour: str) -> str:
    return f"v1/sensor.temperature/vienna-sensors/{day}/{hour}/"


def test_hour_prefixes_across_a_month_boundary_newest_first() -> None:
    after = datetime(2024, 3, 31, 22, 30, tzinfo=UTC)
    before = datetime(2024, 4, 1, 1, 15, tzinfo=UTC)
    assert hour_prefixes("sensor.temperature", "vienna-sensors", after, before) == [
        prefix("2024/04/01", "01"),
        prefix("2024/04/01", "00"),
        prefix("2024/03/31", "23"),
        prefix("2024/03/31", "22"),
    ]


def test_hour_prefixes_across_a_year_boundary() -> None:
    after = datetime(2023, 12, 31, 23, 0, tzinfo=UTC)
    before = datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert hour_prefixes("sensor.temperature", "vienna-sensors", after, before) == [
        prefix("2024/01/01", "00"),
        prefix("2023/12/31", "23"),
    ]


def test_hour_prefixes_before_is_exclusive() -> None:
    after = datetime(2024, 6, 14, 9, 0, tzinfo=UTC)
    before = datetime(2024, 6, 14, 11, 0, tzinfo=UTC)
    assert hour_prefixes("sensor.temperature", "vienna-sensors", after, before) == [
        prefix("2024/06/14", "10"),
        prefix("2024/06/14", "09"),
    ]
    just_after = before + timedelta(microseconds=1)
    assert hour_prefixes("sensor.temperature", "vienna-sensors", after, just_after)[0] == prefix(
        "2024/06/14", "11"
    )


def test_hour_prefixes_of_a_window_inside_one_hour() -> None:
    after = datetime(2024, 6, 14, 9, 10, tzinfo=UTC)
    before = datetime(2024, 6, 14, 9, 20, tzinfo=UTC)
    assert hour_prefixes("sensor.temperature", "vienna-sensors", after, before) == [
        prefix("2024/06/14", "09")
    ]


def test_hour_prefixes_of_an_empty_window() -> None:
    t = datetime(2024, 6, 14, 9, 10, tzinfo=UTC)
    assert hour_prefixes("sensor.temperature", "vienna-sensors", t, t) == []
    assert hour_prefixes("sensor.temperature", "vienna-sensors", t, t - timedelta(hours=3)) == []


def test_hour_prefixes_use_utc() -> None:
    vienna_summer = timezone(timedelta(hours=2))
    after = datetime(2024, 6, 14, 0, 30, tzinfo=vienna_summer)
    before = datetime(2024, 6, 14, 1, 30, tzinfo=vienna_summer)
    assert hour_prefixes("sensor.temperature", "vienna-sensors", after, before) == [
        prefix("2024/06/13", "23"),
        prefix("2024/06/13", "22"),
    ]


def test_hour_prefixes_refuse_naive_times_and_bad_names() -> None:
    naive = datetime(2024, 6, 14, 9, 0)
    aware = naive.replace(tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone"):
        hour_prefixes("sensor.temperature", "vienna-sensors", naive, aware)
    with pytest.raises(ValueError, match="timezone"):
        hour_prefixes("sensor.temperature", "vienna-sensors", aware, naive)
    with pytest.raises(ValueError):
        hour_prefixes("sensor", "vienna-sensors", aware, aware + timedelta(hours=1))
    with pytest.raises(ValueError):
        hour_prefixes("sensor.temperature", "..", aware, aware + timedelta(hours=1))


data_types = st.from_regex(
    r"(sensor|weather|imagery|report|hazard|infrastructure|simulation)(\.[a-z][a-z0-9_]{0,30}){1,3}",
    fullmatch=True,
).filter(lambda s: len(s) <= 64)
sources = st.from_regex(r"[a-z0-9][a-z0-9-]{1,62}", fullmatch=True)
observed = st.datetimes(
    min_value=datetime(1970, 1, 1, 0, 0, 1),
    max_value=datetime(9999, 12, 31, 23, 59, 59),
    timezones=st.just(UTC),
)
ulids = st.builds(
    new_ulid,
    st.integers(min_value=0, max_value=2**48 - 1),
    st.binary(min_size=10, max_size=10),
)


@st.composite
def metadata(draw: st.DrawFn) -> md.Metadata:
    m = md.Metadata(
        id=draw(ulids),
        data_type=draw(data_types),
        source=draw(sources),
        location=md.GeoPoint(
            latitude=draw(st.floats(min_value=-90, max_value=90)),
            longitude=draw(st.floats(min_value=-180, max_value=180)),
        ),
        format=draw(st.sampled_from(sorted(EXTENSIONS))),
    )
    m.observed_at.FromDatetime(draw(observed))
    return m


@given(metadata())
def test_name_round_trips(m: md.Metadata) -> None:
    key = object_key(m)
    parsed = parse_key(key)
    observed_at = m.observed_at.ToDatetime(tzinfo=UTC).replace(microsecond=0)
    assert parsed.scheme == "v1"
    assert parsed.data_type == m.data_type
    assert parsed.source == m.source
    assert parsed.observed_at == observed_at
    assert parsed.geohash5 == geohash.encode(m.location.latitude, m.location.longitude, 5)
    assert parsed.id == m.id
    assert parsed.format == m.format
    assert parsed.extension == EXTENSIONS[m.format]

    back = metadata_from_key(key)
    assert (back.id, back.data_type, back.source, back.format) == (
        m.id,
        m.data_type,
        m.source,
        m.format,
    )
    assert back.observed_at.ToDatetime(tzinfo=UTC) == observed_at
    assert back.geohash == parsed.geohash5

    # The name lies under its source prefix and under the prefix of its hour.
    assert key.startswith(source_prefix(m.data_type) + m.source + "/")
    hours = hour_prefixes(m.data_type, m.source, observed_at, observed_at + timedelta(seconds=1))
    assert len(hours) == 1
    assert key.startswith(hours[0])
