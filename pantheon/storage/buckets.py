"""Which bucket holds which data.

Buckets group data by the *domain* of its data type: the first dotted segment
of a registered data type (`sensor.air_quality` -> `sensor`). A handful of
long-lived buckets keeps bucket policies and lifecycle rules manageable,
while object names (see pantheon.metadata.naming) carry the finer metadata.
"""

from __future__ import annotations

BUCKET_PREFIX = "pantheon-"

#: The data-type domains Pantheon stores. Adding a domain adds a bucket; the
#: dev stack creates one bucket per domain and grants the storage key access
#: to exactly these.
DOMAINS: tuple[str, ...] = (
    "sensor",
    "weather",
    "imagery",
    "report",
    "hazard",
    "infrastructure",
    "simulation",
)

#: Holds idempotency records (one small object per idempotency key).
INDEX_BUCKET = BUCKET_PREFIX + "index"


def bucket_for_domain(domain: str) -> str:
    """The bucket that stores data whose data type starts with `domain`."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown data-type domain {domain!r}")
    return BUCKET_PREFIX + domain


def all_buckets() -> tuple[str, ...]:
    """Every bucket the storage service reads or writes, index included."""
    return (*(bucket_for_domain(d) for d in DOMAINS), INDEX_BUCKET)
