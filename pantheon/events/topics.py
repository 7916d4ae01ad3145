"""Kafka topic names and their settings (documented in proto/.../events.proto).

Every topic has a restricted twin, `pantheon.restricted.<name>`, with the
same partitions and settings. Events about RESTRICTED data go there and only
there, so a Kafka user without the restricted grant never receives them: the
broker's ACLs keep them apart, not consumers filtering.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pantheon.metadata.access import is_restricted

PREFIX = "pantheon."
RESTRICTED_PREFIX = PREFIX + "restricted."


@dataclass(frozen=True)
class Topic:
    """A topic Pantheon produces to, with the settings it is created with."""

    name: str
    partitions: int
    config: dict[str, str]
    #: Carries events about RESTRICTED data; readable only with that grant.
    restricted: bool = False


def min_insync_replicas(replication_factor: int) -> int:
    """acks=all protects data only if a write needs more than the leader: with
    three replicas, two must have it (one may die, and a lone leader refuses
    writes instead of acknowledging what one disk holds); with fewer, one."""
    return 2 if replication_factor >= 3 else 1


#: Settings of every topic; `min.insync.replicas` is added for the
#: replication factor it is created with (min_insync_replicas).
_COMMON = {
    "cleanup.policy": "delete",
    "retention.ms": str(7 * 24 * 3600 * 1000),
    "message.timestamp.type": "CreateTime",
}


def restricted_name(name: str) -> str:
    """`pantheon.<x>` -> `pantheon.restricted.<x>`."""
    if name.startswith(RESTRICTED_PREFIX) or not name.startswith(PREFIX):
        raise ValueError(f"{name!r} is not a public Pantheon topic")
    return RESTRICTED_PREFIX + name.removeprefix(PREFIX)


def restricted_twin(topic: Topic) -> Topic:
    """The topic that carries `topic`'s events when their data is RESTRICTED."""
    return replace(topic, name=restricted_name(topic.name), restricted=True)


#: One DataStored event per stored object (single objects and record batches).
DATA_STORED = Topic("pantheon.data-stored.v1", 6, _COMMON)
#: One RecordIngested event per accepted record, keyed by source/entity.
RECORDS = Topic("pantheon.records.v1", 6, _COMMON)
#: Rejected input and messages consumers could not process, reason in headers.
DEAD_LETTER = Topic("pantheon.dead-letter.v1", 3, {**_COMMON, "retention.ms": str(30 * 24 * 3600 * 1000)})

#: The same three for RESTRICTED data: `pantheon.restricted.data-stored.v1`, ...
RESTRICTED_DATA_STORED = restricted_twin(DATA_STORED)
RESTRICTED_RECORDS = restricted_twin(RECORDS)
RESTRICTED_DEAD_LETTER = restricted_twin(DEAD_LETTER)

#: Events about PUBLIC and INTERNAL data: what any consumer may be granted.
PUBLIC_TOPICS: tuple[Topic, ...] = (DATA_STORED, RECORDS, DEAD_LETTER)
#: Events about RESTRICTED data: only for consumers holding that grant.
RESTRICTED_TOPICS: tuple[Topic, ...] = (RESTRICTED_DATA_STORED, RESTRICTED_RECORDS, RESTRICTED_DEAD_LETTER)
ALL_TOPICS: tuple[Topic, ...] = PUBLIC_TOPICS + RESTRICTED_TOPICS


def for_classification(
    topic: Topic | str, classification: int, *, restricted: Topic | str | None = None
) -> str:
    """The name of the topic an event about data of `classification` goes to.

    `topic` is the public topic (or its name) for that kind of event. For
    RESTRICTED data the answer is `restricted` when given (a deployment that
    renames topics passes its configured name), else `topic`'s restricted twin.
    """
    public = topic.name if isinstance(topic, Topic) else topic
    if not is_restricted(classification):
        return public
    if restricted is None:
        return restricted_name(public)
    name = restricted.name if isinstance(restricted, Topic) else restricted
    if name == public:
        # A misconfiguration that would hand RESTRICTED data to every reader.
        raise ValueError(f"the restricted topic must differ from the public one ({public})")
    return name
