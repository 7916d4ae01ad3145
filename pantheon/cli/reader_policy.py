"""The policy of a read-only MinIO key for a downstream reader (pure: no MinIO).

What `pantheon s3-reader create` (pantheon.cli.s3_reader) grants: the
buckets, and the object-name prefixes within them, that a reader's
data-type patterns cover, and the IAM policy that lets its key read and
list exactly those (s3:GetObject, s3:ListBucket, s3:GetBucketLocation).
`-restricted` buckets only when asked for; never `pantheon-index`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pantheon.cli.rest import CliError
from pantheon.metadata.naming import SCHEME
from pantheon.policy import _TYPE as TYPE_PATTERN
from pantheon.storage.buckets import DOMAINS, bucket_for_domain, restricted_bucket_for_domain

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,40}$")
NAME_RULE = "2-41 lower-case letters, digits and '-', not starting with '-' (such as 'viz')"
_PATTERN_RULE = "'*', '<domain>.*' (such as 'weather.*') or a data type (such as 'sensor.air_quality')"
#: Data types are `<domain>.<name>` with up to three names after the domain.
_MAX_SEGMENTS = 4
_ARN = "arn:aws:s3:::"


def check_name(name: str) -> str:
    """`name` if it is a valid reader name; CliError otherwise."""
    if not _NAME.fullmatch(name):
        raise CliError(f"reader name {name!r} is invalid: use {NAME_RULE}")
    return name


def check_patterns(text: str) -> list[str]:
    """The data-type patterns of a comma-separated list, in order, unique; CliError for a bad one."""
    patterns = list(dict.fromkeys(part.strip() for part in text.split(",")))
    for pattern in patterns:
        if not TYPE_PATTERN.fullmatch(pattern):
            raise CliError(f"data-type pattern {pattern!r} is invalid: use {_PATTERN_RULE}")
        _scope_of(pattern)  # a known domain, and some data type can match
    return patterns


def _scope_of(pattern: str) -> tuple[tuple[str, ...], str]:
    """The domains a pattern covers and the object-name prefix within them ("" = the whole bucket)."""
    if pattern == "*":
        return DOMAINS, ""
    wildcard = pattern.endswith(".*")
    segments = pattern.removesuffix(".*").split(".")
    domain = segments[0]
    if domain not in DOMAINS:
        raise CliError(
            f"data-type pattern {pattern!r}: unknown domain {domain!r} (domains: {', '.join(DOMAINS)})"
        )
    # A data type has 2..4 segments; a prefix needs room for one more.
    fits = len(segments) < _MAX_SEGMENTS if wildcard else 2 <= len(segments) <= _MAX_SEGMENTS
    if not fits:
        raise CliError(f"data-type pattern {pattern!r} matches no data type: use {_PATTERN_RULE}")
    if wildcard and len(segments) == 1:
        return (domain,), ""
    typed = ".".join(segments)
    # Object names are `v1/<data_type>/...` (pantheon.metadata.naming).
    return (domain,), f"{SCHEME}/{typed}." if wildcard else f"{SCHEME}/{typed}/"


def reader_scopes(patterns: Iterable[str], *, restricted: bool) -> dict[str, tuple[str, ...]]:
    """Bucket -> the object-name prefixes a reader may read there (`()` = the whole bucket).

    Raises CliError for a pattern that names an unknown domain or can match
    no data type. Prefixes covered by another one are dropped.
    """
    wanted: dict[str, set[str]] = {}
    for pattern in patterns:
        domains, prefix = _scope_of(pattern)
        for domain in domains:
            buckets = [bucket_for_domain(domain)]
            if restricted:
                buckets.append(restricted_bucket_for_domain(domain))
            for bucket in buckets:
                wanted.setdefault(bucket, set()).add(prefix)
    scopes: dict[str, tuple[str, ...]] = {}
    for bucket in sorted(wanted):
        prefixes = wanted[bucket]
        if "" in prefixes:
            scopes[bucket] = ()
            continue
        kept = sorted(p for p in prefixes if not any(p != q and p.startswith(q) for q in prefixes))
        scopes[bucket] = tuple(kept)
    return scopes


def reader_policy(patterns: Iterable[str], *, restricted: bool) -> dict[str, Any]:
    """The IAM policy of a reader: GetObject and ListBucket (+ GetBucketLocation), nothing else.

    Whole buckets for `*` and `<domain>.*`; for longer prefixes and exact
    types, GetObject on `<bucket>/v1/<type>/*` and ListBucket only with an
    `s3:prefix` under it. `-restricted` buckets only with `restricted`.
    """
    scopes = reader_scopes(patterns, restricted=restricted)
    if not scopes:
        raise CliError("no data-type patterns given")
    whole = [b for b, prefixes in scopes.items() if not prefixes]
    statements: list[dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Action": ["s3:GetBucketLocation"],
            "Resource": [_ARN + b for b in scopes],
        }
    ]
    if whole:
        statements.append(
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [_ARN + b for b in whole]}
        )
    for bucket, prefixes in scopes.items():
        if prefixes:
            statements.append(
                {
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket"],
                    "Resource": [_ARN + bucket],
                    "Condition": {"StringLike": {"s3:prefix": [p + "*" for p in prefixes]}},
                }
            )
    readable = [f"{_ARN}{b}/{p}*" for b, prefixes in scopes.items() for p in prefixes or ("",)]
    statements.append({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": readable})
    return {"Version": "2012-10-17", "Statement": statements}


def readable_resources(policy: Mapping[str, Any]) -> list[str]:
    """What a reader policy lets its key read, as `bucket/prefix*` (for `list`)."""
    found: list[str] = []
    for statement in policy.get("Statement") or []:
        if isinstance(statement, Mapping) and "s3:GetObject" in (statement.get("Action") or []):
            resources = statement.get("Resource") or []
            found += [str(r).removeprefix(_ARN) for r in resources]
    return sorted(found)
