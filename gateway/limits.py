"""Limits at the edge: body sizes, checked while streaming, and per-key rates.

Body limits are enforced twice: a declared `Content-Length` over the limit
is refused before a byte of the body is read, and a chunked (or lying) body
is cut off the moment it crosses the limit. Nothing here holds more than one
chunk of a body at a time.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

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
