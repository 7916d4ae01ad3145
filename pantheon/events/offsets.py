"""Where a consumer stands in the partitions it owns: start, processed, committed.

The bookkeeping under pantheon.events.consumer's EventConsumer: the group
membership callbacks (where a new member starts, what it commits before
letting a partition go) and the offsets of processed events.

Offsets of processed events are committed asynchronously in batches (every
`commit_every` events or `commit_interval_s` seconds, whichever comes first),
synchronously when partitions are revoked, and once more, synchronously, on
the consumer's `close()`. A crash between commits redelivers at most those
events, which the handler may then see again.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

log = logging.getLogger(__name__)

#: (topic, partition)
_Partition = tuple[str, int]


class Offsets:
    """The offsets of one consumer's partitions, committed on that consumer."""

    def __init__(
        self, consumer: Consumer, *, from_beginning: bool, commit_every: int, commit_interval_s: float
    ) -> None:
        self._consumer = consumer
        self._from_beginning = from_beginning
        self._commit_every = max(1, commit_every)
        self._commit_interval_s = commit_interval_s
        #: Per partition, the offset to commit next: past the last processed
        #: event, not yet sent in a commit.
        self._pending: dict[_Partition, int] = {}
        #: Per partition, the highest offset sent in a commit.
        self._sent: dict[_Partition, int] = {}
        self._since_commit = 0
        self._last_commit = time.monotonic()

    # -- group membership -----------------------------------------------------

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
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
                # The group's starting point is committed with the next batch,
                # so a member taking the partition over (say after this one
                # stopped on an event it could not process) starts here too,
                # not at its own "latest", past that event.
                self._pending[(partition.topic, partition.partition)] = high
        consumer.assign(partitions)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The next owner starts from the committed offsets: commit what this
        # member processed on them before letting go.
        offsets = [
            TopicPartition(p.topic, p.partition, self._pending.pop((p.topic, p.partition)))
            for p in partitions
            if (p.topic, p.partition) in self._pending
        ]
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                log.warning("consumer: commit on revocation failed: %s", exc)

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Another member owns them already: committing would fail.
        for p in partitions:
            self._pending.pop((p.topic, p.partition), None)

    # -- committing -----------------------------------------------------------

    def processed(self, message: Message) -> None:
        self._pending[(message.topic() or "", message.partition() or 0)] = (message.offset() or 0) + 1
        self._since_commit += 1

    def maybe_commit(self) -> None:
        due = self._since_commit >= self._commit_every or (
            self._pending and time.monotonic() - self._last_commit >= self._commit_interval_s
        )
        if not due:
            return
        try:
            self.commit(asynchronous=True)
        except KafkaException as exc:
            log.warning("consumer: commit failed: %s", exc)

    def commit(self, *, asynchronous: bool) -> None:
        """Commit the offsets of processed events (only those)."""
        self._since_commit = 0
        self._last_commit = time.monotonic()
        if not self._pending:
            return
        offsets = [
            TopicPartition(topic, partition, offset) for (topic, partition), offset in self._pending.items()
        ]
        self._pending.clear()
        for tp in offsets:
            self._sent[(tp.topic, tp.partition)] = max(
                tp.offset, self._sent.get((tp.topic, tp.partition), -1)
            )
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)  # answered in on_commit
                return
            results = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException:
            self._restore(offsets)
            raise
        failed = [tp for tp in results or () if tp.error is not None]
        if failed:
            self._restore(failed)
            raise KafkaException(failed[0].error)

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        failed = [tp for tp in partitions if error is not None or tp.error is not None]
        if not failed or (error is not None and error.code() == KafkaError._NO_OFFSET):
            return
        log.warning("consumer: commit failed: %s", error.name() if error is not None else failed[0].error)
        # Committed again with the next batch, unless a later commit covers it.
        try:
            assigned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        except (KafkaException, RuntimeError):  # closing
            return
        self._restore([tp for tp in failed if (tp.topic, tp.partition) in assigned])

    def _restore(self, offsets: list[TopicPartition]) -> None:
        for tp in offsets:
            key = (tp.topic, tp.partition)
            if tp.offset >= 0 and tp.offset >= self._sent.get(key, -1):
                self._pending.setdefault(key, tp.offset)
