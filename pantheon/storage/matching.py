"""Whether a key may match a search, and whether the object it names does.

A key's name embeds a time (whole seconds) and a geohash cell, enough to
rule it out before its index entry is read (key_time, cell_overlaps); match
decides with the exact metadata: an object by its time and location, a
record batch by its span and bounding box, answered once, in the newest
hour where span and window meet. How search uses them:
pantheon.storage.search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.errors import NotFound
from pantheon.metadata import geohash
from pantheon.metadata.naming import ParsedKey, parse_key
from pantheon.storage.manifests import PageEntries
from pantheon.storage.spans import batch_span, hour_of, ns, position


@dataclass(frozen=True)
class Window:
    """The search window [after, before) in nanoseconds."""

    after: int
    before: int

    @property
    def newest_hour(self) -> int:
        return hour_of(self.before - 1)


def key_time(parsed: ParsedKey) -> int:
    return ns(parsed.observed_at)  # whole seconds: the exact time is up to a second later


def _inside(box: md.BoundingBox, lat: float, lon: float) -> bool:
    return box.min_latitude <= lat <= box.max_latitude and box.min_longitude <= lon <= box.max_longitude


def _boxes_meet(box: md.BoundingBox, other: md.BoundingBox) -> bool:
    return not (
        other.max_latitude < box.min_latitude
        or other.min_latitude > box.max_latitude
        or other.max_longitude < box.min_longitude
        or other.min_longitude > box.max_longitude
    )


def cell_overlaps(box: md.BoundingBox, cell: str) -> bool:
    s, w, n, e = geohash.decode_bbox(cell)
    return not (
        n < box.min_latitude or s > box.max_latitude or e < box.min_longitude or w > box.max_longitude
    )


async def match(
    entries: PageEntries,
    visible: Callable[[md.Metadata], bool],
    req: pb.SearchObjectsRequest,
    window: Window,
    key: str,
) -> pb.StatObjectResponse | None:
    """The object at `key` (an object's key or a batch's position) if it matches, else None."""
    parsed = parse_key(key)
    try:
        found = await entries.object_info(key, parsed.id)
    except NotFound:
        return None  # stored but not yet indexed: not visible yet
    meta = found.metadata
    if not visible(meta):
        return None  # not the caller's to see
    span = batch_span(meta)
    if span is None:
        if key != found.object.key:
            return None  # a stray object under a bound id
        if not window.after <= meta.observed_at.ToNanoseconds() < window.before:
            return None
        loc = meta.location
        if req.HasField("bbox") and not _inside(req.bbox, loc.latitude, loc.longitude):
            return None
        return found
    # A record batch: its records' span and bounding box.
    hour = hour_of(key_time(parsed))
    start, end = span
    if key != position(found.object.key, hour) or not (start < window.before and end > window.after):
        return None
    if req.HasField("bbox"):
        box = meta.bbox
        if not meta.HasField("bbox"):
            point = meta.location
            box = md.BoundingBox(
                min_latitude=point.latitude,
                max_latitude=point.latitude,
                min_longitude=point.longitude,
                max_longitude=point.longitude,
            )
        if not _boxes_meet(req.bbox, box):
            return None
    # Answered in the newest hour where span and window meet, from its
    # span entries; elsewhere only by its own key if it was indexed
    # before there were any.
    newest = hour_of(min(end, window.before) - 1)
    if hour != newest and (key != found.object.key or await entries.has_spans(found)):
        return None
    return found
