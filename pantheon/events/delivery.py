"""What a Kafka publisher owes its calls: queued events and their deliveries.

The bookkeeping under pantheon.events.producer's KafkaPublisher, kept apart
from its publishing and from its producer replacement
(pantheon.events.replacement): what it uses of a librdkafka
producer (`KafkaProducer`), an event encoded for the local queue with the
bytes it takes there (`Queued`), a call waiting on one delivery
(`Waiting`), one underlying producer and the deliveries still owed on it
(`Generation`), which delivery errors mean "not acknowledged, retry", the
UNAVAILABLE errors calls fail with, and settling a call's future from the
delivery thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from confluent_kafka import KafkaError, KafkaException

from pantheon import context as ctx
from pantheon import tracing
from pantheon.errors import Unavailable
from pantheon.events.cloudevents import Headers, headers_for

if TYPE_CHECKING:
    from pantheon.events.producer import Event

log = logging.getLogger(__name__)


class KafkaProducer(Protocol):
    """What KafkaPublisher uses of confluent_kafka.Producer (tests hand in a fake)."""

    def produce(self, topic: str, *, value: bytes, key: bytes, headers: Headers, on_delivery: Any) -> None:
        """Queue one message; BufferError when the local queue is full."""
        ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None: ...

    def list_topics(self, *, timeout: float) -> Any: ...

    def __len__(self) -> int:
        """Messages (and requests) in the local queue, not yet delivered."""
        ...


#: librdkafka's error callback, which a producer must be created with.
ErrorCallback = Callable[[KafkaError], None]
#: Makes a producer that reports its errors to the callback it is given.
ProducerFactory = Callable[[ErrorCallback], KafkaProducer]


@dataclass(frozen=True)
class Queued:
    """An event ready to produce, and the bytes it takes in the local queue."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers
    size: int


@dataclass(frozen=True)
class Waiting:
    """A call's future for one queued event, until its delivery is reported."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    size: int


@dataclass
class Generation:
    """One underlying producer, and the deliveries calls are waiting for."""

    number: int
    producer: KafkaProducer
    #: The fatal error that killed it; set once, never cleared.
    fatal: KafkaError | None = None
    #: Retired: nothing more is produced on it; its waiting calls have failed.
    retired: bool = False
    waiting: dict[int, Waiting] = field(default_factory=dict)


#: Delivery errors that mean "not acknowledged, retry": timeouts, transport,
#: and the purge of a dead producer's messages.
UNACKNOWLEDGED = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._PURGE_QUEUE,
        KafkaError._PURGE_INFLIGHT,
        KafkaError._FATAL,
    }
)


def is_fatal(error: KafkaError) -> bool:
    return bool(error.fatal()) or error.code() == KafkaError._FATAL


def kafka_error(exc: KafkaException) -> KafkaError | None:
    error = exc.args[0] if exc.args else None
    return error if isinstance(error, KafkaError) else None


def prepare(event: Event) -> Queued:
    # The current span is the publish call's PRODUCER span (KafkaPublisher.publish).
    extensions = {"ce_requestid": ctx.request_id.get(), tracing.TRACEPARENT: tracing.traceparent()}
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
    return Queued(event.topic, key, value, headers, size)


def queue_full() -> Unavailable:
    log.warning("kafka producer: the local queue stayed full for the whole delivery timeout")
    return Unavailable(
        "event backbone is backed up (events wait for delivery), retry later", reason="event_queue_full"
    )


def replacing() -> Unavailable:
    return Unavailable("event backbone is recovering from a producer failure, retry later")


def unacknowledged() -> Unavailable:
    return Unavailable("event backbone did not acknowledge, retry later")


def retrieve(future: asyncio.Future[None]) -> None:
    """Mark a settled future's exception as seen (its caller has gone)."""
    if not future.cancelled():
        future.exception()


def notify(waiting: Waiting, error: BaseException | None) -> None:
    """Settle a call's future from any thread."""
    # RuntimeError: its event loop is closed, so nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        waiting.loop.call_soon_threadsafe(_settle, waiting.future, error)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
