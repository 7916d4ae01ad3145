"""Recovery of the events library against the real Kafka: an event that
neither the handler nor the dead-letter topic took stays uncommitted and is
delivered again to the next member of the group; a publisher whose producer
died fatally refuses, then recovers with a new producer."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from pantheon.config import KafkaSettings
from pantheon.errors import Unavailable
from pantheon.events.consumer import EventConsumer, EventNotProcessed, Received
from pantheon.events.producer import KafkaPublisher
from pantheon.events.topics import DATA_STORED, DEAD_LETTER
from tests.integration.support import EventWatcher, data_stored_event, from_source, unique_source

pytestmark = pytest.mark.timeout(180)

#: A dead-letter topic the reader may not write to (nor create): every dead
#: letter sent there fails with TOPIC_AUTHORIZATION_FAILED.
UNWRITABLE_DLQ = "pantheon.no-write.dead-letter.v1"


@pytest.fixture
def publisher(stack_env: dict[str, str]) -> Iterator[KafkaPublisher]:
    p = KafkaPublisher(KafkaSettings.from_env(stack_env))
    yield p
    p.close()


class Recorder:
    """A handler that records the test's events and may refuse them."""

    def __init__(self, source: str, *, fail: bool) -> None:
        self.source = f"/pantheon/{source}"
        self.fail = fail
        self.ids: list[str] = []

    def __call__(self, received: Received) -> None:
        if received.attributes.source != self.source:
            return  # other tests' events
        self.ids.append(received.attributes.id)
        if self.fail:
            raise RuntimeError("simulation engine rejected it")


def _committed(config: dict[str, Any], group: str, topic: str, partition: int) -> int:
    reader = Consumer({**config, "group.id": group, "enable.auto.commit": False})
    try:
        (done,) = reader.committed([TopicPartition(topic, partition)], timeout=10)
        return int(done.offset)
    finally:
        reader.close()


async def test_an_event_neither_handled_nor_dead_lettered_is_delivered_again_to_the_group(
    publisher: KafkaPublisher, kafka_config: Any
) -> None:
    source = unique_source()
    group = f"pantheon-test-{uuid.uuid4().hex[:8]}"
    refusing = Recorder(source, fail=True)
    first = EventConsumer(
        kafka_config(), group, [DATA_STORED.name], refusing, dlq_topic=UNWRITABLE_DLQ, from_beginning=False
    )
    first.wait_until_assigned()
    event = data_stored_event(source)
    await publisher.publish([event])
    with pytest.raises(EventNotProcessed) as stopped:
        first.run(idle_timeout_s=15)
    first.close()
    assert refusing.ids == [event.event_id]
    assert stopped.value.topic == DATA_STORED.name
    assert "TOPIC_AUTHORIZATION_FAILED" in stopped.value.reason
    # The group's committed offset stops at the event, not past it.
    where = (stopped.value.topic, stopped.value.partition)
    assert _committed(kafka_config(), group, *where) == stopped.value.offset

    # The next member of the group gets it again, and this time takes it.
    accepting = Recorder(source, fail=False)
    second = EventConsumer(
        kafka_config(), group, [DATA_STORED.name], accepting, dlq_topic=DEAD_LETTER.name, from_beginning=False
    )
    second.wait_until_assigned()
    second.run(idle_timeout_s=3)
    second.close()
    assert accepting.ids == [event.event_id]
    assert _committed(kafka_config(), group, *where) > stopped.value.offset


async def test_a_publisher_whose_producer_died_refuses_then_recovers(
    publisher: KafkaPublisher, kafka_config: Any
) -> None:
    source = unique_source()
    watcher = EventWatcher(kafka_config(), [DATA_STORED.name])
    before = data_stored_event(source)
    await publisher.publish([before])
    # The test holds the replacement back, to look at the publisher meanwhile.
    replace = threading.Event()
    make = publisher._factory
    assert make is not None

    def held(error_cb: Callable[[KafkaError], None]) -> Any:
        replace.wait(30)
        return make(error_cb)

    publisher._factory = held
    publisher.inject_fatal_error()  # as librdkafka's error callback reports one
    assert not publisher.ready()
    assert not await publisher.probe()
    with pytest.raises(Unavailable):
        await publisher.publish([data_stored_event(source)])
    replace.set()
    for _ in range(200):
        if publisher.ready():
            break
        await asyncio.sleep(0.05)
    assert publisher.ready()
    assert await publisher.probe()
    after = data_stored_event(source)
    await publisher.publish([after])
    seen = watcher.collect(from_source(source), count=2, wait_s=15)
    watcher.close()
    assert [s.headers["ce_id"] for s in seen] == [before.event_id, after.event_id]
