"""RESTRICTED data on its own topics, and one least-privilege Kafka user per component.

No broker here: the topic choice, the ACL table and the credentials upgrade
as data. tests/integration/test_kafka_restricted.py proves the same against
a real broker.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from enum import Enum
from pathlib import Path

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.config import KafkaSettings
from pantheon.devstack import kafka_admin
from pantheon.devstack.credentials import (
    KAFKA_ADMIN_USER,
    KAFKA_INGEST_USER,
    KAFKA_READER_USER,
    KAFKA_SIMULATION_USER,
    Credentials,
    load_or_create,
)
from pantheon.events import topics
from pantheon.events.topics import (
    ALL_TOPICS,
    DATA_STORED,
    DEAD_LETTER,
    PUBLIC_TOPICS,
    RECORDS,
    RESTRICTED_DATA_STORED,
    RESTRICTED_DEAD_LETTER,
    RESTRICTED_RECORDS,
    RESTRICTED_TOPICS,
    for_classification,
)
from pantheon.ingest import announce
from pantheon.ingest import records as batch

PUBLIC_NAMES = {t.name for t in PUBLIC_TOPICS}
RESTRICTED_NAMES = {t.name for t in RESTRICTED_TOPICS}
UNRESTRICTED = (md.CLASSIFICATION_UNSPECIFIED, md.CLASSIFICATION_PUBLIC, md.CLASSIFICATION_INTERNAL)

# -- topics -------------------------------------------------------------------------------------


def test_the_restricted_topics_are_twins_of_the_public_ones() -> None:
    assert [t.name for t in RESTRICTED_TOPICS] == [
        "pantheon.restricted.data-stored.v1",
        "pantheon.restricted.records.v1",
        "pantheon.restricted.dead-letter.v1",
    ]
    for public, restricted in zip(PUBLIC_TOPICS, RESTRICTED_TOPICS, strict=True):
        assert (restricted.partitions, restricted.config) == (public.partitions, public.config)
        assert restricted.restricted and not public.restricted
    assert len({t.name for t in ALL_TOPICS}) == len(ALL_TOPICS) == 6


@pytest.mark.parametrize("classification", UNRESTRICTED)
def test_unrestricted_data_stays_on_the_public_topics(classification: int) -> None:
    for public in PUBLIC_TOPICS:
        assert for_classification(public, classification) == public.name
        assert for_classification(public.name, classification, restricted="anything") == public.name


def test_restricted_data_goes_to_the_twin_or_the_configured_topic() -> None:
    restricted = md.CLASSIFICATION_RESTRICTED
    assert for_classification(DATA_STORED, restricted) == RESTRICTED_DATA_STORED.name
    assert for_classification(RECORDS.name, restricted) == RESTRICTED_RECORDS.name
    assert for_classification(DEAD_LETTER, restricted, restricted=RESTRICTED_DEAD_LETTER) == (
        RESTRICTED_DEAD_LETTER.name
    )
    assert (
        for_classification("acme.events", restricted, restricted="acme.secret-events") == "acme.secret-events"
    )


def test_an_unknown_classification_fails_closed() -> None:
    assert topics.is_restricted(md.CLASSIFICATION_RESTRICTED)
    assert topics.is_restricted(99)  # a level added to the proto later
    assert for_classification(DATA_STORED, 99) == RESTRICTED_DATA_STORED.name


def test_a_restricted_topic_equal_to_the_public_one_is_refused() -> None:
    with pytest.raises(ValueError, match="must differ"):
        for_classification(DATA_STORED, md.CLASSIFICATION_RESTRICTED, restricted=DATA_STORED.name)
    with pytest.raises(ValueError):
        topics.restricted_name(RESTRICTED_RECORDS.name)  # no twin of a twin
    with pytest.raises(ValueError):
        topics.restricted_name("other.records.v1")


def test_kafka_settings_carry_the_restricted_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "PANTHEON_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "PANTHEON_KAFKA_USERNAME": "u",
        "PANTHEON_KAFKA_PASSWORD": "p",
        "PANTHEON_CA_FILE": "/ca.pem",
    }
    defaults = KafkaSettings.from_env(env)
    assert (
        defaults.restricted_events_topic,
        defaults.restricted_records_topic,
        defaults.restricted_dlq_topic,
    ) == (
        RESTRICTED_DATA_STORED.name,
        RESTRICTED_RECORDS.name,
        RESTRICTED_DEAD_LETTER.name,
    )
    renamed = KafkaSettings.from_env(
        {
            **env,
            "PANTHEON_RESTRICTED_EVENTS_TOPIC": "r.e",
            "PANTHEON_RESTRICTED_RECORDS_TOPIC": "r.r",
            "PANTHEON_RESTRICTED_DLQ_TOPIC": "r.d",
        }
    )
    assert (
        renamed.restricted_events_topic,
        renamed.restricted_records_topic,
        renamed.restricted_dlq_topic,
    ) == (
        "r.e",
        "r.r",
        "r.d",
    )


# -- the ingestion service's choice -------------------------------------------------------------


def _batch(classification: md.Classification.ValueType) -> md.Metadata:
    return md.Metadata(
        id="01JD5Q3W6Z8K4T2M9N7P5R3S1V",
        data_type="sensor.temperature",
        source="s",
        classification=classification,
    )


@pytest.mark.parametrize(
    ("classification", "records_topic", "dlq_topic"),
    [
        (md.CLASSIFICATION_PUBLIC, RECORDS.name, DEAD_LETTER.name),
        (md.CLASSIFICATION_INTERNAL, RECORDS.name, DEAD_LETTER.name),
        (md.CLASSIFICATION_RESTRICTED, RESTRICTED_RECORDS.name, RESTRICTED_DEAD_LETTER.name),
    ],
)
def test_record_events_and_dead_letters_follow_the_batch_classification(
    classification: md.Classification.ValueType, records_topic: str, dlq_topic: str
) -> None:
    topics = KafkaSettings(bootstrap="unused:1", username="u", password="p", ca_file="/ca.pem")
    record = pb.Record(entity_id="e-1", location=md.GeoPoint(latitude=1.0, longitude=2.0))
    record.payload.update({"temp": 21.5})
    event, _, letter = announce.batch_events(
        topics,
        _batch(classification),
        md.ObjectRef(),
        [batch.Accepted(0, "01JD5Q3W6Z8K4T2M9N7P5R3S1W", record)],
        [batch.Rejected(1, record, [])],
    )
    assert (event.topic, letter.topic) == (records_topic, dlq_topic)


# -- the ACL table ------------------------------------------------------------------------------


Grant = tuple[str, str, str, str]


def _name(value: Enum | str | int) -> str:
    return value.name if isinstance(value, Enum) else str(value)


def _grants(user: str) -> set[Grant]:
    """(resource type, name, pattern, operation) of every ACL of `user`."""
    found = set()
    for b in kafka_admin.desired_acls():
        if b.principal == f"User:{user}":
            assert (b.host, b.permission_type) == ("*", AclPermissionType.ALLOW)
            found.add((_name(b.restype), b.name, _name(b.resource_pattern_type), _name(b.operation)))
    return found


def _topic(names: set[str], *ops: str) -> set[Grant]:
    return {("TOPIC", n, "LITERAL", op) for n in names for op in ops}


def test_the_producer_writes_exactly_the_six_topics_and_reads_nothing() -> None:
    assert _grants(KAFKA_INGEST_USER) == _topic(PUBLIC_NAMES | RESTRICTED_NAMES, "WRITE", "DESCRIBE") | {
        ("BROKER", "kafka-cluster", "LITERAL", "IDEMPOTENT_WRITE")
    }


def test_the_generic_reader_gets_the_public_topics_only() -> None:
    assert _grants(KAFKA_READER_USER) == _topic(PUBLIC_NAMES, "READ", "DESCRIBE") | _topic(
        {DEAD_LETTER.name}, "WRITE"
    ) | {("GROUP", "pantheon-", "PREFIXED", "READ")}


def test_the_simulation_engine_holds_the_restricted_grant() -> None:
    assert _grants(KAFKA_SIMULATION_USER) == _topic(
        PUBLIC_NAMES | RESTRICTED_NAMES, "READ", "DESCRIBE"
    ) | _topic({DEAD_LETTER.name, RESTRICTED_DEAD_LETTER.name}, "WRITE") | {
        ("GROUP", "simulation-engine-", "PREFIXED", "READ")
    }


def test_only_consumers_with_the_grant_touch_restricted_topics_and_no_topic_grant_is_a_prefix() -> None:
    for consumer in kafka_admin.CONSUMERS:
        names = {b.name for b in consumer.acls() if b.restype == ResourceType.TOPIC}
        assert bool(names & RESTRICTED_NAMES) == consumer.restricted, consumer.user
    for b in kafka_admin.desired_acls():
        if b.restype == ResourceType.TOPIC:
            assert b.resource_pattern_type == ResourcePatternType.LITERAL, b


def test_consumer_group_namespaces_do_not_overlap() -> None:
    prefixes = [c.group_prefix for c in kafka_admin.CONSUMERS]
    for a in prefixes:
        for b in prefixes:
            assert a == b or not b.startswith(a), (a, b)
    assert len({c.user for c in kafka_admin.CONSUMERS}) == len(kafka_admin.CONSUMERS)


def test_every_managed_user_has_its_own_password() -> None:
    users = Credentials.generate().kafka_scram_users()
    assert set(kafka_admin.MANAGED_USERS) | {KAFKA_ADMIN_USER} == set(users)
    assert all(users.values()) and len(set(users.values())) == len(users)


def _old(user: str, name: str, pattern: ResourcePatternType, op: AclOperation) -> AclBinding:
    return AclBinding(ResourceType.TOPIC, name, pattern, f"User:{user}", "*", op, AclPermissionType.ALLOW)


def test_the_earlier_prefix_grants_are_stale_and_nothing_else_is() -> None:
    prefixed = ResourcePatternType.PREFIXED
    earlier = [
        _old(KAFKA_READER_USER, "pantheon.", prefixed, AclOperation.READ),
        _old(KAFKA_READER_USER, "pantheon.", prefixed, AclOperation.DESCRIBE),
        _old(KAFKA_INGEST_USER, "pantheon.", prefixed, AclOperation.WRITE),
        _old(KAFKA_INGEST_USER, "pantheon.", prefixed, AclOperation.DESCRIBE),
    ]
    unmanaged = _old("someone-else", "pantheon.", prefixed, AclOperation.READ)
    desired = kafka_admin.desired_acls()
    existing = [*desired, *earlier, unmanaged]
    assert kafka_admin.stale_acls(existing, desired) == earlier


# -- credentials of an earlier version ----------------------------------------------------------


def test_an_older_credentials_file_gets_the_new_users_password(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    old = asdict(Credentials.generate())
    del old["kafka_simulation_password"]
    path.write_text(json.dumps(old))
    upgraded = load_or_create(path)
    assert upgraded.kafka_simulation_password
    assert upgraded.kafka_reader_password == old["kafka_reader_password"]
    assert json.loads(path.read_text())["kafka_simulation_password"] == upgraded.kafka_simulation_password
    assert load_or_create(path) == upgraded  # stable from then on
