"""A consumer helper for downstream components.

`EventConsumer` subscribes to Pantheon topics, decodes each record by its
`ce_dataschema` header into the typed protobuf payload and hands it to a
handler, inside a span that continues the producer's trace (its
`traceparent` header). A record the handler cannot process (it raises) or
that cannot be decoded goes to the dead-letter topic with the reason in headers, so one bad
record never blocks a partition. An event counts as processed once the
handler returned or the dead-letter topic acknowledged it; only then is its
id remembered and its offset due for commit. Events already processed (same
`ce_id`) are skipped: producers may deliver an event twice after a retry.

When neither the handler nor the dead-letter topic took an event, the
consumer seeks its partition back to that event, commits what was processed
before it, and raises `EventNotProcessed`: the event stays uncommitted, so it
is delivered again, to this consumer if it polls again or to the next member
of its group.

Offsets of processed events are committed in batches, and on `close()`:
when, and what a new member of the group starts from, is in
pantheon.events.offsets. Writing to the dead-letter topics is in
pantheon.events.dead_letters.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from google.protobuf.message import Message as ProtoMessage
from opentelemetry.trace import Span, SpanKind

from pantheon import tracing
from pantheon.events.cloudevents import Attributes, decode, parse_headers
from pantheon.events.dead_letters import DeadLetterRefused, DeadLetters
from pantheon.events.offsets import Offsets
from pantheon.events.topics import PUBLIC_TOPICS

log = logging.getLogger(__name__)


def reader_config(env: Mapping[str, str]) -> dict[str, Any]:
    """librdkafka settings of a downstream consumer, from the variables
    `scripts/stack env` prints: KAFKA_BOOTSTRAP, KAFKA_SASL_USERNAME,
    KAFKA_SASL_PASSWORD and PANTHEON_CA_FILE (KeyError names a missing one)."""
    return {
        "bootstrap.servers": env["KAFKA_BOOTSTRAP"],
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": env["KAFKA_SASL_USERNAME"],
        "sasl.password": env["KAFKA_SASL_PASSWORD"],
        "ssl.ca.location": env["PANTHEON_CA_FILE"],
    }


@dataclass(frozen=True)
class Received:
    """One decoded event and where it came from."""

    attributes: Attributes
    payload: ProtoMessage
    topic: str
    partition: int
    offset: int
    key: str


Handler = Callable[[Received], None]


class EventNotProcessed(RuntimeError):
    """Neither the handler nor the dead-letter topic took an event.

    The consumer sought its partition back to the event and did not commit
    it: it is delivered again (to this consumer if it polls again, or to the
    next member of its group)."""

    def __init__(self, topic: str, partition: int, offset: int, reason: str) -> None:
        super().__init__(
            f"event at {topic}[{partition}]@{offset} was neither handled nor dead-lettered "
            f"({reason}); not committing it"
        )
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.reason = reason


class _SeenIds:
    """The most recent event ids, bounded so memory stays flat."""

    def __init__(self, size: int) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> bool:
        """False if `event_id` was seen already."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True


#: The topics whose failed messages may go to the public dead-letter topic.
PUBLIC_TOPIC_NAMES = tuple(topic.name for topic in PUBLIC_TOPICS)


class EventConsumer:
    """Decode, handle, commit; dead-letter what fails; skip duplicates."""

    def __init__(
        self,
        client_config: dict[str, Any],
        group_id: str,
        topics: Sequence[str],
        handler: Handler,
        *,
        dlq_topic: str,
        restricted_dlq_topic: str | None = None,
        public_topics: Collection[str] = PUBLIC_TOPIC_NAMES,
        remember: int = 100_000,
        from_beginning: bool = True,
        commit_every: int = 500,
        commit_interval_s: float = 5.0,
        dlq_timeout_s: float = 30.0,
    ) -> None:
        config = {
            **client_config,
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
        }
        config.setdefault("on_commit", self._on_commit)
        self._consumer = Consumer(config)
        # What fails on a RESTRICTED topic carries RESTRICTED data: it goes to
        # the restricted dead-letter topic, never to the public one.
        self._dead_letters = DeadLetters(
            client_config,
            dlq_topic=dlq_topic,
            restricted_dlq_topic=restricted_dlq_topic,
            public_topics=public_topics,
            timeout_s=dlq_timeout_s,
        )
        self._handler = handler
        self._seen = _SeenIds(remember)
        self._offsets = Offsets(
            self._consumer,
            from_beginning=from_beginning,
            commit_every=commit_every,
            commit_interval_s=commit_interval_s,
        )
        self._consumer.subscribe(
            list(topics),
            on_assign=self._offsets.on_assign,
            on_revoke=self._offsets.on_revoke,
            on_lost=self._offsets.on_lost,
        )

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        # Given to the consumer before its offsets exist: they answer it.
        self._offsets.on_commit(error, partitions)

    # -- consuming ------------------------------------------------------------

    def poll_once(self, timeout_s: float = 1.0) -> bool:
        """Process at most one record; False when none arrived in time.

        Raises EventNotProcessed (after seeking back to it) for an event that
        neither the handler nor the dead-letter topic took."""
        message = self._consumer.poll(timeout_s)
        processed = False
        if message is not None:
            error = message.error()
            if error is None:
                self._process(message)
                processed = True
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer: %s", error.name())
        self._offsets.maybe_commit()
        return processed

    def wait_until_assigned(self, timeout_s: float = 30.0) -> None:
        """Join the group (processing whatever arrives meanwhile) until
        partitions are assigned, so events published next are not missed."""
        deadline = datetime.now(UTC).timestamp() + timeout_s
        while not self._consumer.assignment():
            if datetime.now(UTC).timestamp() > deadline:
                raise TimeoutError("no partitions assigned")
            self.poll_once(0.1)

    def run(self, *, max_messages: int | None = None, idle_timeout_s: float | None = None) -> int:
        """Process records until `max_messages` or `idle_timeout_s` without any."""
        handled = 0
        idle_since = datetime.now(UTC)
        while max_messages is None or handled < max_messages:
            if self.poll_once():
                handled += 1
                idle_since = datetime.now(UTC)
            elif (
                idle_timeout_s is not None
                and (datetime.now(UTC) - idle_since).total_seconds() > idle_timeout_s
            ):
                break
        return handled

    def _process(self, message: Message) -> None:
        headers = parse_headers(message.headers())
        # A CONSUMER span continuing the producer's trace (its `traceparent`
        # header; a missing or malformed one starts a new trace), current
        # while the handler runs, so the handler's own spans join it.
        with tracing.tracer.start_as_current_span(
            f"process {message.topic() or ''}",
            context=tracing.parent_from(headers.get(tracing.TRACEPARENT)),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": message.topic() or "",
                "messaging.destination.partition.id": str(message.partition() or 0),
                "messaging.kafka.offset": message.offset() or 0,
            },
        ) as span:
            self._handle(message, headers, span)

    def _handle(self, message: Message, headers: dict[str, str], span: Span) -> None:
        try:
            attributes, payload = decode(headers, message.value() or b"")
        except (ValueError, KeyError) as exc:
            tracing.set_error(span, "undecodable")
            self._dead_letter(message, "undecodable", type(exc).__name__)
            self._offsets.processed(message)
            return
        if span.is_recording():
            span.set_attribute("messaging.message.id", attributes.id)
        if attributes.id in self._seen:
            self._seen.add(attributes.id)  # recently seen again: kept longer
            log.debug("skipping duplicate event %s", attributes.id)
            self._offsets.processed(message)
            return
        key = (message.key() or b"").decode("utf-8", "replace")
        received = Received(
            attributes, payload, message.topic() or "", message.partition() or 0, message.offset() or 0, key
        )
        try:
            self._handler(received)
        except Exception as exc:
            log.warning("handler failed on event %s: %s", attributes.id, type(exc).__name__)
            tracing.set_error(span, "handler_failed")
            self._dead_letter(message, "handler_failed", type(exc).__name__)
        # Handled, or durably parked on the dead-letter topic: only now is
        # the event done, so only now does a redelivery count as a duplicate.
        self._seen.add(attributes.id)
        self._offsets.processed(message)

    def _dead_letter(self, message: Message, reason: str, error: str) -> None:
        """Return once the dead-letter topic acknowledged the message; else
        seek back to it and raise EventNotProcessed."""
        try:
            self._dead_letters.send(message, reason, error)
        except DeadLetterRefused as exc:
            self._stop(message, str(exc))

    def _stop(self, message: Message, reason: str) -> NoReturn:
        """Seek back to `message`, commit what was processed before it, raise."""
        topic, partition, offset = message.topic() or "", message.partition() or 0, message.offset() or 0
        try:
            # Also drops what was fetched after it on that partition.
            self._consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:
            # Still uncommitted: whoever owns the partition next reads it.
            log.warning("consumer: could not seek back to %s[%d]@%d: %s", topic, partition, offset, exc)
        log.error("consumer: stopping at %s[%d]@%d: %s", topic, partition, offset, reason)
        try:
            self._offsets.commit(asynchronous=False)
        except KafkaException as exc:
            log.warning("consumer: commit before stopping failed: %s", exc)
        raise EventNotProcessed(topic, partition, offset, reason)

    def close(self) -> None:
        """Commit what was processed (synchronously), then leave the group."""
        try:
            self._offsets.commit(asynchronous=False)
        except KafkaException as exc:
            log.error("consumer: final commit failed: %s", exc)
        finally:
            self._consumer.close()
            self._dead_letters.flush(10)
