"""The consumer helper never skips an event: an event counts as seen only once
the handler returned or the dead-letter topic acknowledged it, and when
neither took it the consumer seeks back to it, stops, and does not commit it.

Fakes stand in for Kafka (tests/unit/kafka_fakes.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError

from pantheon.events import consumer as module
from pantheon.events import dead_letters
from pantheon.events.consumer import EventConsumer, EventNotProcessed, Received
from tests.unit.kafka_fakes import FakeConsumer, FakeDeadLetters, FakeMessage, record

TOPIC = "pantheon.data-stored.v1"
DLQ = "pantheon.dead-letter.v1"
DENIED = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)


class Kafka:
    """The fakes one EventConsumer was built with."""

    consumer: FakeConsumer
    dead_letters: FakeDeadLetters


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> Kafka:
    made = Kafka()

    def consumer(config: dict[str, Any]) -> FakeConsumer:
        made.consumer = FakeConsumer(config)
        return made.consumer

    def producer(config: dict[str, Any]) -> FakeDeadLetters:
        made.dead_letters = FakeDeadLetters(config)
        return made.dead_letters

    monkeypatch.setattr(module, "Consumer", consumer)
    monkeypatch.setattr(dead_letters, "Producer", producer)
    return made


class Handler:
    """Records the ids it is given; raises for those in `failing`."""

    def __init__(self, *failing: str) -> None:
        self.failing = set(failing)
        self.calls: list[str] = []

    def __call__(self, received: Received) -> None:
        self.calls.append(received.attributes.id)
        if received.attributes.id in self.failing:
            raise RuntimeError("cannot process")


def consumer_for(handler: Handler, **options: Any) -> EventConsumer:
    return EventConsumer({}, "pantheon-test", [TOPIC], handler, dlq_topic=DLQ, **options)


def drain(consumer: EventConsumer) -> None:
    while consumer.poll_once(0):
        pass


def test_an_event_is_remembered_only_after_its_handler_returned(kafka: Kafka) -> None:
    handler = Handler("e1")
    consumer = consumer_for(handler)
    kafka.consumer.add(record(TOPIC, 0, 0, "e1"))
    kafka.dead_letters.fail = DENIED
    with pytest.raises(EventNotProcessed):
        drain(consumer)
    # The redelivery (after the seek back) is processed again, not dropped
    # as a duplicate of an event that was never processed.
    handler.failing.clear()
    kafka.dead_letters.fail = None
    drain(consumer)
    assert handler.calls == ["e1", "e1"]
    consumer.close()
    assert kafka.consumer.stored == {(TOPIC, 0): 1}


def test_a_dead_lettered_event_counts_as_processed(kafka: Kafka) -> None:
    handler = Handler("e1")
    consumer = consumer_for(handler)
    # The same event twice (a producer retry), the copy at a later offset.
    kafka.consumer.add(record(TOPIC, 0, 0, "e1"), record(TOPIC, 0, 1, "e1"))
    drain(consumer)
    assert handler.calls == ["e1"]
    assert kafka.dead_letters.letters == [DLQ]
    consumer.close()
    assert kafka.consumer.stored == {(TOPIC, 0): 2}


def test_a_handled_event_is_skipped_when_delivered_again(kafka: Kafka) -> None:
    handler = Handler()
    consumer = consumer_for(handler)
    kafka.consumer.add(record(TOPIC, 0, 0, "e1"), record(TOPIC, 1, 0, "e1"))
    drain(consumer)
    assert handler.calls == ["e1"]


def test_when_neither_handler_nor_dead_letter_topic_took_it_the_consumer_seeks_back_and_stops(
    kafka: Kafka,
) -> None:
    handler = Handler("e2")
    consumer = consumer_for(handler)
    kafka.consumer.add(record(TOPIC, 0, 10, "e1"), record(TOPIC, 0, 11, "e2"), record(TOPIC, 0, 12, "e3"))
    kafka.consumer.add(record(TOPIC, 1, 5, "other"))
    kafka.dead_letters.fail = DENIED
    with pytest.raises(EventNotProcessed) as stopped:
        consumer.run(idle_timeout_s=0)
    assert (stopped.value.topic, stopped.value.partition, stopped.value.offset) == (TOPIC, 0, 11)
    assert "TOPIC_AUTHORIZATION_FAILED" in str(stopped.value)
    assert isinstance(stopped.value, RuntimeError)  # what callers caught before
    assert handler.calls == ["e1", "e2"]  # it stopped: e3 was not handled
    assert kafka.consumer.seeks == [(TOPIC, 0, 11)]
    # What came before it is committed, the event itself never is.
    assert kafka.consumer.stored == {(TOPIC, 0): 11}
    consumer.close()
    assert kafka.consumer.stored == {(TOPIC, 0): 11}
    assert all(commit.offsets.get((TOPIC, 0), 0) <= 11 for commit in kafka.consumer.commits)


def test_an_undecodable_record_that_cannot_be_dead_lettered_stops_the_consumer(kafka: Kafka) -> None:
    consumer = consumer_for(Handler())
    kafka.consumer.add(FakeMessage(TOPIC, 0, 3, b"\xff", []))
    kafka.dead_letters.fail = DENIED
    with pytest.raises(EventNotProcessed):
        drain(consumer)
    consumer.close()
    assert kafka.consumer.seeks == [(TOPIC, 0, 3)]
    assert (TOPIC, 0) not in kafka.consumer.stored


def test_a_dead_letter_not_acknowledged_in_time_stops_the_consumer(kafka: Kafka) -> None:
    consumer = consumer_for(Handler("e1"), dlq_timeout_s=0.01)
    kafka.consumer.add(record(TOPIC, 0, 0, "e1"))
    kafka.dead_letters.flush = lambda timeout: 1  # type: ignore[method-assign]  # still queued
    with pytest.raises(EventNotProcessed, match="no acknowledgement"):
        drain(consumer)
    consumer.close()
    assert kafka.consumer.stored == {}


def test_a_restricted_event_without_a_restricted_dead_letter_topic_stops_the_consumer(kafka: Kafka) -> None:
    consumer = EventConsumer(
        {},
        "pantheon-test",
        ["acme.secret"],
        Handler("e1"),
        dlq_topic="acme.dlq",
        public_topics=("acme.events",),
    )
    kafka.consumer.add(record("acme.secret", 0, 0, "e1"))
    with pytest.raises(EventNotProcessed, match="no dead-letter topic"):
        drain(consumer)
    assert kafka.dead_letters.letters == []
    assert kafka.consumer.seeks == [("acme.secret", 0, 0)]
