"""Writes are refused at once, retryably, while MinIO reports no write quorum (pantheon/storage/quorum.py)."""

from __future__ import annotations

import asyncio

import pytest

from pantheon.errors import Unavailable
from pantheon.storage.quorum import UNKNOWN_S, WriteQuorum


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
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def settled() -> None:
    """Let the refresh a `require` started finish."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_cluster_with_quorum_is_asked_at_most_once_a_second() -> None:
    cluster, clock = Cluster(200), Clock()
    quorum = WriteQuorum(cluster.fetch, clock=clock)
    for _ in range(20):
        quorum.require()
    await settled()
    assert cluster.asked == 1
    clock.now += 1.0
    quorum.require()
    await settled()
    assert cluster.asked == 2


@pytest.mark.parametrize("answer", [503, None], ids=["no write quorum", "unreachable"])
async def test_without_quorum_writes_are_refused_at_once_until_it_returns(answer: int | None) -> None:
    cluster, clock = Cluster(answer, 200), Clock()
    quorum = WriteQuorum(cluster.fetch, clock=clock)
    quorum.require()  # the last answer (none yet) lets it through; the question is asked
    await settled()
    with pytest.raises(Unavailable) as refused:
        quorum.require()
    assert refused.value.reason == "store_degraded" and refused.value.retry_after_s > 0
    assert cluster.asked == 1  # within the second: no new request
    clock.now += 1.0
    with pytest.raises(Unavailable):  # the refusal stands while the new question is out
        quorum.require()
    await settled()
    quorum.require()
    assert cluster.asked == 2


async def test_a_hung_question_delays_no_write_and_is_not_asked_twice() -> None:
    cluster, clock = Cluster(200), Clock()
    cluster.release.clear()  # the probe hangs
    quorum = WriteQuorum(cluster.fetch, clock=clock)
    for _ in range(3):
        quorum.require()
        clock.now += 5
        await settled()
    assert cluster.asked == 1
    cluster.release.set()
    await settled()


@pytest.mark.parametrize("status", [404, 403, 502])
async def test_a_store_that_does_not_answer_the_question_keeps_the_last_answer(status: int) -> None:
    cluster, clock = Cluster(503, status), Clock()
    quorum = WriteQuorum(cluster.fetch, clock=clock)
    await quorum.refresh()
    clock.now += 1.0
    await quorum.refresh()  # a balancer's error page does not open the gate
    with pytest.raises(Unavailable):
        quorum.require()
    await quorum.refresh()
    clock.now += UNKNOWN_S - 1
    with pytest.raises(Unavailable):
        quorum.require()
    assert cluster.asked == 3  # asked again only once a minute
    cluster.answers = [200]
    clock.now += 1
    with pytest.raises(Unavailable):
        quorum.require()
    await settled()
    quorum.require()
