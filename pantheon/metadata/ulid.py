"""ULIDs: the time-sortable identifiers of stored items.

A ULID is 128 bits, a 48-bit Unix time in milliseconds followed by 80 bits of
randomness, written as 26 characters of Crockford base32 (upper case, no I,
L, O or U). Because the time comes first and the alphabet is in ASCII order,
sorting ULIDs as strings sorts them by time, which keeps object listings and
event streams in creation order without a separate index.
"""

from __future__ import annotations

import hashlib
import os
import re
import time

__all__ = ["MAX_TIME_MS", "is_ulid", "new_ulid", "ulid_from_key", "ulid_time_ms"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUES = {c: i for i, c in enumerate(_ALPHABET)}
# 26 characters hold 130 bits; the first character carries only the top three
# bits of the 128-bit value, so anything above '7' would overflow.
_PATTERN = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
_RANDOM_BYTES = 10

#: The largest timestamp a ULID can hold (the year 10889).
MAX_TIME_MS = (1 << 48) - 1

#: Every pair of characters, by the 10 bits it encodes, and where each of the
#: 13 pairs of a ULID sits: half the lookups of one character at a time.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_PAIR_SHIFTS = tuple(range(120, -1, -10))


def new_ulid(ms: int | None = None, randomness: bytes | None = None) -> str:
    """A ULID for time `ms` (default now) and 10 bytes of `randomness` (default random).

    Raises ValueError if `ms` is outside 0..MAX_TIME_MS or `randomness` is
    not exactly 10 bytes.
    """
    if ms is None:
        ms = time.time_ns() // 1_000_000
    if randomness is None:
        randomness = os.urandom(_RANDOM_BYTES)
    if not 0 <= ms <= MAX_TIME_MS:
        raise ValueError(f"ULID time must be 0..{MAX_TIME_MS} ms, got {ms}")
    if len(randomness) != _RANDOM_BYTES:
        raise ValueError(f"ULID randomness must be {_RANDOM_BYTES} bytes, got {len(randomness)}")
    value = (ms << 80) | int.from_bytes(randomness, "big")
    return "".join([_PAIRS[(value >> shift) & 0x3FF] for shift in _PAIR_SHIFTS])


def ulid_from_key(ms: int, key: bytes) -> str:
    """The ULID for time `ms` whose randomness is the first 10 bytes of SHA-256(`key`).

    Deriving the id from an idempotency key lets a retried request compute
    the same id as the first attempt without a lookup. The caller must pass
    the same `ms` on retry (the time the key was first seen) and should put
    everything that scopes the key into `key` (such as the source), since
    equal keys from different scopes would otherwise collide.
    """
    return new_ulid(ms, hashlib.sha256(key).digest()[:_RANDOM_BYTES])


def is_ulid(s: object) -> bool:
    """Whether `s` is a canonical (upper-case, 26-character, in-range) ULID string."""
    return isinstance(s, str) and _PATTERN.fullmatch(s) is not None and s[0] <= "7"


def ulid_time_ms(ulid: str) -> int:
    """The Unix time in milliseconds embedded in `ulid`; ValueError if it is not a ULID."""
    if not is_ulid(ulid):
        raise ValueError(f"not a ULID: {ulid!r}")
    value = 0
    for c in ulid:
        value = (value << 5) | _VALUES[c]
    return value >> 80
