"""The `spans/` entries of record batches in the index bucket: which, and named how.

`spans/` lets search find a record batch by any hour its records cover. A
batch is filed under its first record's place and earliest second, but its
span (`observed_at` to `validity.end`) may run over many hours. Its
*position* in an hour H is the v1 key it would have if it had been observed
at max(its start, H): the same data type, source, cell, id and extension, so
positions sort among the keys of hour H, and in its first hour the position
is its own key. The entries are named `spans/<kind>/<position>` (and hold
the object key); they are written before the id is bound, so a batch that
is visible has them.

Search (pantheon.storage.search, deciding in pantheon.storage.matching)
reads them; the index (pantheon.storage.index) writes them when it binds a
batch's id.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.metadata.naming import SCHEME, parse_key

#: Span entries of one batch: the hour its span ends in, and each earlier hour.
SPAN_END = "spans/end/"
SPAN_COVER = "spans/cover/"
#: A batch spanning more hours than SPAN_HOURS_MAX gets one entry here instead
#: of an entry per earlier hour; search lists those ending after its window.
SPAN_LONG = "spans/long/"
#: 31 days, the longest search window.
SPAN_HOURS_MAX = 744
HOUR_NS = 3600 * 10**9
_END_DIGITS = 21  # nanoseconds up to year 9999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns(t: datetime) -> int:
    """`t` (timezone-aware) in nanoseconds since the epoch."""
    return (t - _EPOCH) // timedelta(microseconds=1) * 1000


def hour_of(t_ns: int) -> int:
    """The start of the hour holding `t_ns`, in nanoseconds."""
    return t_ns - t_ns % HOUR_NS


def batch_span(meta: md.Metadata) -> tuple[int, int] | None:
    """[start, end) in nanoseconds of a record batch's records; None for any other object.

    A batch (`record_count` set, which only record batches are given) starts
    at `observed_at` (its earliest record, the time its key holds) and ends
    at `validity.end` (just after its latest record).
    """
    if not meta.record_count or not meta.validity.HasField("end"):
        return None
    start = meta.observed_at.ToNanoseconds()
    return start, max(meta.validity.end.ToNanoseconds(), start + 1)


def position(key: str, hour_ns: int) -> str:
    """The place in the hour starting at `hour_ns` of the batch stored under `key`:
    `key` itself in the batch's first hour, else its name as if observed at the hour's start.
    """
    p = parse_key(key)
    t = max(p.observed_at, _EPOCH + timedelta(microseconds=hour_ns // 1000))
    return (
        f"{SCHEME}/{p.data_type}/{p.source}/{t.year:04d}/{t.month:02d}/{t.day:02d}/{t.hour:02d}/"
        f"{p.geohash5}/{t.year:04d}{t.month:02d}{t.day:02d}T{t.hour:02d}{t.minute:02d}{t.second:02d}Z_"
        f"{p.id}.{p.extension}"
    )


def long_prefix(data_type: str, source: str) -> str:
    return f"{SPAN_LONG}{SCHEME}/{data_type}/{source}/"


def long_entry(key: str, end_ns: int) -> str:
    p = parse_key(key)
    tail = key[len(f"{SCHEME}/{p.data_type}/{p.source}/") :]
    return f"{long_prefix(p.data_type, p.source)}{end_ns:0{_END_DIGITS}d}/{tail}"


def parse_long_entry(name: str, prefix: str) -> tuple[int, str]:
    """(end in nanoseconds, object key) of a `spans/long/` entry listed under `prefix`."""
    end, _, tail = name[len(prefix) :].partition("/")
    return int(end), f"{SCHEME}/{prefix[len(SPAN_LONG) + len(SCHEME) + 1 :]}{tail}"


def span_entries(info: pb.StatObjectResponse) -> list[str]:
    """The `spans/` entries of a stored object (none unless it is a record batch)."""
    span = batch_span(info.metadata)
    if span is None:
        return []
    key = info.object.key
    first, last = hour_of(span[0]), hour_of(span[1] - 1)
    entries = [SPAN_END + position(key, last)]
    if (last - first) // HOUR_NS + 1 > SPAN_HOURS_MAX:
        entries.append(long_entry(key, span[1]))
    else:
        entries += [SPAN_COVER + position(key, hour) for hour in range(first, last, HOUR_NS)]
    return entries
