"""The dead-letter topics of the consumer helper (pantheon.events.consumer).

A record the handler cannot process, or that cannot be decoded, is written
here with the reason in headers, so one bad record never blocks a partition.
What fails on a RESTRICTED topic carries RESTRICTED data: it goes to the
restricted dead-letter topic, never to the public one. A dead letter counts
only once Kafka acknowledged it; when it does not, `DeadLetterRefused` tells
the consumer, which then seeks back and stops instead of committing past the
record.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any, NoReturn

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from google.rpc import code_pb2, status_pb2
from pantheon_api.events.v1 import events_pb2

from pantheon.events.cloudevents import headers_for, parse_headers
from pantheon.events.topics import restricted_name

log = logging.getLogger(__name__)


class DeadLetterRefused(Exception):
    """The dead-letter topic did not take a message (the reason is the message)."""


class DeadLetters:
    """Writes failed records to the dead-letter topic their topic calls for."""

    def __init__(
        self,
        client_config: dict[str, Any],
        *,
        dlq_topic: str,
        restricted_dlq_topic: str | None,
        public_topics: Collection[str],
        timeout_s: float,
    ) -> None:
        self._client_config = client_config
        self._producer = self._new_producer()
        self._dlq_topic = dlq_topic
        self._restricted_dlq_topic = restricted_dlq_topic
        self._public_topics = frozenset(public_topics)
        self._timeout_s = timeout_s

    def _new_producer(self) -> Producer:
        return Producer({**self._client_config, "enable.idempotence": True, "acks": "all"})

    def topic_for(self, topic: str) -> str:
        """The dead-letter topic of what failed on `topic` (ValueError: none)."""
        # Fail closed: only what came from a topic known to be public goes to
        # the public dead-letter topic (deployments that rename topics pass
        # their public names as `public_topics`).
        if topic in self._public_topics:
            return self._dlq_topic
        if self._restricted_dlq_topic is None:
            # Derived from the public name (`pantheon.restricted.dead-letter.v1`);
            # a dead-letter topic outside that scheme must name its twin.
            self._restricted_dlq_topic = restricted_name(self._dlq_topic)
        return self._restricted_dlq_topic

    def send(self, message: Message, reason: str, error: str) -> None:
        """Return once the dead-letter topic acknowledged the message; else
        raise DeadLetterRefused."""
        try:
            target = self.topic_for(message.topic() or "")
        except ValueError as exc:
            raise DeadLetterRefused(f"no dead-letter topic: {exc}") from exc
        original = parse_headers(message.headers())
        where = f"{message.topic()}-{message.partition()}-{message.offset()}"
        letter = events_pb2.DeadLetter(
            event_id=where,
            reason=reason,
            status=status_pb2.Status(code=code_pb2.INTERNAL, message=error),
            original=(message.value() or b"")[: 900 * 1024],
            original_topic=message.topic() or "",
        )
        headers = headers_for(
            letter,
            event_id=where,
            source=original.get("ce_source", "/pantheon/unknown").removeprefix("/pantheon/"),
            subject=original.get("ce_id", ""),
            extensions={
                "pantheon_reason": reason,
                "pantheon_error": error,
                "pantheon_original_topic": message.topic() or "",
                "pantheon_original_partition": str(message.partition()),
                "pantheon_original_offset": str(message.offset()),
            },
        )
        reports: list[KafkaError | None] = []
        try:
            self._producer.produce(
                target,
                value=letter.SerializeToString(),
                key=message.key(),
                headers=headers,
                on_delivery=lambda failure, _message: reports.append(failure),
            )
        except (BufferError, KafkaException) as exc:
            self._failed(target, _kafka_error(exc), f"could not queue: {exc}")
        # A dead letter must be durable before the original counts as
        # processed: an empty queue is not enough, the delivery must succeed.
        left = self._producer.flush(self._timeout_s)
        # (`is None`: KafkaError's == against None leaves a TypeError set.)
        if left == 0 and len(reports) == 1 and reports[0] is None:
            return
        failure = reports[0] if reports else None
        why = failure.name() if failure is not None else f"no acknowledgement within {self._timeout_s:g} s"
        self._failed(target, failure, why)

    def _failed(self, target: str, failure: KafkaError | None, why: str) -> NoReturn:
        # Nothing of this letter may land later, after the event was
        # redelivered (a late copy would only duplicate the letter, but the
        # queue would keep growing while the topic is unreachable).
        try:
            self._producer.purge(in_queue=True, in_flight=False)
            self._producer.poll(0)
        except KafkaException:
            pass
        if failure is not None and (failure.fatal() or failure.code() == KafkaError._FATAL):
            log.error("consumer: the dead-letter producer failed fatally (%s); replacing it", failure.name())
            self._producer = self._new_producer()
        raise DeadLetterRefused(f"dead-letter topic {target} did not acknowledge: {why}")

    def flush(self, timeout_s: float) -> None:
        """Wait (bounded) for what is still queued."""
        self._producer.flush(timeout_s)


def _kafka_error(exc: BaseException) -> KafkaError | None:
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return error if isinstance(error, KafkaError) else None
