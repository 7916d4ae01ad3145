"""Object names: the public, versioned naming scheme of stored objects.

Naming scheme v1
================

Every object Pantheon stores is named::

    v1/<data_type>/<source>/<yyyy>/<mm>/<dd>/<hh>/<geohash5>/<yyyymmddThhmmssZ>_<id>.<ext>

for example::

    v1/sensor.temperature/vienna-sensors/2024/06/14/09/u2edk/20240614T093012Z_01J0BX5Q2S8R4T6V8W0Y2A4C6E.csv

- ``v1`` is the scheme version. A future scheme gets a new first segment, so
  names of both schemes can live side by side in one bucket and a reader can
  tell them apart without guessing.
- ``data_type`` is the registered, dotted data type (the metadata field of the
  same name; at most 64 characters matching
  ``(sensor|weather|imagery|report|hazard|infrastructure|simulation)(\\.[a-z][a-z0-9_]{0,30}){1,3}``).
- ``source`` is the sending system (``[a-z0-9][a-z0-9-]{1,62}``).
- ``yyyy/mm/dd/hh`` is the UTC year, month, day and hour of ``observed_at``
  (the event time, not the ingestion time), zero-padded.
- ``geohash5`` is the first five characters of the geohash of ``location``
  (a cell of roughly 5 x 5 km).
- ``yyyymmddThhmmssZ`` is ``observed_at`` in UTC, truncated to whole seconds;
  its date and hour always equal the directory segments.
- ``id`` is the item's ULID and makes the name unique.
- ``ext`` names the format: json, ndjson, csv, geojson, png, jpg or tif.

The order of the segments is the order of the questions people ask: what
kind of data, from whom, when, where. Listing ``v1/<data_type>/`` with the
delimiter ``/`` yields one common prefix per source; listing an hour prefix
yields one common prefix per geohash cell; and within a cell, names sort by
observation time. Parsing a name back (`parse_key`, `metadata_from_key`)
gives exactly the metadata it embeds; everything else travels as object
user metadata.

The parser is strict: any name that `object_key` could not have produced is
refused, so a stray or hand-made object never masquerades as data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.metadata import geohash
from pantheon.metadata.ulid import is_ulid

__all__ = [
    "EXTENSIONS",
    "FORMAT_BY_EXTENSION",
    "SCHEME",
    "ParsedKey",
    "hour_prefixes",
    "metadata_from_key",
    "object_key",
    "parse_key",
    "source_prefix",
]

#: The version segment every name of this scheme starts with.
SCHEME = "v1"

#: The file extension of each storable format.
EXTENSIONS: dict[md.Format.ValueType, str] = {
    md.FORMAT_JSON: "json",
    md.FORMAT_NDJSON: "ndjson",
    md.FORMAT_CSV: "csv",
    md.FORMAT_GEOJSON: "geojson",
    md.FORMAT_PNG: "png",
    md.FORMAT_JPEG: "jpg",
    md.FORMAT_TIFF: "tif",
}

#: The media type stored for each format.
MEDIA_TYPES: dict[md.Format.ValueType, str] = {
    md.FORMAT_JSON: "application/json",
    md.FORMAT_NDJSON: "application/x-ndjson",
    md.FORMAT_CSV: "text/csv",
    md.FORMAT_GEOJSON: "application/geo+json",
    md.FORMAT_PNG: "image/png",
    md.FORMAT_JPEG: "image/jpeg",
    md.FORMAT_TIFF: "image/tiff",
}

#: The format each extension stands for (the inverse of EXTENSIONS).
FORMAT_BY_EXTENSION: dict[str, md.Format.ValueType] = {ext: f for f, ext in EXTENSIONS.items()}

# These mirror the protovalidate rules in metadata.proto, so that a name only
# ever holds values the metadata standard accepts.
_DATA_TYPE = re.compile(
    r"(sensor|weather|imagery|report|hazard|infrastructure|simulation)(\.[a-z][a-z0-9_]{0,30}){1,3}"
)
_DATA_TYPE_MAX_LEN = 64
_SOURCE = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")

_GEOHASH_LEN = 5
_GEOHASH5 = re.compile(rf"[{re.escape(geohash.ALPHABET)}]{{{_GEOHASH_LEN}}}")
_YEAR = re.compile(r"[0-9]{4}")
_TWO_DIGITS = re.compile(r"[0-9]{2}")
_FILE = re.compile(
    r"(?P<date>[0-9]{8})T(?P<time>[0-9]{6})Z_(?P<id>[0-9A-HJKMNP-TV-Z]{26})\.(?P<ext>[a-z0-9]+)"
)
_SEGMENTS = 9
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class ParsedKey:
    """The metadata a v1 object name embeds."""

    scheme: str
    data_type: str
    source: str
    #: UTC, whole seconds.
    observed_at: datetime
    geohash5: str
    id: str
    format: md.Format.ValueType
    extension: str


def object_key(m: md.Metadata) -> str:
    """The v1 object name of the item `m` describes.

    Needs `id`, `data_type`, `source`, `observed_at`, `location` and `format`;
    raises ValueError naming the first one that is missing or invalid.
    """
    if not m.id:
        raise _missing("id")
    if not is_ulid(m.id):
        raise ValueError(f"metadata field 'id' is not a ULID: {m.id!r}")
    if not m.data_type:
        raise _missing("data_type")
    _check_data_type(m.data_type)
    if not m.source:
        raise _missing("source")
    _check_source(m.source)
    if not m.HasField("observed_at"):
        raise _missing("observed_at")
    observed_at = _timestamp_seconds(m.observed_at.seconds)
    if not m.HasField("location"):
        raise _missing("location")
    try:
        cell = geohash.encode(m.location.latitude, m.location.longitude, _GEOHASH_LEN)
    except ValueError as e:
        raise ValueError(f"metadata field 'location' is invalid: {e}") from None
    if m.format == md.FORMAT_UNSPECIFIED:
        raise _missing("format")
    extension = EXTENSIONS.get(m.format)
    if extension is None:
        raise ValueError(f"metadata field 'format' has no extension: {m.format}")
    return (
        f"{_hour_prefix(m.data_type, m.source, observed_at)}{cell}/"
        f"{_compact_timestamp(observed_at)}_{m.id}.{extension}"
    )


def parse_key(key: str) -> ParsedKey:
    """The metadata embedded in the v1 object name `key`.

    Raises ValueError for anything `object_key` could not have produced:
    another scheme version, a missing or extra segment, a value outside its
    pattern, an impossible date or hour, directory segments that disagree
    with the timestamp, an invalid ULID or an unknown extension.
    """
    segments = key.split("/")
    if len(segments) != _SEGMENTS:
        raise _bad(key, f"expected {_SEGMENTS} '/'-separated segments, got {len(segments)}")
    scheme, data_type, source, yyyy, mm, dd, hh, cell, filename = segments
    if scheme != SCHEME:
        raise _bad(key, f"unsupported scheme {scheme!r}")
    if not _valid_data_type(data_type):
        raise _bad(key, f"invalid data type {data_type!r}")
    if not _SOURCE.fullmatch(source):
        raise _bad(key, f"invalid source {source!r}")
    if not (_YEAR.fullmatch(yyyy) and all(_TWO_DIGITS.fullmatch(s) for s in (mm, dd, hh))):
        raise _bad(key, "date and hour segments must be yyyy/mm/dd/hh digits")
    if not _GEOHASH5.fullmatch(cell):
        raise _bad(key, f"invalid geohash cell {cell!r}")
    match = _FILE.fullmatch(filename)
    if match is None:
        raise _bad(key, f"file name {filename!r} is not <yyyymmddThhmmssZ>_<ulid>.<ext>")
    date, clock = match["date"], match["time"]
    try:
        observed_at = datetime(
            int(date[:4]),
            int(date[4:6]),
            int(date[6:]),
            int(clock[:2]),
            int(clock[2:4]),
            int(clock[4:]),
            tzinfo=UTC,
        )
    except ValueError as e:
        raise _bad(key, f"invalid timestamp {date}T{clock}Z: {e}") from None
    if (yyyy, mm, dd, hh) != (date[:4], date[4:6], date[6:], clock[:2]):
        raise _bad(key, "directory date and hour disagree with the file name's timestamp")
    if not is_ulid(match["id"]):
        raise _bad(key, f"invalid ULID {match['id']!r}")
    extension = match["ext"]
    format_ = FORMAT_BY_EXTENSION.get(extension)
    if format_ is None:
        raise _bad(key, f"unknown extension {extension!r}")
    return ParsedKey(
        scheme=scheme,
        data_type=data_type,
        source=source,
        observed_at=observed_at,
        geohash5=cell,
        id=match["id"],
        format=format_,
        extension=extension,
    )


def metadata_from_key(key: str) -> md.Metadata:
    """A partial Metadata holding what the v1 name `key` embeds.

    Sets `id`, `data_type`, `source`, `observed_at` (whole seconds), `format`
    and `geohash` (the five-character cell, not a full 12-character geohash);
    `location` stays unset because a cell is not a point. Raises ValueError
    like `parse_key`.
    """
    parsed = parse_key(key)
    m = md.Metadata(
        id=parsed.id,
        data_type=parsed.data_type,
        source=parsed.source,
        format=parsed.format,
        geohash=parsed.geohash5,
    )
    m.observed_at.seconds = (parsed.observed_at - _EPOCH) // timedelta(seconds=1)
    return m


def is_hour_prefix(prefix: str) -> bool:
    """Whether `prefix` is a ``v1/<data_type>/<source>/<yyyy>/<mm>/<dd>/<hh>/`` prefix
    (where a search page may end before it has listed anything under it)."""
    segments = prefix.split("/")
    if len(segments) != 8 or segments[-1]:
        return False
    scheme, data_type, source, yyyy, mm, dd, hh, _ = segments
    return (
        scheme == SCHEME
        and _valid_data_type(data_type)
        and bool(_SOURCE.fullmatch(source))
        and bool(_YEAR.fullmatch(yyyy))
        and all(_TWO_DIGITS.fullmatch(s) for s in (mm, dd, hh))
    )


def source_prefix(data_type: str) -> str:
    """``v1/<data_type>/``: listed with delimiter ``/``, one common prefix per source."""
    _check_data_type(data_type)
    return f"{SCHEME}/{data_type}/"


def hour_prefixes(data_type: str, source: str, after: datetime, before: datetime) -> list[str]:
    """Every ``v1/<data_type>/<source>/<yyyy>/<mm>/<dd>/<hh>/`` prefix whose hour
    intersects [`after`, `before`), newest hour first.

    `after` and `before` must be timezone-aware; `before` is exclusive, so a
    `before` on the hour does not include that hour. An empty or inverted
    window gives an empty list. The list has one entry per hour, so callers
    should bound the window they pass.
    """
    _check_data_type(data_type)
    _check_source(source)
    start, end = _as_utc(after, "after"), _as_utc(before, "before")
    if end <= start:
        return []
    first = start.replace(minute=0, second=0, microsecond=0)
    hour = end.replace(minute=0, second=0, microsecond=0)
    if hour == end:
        hour -= _HOUR
    prefixes = []
    # Stop on reaching the first hour rather than stepping past it, which
    # would overflow at the start of year 1.
    while True:
        prefixes.append(_hour_prefix(data_type, source, hour))
        if hour <= first:
            return prefixes
        hour -= _HOUR


# Formatted by hand because strftime's %Y does not zero-pad years before 1000
# on glibc, and every name must keep its fixed-width fields.
def _hour_prefix(data_type: str, source: str, t: datetime) -> str:
    return f"{SCHEME}/{data_type}/{source}/{t.year:04d}/{t.month:02d}/{t.day:02d}/{t.hour:02d}/"


def _compact_timestamp(t: datetime) -> str:
    return f"{t.year:04d}{t.month:02d}{t.day:02d}T{t.hour:02d}{t.minute:02d}{t.second:02d}Z"


def _timestamp_seconds(seconds: int) -> datetime:
    try:
        return _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"metadata field 'observed_at' is outside years 1-9999: {seconds} s") from None


def _as_utc(dt: datetime, name: str) -> datetime:
    # A naive time could be local or UTC; guessing would shift the window.
    if dt.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {dt.isoformat()}")
    return dt.astimezone(UTC)


def _valid_data_type(data_type: str) -> bool:
    return len(data_type) <= _DATA_TYPE_MAX_LEN and _DATA_TYPE.fullmatch(data_type) is not None


def _check_data_type(data_type: str) -> None:
    if not _valid_data_type(data_type):
        raise ValueError(f"invalid data_type {data_type!r}")


def _check_source(source: str) -> None:
    if not _SOURCE.fullmatch(source):
        raise ValueError(f"invalid source {source!r}")


def _missing(field: str) -> ValueError:
    return ValueError(f"metadata field {field!r} is not set")


def _bad(key: str, reason: str) -> ValueError:
    return ValueError(f"not a {SCHEME} object key: {key!r}: {reason}")
