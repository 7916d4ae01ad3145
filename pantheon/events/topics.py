"""Kafka topic names and their settings (documented in proto/.../events.proto)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    """A topic Pantheon produces to, with the settings it is created with."""

    name: str
    partitions: int
    config: dict[str, str]


_COMMON = {
    # acks=all only protects data if a write needs more than the leader when
    # more replicas exist; on a single dev broker this is 1 and scales with it.
    "min.insync.replicas": "1",
    "cleanup.policy": "delete",
    "retention.ms": str(7 * 24 * 3600 * 1000),
    "message.timestamp.type": "CreateTime",
}

#: One DataStored event per stored object (single objects and record batches).
DATA_STORED = Topic("pantheon.data-stored.v1", 6, _COMMON)
#: One RecordIngested event per accepted record, keyed by source/entity.
RECORDS = Topic("pantheon.records.v1", 6, _COMMON)
#: Rejected input and messages consumers could not process, reason in headers.
DEAD_LETTER = Topic("pantheon.dead-letter.v1", 3, {**_COMMON, "retention.ms": str(30 * 24 * 3600 * 1000)})

ALL_TOPICS: tuple[Topic, ...] = (DATA_STORED, RECORDS, DEAD_LETTER)
