"""The consumer helper commits asynchronously in batches (every N events or T
seconds), only the offsets of processed events, synchronously when
partitions are revoked, and a final time, synchronously, on close.

Fakes stand in for Kafka (tests/unit/kafka_fakes.py); a fake clock for time.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from pantheon.events import offsets
from pantheon.events.consumer import EventConsumer, Received
from tests.unit.kafka_fakes import Commit, FakeConsumer, fake_kafka, record

TOPIC = "pantheon.data-stored.v1"


class Clock:
    """Stands in for the offsets module's `time` (pantheon.events.offsets)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(offsets, "time", fake)
    return fake


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> list[FakeConsumer]:
    return fake_kafka(monkeypatch)


def handled(received: Received) -> None:
    pass


def consumer_for(**options: Any) -> EventConsumer:
    return EventConsumer(
        {}, "pantheon-test", [TOPIC], handled, dlq_topic="pantheon.dead-letter.v1", **options
    )


def test_offsets_are_committed_asynchronously_every_n_events_and_synchronously_on_close(
    kafka: list[FakeConsumer], clock: Clock
) -> None:
    consumer = consumer_for(commit_every=3, commit_interval_s=60)
    (fake,) = kafka
    fake.add(*(record(TOPIC, 0, offset, f"a{offset}") for offset in range(4)))
    fake.add(*(record(TOPIC, 1, offset, f"b{offset}") for offset in range(3)))
    assert consumer.run(idle_timeout_s=0) == 7
    # One request per three events, with the next offset of what was processed.
    assert fake.commits == [
        Commit({(TOPIC, 0): 3}, asynchronous=True),
        Commit({(TOPIC, 0): 4, (TOPIC, 1): 2}, asynchronous=True),
    ]
    consumer.close()
    assert fake.commits[-1] == Commit({(TOPIC, 1): 3}, asynchronous=False)
    assert fake.stored == {(TOPIC, 0): 4, (TOPIC, 1): 3}
    assert fake.closed


def test_offsets_are_committed_once_the_interval_passed_even_when_idle(
    kafka: list[FakeConsumer], clock: Clock
) -> None:
    consumer = consumer_for(commit_every=1000, commit_interval_s=5)
    (fake,) = kafka
    fake.add(record(TOPIC, 0, 0, "e1"))
    assert consumer.poll_once(0)
    clock.now += 4.9
    assert not consumer.poll_once(0)
    assert fake.commits == []
    clock.now += 0.2
    assert not consumer.poll_once(0)
    assert fake.commits == [Commit({(TOPIC, 0): 1}, asynchronous=True)]
    clock.now += 10
    assert not consumer.poll_once(0)
    assert len(fake.commits) == 1  # nothing new processed, nothing to commit
    consumer.close()
    assert len(fake.commits) == 1


def test_a_failed_asynchronous_commit_is_sent_again(kafka: list[FakeConsumer], clock: Clock) -> None:
    consumer = consumer_for(commit_every=1, commit_interval_s=60)
    (fake,) = kafka
    fake.add(record(TOPIC, 0, 0, "e1"))
    fake.fail_commits = KafkaError(KafkaError.REQUEST_TIMED_OUT)
    assert consumer.poll_once(0)
    assert fake.stored == {}
    fake.fail_commits = None
    consumer.poll_once(0)  # serves the failed commit's answer
    consumer.close()
    assert fake.commits[-1] == Commit({(TOPIC, 0): 1}, asynchronous=False)
    assert fake.stored == {(TOPIC, 0): 1}


def test_revoked_partitions_are_committed_synchronously_before_they_go(
    kafka: list[FakeConsumer], clock: Clock
) -> None:
    consumer = consumer_for(commit_every=1000, commit_interval_s=60)
    (fake,) = kafka
    fake.add(record(TOPIC, 0, 0, "a"), record(TOPIC, 1, 0, "b"))
    consumer.run(idle_timeout_s=0)
    fake.callbacks["on_revoke"](fake, [TopicPartition(TOPIC, 0)])
    assert fake.commits == [Commit({(TOPIC, 0): 1}, asynchronous=False)]
    # A partition lost to another member is not committed by this one.
    fake.callbacks["on_lost"](fake, [TopicPartition(TOPIC, 1)])
    consumer.close()
    assert fake.commits == [Commit({(TOPIC, 0): 1}, asynchronous=False)]


def test_a_group_starting_at_the_end_commits_its_starting_point(
    kafka: list[FakeConsumer], clock: Clock
) -> None:
    """So a member taking over after this one stopped on an event starts
    before that event, not at its own end."""
    consumer = consumer_for(from_beginning=False, commit_every=1000, commit_interval_s=60)
    (fake,) = kafka
    fake.add(record(TOPIC, 0, 0, "old"), record(TOPIC, 0, 1, "older"))
    fake.callbacks["on_assign"](fake, [TopicPartition(TOPIC, 0)])
    assert not consumer.poll_once(0)  # the old events are before the start
    consumer.close()
    assert fake.stored == {(TOPIC, 0): 2}
