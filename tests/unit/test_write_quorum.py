"""Writes are refused at once, retryably, while MinIO reports no write quorum (pantheon/storage/quorum.py).

The watch's clock is the test's: each `tick` ends one of its waits, so the
questions asked are counted exactly, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pantheon.errors import Unavailable
from pantheon.storage.quorum import FRESH_S, UNKNOWN_S, WriteQuorum


class Cluster:
    """Answers of the cluster health endpoint, in order (the last one repeats); counts the requests."""

    def __init__(self, *answers: int | None) -> None:
        self.answers = list(answers)
        self.asked = 0
        self.release = asyncio.Event()
        self.release.set()

    async def fetch(self) -> int | None:
        self.asked += 1
        await self.release.wait()
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class Clock:
    """The watch's waits: each ends when the test ticks; records how long each was."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._ticks: asyncio.Queue[None] = asyncio.Queue()

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await self._ticks.get()

    async def tick(self) -> None:
        self._ticks.put_nowait(None)
        await settled()


async def settled() -> None:
    """Let the watch run until it waits again."""
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.fixture
def watched() -> Iterator[list[WriteQuorum]]:
    """Gates made in a test, their watches cancelled after it."""
    made: list[WriteQuorum] = []
    yield made
    for gate in made:
        if gate._watch is not None:
            gate._watch.cancel()


def gate(cluster: Cluster, clock: Clock, made: list[WriteQuorum]) -> WriteQuorum:
    made.append(WriteQuorum(cluster.fetch, sleep=clock.sleep))
    return made[-1]


async def test_the_first_write_starts_a_watch_that_asks_once_a_tick_not_per_write(
    watched: list[WriteQuorum],
) -> None:
    cluster, clock = Cluster(200), Clock()
    quorum = gate(cluster, clock, watched)
    await settled()
    assert cluster.asked == 0  # nothing is asked before the first write
    for _ in range(50):
        quorum.require()
    await settled()
    assert cluster.asked == 1
    await clock.tick()
    await clock.tick()
    assert cluster.asked == 3
    assert clock.waits[0] == FRESH_S


@pytest.mark.parametrize("answer", [503, None], ids=["no write quorum", "unreachable"])
async def test_without_quorum_writes_are_refused_at_once_until_it_returns(
    answer: int | None, watched: list[WriteQuorum]
) -> None:
    cluster, clock = Cluster(answer), Clock()
    quorum = gate(cluster, clock, watched)
    quorum.require()  # no answer yet: the write goes ahead, the watch starts
    await settled()
    for _ in range(3):
        with pytest.raises(Unavailable) as refused:
            quorum.require()
        assert refused.value.reason == "store_degraded" and refused.value.retry_after_s > 0
    cluster.answers = [200]
    await clock.tick()
    quorum.require()


async def test_a_hung_question_delays_no_write_and_is_not_asked_twice(watched: list[WriteQuorum]) -> None:
    cluster, clock = Cluster(200), Clock()
    cluster.release.clear()  # the probe hangs
    quorum = gate(cluster, clock, watched)
    for _ in range(3):
        quorum.require()  # goes ahead at once
        await settled()
    assert cluster.asked == 1 and clock.waits == []
    cluster.release.set()
    await settled()
    assert clock.waits == [FRESH_S]


@pytest.mark.parametrize("status", [404, 403, 502])
async def test_a_store_that_does_not_answer_the_question_keeps_the_last_answer_and_is_asked_rarely(
    status: int, watched: list[WriteQuorum]
) -> None:
    cluster, clock = Cluster(503, status), Clock()
    quorum = gate(cluster, clock, watched)
    quorum.require()
    await clock.tick()
    # A balancer's error page does not open the gate ...
    with pytest.raises(Unavailable):
        quorum.require()
    # ... and such a store is asked again only after UNKNOWN_S.
    assert clock.waits == [FRESH_S, UNKNOWN_S]
