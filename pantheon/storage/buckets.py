"""Which bucket holds which data.

Buckets group data by the *domain* of its data type: the first dotted segment
of a registered data type (`sensor.air_quality` -> `sensor`). A handful of
long-lived buckets keeps bucket policies and lifecycle rules manageable,
while object names (see pantheon.metadata.naming) carry the finer metadata.

RESTRICTED data of a domain has a bucket of its own,
`pantheon-<domain>-restricted`, so that a key scoped to `pantheon-<domain>`
(a downstream reader's, see `pantheon s3-reader`) can neither read nor list
it: object names embed source, time and place, so even a listing would leak.
`bucket_for` is the one place that decides; the index records each object's
bucket, so reads by id need no rule.
"""

from __future__ import annotations

from pantheon.metadata.access import is_restricted

BUCKET_PREFIX = "pantheon-"
RESTRICTED_SUFFIX = "-restricted"

#: The data-type domains Pantheon stores. Adding a domain adds two buckets
#: (public and restricted); the dev stack creates them and grants the storage
#: key access to exactly these.
DOMAINS: tuple[str, ...] = (
    "sensor",
    "weather",
    "imagery",
    "report",
    "hazard",
    "infrastructure",
    "simulation",
)

#: Holds idempotency records (one small object per idempotency key) and the
#: full metadata of every object, RESTRICTED ones included.
INDEX_BUCKET = BUCKET_PREFIX + "index"


def domain_of(data_type: str) -> str:
    """`sensor.air_quality` -> `sensor`."""
    return data_type.split(".", 1)[0]


def bucket_for_domain(domain: str) -> str:
    """The bucket that stores the PUBLIC and INTERNAL data of `domain`."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown data-type domain {domain!r}")
    return BUCKET_PREFIX + domain


def restricted_bucket_for_domain(domain: str) -> str:
    """The bucket that stores the RESTRICTED data of `domain`."""
    return bucket_for_domain(domain) + RESTRICTED_SUFFIX


def bucket_for(data_type: str, classification: int) -> str:
    """The bucket an object of `data_type` and `classification` is stored in."""
    domain = domain_of(data_type)
    if is_restricted(classification):
        return restricted_bucket_for_domain(domain)
    return bucket_for_domain(domain)


def buckets_to_search(data_type: str, *, restricted: bool) -> tuple[str, ...]:
    """The buckets that may hold objects of `data_type` a caller may see.

    Without the restricted grant only the public bucket: the restricted one
    is never listed for such a caller.
    """
    domain = domain_of(data_type)
    if restricted:
        return (bucket_for_domain(domain), restricted_bucket_for_domain(domain))
    return (bucket_for_domain(domain),)


def all_buckets() -> tuple[str, ...]:
    """Every bucket the storage service reads or writes, index included."""
    return (
        *(bucket_for_domain(d) for d in DOMAINS),
        *(restricted_bucket_for_domain(d) for d in DOMAINS),
        INDEX_BUCKET,
    )
