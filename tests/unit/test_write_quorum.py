"""Writes are refused at once, retryably, while MinIO reports no write quorum (pantheon/storage/quorum.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pantheon.errors import Unavailable
from pantheon.storage import quorum as quorum_module
from pantheon.storage.quorum import WriteQuorum

TICK = 0.01


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


@pytest.fixture
def watched() -> Iterator[list[WriteQuorum]]:
    """Gates made in a test, their watches cancelled after it."""
    made: list[WriteQuorum] = []
    yield made
    for gate in made:
        if gate._watch is not None:
            gate._watch.cancel()


def gate(cluster: Cluster, made: list[WriteQuorum]) -> WriteQuorum:
    made.append(WriteQuorum(cluster.fetch, fresh_s=TICK))
    return made[-1]


async def ticks(n: int) -> None:
    await asyncio.sleep(TICK * n + TICK / 2)


async def test_the_first_write_starts_a_watch_that_asks_on_a_clock_not_per_write(
    watched: list[WriteQuorum],
) -> None:
    cluster = Cluster(200)
    quorum = gate(cluster, watched)
    assert cluster.asked == 0  # nothing asked before the first write
    for _ in range(50):
        quorum.require()
    await ticks(3)
    assert 2 <= cluster.asked <= 6  # about one question a tick, whatever the writes


@pytest.mark.parametrize("answer", [503, None], ids=["no write quorum", "unreachable"])
async def test_without_quorum_writes_are_refused_at_once_until_it_returns(
    answer: int | None, watched: list[WriteQuorum]
) -> None:
    cluster = Cluster(200, answer, answer, answer)
    quorum = gate(cluster, watched)
    quorum.require()  # writable: the cluster said so
    await ticks(1)
    with pytest.raises(Unavailable) as refused:
        quorum.require()
    assert refused.value.reason == "store_degraded" and refused.value.retry_after_s > 0
    cluster.answers = [200]
    await ticks(2)
    quorum.require()


async def test_a_hung_question_delays_no_write_and_is_not_asked_twice(watched: list[WriteQuorum]) -> None:
    cluster = Cluster(200)
    cluster.release.clear()  # the probe hangs
    quorum = gate(cluster, watched)
    for _ in range(3):
        quorum.require()
        await ticks(2)
    assert cluster.asked == 1
    cluster.release.set()
    await ticks(2)
    assert cluster.asked >= 2


@pytest.mark.parametrize("status", [404, 403, 502])
async def test_a_store_that_does_not_answer_the_question_keeps_the_last_answer_and_is_asked_rarely(
    status: int, watched: list[WriteQuorum], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quorum_module, "UNKNOWN_S", TICK * 20)
    cluster = Cluster(503, status)
    quorum = gate(cluster, watched)
    quorum.require()  # no answer yet: the write goes ahead, the watch starts
    await ticks(3)
    # A balancer's error page does not open the gate ...
    with pytest.raises(Unavailable):
        quorum.require()
    # ... and such a store is asked only every UNKNOWN_S.
    asked = cluster.asked
    await ticks(5)
    assert cluster.asked == asked
