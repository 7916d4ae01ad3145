"""Publishing protobuf events to Kafka, with delivery awaited per call.

One idempotent producer (acks=all) per process. `publish` queues events and
returns when Kafka has acknowledged every one of them; a background thread
serves delivery reports, so no call ever flushes the shared producer. While
librdkafka reports every broker down, calls fail at once with UNAVAILABLE
instead of waiting for the delivery timeout.
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
from pantheon.events.cloudevents import headers_for

log = logging.getLogger(__name__)


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


class KafkaPublisher:
    """EventPublisher on confluent-kafka with idempotence and acks=all."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._producer = Producer(
            {
                **settings.client_config(),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": settings.linger_ms,
                "compression.type": "lz4",
                # The call fails once this passes; the event id stays the same
                # on the client's retry, so consumers can drop a late copy.
                "delivery.timeout.ms": settings.delivery_timeout_ms,
                "error_cb": self._on_error,
            }
        )
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
        futures: list[asyncio.Future[None]] = []
        for event in events:
            future: asyncio.Future[None] = loop.create_future()
            futures.append(future)
            self._produce(event, self._reporter(loop, future, event.topic))
        results = await asyncio.gather(*futures, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]

    def _reporter(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], topic: str) -> Any:
        produced = time.perf_counter()

        def report(error: KafkaError | None, _message: Any) -> None:
            loop.call_soon_threadsafe(_settle, future, error)
            if error is None:
                self._brokers_down = False
                metrics.EVENTS.labels(topic).inc()
                metrics.DELIVERY_SECONDS.observe(time.perf_counter() - produced)

        return report

    def _produce(self, event: Event, on_delivery: Any) -> None:
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
        while True:
            try:
                self._producer.produce(
                    event.topic, value=value, key=event.key.encode(), headers=headers, on_delivery=on_delivery
                )
                return
            except BufferError:
                # Local queue full: let deliveries drain, then try again.
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise Internal("could not queue event") from exc

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (bounded), then stop the delivery thread."""
        self._closing.set()
        self._poller.join()
        left = self._producer.flush(timeout_s)
        if left:
            log.error("%d events undelivered at shutdown", left)


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
