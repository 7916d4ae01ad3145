"""What a Kafka publisher owes its calls: queued events and their deliveries.

The bookkeeping under pantheon.events.producer's KafkaPublisher, kept apart
from its publishing and from its producer replacement
(pantheon.events.replacement): what it uses of a librdkafka
producer (`KafkaProducer`), an event encoded for the local queue with the
bytes it takes there (`Queued`), a call waiting on the deliveries of its
events (`Waiting`), one underlying producer and the calls still owed
deliveries on it (`Generation`), which delivery errors mean "not
acknowledged, retry", the UNAVAILABLE errors calls fail with, and settling
a call's future from the delivery thread: once, when the last of its events
is reported, so a batch of a thousand events wakes the event loop once, not
a thousand times. The bookkeeping is per call, not per event (one entry,
one delivery callback): a record batch queues a thousand events at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from confluent_kafka import KafkaError, KafkaException

from pantheon import context as ctx
from pantheon import tracing
from pantheon.errors import Unavailable
from pantheon.events.cloudevents import HeaderEncoder, Headers, headers_for

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


@dataclass(eq=False)
class Waiting:
    """A call's events in the local queue, and its future: settled once every
    event is queued and its delivery reported."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    #: When the call began queueing (perf_counter): delivery time counts from it.
    produced: float
    #: Events queued whose delivery is not reported yet.
    left: int = 0
    #: Bytes those events take in the local queue.
    size: int = 0
    #: Queueing is over: every event is queued, or the call gave up.
    queued: bool = False
    #: The first delivery error reported, which the call fails with.
    error: BaseException | None = None

    def note(self, error: BaseException | None) -> None:
        """Keep the first error, or the first that a retry cannot cure (a
        refusal outranks "not acknowledged", whatever order the reports came in)."""
        worse = isinstance(self.error, Unavailable) and not isinstance(error, Unavailable)
        if error is not None and (self.error is None or worse):
            self.error = error

    @property
    def owed(self) -> bool:
        """Whether a delivery report is still to come, or an event to be queued."""
        return not self.queued or self.left > 0

    def settle(self) -> None:
        """Settle the call's future on its event loop (from any thread)."""
        # RuntimeError: its event loop is closed, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, self.future, self.error)

    def abandon(self) -> None:
        """Nobody will await the future (the call failed while queueing)."""
        if not self.future.done():
            self.future.cancel()
        elif not self.future.cancelled():
            self.future.exception()  # retrieved: asyncio need not warn about it


@dataclass
class Generation:
    """One underlying producer, and the deliveries calls are waiting for."""

    number: int
    producer: KafkaProducer
    #: The fatal error that killed it; set once, never cleared.
    fatal: KafkaError | None = None
    #: Retired: nothing more is produced on it; its waiting calls have failed.
    retired: bool = False
    #: The calls owed deliveries (or still queueing), by the token of each call.
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


def prepare(events: Sequence[Event]) -> list[Queued]:
    """The events of one publish call, encoded for the local queue.

    They share the call's request id, its trace (the current span is the
    call's PRODUCER span, KafkaPublisher.publish) and their time, read once.
    """
    shared = {"ce_requestid": ctx.request_id.get(), tracing.TRACEPARENT: tracing.traceparent()}
    now = datetime.now(UTC)
    encoder = HeaderEncoder(time=now, extensions=shared)
    return [_queued(event, encoder, shared, now) for event in events]


def _queued(event: Event, encoder: HeaderEncoder, shared: dict[str, str], now: datetime) -> Queued:
    if event.extra_headers:  # a header of its own may replace a shared one
        headers = headers_for(
            event.payload,
            event_id=event.event_id,
            source=event.source,
            subject=event.subject,
            extensions={**shared, **dict(event.extra_headers)},
            time=now,
        )
    else:
        headers = encoder.headers(
            event.payload, event_id=event.event_id, source=event.source, subject=event.subject
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


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
