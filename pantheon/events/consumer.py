"""A consumer helper for downstream components.

`EventConsumer` subscribes to Pantheon topics, decodes each record by its
`ce_dataschema` header into the typed protobuf payload, hands it to a
handler, and commits the offset only after the handler returned. A record
the handler cannot process (it raises) or that cannot be decoded goes to the
dead-letter topic with the reason in headers, and is then committed, so one
bad record never blocks a partition. Events already handled (same `ce_id`)
are skipped: producers may deliver an event twice after a retry.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from google.protobuf.message import Message as ProtoMessage
from google.rpc import code_pb2, status_pb2
from pantheon_api.events.v1 import events_pb2

from pantheon.events.cloudevents import Attributes, decode, headers_for, parse_headers
from pantheon.events.topics import PUBLIC_TOPICS, restricted_name

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


class _SeenIds:
    """The most recent event ids, bounded so memory stays flat."""

    def __init__(self, size: int) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size

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
    ) -> None:
        self._consumer = Consumer(
            {
                **client_config,
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest" if from_beginning else "latest",
            }
        )
        self._dlq = Producer({**client_config, "enable.idempotence": True, "acks": "all"})
        self._dlq_topic = dlq_topic
        # What fails on a RESTRICTED topic carries RESTRICTED data: it goes to
        # the restricted dead-letter topic, never to the public one.
        self._restricted_dlq_topic = restricted_dlq_topic
        self._public_topics = frozenset(public_topics)
        self._handler = handler
        self._seen = _SeenIds(remember)
        self._from_beginning = from_beginning
        self._consumer.subscribe(list(topics), on_assign=self._on_assign)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # A new group starting "at the end" must start at the end as of its
        # assignment; librdkafka resolves "latest" lazily, at the first
        # fetch, and would skip events published in between.
        if self._from_beginning:
            return
        committed = consumer.committed(partitions, timeout=10)
        for partition, done in zip(partitions, committed, strict=True):
            if done.offset < 0:
                _, high = consumer.get_watermark_offsets(partition, timeout=10)
                partition.offset = high
        consumer.assign(partitions)

    def poll_once(self, timeout_s: float = 1.0) -> bool:
        """Process at most one record; False when none arrived in time."""
        message = self._consumer.poll(timeout_s)
        if message is None:
            return False
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer: %s", error.name())
            return False
        self._process(message)
        return True

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
        try:
            attributes, payload = decode(headers, message.value() or b"")
        except (ValueError, KeyError) as exc:
            self._dead_letter(message, "undecodable", type(exc).__name__)
            return
        if not self._seen.add(attributes.id):
            log.debug("skipping duplicate event %s", attributes.id)
            self._commit(message)
            return
        key = (message.key() or b"").decode("utf-8", "replace")
        received = Received(
            attributes, payload, message.topic() or "", message.partition() or 0, message.offset() or 0, key
        )
        try:
            self._handler(received)
        except Exception as exc:
            log.warning("handler failed on event %s: %s", attributes.id, type(exc).__name__)
            self._dead_letter(message, "handler_failed", type(exc).__name__)
            return
        self._commit(message)

    def _dlq_for(self, topic: str) -> str:
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

    def _dead_letter(self, message: Message, reason: str, error: str) -> None:
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
        self._dlq.produce(
            self._dlq_for(message.topic() or ""),
            value=letter.SerializeToString(),
            key=message.key(),
            headers=headers,
        )
        # A dead letter must be durable before the original is committed away.
        if self._dlq.flush(30) != 0:
            raise RuntimeError("dead-letter topic did not acknowledge; not committing")
        self._commit(message)

    def _commit(self, message: Message) -> None:
        self._consumer.commit(message=message, asynchronous=False)

    def close(self) -> None:
        self._consumer.close()
        self._dlq.flush(10)
