"""Limits at the edge: body sizes, checked while streaming, per-key rates and
per-key concurrent uploads.

Body limits are enforced twice: a declared `Content-Length` over the limit
is refused before a byte of the body is read, and a chunked (or lying) body
is cut off the moment it crosses the limit. Nothing here holds more than one
chunk of a body at a time.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from gateway.problems import Problem


def too_large(limit: int) -> Problem:
    return Problem(
        413,
        "body_too_large",
        f"The request body is larger than the limit of {limit} bytes for this route.",
    )


def declared_length(headers: Mapping[str, str], limit: int) -> int | None:
    """The declared body length, refusing one over `limit` before the body is read."""
    raw = headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise Problem(400, "invalid_content_length", "The Content-Length header is not a number.")
    length = int(raw)
    if length > limit:
        raise too_large(limit)
    return length


async def limited(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """Pass `stream` through, raising 413 as soon as more than `limit` bytes arrived."""
    received = 0
    async for piece in stream:
        received += len(piece)
        if received > limit:
            raise too_large(limit)
        if piece:
            yield piece


async def read_limited(stream: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body (for small, bounded bodies only), refusing more than `limit` bytes."""
    body = bytearray()
    async for piece in limited(stream, limit):
        body += piece
    return bytes(body)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per key: `rate` tokens a second, at most `burst` saved up.

    One bucket per principal, so memory is bounded by the number of
    configured keys. `clock` is injectable for tests.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str) -> float:
        """Take one token for `key`: 0.0 when allowed, else the seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    """A `Retry-After` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


class LimitReached(Exception):
    """A concurrency limit is reached; `retry_after_s` estimates when a slot frees."""

    def __init__(self, limit: int, retry_after_s: float) -> None:
        super().__init__(f"{limit} in progress")
        self.limit = limit
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class Slot:
    """One operation in progress under a key (released once, however it ends)."""

    key: str
    started: float
    released: bool = field(default=False)


class ConcurrencyLimiter:
    """At most `limit` operations in progress per key (uploads per principal).

    `hold(key)` takes a slot for the duration of a `with` block and gives it
    back however the block ends: return, error, cancellation. When the key
    has no slot free it raises `LimitReached` with an estimate of when one
    frees: the typical duration of an operation (a moving average of the
    finished ones, `typical_s` until there are some) minus the age of the
    key's oldest one, between 1 and `max_retry_after_s` seconds. Memory: one
    entry per key with operations in progress. `clock` is injectable for tests.
    """

    def __init__(
        self,
        limit: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        typical_s: float = 1.0,
        max_retry_after_s: float = 30.0,
    ) -> None:
        if limit < 1:
            raise ValueError("the limit must be at least 1")
        self.limit = limit
        self._clock = clock
        self._typical_s = typical_s
        self._max_retry_after_s = max_retry_after_s
        self._held: dict[str, list[Slot]] = {}

    def in_progress(self, key: str) -> int:
        return len(self._held.get(key, ()))

    def acquire(self, key: str) -> Slot:
        """A slot for `key`, or LimitReached."""
        now = self._clock()
        held = self._held.setdefault(key, [])
        if len(held) >= self.limit:
            oldest = min(slot.started for slot in held)
            wait = self._typical_s - (now - oldest)
            raise LimitReached(self.limit, min(self._max_retry_after_s, max(1.0, wait)))
        slot = Slot(key, now)
        held.append(slot)
        return slot

    def release(self, slot: Slot) -> None:
        """Give `slot` back (a second release does nothing)."""
        if slot.released:
            return
        slot.released = True
        held = self._held.get(slot.key, [])
        held.remove(slot)
        if not held:
            self._held.pop(slot.key, None)
        # Exponential moving average of how long an operation holds its slot.
        self._typical_s += 0.2 * ((self._clock() - slot.started) - self._typical_s)

    @contextmanager
    def hold(self, key: str) -> Iterator[Slot]:
        slot = self.acquire(key)
        try:
            yield slot
        finally:
            self.release(slot)


def too_many_uploads(reached: LimitReached) -> Problem:
    return Problem(
        429,
        "too_many_concurrent_uploads",
        f"This API key already has {reached.limit} uploads in progress, the most it may have at once; "
        "retry when one has finished.",
        headers={"Retry-After": retry_after_header(reached.retry_after_s)},
    )
