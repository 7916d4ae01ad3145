"""A fatal producer error: the publisher refuses at once (ready() and probe()
false, so ingestion stores nothing and health says NOT_SERVING), fails the
calls waiting on the dead producer with UNAVAILABLE unless Kafka
acknowledged their events, and creates a new producer, after which it is
ready again.

Fakes stand in for confluent_kafka.Producer (tests/unit/kafka_fakes.py);
each is created by the publisher's factory, with its error callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from confluent_kafka import KafkaError
from grpc_health.v1 import health, health_pb2
from pantheon_api.events.v1 import events_pb2

from pantheon.config import KafkaSettings
from pantheon.errors import Unavailable
from pantheon.events import replacement
from pantheon.events.producer import Event, KafkaPublisher
from pantheon.server import KAFKA_HEALTH, _watch_backends
from tests.unit.fakes import MemoryObjectStore
from tests.unit.kafka_fakes import FakeProducer

SETTINGS = KafkaSettings(
    bootstrap="unused:1", username="u", password="p", ca_file="ca.pem", delivery_timeout_ms=5000
)


class Factory:
    """Makes FakeProducers; `broken` makes creation fail (say, bad config)."""

    def __init__(self) -> None:
        self.made: list[FakeProducer] = []
        self.broken = False

    def __call__(self, error_cb: Callable[[KafkaError], None]) -> FakeProducer:
        if self.broken:
            raise RuntimeError("cannot create a producer")
        self.made.append(FakeProducer(error_cb))
        return self.made[-1]


@asynccontextmanager
async def publisher(factory: Factory) -> AsyncIterator[KafkaPublisher]:
    p = KafkaPublisher(SETTINGS, producer_factory=factory)
    try:
        yield p
    finally:
        p.close(0)


def event(event_id: str) -> Event:
    return Event("topic", "key", events_pb2.DataStored(event_id=event_id), event_id, "src")


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met in time")


async def queued(p: KafkaPublisher, fake: FakeProducer, event_id: str) -> asyncio.Task[None]:
    """A publish call whose event the fake producer holds (not yet answered)."""
    task = asyncio.create_task(p.publish([event(event_id)]))
    await until(lambda: event_id in fake.produced)
    return task


@pytest.fixture
def factory(monkeypatch: pytest.MonkeyPatch) -> Factory:
    monkeypatch.setattr(replacement, "FATAL_DRAIN_S", 0.0)
    monkeypatch.setattr(replacement, "RECREATE_BACKOFF_S", (0.01, 0.02))
    return Factory()


async def test_a_fatal_error_makes_the_publisher_not_ready_then_a_new_producer_serves(
    factory: Factory,
) -> None:
    async with publisher(factory) as p:
        (first,) = factory.made
        waiting = await queued(p, first, "e1")
        assert p.ready()
        factory.broken = True  # holds the replacement back while the test looks
        first.die()  # as librdkafka's error callback reports it
        # At once: ingestion checks ready() before storing anything.
        assert not p.ready()
        assert not await p.probe()
        # The call waiting on the dead producer fails, retryably.
        with pytest.raises(Unavailable):
            await waiting
        assert not p.ready()
        factory.broken = False
        await until(lambda: len(factory.made) == 2 and p.ready())
        assert await p.probe()
        second = factory.made[1]
        assert first.purged
        call = await queued(p, second, "e2")
        second.deliver()
        await call
        assert p._queued_bytes == 0


async def test_a_dead_producer_refuses_calls_fast_until_it_is_replaced(factory: Factory) -> None:
    async with publisher(factory) as p:
        factory.broken = True  # the replacement cannot be created yet
        factory.made[0].die()
        for _ in range(3):
            with pytest.raises(Unavailable):
                await p.publish([event("e1")])
            assert not await p.probe()
        assert factory.made[0].produced == []  # nothing queued on the dead producer
        factory.broken = False
        await until(p.ready)
        assert len(factory.made) == 2


async def test_what_kafka_acknowledged_before_the_producer_died_is_acknowledged(factory: Factory) -> None:
    """Nothing is acknowledged that Kafka did not acknowledge, and what it did
    acknowledge (in flight when the error came) completes its call."""
    async with publisher(factory) as p:
        (first,) = factory.made
        acked = await queued(p, first, "in-flight")
        lost = await queued(p, first, "purged")
        first.acked_on_flush = {"in-flight"}  # the broker's answer arrives while draining
        first.die()
        await acked
        with pytest.raises(Unavailable):
            await lost
        await until(p.ready)
        assert p._queued_bytes == 0


async def test_a_fatal_error_in_a_delivery_report_kills_the_producer(factory: Factory) -> None:
    async with publisher(factory) as p:
        (first,) = factory.made
        call = await queued(p, first, "e1")
        first.deliver(KafkaError(KafkaError._FATAL, "fatal", fatal=True))
        with pytest.raises(Unavailable):
            await call
        await until(lambda: len(factory.made) == 2 and p.ready())


async def test_a_produce_call_failing_fatally_kills_the_producer(factory: Factory) -> None:
    async with publisher(factory) as p:
        (first,) = factory.made
        first.fatal = KafkaError(KafkaError._FATAL, "fatal", fatal=True)  # not yet reported
        with pytest.raises(Unavailable):
            await p.publish([event("e1")])
        await until(lambda: len(factory.made) == 2 and p.ready())
        assert factory.made[1].produced == []  # the client retries, not the publisher


async def test_a_handed_in_producer_that_dies_leaves_the_publisher_not_ready() -> None:
    fake = FakeProducer()
    p = KafkaPublisher(SETTINGS, producer=fake)
    try:
        p.inject_fatal_error()
        assert not p.ready()
        await asyncio.sleep(0.05)
        assert not p.ready()
    finally:
        p.close(0)


async def test_health_reports_not_serving_until_the_producer_is_replaced(factory: Factory) -> None:
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    async with publisher(factory) as p:
        checker = health.aio.HealthServicer()
        watcher = asyncio.create_task(_watch_backends(checker, p, MemoryObjectStore(), every_s=0.01))

        def kafka_health() -> int | None:
            current = checker._server_status.get(KAFKA_HEALTH)
            return None if current is None else int(current)

        try:
            await until(lambda: kafka_health() == serving)
            factory.broken = True  # no new producer for now
            p.inject_fatal_error()
            await until(lambda: kafka_health() == not_serving)
            factory.broken = False
            await until(lambda: kafka_health() == serving)
        finally:
            watcher.cancel()
