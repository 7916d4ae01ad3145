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
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer
from google.protobuf.message import Message

from pantheon import context as ctx
from pantheon import metrics
from pantheon.config import KafkaSettings
from pantheon.errors import Internal, Unavailable
from pantheon.events.cloudevents import Headers, headers_for

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


class KafkaProducer(Protocol):
    """What KafkaPublisher uses of confluent_kafka.Producer (tests hand in a fake)."""

    def produce(self, topic: str, *, value: bytes, key: bytes, headers: Headers, on_delivery: Any) -> None:
        """Queue one message; BufferError when the local queue is full."""
        ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...

    def list_topics(self, *, timeout: float) -> Any: ...

    def __len__(self) -> int:
        """Messages (and requests) in the local queue, not yet delivered."""
        ...


@dataclass(frozen=True)
class _Queued:
    """An event ready to produce, and the bytes it takes in the local queue."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers
    size: int


class KafkaPublisher:
    """EventPublisher on confluent-kafka with idempotence and acks=all."""

    def __init__(self, settings: KafkaSettings, *, producer: KafkaProducer | None = None) -> None:
        if producer is None:
            producer = Producer(
                {
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
                    "error_cb": self._on_error,
                }
            )
        self._producer: KafkaProducer = producer
        self._queue_max_messages = settings.queue_max_messages
        self._queue_max_bytes = settings.queue_max_kbytes * 1024
        self._queue_wait_s = settings.delivery_timeout_ms / 1000
        #: Bytes of the events this publisher queued and Kafka has not yet
        #: reported on (librdkafka does not tell; the delivery thread subtracts).
        self._queued_bytes = 0
        self._queued_lock = threading.Lock()
        self._brokers_down = False
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_down = True
        log.warning("kafka producer: %s", error.name())

    def _poll(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.1)

    def ready(self) -> bool:
        return not self._brokers_down

    async def probe(self) -> bool:
        try:
            await asyncio.to_thread(self._producer.list_topics, timeout=2.0)
        except KafkaException:
            self._brokers_down = True
            return False
        self._brokers_down = False
        return True

    async def publish(self, events: Sequence[Event]) -> None:
        # While brokers are known down, a metadata request tells cheaply
        # whether one is back, instead of queueing into the void.
        if self._brokers_down and not await self.probe():
            raise Unavailable("event backbone is unavailable, retry later")
        loop = asyncio.get_running_loop()
        batch = [_prepare(event) for event in events]
        deadline = loop.time() + self._queue_wait_s
        await self._wait_for_room(batch, deadline)
        futures: list[asyncio.Future[None]] = []
        try:
            for item in batch:
                future: asyncio.Future[None] = loop.create_future()
                # With room for the batch this never awaits: nothing else
                # produces between the check and the last event.
                await self._produce(item, self._reporter(loop, future, item), deadline)
                futures.append(future)
        except BaseException:
            for queued in futures:  # their outcome no longer matters to anyone
                queued.add_done_callback(_retrieve)
            raise
        results = await asyncio.gather(*futures, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]

    def _has_room(self, count: int, size: int) -> bool:
        return (
            len(self._producer) + count <= self._queue_max_messages
            and self._queued_bytes + size <= self._queue_max_bytes
        )

    async def _wait_for_room(self, batch: Sequence[_Queued], deadline: float) -> None:
        """Wait, without blocking the event loop, until the whole batch fits in
        the local queue (a batch larger than the queue: until it is empty);
        UNAVAILABLE `event_queue_full` at `deadline`."""
        count = min(len(batch), self._queue_max_messages)
        size = min(sum(item.size for item in batch), self._queue_max_bytes)
        loop = asyncio.get_running_loop()
        while not self._has_room(count, size):
            if loop.time() >= deadline:
                raise _queue_full()
            await asyncio.sleep(QUEUE_POLL_S)

    def _reporter(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], item: _Queued) -> Any:
        produced = time.perf_counter()
        topic = item.topic

        def report(error: KafkaError | None, _message: Any) -> None:
            with self._queued_lock:
                self._queued_bytes -= item.size
            loop.call_soon_threadsafe(_settle, future, error)
            if error is None:
                self._brokers_down = False
                metrics.EVENTS.labels(topic).inc()
                metrics.DELIVERY_SECONDS.observe(time.perf_counter() - produced)

        return report

    async def _produce(self, item: _Queued, on_delivery: Any, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                self._producer.produce(
                    item.topic, value=item.value, key=item.key, headers=item.headers, on_delivery=on_delivery
                )
            except BufferError:
                # Only when the batch is larger than the queue, or librdkafka
                # counts bytes differently: wait for room, asynchronously.
                if loop.time() >= deadline:
                    raise _queue_full() from None
                await asyncio.sleep(QUEUE_POLL_S)
                continue
            except KafkaException as exc:
                raise Internal("could not queue event") from exc
            with self._queued_lock:
                self._queued_bytes += item.size
            return

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (bounded), then stop the delivery thread."""
        self._closing.set()
        self._poller.join()
        left = self._producer.flush(timeout_s)
        if left:
            log.error("%d events undelivered at shutdown", left)


def _prepare(event: Event) -> _Queued:
    extensions = {"ce_requestid": ctx.request_id.get(), "traceparent": ctx.traceparent.get()}
    extensions.update(event.extra_headers)
    headers = headers_for(
        event.payload,
        event_id=event.event_id,
        source=event.source,
        subject=event.subject,
        extensions=extensions,
    )
    value = event.payload.SerializeToString()
    key = event.key.encode()
    size = len(value) + len(key) + sum(len(name) + len(data or b"") for name, data in headers)
    return _Queued(event.topic, key, value, headers, size)


def _queue_full() -> Unavailable:
    log.warning("kafka producer: the local queue stayed full for the whole delivery timeout")
    return Unavailable(
        "event backbone is backed up (events wait for delivery), retry later", reason="event_queue_full"
    )


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a settled future's exception as seen (its caller has gone)."""
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[None], error: KafkaError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    elif error.retriable() or error.code() in (KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT):
        future.set_exception(Unavailable("event backbone did not acknowledge, retry later"))
    else:
        log.error("kafka refused an event: %s", error.name())
        future.set_exception(Internal("event backbone refused the event"))
