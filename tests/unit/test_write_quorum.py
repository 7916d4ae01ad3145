"""Writes are refused at once, retryably, while MinIO reports no write quorum (pantheon/storage/quorum.py)."""

from __future__ import annotations

import asyncio

import pytest

from pantheon.errors import Unavailable
from pantheon.storage.quorum import WriteQuorum


class Cluster:
    """Answers of the cluster health endpoint, in order; counts the requests."""

    def __init__(self, *answers: int | None) -> None:
        self.answers = list(answers)
        self.asked = 0

    async def fetch(self) -> int | None:
        self.asked += 1
        await asyncio.sleep(0)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_cluster_with_quorum_is_asked_at_most_once_a_second() -> None:
    cluster, clock = Cluster(200), Clock()
    quorum = WriteQuorum(cluster.fetch, clock=clock)
    await asyncio.gather(*(quorum.require() for _ in range(20)))
    assert cluster.asked == 1
    clock.now += 1.0
    await quorum.require()
    assert cluster.asked == 2


@pytest.mark.parametrize("answer", [503, None], ids=["no write quorum", "unreachable"])
async def test_without_quorum_writes_are_refused_at_once_until_it_returns(answer: int | None) -> None:
    cluster, clock = Cluster(answer, 200), Clock()
    quorum = WriteQuorum(cluster.fetch, clock=clock)
    with pytest.raises(Unavailable) as refused:
        await quorum.require()
    assert refused.value.reason == "store_degraded" and refused.value.retry_after_s > 0
    with pytest.raises(Unavailable):  # the same answer within the second: no new request
        await quorum.require()
    assert cluster.asked == 1
    clock.now += 1.0
    await quorum.require()


async def test_a_store_without_the_endpoint_is_never_gated_nor_asked_again() -> None:
    cluster, clock = Cluster(404), Clock()
    quorum = WriteQuorum(cluster.fetch, clock=clock)
    for _ in range(3):
        await quorum.require()
        clock.now += 5
    assert cluster.asked == 1
