"""Stand-ins for confluent_kafka's Producer and Consumer, for unit tests of
the events library (tests/unit/test_producer_*.py, test_consumer_*.py).

They keep what the code under test relies on: a producer's delivery reports
are served by poll() and flush(), a fatal error reaches the error callback,
and a consumer's poll() returns one record at a time from each partition's
position, which seek() moves and commit() records.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from pantheon_api.events.v1 import events_pb2

from pantheon.events import consumer as consumer_module
from pantheon.events import dead_letters
from pantheon.events.cloudevents import headers_for

Report = Callable[[KafkaError | None, Any], None]


@dataclass(frozen=True)
class Delivered:
    """The message a delivery report names, with the accessor the publisher reads."""

    _topic: str

    def topic(self) -> str:
        return self._topic


class FakeProducer:
    """A producer whose deliveries the test decides, and which can die fatally.

    `deliver()` reports what is queued as acknowledged; `die()` raises a fatal
    error the way librdkafka does (error callback, then every produce call
    fails); `flush()` serves the acknowledgements listed in `acked_on_flush`
    (Kafka's answers to in-flight requests); `purge()` fails the rest with
    _PURGE_INFLIGHT, reported by the next poll().
    """

    def __init__(self, error_cb: Callable[[KafkaError], None] | None = None) -> None:
        self.error_cb = error_cb
        self.queue: list[tuple[str, Report, Delivered]] = []
        self.produced: list[str] = []
        self.acked_on_flush: set[str] = set()
        self.fatal: KafkaError | None = None
        self.purged = False
        self._reports: list[tuple[Report, KafkaError | None, Delivered]] = []
        self._lock = threading.Lock()

    def produce(self, topic: str, *, value: bytes, key: bytes, headers: Any, on_delivery: Report) -> None:
        if self.fatal is not None:
            raise KafkaException(KafkaError(KafkaError._FATAL, "producer is dead", fatal=True))
        event_id = dict(headers)["ce_id"].decode()
        with self._lock:
            self.queue.append((event_id, on_delivery, Delivered(topic)))
        self.produced.append(event_id)

    def die(self, code: int = KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER) -> None:
        """A fatal idempotence error, reported through the error callback."""
        self.fatal = KafkaError(code, "unable to retry without risking duplication", fatal=True)
        assert self.error_cb is not None
        self.error_cb(self.fatal)

    def deliver(self, error: KafkaError | None = None) -> None:
        """Kafka answers everything queued (None: acknowledged)."""
        with self._lock:
            queued, self.queue = self.queue, []
            self._reports += [(report, error, message) for _, report, message in queued]

    def _serve(self) -> None:
        with self._lock:
            reports, self._reports = self._reports, []
        for report, error, message in reports:
            report(error, message)

    def poll(self, timeout: float) -> int:
        self._serve()
        time.sleep(min(timeout, 0.005))
        return 0

    def flush(self, timeout: float) -> int:
        with self._lock:
            acked = [item for item in self.queue if item[0] in self.acked_on_flush]
            self.queue = [item for item in self.queue if item[0] not in self.acked_on_flush]
            self._reports += [(report, None, message) for _, report, message in acked]
        self._serve()
        return len(self.queue)

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        self.purged = True
        with self._lock:
            queued, self.queue = self.queue, []
            purged = KafkaError(KafkaError._PURGE_INFLIGHT)
            self._reports += [(report, purged, message) for _, report, message in queued]

    def list_topics(self, *, timeout: float) -> Any:
        if self.fatal is not None:
            raise KafkaException(KafkaError(KafkaError._FATAL, "producer is dead", fatal=True))
        return None

    def __len__(self) -> int:
        return len(self.queue)


@dataclass
class FakeMessage:
    """A consumed record, with confluent_kafka.Message's accessors."""

    _topic: str
    _partition: int
    _offset: int
    _value: bytes
    _headers: list[tuple[str, bytes]]
    _key: bytes = b"src"

    def error(self) -> KafkaError | None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return self._key

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers


def record(topic: str, partition: int, offset: int, event_id: str) -> FakeMessage:
    """A DataStored event as the services publish it."""
    payload = events_pb2.DataStored(event_id=event_id)
    headers = headers_for(payload, event_id=event_id, source="src", subject=event_id)
    encoded = [(name, data.encode() if isinstance(data, str) else (data or b"")) for name, data in headers]
    return FakeMessage(topic, partition, offset, payload.SerializeToString(), encoded)


@dataclass
class Commit:
    offsets: dict[tuple[str, int], int]
    asynchronous: bool


@dataclass
class FakeConsumer:
    """A consumer of records the test puts in `log`, one partition after another.

    Each partition is read from its position; seek() moves it. commit()
    records what it was asked in `commits` and `stored` (asynchronous commits are confirmed through the
    on_commit callback at the next poll, as librdkafka does).
    """

    config: dict[str, Any]
    log: dict[tuple[str, int], list[FakeMessage]] = field(default_factory=dict)
    position: dict[tuple[str, int], int] = field(default_factory=dict)
    commits: list[Commit] = field(default_factory=list)
    #: What the group committed, by partition (committed() answers from it).
    stored: dict[tuple[str, int], int] = field(default_factory=dict)
    fail_commits: KafkaError | None = None
    seeks: list[tuple[str, int, int]] = field(default_factory=list)
    callbacks: dict[str, Any] = field(default_factory=dict)
    closed: bool = False
    _answers: list[tuple[KafkaError | None, list[TopicPartition]]] = field(default_factory=list)

    def add(self, *messages: FakeMessage) -> None:
        for message in messages:
            self.log.setdefault((message.topic(), message.partition()), []).append(message)

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(topic, partition) for topic, partition in self.log]

    def poll(self, timeout: float) -> FakeMessage | None:
        answers, self._answers = self._answers, []
        for error, partitions in answers:
            self.config["on_commit"](error, partitions)
        for where, messages in self.log.items():
            at = self.position.get(where, 0)
            for message in messages:
                if message.offset() >= at:
                    self.position[where] = message.offset() + 1
                    return message
        return None

    def seek(self, partition: TopicPartition) -> None:
        self.seeks.append((partition.topic, partition.partition, partition.offset))
        self.position[(partition.topic, partition.partition)] = partition.offset

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        asked = {(tp.topic, tp.partition): tp.offset for tp in offsets}
        self.commits.append(Commit(asked, asynchronous))
        if asynchronous:
            self._answers.append((self.fail_commits, offsets))
            if self.fail_commits is None:
                self.stored.update(asked)
            return None
        if self.fail_commits is not None:
            raise KafkaException(self.fail_commits)
        self.stored.update(asked)
        return offsets

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.stored.get((tp.topic, tp.partition), -1001))
            for tp in partitions
        ]

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
        messages = self.log.get((partition.topic, partition.partition), [])
        return 0, max((m.offset() + 1 for m in messages), default=0)

    def assign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.offset >= 0:
                self.position[(tp.topic, tp.partition)] = tp.offset

    def close(self) -> None:
        self.closed = True


class FakeDeadLetters:
    """The consumer's dead-letter producer: `fail` makes deliveries fail."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.fail: KafkaError | None = None
        self.letters: list[str] = []
        self._queued: list[tuple[str, Report]] = []

    def produce(self, topic: str, *, value: bytes, key: bytes, headers: Any, on_delivery: Report) -> None:
        self._queued.append((topic, on_delivery))

    def flush(self, timeout: float) -> int:
        queued, self._queued = self._queued, []
        for topic, report in queued:
            if self.fail is None:
                self.letters.append(topic)
            report(self.fail, None)
        return 0

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        self._queued.clear()

    def poll(self, timeout: float) -> int:
        return 0


def fake_kafka(monkeypatch: Any) -> list[FakeConsumer]:
    """Make EventConsumer build FakeConsumers (returned as they are made) and
    dead-letter FakeDeadLetters producers; `monkeypatch` undoes it."""
    made: list[FakeConsumer] = []

    def build(config: dict[str, Any]) -> FakeConsumer:
        made.append(FakeConsumer(config))
        return made[-1]

    monkeypatch.setattr(consumer_module, "Consumer", build)
    monkeypatch.setattr(dead_letters, "Producer", FakeDeadLetters)
    return made
