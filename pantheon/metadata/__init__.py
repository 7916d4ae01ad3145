"""Identity, location and naming of stored items.

- `pantheon.metadata.ulid`: time-sortable ids (ULIDs), random or derived from
  an idempotency key.
- `pantheon.metadata.geohash`: points to grid cells and boxes to the cells
  covering them.
- `pantheon.metadata.naming`: naming scheme v1, which turns a `Metadata`
  message into an object name and back (see that module for the scheme).
"""

from __future__ import annotations

from pantheon.metadata import geohash
from pantheon.metadata.naming import (
    EXTENSIONS,
    FORMAT_BY_EXTENSION,
    SCHEME,
    ParsedKey,
    hour_prefixes,
    metadata_from_key,
    object_key,
    parse_key,
    source_prefix,
)
from pantheon.metadata.ulid import is_ulid, new_ulid, ulid_from_key, ulid_time_ms

__all__ = [
    "EXTENSIONS",
    "FORMAT_BY_EXTENSION",
    "SCHEME",
    "ParsedKey",
    "geohash",
    "hour_prefixes",
    "is_ulid",
    "metadata_from_key",
    "new_ulid",
    "object_key",
    "parse_key",
    "source_prefix",
    "ulid_from_key",
    "ulid_time_ms",
]
