"""Publishing protobuf events to Kafka, with delivery awaited per call.

One idempotent producer (acks=all) per process. `publish` queues events and
returns when Kafka has acknowledged every one of them; a background thread
serves delivery reports, so no call ever flushes the shared producer. While
librdkafka reports every broker down, calls fail at once with UNAVAILABLE
instead of waiting for the delivery timeout.

The local queue is bounded (`queue_max_messages`, `queue_max_kbytes`). A call
queues its whole batch at once, or none of it: it first waits, without
blocking the event loop, until the queue has room for every event of the
batch, then produces them all without yielding to other calls. If the room
does not come within the delivery timeout, the call fails with UNAVAILABLE
(`event_queue_full`, retryable) and has queued nothing. Two cases can still
leave part of a batch queued when the call fails: a batch larger than the
whole queue, and a librdkafka refusal of one event (a KafkaException such as
an event over the broker's message size, INTERNAL). The events already
queued may then be delivered; their ids are deterministic, so the client's
retry republishes the same ids and consumers drop the copies.

A fatal error kills the producer; replacing it (and the delivery thread)
is in pantheon.events.replacement. What the publisher owes its calls
(queued events, waiting deliveries, one producer's generation) is kept in
pantheon.events.delivery.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer
from google.protobuf.message import Message
from opentelemetry.trace import SpanKind

from pantheon import metrics, tracing
from pantheon.config import KafkaSettings
from pantheon.errors import Internal, Unavailable
from pantheon.events.delivery import (
    UNACKNOWLEDGED,
    ErrorCallback,
    Generation,
    KafkaProducer,
    ProducerFactory,
    Queued,
    Waiting,
    is_fatal,
    kafka_error,
    prepare,
    queue_full,
    replacing,
    unacknowledged,
)
from pantheon.events.replacement import ProducerReplacement

log = logging.getLogger(__name__)

#: How often a call waiting for room in the full local queue looks again
#: (on the event loop, with asyncio.sleep: the delivery thread drains it).
QUEUE_POLL_S = 0.02


@dataclass(frozen=True)
class Event:
    """One event to publish: where, under which key, and what."""

    topic: str
    key: str
    payload: Message
    event_id: str
    source: str
    subject: str = ""
    extra_headers: tuple[tuple[str, str], ...] = ()


class EventPublisher(Protocol):
    """What services need to announce data."""

    def ready(self) -> bool:
        """False while the event backbone is known to be unreachable."""
        ...

    async def publish(self, events: Sequence[Event]) -> None:
        """Return once every event is acknowledged; raise Unavailable otherwise."""
        ...

    async def probe(self) -> bool:
        """Whether a broker answers now (for health checks)."""
        ...


def new_producer(settings: KafkaSettings, error_cb: ErrorCallback | None) -> KafkaProducer:
    """An idempotent producer (acks=all) with the services' settings; `error_cb`
    hears of the client's own errors (a fatal one asks for a replacement)."""
    config: dict[str, Any] = {
        **settings.client_config(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.linger_ms,
        "compression.type": "lz4",
        # The call fails once this passes; the event id stays the same
        # on the client's retry, so consumers can drop a late copy.
        "delivery.timeout.ms": settings.delivery_timeout_ms,
        "queue.buffering.max.messages": settings.queue_max_messages,
        "queue.buffering.max.kbytes": settings.queue_max_kbytes,
    }
    if error_cb is not None:
        config["error_cb"] = error_cb
    return Producer(config)


class KafkaPublisher(ProducerReplacement):
    """EventPublisher on confluent-kafka with idempotence and acks=all."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        producer: KafkaProducer | None = None,
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        # A producer handed in alone cannot be replaced after a fatal error:
        # the publisher then stays not ready until it is closed.
        if producer is None and producer_factory is None:
            producer_factory = self._kafka_producer
        self._settings = settings
        self._factory = producer_factory
        self._queue_max_messages = settings.queue_max_messages
        self._queue_max_bytes = settings.queue_max_kbytes * 1024
        self._queue_wait_s = settings.delivery_timeout_ms / 1000
        #: Guards the generations' waiting calls and their retirement, and
        #: the byte count below.
        self._lock = threading.Lock()
        #: Bytes of the events this publisher queued and Kafka has not yet
        #: reported on (librdkafka does not tell; the delivery thread subtracts,
        #: per report an even share of what its call still has queued).
        self._queued_bytes = 0
        self._tokens = itertools.count()
        #: Acknowledged-events counters, by topic.
        self._counters: dict[str, Any] = {}
        self._numbers = itertools.count(1)
        self._brokers_down = False
        self._replacements = 0
        self._last_replaced = float("-inf")
        self._closing = threading.Event()
        self._gen = self._new_generation(producer)
        self._poller = threading.Thread(target=self._serve, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _kafka_producer(self, error_cb: ErrorCallback) -> KafkaProducer:
        return new_producer(self._settings, error_cb)

    # -- health ---------------------------------------------------------------

    def ready(self) -> bool:
        return self._gen.fatal is None and not self._brokers_down

    async def probe(self) -> bool:
        gen = self._gen
        if gen.fatal is not None:
            return False
        try:
            await asyncio.to_thread(gen.producer.list_topics, timeout=2.0)
        except KafkaException as exc:
            error = kafka_error(exc)
            if error is not None and is_fatal(error):
                self._kill(gen, error)
            self._brokers_down = True
            return False
        self._brokers_down = False
        return gen.fatal is None

    # -- publishing -----------------------------------------------------------

    async def publish(self, events: Sequence[Event]) -> None:
        # One PRODUCER span for the batch, until Kafka acknowledged it; every
        # event carries its context in the `traceparent` header (delivery.prepare).
        topics = sorted({event.topic for event in events})
        with tracing.tracer.start_as_current_span(
            f"send {topics[0]}" if len(topics) == 1 else "send",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": ",".join(topics),
                "messaging.batch.message_count": len(events),
            },
        ):
            await self._publish(events)

    async def _publish(self, events: Sequence[Event]) -> None:
        if self._gen.fatal is not None:
            raise replacing()
        # While brokers are known down, a metadata request tells cheaply
        # whether one is back, instead of queueing into the void.
        if self._brokers_down and not await self.probe():
            raise Unavailable("event backbone is unavailable, retry later")
        if not events:
            return
        loop = asyncio.get_running_loop()
        batch = prepare(events)
        deadline = loop.time() + self._queue_wait_s
        await self._wait_for_room(batch, deadline)
        # The whole batch goes to one producer: the one current now.
        gen = self._gen
        token = next(self._tokens)
        # Settled once every event is queued and its delivery reported, with
        # the first error; one callback serves every event of the call.
        waiting = Waiting(loop, loop.create_future(), time.perf_counter())
        report = self._reporter(gen, token, waiting)
        try:
            queued = 0
            while True:
                # With room for the batch this queues it all at once: nothing
                # else produces between the check and the last event.
                queued = self._produce(gen, token, waiting, report, batch, queued)
                if queued == len(batch):
                    break
                # Only when the batch is larger than the queue, or librdkafka
                # counts bytes differently: wait for room, asynchronously.
                if loop.time() >= deadline:
                    raise queue_full()
                await asyncio.sleep(QUEUE_POLL_S)
        except BaseException:
            # What is queued may still be delivered; nobody waits for it.
            self._stop_queueing(gen, token, waiting)
            waiting.abandon()
            raise
        self._stop_queueing(gen, token, waiting)
        await waiting.future

    def _has_room(self, count: int, size: int) -> bool:
        return (
            len(self._gen.producer) + count <= self._queue_max_messages
            and self._queued_bytes + size <= self._queue_max_bytes
        )

    async def _wait_for_room(self, batch: Sequence[Queued], deadline: float) -> None:
        """Wait, without blocking the event loop, until the whole batch fits in
        the local queue (a batch larger than the queue: until it is empty);
        UNAVAILABLE `event_queue_full` at `deadline`."""
        count = min(len(batch), self._queue_max_messages)
        size = min(sum(item.size for item in batch), self._queue_max_bytes)
        loop = asyncio.get_running_loop()
        while not self._has_room(count, size):
            if self._gen.fatal is not None:
                raise replacing()
            if loop.time() >= deadline:
                raise queue_full()
            await asyncio.sleep(QUEUE_POLL_S)

    def _reporter(self, gen: Generation, token: int, waiting: Waiting) -> Any:
        """The delivery callback of every event of one call."""

        def report(error: KafkaError | None, message: Any) -> None:
            if error is not None and is_fatal(error):
                self._kill(gen, error)
            failure: BaseException | None
            if error is None:
                failure = None
            elif gen.fatal is not None or error.code() in UNACKNOWLEDGED or error.retriable():
                # Not acknowledged: the client's retry keeps the event's id.
                failure = unacknowledged()
            else:
                log.error("kafka refused an event: %s", error.name())
                failure = Internal("event backbone refused the event")
            with self._lock:
                if gen.waiting.get(token) is not waiting:
                    return  # the call already failed with its retired producer
                # Which event this is, the report does not say: its call's
                # bytes are freed evenly, the last report freeing the rest.
                share = waiting.size // waiting.left
                waiting.size -= share
                self._queued_bytes -= share
                waiting.left -= 1
                waiting.note(failure)
                if not waiting.owed:
                    self._settled(gen, token, waiting)
            if error is None:
                if gen is self._gen:
                    self._brokers_down = False
                self._acknowledged(message.topic()).inc()
                metrics.DELIVERY_SECONDS.observe(time.perf_counter() - waiting.produced)

        return report

    def _acknowledged(self, topic: str) -> Any:
        """The acknowledged-events counter of `topic` (its child, looked up once)."""
        counter = self._counters.get(topic)
        if counter is None:
            counter = self._counters[topic] = metrics.EVENTS.labels(topic)
        return counter

    def _settled(self, gen: Generation, token: int, waiting: Waiting) -> None:
        """The call is owed nothing more: free its room and wake it. Under the lock."""
        del gen.waiting[token]
        self._queued_bytes -= waiting.size
        waiting.settle()

    def _stop_queueing(self, gen: Generation, token: int, waiting: Waiting) -> None:
        with self._lock:
            waiting.queued = True
            if gen.waiting.get(token) is waiting and not waiting.owed:
                self._settled(gen, token, waiting)

    def _produce(
        self, gen: Generation, token: int, waiting: Waiting, report: Any, batch: Sequence[Queued], start: int
    ) -> int:
        """Queue `batch` from `start` on, in one go; how far it got (short of
        the end only when the local queue is full)."""
        fatal: KafkaError | None = None
        with self._lock:
            # A dead producer takes nothing more: what it would queue could
            # never be acknowledged.
            if gen.fatal is not None or gen.retired:
                raise replacing()
            gen.waiting[token] = waiting
            produce = gen.producer.produce
            for index in range(start, len(batch)):
                item = batch[index]
                try:
                    produce(
                        item.topic, value=item.value, key=item.key, headers=item.headers, on_delivery=report
                    )
                except BufferError:
                    return index
                except KafkaException as exc:
                    fatal = kafka_error(exc)
                    if fatal is None or not is_fatal(fatal):
                        raise Internal("could not queue event") from exc
                    break
                # Delivery reports are served by poll() on the delivery
                # thread, which takes this lock first: none is missed.
                waiting.left += 1
                waiting.size += item.size
                self._queued_bytes += item.size
            else:
                return len(batch)
        assert fatal is not None
        self._kill(gen, fatal)
        raise replacing()

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (bounded), then stop the delivery thread."""
        self._closing.set()
        self._poller.join()
        left = self._gen.producer.flush(timeout_s)
        if left:
            log.error("%d events undelivered at shutdown", left)
