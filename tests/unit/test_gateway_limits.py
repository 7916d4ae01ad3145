"""Edge limits: the per-key token bucket, body limits checked while streaming, and
concurrent operations per key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.limits import (
    ConcurrencyLimiter,
    LimitReached,
    RateLimiter,
    declared_length,
    limited,
    read_limited,
    retry_after_header,
    too_many_uploads,
)
from gateway.problems import Problem


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_requests_wait_for_tokens() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("a")
    assert wait == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0


def test_buckets_are_per_key() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock())
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0.0


def test_tokens_never_exceed_the_burst_after_a_long_idle_time() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10.0, burst=2, clock=clock)
    clock.now += 3600
    assert [limiter.acquire("a") == 0.0 for _ in range(3)] == [True, True, False]


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.2) == "2"
    assert retry_after_header(3.0) == "3"


def test_rate_limiter_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=0)


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    assert declared_length({}, 10) is None
    assert declared_length({"content-length": "10"}, 10) == 10
    with pytest.raises(Problem) as caught:
        declared_length({"content-length": "11"}, 10)
    assert caught.value.status == 413
    with pytest.raises(Problem) as bad:
        declared_length({"content-length": "-1"}, 10)
    assert bad.value.status == 400


async def pieces(*sizes: int) -> AsyncIterator[bytes]:
    for i, size in enumerate(sizes):
        yield bytes([i % 256]) * size


async def test_a_stream_is_cut_off_as_soon_as_it_crosses_the_limit() -> None:
    pulled = []

    async def counted() -> AsyncIterator[bytes]:
        async for piece in pieces(4, 4, 4, 4, 4):
            pulled.append(len(piece))
            yield piece

    got = []
    with pytest.raises(Problem) as caught:
        async for piece in limited(counted(), 10):
            got.append(piece)
    assert caught.value.status == 413
    assert sum(map(len, got)) == 8
    assert len(pulled) == 3  # nothing after the piece that crossed the limit was read


async def test_read_limited_returns_a_body_within_the_limit() -> None:
    assert await read_limited(pieces(3, 0, 2), 5) == b"\x00\x00\x00\x02\x02"


# -- concurrent operations per key ---------------------------------------------


def test_a_key_gets_at_most_limit_slots_and_other_keys_are_not_affected() -> None:
    clock = Clock()
    limiter = ConcurrencyLimiter(2, clock=clock)
    first, second = limiter.acquire("a"), limiter.acquire("a")
    with pytest.raises(LimitReached) as caught:
        limiter.acquire("a")
    assert caught.value.limit == 2
    assert caught.value.retry_after_s >= 1
    assert limiter.acquire("b").key == "b"
    limiter.release(first)
    assert limiter.in_progress("a") == 1
    limiter.acquire("a")
    limiter.release(second)


def test_a_slot_is_released_once_and_idle_keys_take_no_memory() -> None:
    limiter = ConcurrencyLimiter(1, clock=Clock())
    slot = limiter.acquire("a")
    limiter.release(slot)
    limiter.release(slot)  # a second release changes nothing
    assert limiter.in_progress("a") == 0
    assert limiter._held == {}
    limiter.acquire("a")
    with pytest.raises(LimitReached):
        limiter.acquire("a")


def test_hold_releases_on_error() -> None:
    limiter = ConcurrencyLimiter(1, clock=Clock())
    with pytest.raises(RuntimeError), limiter.hold("a"):
        assert limiter.in_progress("a") == 1
        raise RuntimeError("the handler failed")
    assert limiter.in_progress("a") == 0


def test_retry_after_estimates_when_the_oldest_operation_ends() -> None:
    clock = Clock()
    limiter = ConcurrencyLimiter(1, clock=clock, typical_s=1.0)
    for _ in range(20):  # operations that take 10 s each
        slot = limiter.acquire("a")
        clock.now += 10
        limiter.release(slot)
    limiter.acquire("a")
    clock.now += 4
    with pytest.raises(LimitReached) as caught:
        limiter.acquire("a")
    assert 5 <= caught.value.retry_after_s <= 7  # about 10 - 4 seconds left
    clock.now += 60  # older than typical: soon, but never less than a second
    with pytest.raises(LimitReached) as late:
        limiter.acquire("a")
    assert late.value.retry_after_s == 1.0
    problem = too_many_uploads(late.value)
    assert (problem.status, problem.reason, problem.headers["Retry-After"]) == (
        429,
        "too_many_concurrent_uploads",
        "1",
    )


def test_concurrency_limiter_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        ConcurrencyLimiter(0)
