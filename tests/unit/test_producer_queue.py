"""The producer's full local queue: an asynchronous wait with a deadline,
after which the call fails with UNAVAILABLE having queued none of its batch.

A fake stands in for confluent_kafka.Producer (a queue of a few messages
that drains only when the test says so); the deadline is the delivery
timeout, made tiny here. Nothing is asserted about time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from confluent_kafka import KafkaError
from pantheon_api.events.v1 import events_pb2

from pantheon.config import KafkaSettings
from pantheon.errors import Internal, Unavailable
from pantheon.events.producer import Event, KafkaPublisher
from tests.unit.kafka_fakes import Delivered


class FakeProducer:
    """A local queue of `capacity` messages; `deliver` reports them delivered."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.queue: list[tuple[str, Any, Delivered]] = []
        self.produced: list[str] = []
        self.full_refusals = 0
        self.length_checks = 0

    def produce(self, topic: str, *, value: bytes, key: bytes, headers: Any, on_delivery: Any) -> None:
        if len(self.queue) >= self.capacity:
            self.full_refusals += 1
            raise BufferError("Local: Queue full")
        event_id = dict(headers)["ce_id"].decode()
        self.queue.append((event_id, on_delivery, Delivered(topic)))
        self.produced.append(event_id)

    def deliver(self) -> None:
        """Kafka acknowledges everything queued."""
        queued, self.queue = self.queue, []
        for _, on_delivery, message in queued:
            if on_delivery is not None:
                on_delivery(None, message)

    def poll(self, timeout: float) -> int:
        time.sleep(timeout)  # the delivery thread's pace, as librdkafka's poll
        return 0

    def flush(self, timeout: float) -> int:
        return len(self.queue)

    def list_topics(self, *, timeout: float) -> Any:
        return None

    def __len__(self) -> int:
        self.length_checks += 1
        return len(self.queue)


def settings(deadline_ms: int, capacity: int) -> KafkaSettings:
    return KafkaSettings(
        bootstrap="unused:1",
        username="u",
        password="p",
        ca_file="ca.pem",
        delivery_timeout_ms=deadline_ms,
        queue_max_messages=capacity,
    )


@pytest.fixture
def fake() -> FakeProducer:
    return FakeProducer(capacity=2)


def event(event_id: str) -> Event:
    return Event("topic", "key", events_pb2.DataStored(event_id=event_id), event_id, "src")


def blocker(n: int) -> Any:
    """Messages already in the queue that no call of the test's owns."""
    return [(f"old-{i}", None, Delivered("topic")) for i in range(n)]


async def until(condition: Callable[[], object]) -> None:
    """Wait (up to a second) for the delivery thread or the call to get there."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.005)


async def frees_its_room_once_delivered(p: KafkaPublisher, fake: FakeProducer) -> None:
    """What is queued is still owed its reports; once they come, its room is free."""
    assert p._queued_bytes > 0
    fake.deliver()
    await until(lambda: not p._gen.waiting)
    assert p._gen.waiting == {} and p._queued_bytes == 0


@asynccontextmanager
async def publisher(fake: FakeProducer, deadline_ms: int) -> AsyncIterator[KafkaPublisher]:
    p = KafkaPublisher(settings(deadline_ms, fake.capacity), producer=fake)
    try:
        yield p
    finally:
        p.close(0)


async def test_a_queue_that_stays_full_fails_the_call_with_unavailable_and_queues_nothing(
    fake: FakeProducer,
) -> None:
    fake.queue = blocker(2)
    async with publisher(fake, deadline_ms=50) as p:
        with pytest.raises(Unavailable) as caught:
            await p.publish([event("e1")])
    assert caught.value.reason == "event_queue_full"
    assert caught.value.retry_after_s >= 1
    assert fake.produced == []
    assert fake.length_checks > 1  # it waited (and looked again) before giving up


async def test_a_batch_is_queued_whole_or_not_at_all(fake: FakeProducer) -> None:
    fake.queue = blocker(1)  # room for one event; the batch has two
    async with publisher(fake, deadline_ms=50) as p:
        with pytest.raises(Unavailable):
            await p.publish([event("e1"), event("e2")])
    assert fake.produced == []  # not e1 alone


async def test_the_wait_leaves_the_event_loop_free(fake: FakeProducer) -> None:
    fake.queue = blocker(2)
    async with publisher(fake, deadline_ms=10_000) as p:
        task = asyncio.create_task(p.publish([event("e1")]))
        # Other coroutines run while the call waits for room.
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert fake.produced == []


async def test_the_call_proceeds_once_the_queue_has_room(fake: FakeProducer) -> None:
    fake.queue = blocker(2)
    async with publisher(fake, deadline_ms=10_000) as p:
        task = asyncio.create_task(p.publish([event("e1"), event("e2")]))
        await until(lambda: fake.length_checks)
        assert fake.produced == []
        fake.queue = []  # the old messages were delivered
        await until(lambda: fake.produced)
        assert fake.produced == ["e1", "e2"]  # both at once
        fake.deliver()
        await task
        assert p._queued_bytes == 0


async def test_a_batch_larger_than_the_queue_is_queued_as_room_allows() -> None:
    """The documented exception: such a batch can never fit whole; it waits for
    an empty queue, then queues what fits, and may fail part-way (the events
    queued keep their ids, so a retry republishes the same ones)."""
    fake = FakeProducer(capacity=2)
    async with publisher(fake, deadline_ms=50) as p:
        with pytest.raises(Unavailable):
            await p.publish([event("e1"), event("e2"), event("e3")])
        assert fake.produced == ["e1", "e2"]
        assert fake.full_refusals >= 1
        await frees_its_room_once_delivered(p, fake)


async def test_a_batch_is_queued_in_one_go_once_it_fits() -> None:
    """No other call's event lands inside a batch: it is queued without yielding."""
    fake = FakeProducer(capacity=100)
    async with publisher(fake, deadline_ms=1000) as p:
        batches = [[event(f"{name}{i}") for i in range(30)] for name in "abc"]
        tasks = [asyncio.create_task(p.publish(batch)) for batch in batches]
        await until(lambda: len(fake.produced) == 90)
        assert fake.produced == [f"{name}{i}" for name in "abc" for i in range(30)]
        fake.deliver()
        await asyncio.gather(*tasks)
        assert p._gen.waiting == {} and p._queued_bytes == 0


async def test_a_cancelled_call_frees_its_room_when_its_reports_come() -> None:
    fake = FakeProducer(capacity=3)
    async with publisher(fake, deadline_ms=1000) as p:
        task = asyncio.create_task(p.publish([event("e1"), event("e2")]))
        await until(lambda: fake.produced)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await frees_its_room_once_delivered(p, fake)  # its events were still in Kafka's hands


async def test_a_calls_room_is_freed_as_its_reports_come() -> None:
    # A report does not say which event it is for: each frees an even share.
    fake = FakeProducer(capacity=10)
    async with publisher(fake, deadline_ms=1000) as p:
        task = asyncio.create_task(p.publish([event(f"e{i}") for i in range(10)]))
        await until(lambda: len(fake.produced) == 10)
        queued = p._queued_bytes
        for _, report, message in fake.queue[:5]:
            report(None, message)
        assert 0.4 * queued <= p._queued_bytes <= 0.6 * queued
        for _, report, message in fake.queue[5:]:
            report(None, message)
        await task
        assert p._queued_bytes == 0 and p._gen.waiting == {}


async def test_a_batch_is_acknowledged_when_every_event_is(fake: FakeProducer) -> None:
    async with publisher(fake, deadline_ms=1000) as p:
        task = asyncio.create_task(p.publish([event("e1")]))
        await until(lambda: fake.produced)
        assert not task.done()  # queued is not acknowledged
        fake.deliver()
        await task


async def test_a_batch_fails_with_its_first_error_once_every_event_is_reported() -> None:
    # One future per call: settled by the last report, with the first error.
    fake = FakeProducer(capacity=3)
    async with publisher(fake, deadline_ms=1000) as p:
        task = asyncio.create_task(p.publish([event("e1"), event("e2"), event("e3")]))
        await until(lambda: fake.produced)
        (_, first, m1), (_, second, m2), (_, third, m3) = fake.queue
        first(None, m1)  # acknowledged
        second(KafkaError(KafkaError._MSG_TIMED_OUT), m2)  # not
        await asyncio.sleep(0.02)
        assert not task.done()  # the third is still owed a report
        third(None, m3)
        with pytest.raises(Unavailable) as caught:
            await task
        assert "did not acknowledge" in str(caught.value)
        assert p._queued_bytes == 0 and p._gen.waiting == {}


async def test_a_refusal_outranks_a_missing_acknowledgement_whatever_their_order() -> None:
    # A retry cures "not acknowledged", never a refusal: the call says so.
    fake = FakeProducer(capacity=2)
    async with publisher(fake, deadline_ms=1000) as p:
        task = asyncio.create_task(p.publish([event("e1"), event("e2")]))
        await until(lambda: fake.produced)
        (_, first, m1), (_, second, m2) = fake.queue
        first(KafkaError(KafkaError._MSG_TIMED_OUT), m1)
        second(KafkaError(KafkaError.INVALID_MSG), m2)
        with pytest.raises(Internal):
            await task
