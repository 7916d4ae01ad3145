"""Replacing a Kafka producer that a fatal error killed: KafkaPublisher's other half.

A fatal error (librdkafka's idempotent producer gives up when it can no
longer keep its ordering and no-duplicate guarantees: `error_cb` with
`fatal()`, a delivery report or a produce call failing with one) kills the
producer for good. From that moment until a new producer is in place,
`ready()` and `probe()` are false: ingestion refuses fast, before storing
anything, and health reports NOT_SERVING. The delivery thread then retires the dead producer: it waits
briefly (`FATAL_DRAIN_S`) for the broker's answers to what was in flight,
purges the rest, and fails every call still waiting on it with UNAVAILABLE;
only a delivery Kafka acknowledged completes a call. It then creates a new
producer (after a backoff when fatal errors repeat) and is ready again.

KafkaPublisher (pantheon.events.producer) publishes; this class, its base,
holds what happens around that: creating each producer (a `Generation`),
marking one dead, and the delivery thread, which serves delivery reports
and replaces a dead producer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from confluent_kafka import KafkaError

from pantheon.events.delivery import (
    Generation,
    KafkaProducer,
    ProducerFactory,
    is_fatal,
    unacknowledged,
)

log = logging.getLogger(__name__)

#: After a fatal error, how long the dead producer may wait for the broker's
#: answers to the requests it had in flight before the rest is purged.
FATAL_DRAIN_S = 2.0
#: Delay before creating the next producer when fatal errors repeat within
#: `RECREATE_RESET_S` of the last replacement: doubling from the first value,
#: capped at the second. The first replacement is immediate.
RECREATE_BACKOFF_S = (0.5, 30.0)
RECREATE_RESET_S = 60.0


class ProducerReplacement:
    """The fatal-error half of KafkaPublisher: its producers' lifecycle."""

    # Set by KafkaPublisher.__init__ (pantheon.events.producer).
    _factory: ProducerFactory | None
    #: The current producer; replaced by the delivery thread only.
    _gen: Generation
    _lock: threading.Lock
    _queued_bytes: int
    _numbers: Iterator[int]
    _brokers_down: bool
    _replacements: int
    _last_replaced: float
    _closing: threading.Event

    def _new_generation(self, producer: KafkaProducer | None = None) -> Generation:
        number = next(self._numbers)
        if producer is None:
            assert self._factory is not None
            # The callback names the generation by number only, so a dead
            # producer is freed once it is dropped (no cycle through it).
            producer = self._factory(lambda error: self._on_error(number, error))
        return Generation(number, producer)

    # -- errors ---------------------------------------------------------------

    def _on_error(self, number: int, error: KafkaError) -> None:
        gen = self._gen
        if gen.number != number:
            return  # a replaced producer's last words
        if is_fatal(error):
            self._kill(gen, error)
            return
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_down = True
        log.warning("kafka producer: %s", error.name())

    def _kill(self, gen: Generation, error: KafkaError) -> None:
        """Mark `gen`'s producer dead; the delivery thread replaces it."""
        with self._lock:
            if gen.fatal is not None:
                return
            gen.fatal = error
        log.error(
            "kafka producer: fatal error %s (%s); refusing events until the producer is replaced",
            error.name(),
            error.str(),
        )

    def inject_fatal_error(self, reason: str = "injected fatal error") -> None:
        """Fault injection: act as if librdkafka had just raised a fatal error."""
        self._on_error(self._gen.number, KafkaError(KafkaError._FATAL, reason, fatal=True))

    # -- the delivery thread --------------------------------------------------

    def _serve(self) -> None:
        while not self._closing.is_set():
            gen = self._gen
            if gen.fatal is not None:
                self._replace(gen)
                continue
            try:
                gen.producer.poll(0.1)
            except Exception:  # raised by a callback: the thread must live on
                log.exception("kafka producer: serving delivery reports failed")

    def _replace(self, dead: Generation) -> None:
        self._retire(dead)
        if self._factory is None:
            log.error("kafka producer: fatal error, and no way to create another producer")
            self._closing.wait()
            return
        now = time.monotonic()
        if now - self._last_replaced > RECREATE_RESET_S:
            self._replacements = 0
        while not self._closing.is_set():
            first, cap = RECREATE_BACKOFF_S
            delay = 0.0 if self._replacements == 0 else min(cap, first * 2 ** (self._replacements - 1))
            self._replacements += 1
            if self._closing.wait(delay):
                return
            try:
                fresh = self._new_generation()
            except Exception:  # e.g. librdkafka rejecting the configuration
                log.exception("kafka producer: could not create a new producer")
                continue
            self._last_replaced = time.monotonic()
            self._brokers_down = False
            self._gen = fresh
            log.warning("kafka producer: replaced after a fatal error (producer #%d)", fresh.number)
            return

    def _retire(self, gen: Generation) -> None:
        """Settle everything the dead producer owes, Kafka's answers first."""
        try:
            # In-flight requests may still be acknowledged (librdkafka purges
            # only its queue on a fatal error); serve those reports, then
            # purge whatever is left and serve the purge reports.
            gen.producer.flush(FATAL_DRAIN_S)
            gen.producer.purge(in_queue=True, in_flight=True, blocking=True)
            gen.producer.poll(0)
        except Exception:
            log.exception("kafka producer: purging the dead producer failed")
        with self._lock:
            gen.retired = True
            calls = list(gen.waiting.values())
            gen.waiting.clear()
            unreported = sum(waiting.left for waiting in calls)
            for waiting in calls:
                self._queued_bytes -= waiting.size
                waiting.note(unacknowledged())
                waiting.settle()
        if unreported:
            log.warning("kafka producer: %d events of the dead producer failed unreported", unreported)
