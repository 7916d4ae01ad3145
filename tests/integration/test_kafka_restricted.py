"""RESTRICTED data never reaches a Kafka user without the restricted grant.

Against a private stack of its own (own state dir and ports, started with
this checkout's code and stopped afterwards), first made to look like one an
earlier version formatted: no `simulation-engine` SCRAM user, no password for
it in credentials.json, and the old `pantheon.` PREFIXED grants of
pantheon-reader and pantheon-ingest. A second `up` must add the user and
remove those grants. Then, through the REST gateway, one RESTRICTED and one
PUBLIC object and record batch (each with a rejected record) are ingested:

- pantheon-reader (the generic reader of `scripts/stack env`) reads every
  public topic from the beginning to the end and finds the public data but
  not a byte of the restricted one, and is refused on every restricted topic;
- simulation-engine (holding the restricted grant) receives the restricted
  events and the public ones.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramMechanism,
    UserScramCredentialDeletion,
)
from pantheon_api.events.v1 import events_pb2
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.devstack import kafka_admin
from pantheon.devstack.credentials import (
    KAFKA_INGEST_USER,
    KAFKA_READER_USER,
    KAFKA_SIMULATION_USER,
    load,
)
from pantheon.events.cloudevents import decode, parse_headers
from pantheon.events.topics import (
    DATA_STORED,
    DEAD_LETTER,
    PUBLIC_TOPICS,
    RECORDS,
    RESTRICTED_DATA_STORED,
    RESTRICTED_DEAD_LETTER,
    RESTRICTED_RECORDS,
    RESTRICTED_TOPICS,
)
from tests.integration.gateway_support import object_params, record, unique_type
from tests.integration.support import Seen
from tests.reliability.stack import PrivateStack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

#: What an earlier version granted: every `pantheon.` topic, so every restricted one too.
EARLIER_ACLS = [
    AclBinding(
        ResourceType.TOPIC,
        "pantheon.",
        ResourcePatternType.PREFIXED,
        f"User:{user}",
        "*",
        op,
        AclPermissionType.ALLOW,
    )
    for user, ops in (
        (KAFKA_READER_USER, (AclOperation.READ, AclOperation.DESCRIBE)),
        (KAFKA_INGEST_USER, (AclOperation.WRITE, AclOperation.DESCRIBE)),
    )
    for op in ops
]


def _any(principal: str | None = None) -> AclBindingFilter:
    anything: Any = None  # None matches any value (the stubs say str)
    return AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        principal if principal is not None else anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )


def _make_it_look_older(stack: PrivateStack) -> None:
    """Undo what this version adds, so the next `up` has to upgrade."""
    creds_file = stack.state_dir / "credentials.json"
    creds = load(creds_file)
    assert creds is not None
    admin = kafka_admin.admin_client(
        stack.env["KAFKA_BOOTSTRAP"], stack.env["PANTHEON_CA_FILE"], creds.kafka_admin_password
    )
    deletion = UserScramCredentialDeletion(KAFKA_SIMULATION_USER, ScramMechanism.SCRAM_SHA_512)
    for fut in admin.alter_user_scram_credentials([deletion], request_timeout=30).values():
        fut.result()
    for fut in admin.delete_acls([_any(f"User:{KAFKA_SIMULATION_USER}")], request_timeout=30).values():
        fut.result()
    for fut in admin.create_acls(EARLIER_ACLS, request_timeout=30).values():
        fut.result()
    raw = json.loads(creds_file.read_text())
    del raw["kafka_simulation_password"]
    creds_file.write_text(json.dumps(raw))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    stack = PrivateStack.create(tmp_path_factory.mktemp("restricted-stack"))
    try:
        stack.up()
        _make_it_look_older(stack)
        stack.up()  # the upgrade under test
        yield stack
    finally:
        stack.down()


def _config(stack: PrivateStack, user: str, password: str, **extra: Any) -> dict[str, Any]:
    conf = kafka_admin.client_config(
        stack.env["KAFKA_BOOTSTRAP"], stack.env["PANTHEON_CA_FILE"], user, password
    )
    return {**conf, "error_cb": lambda _err: None, **extra}


def reader(stack: PrivateStack, **extra: Any) -> dict[str, Any]:
    """pantheon-reader, as `scripts/stack env` exports it."""
    assert stack.env["KAFKA_SASL_USERNAME"] == KAFKA_READER_USER
    return _config(stack, KAFKA_READER_USER, stack.env["KAFKA_SASL_PASSWORD"], **extra)


def simulation(stack: PrivateStack, **extra: Any) -> dict[str, Any]:
    assert stack.env["KAFKA_SIMULATION_USERNAME"] == KAFKA_SIMULATION_USER
    return _config(stack, KAFKA_SIMULATION_USER, stack.env["KAFKA_SIMULATION_PASSWORD"], **extra)


# -- what was ingested ------------------------------------------------------------------------


@dataclass(frozen=True)
class Ingested:
    """One object and one record batch (one good, one rejected record) of one classification."""

    marker: str  # in every entity id and payload of this data, and nowhere else
    data_type: str
    object_id: str
    batch_id: str
    record_id: str


def _ingest(stack: PrivateStack, classification: str) -> Ingested:
    marker = f"{classification}-{uuid.uuid4().hex}"
    data_type = unique_type()
    with stack.http() as http:
        params = object_params(data_type, classification=classification, entity_id=marker)
        stored = http.post(
            "/v1/objects",
            params=params,
            content=json.dumps({"note": marker}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert stored.status_code == 201, stored.text
        assert stored.json()["metadata"]["classification"] == f"CLASSIFICATION_{classification.upper()}"
        batch = {
            "data_type": data_type,
            "classification": classification,
            "records": [record(marker, secret=marker), record(marker, lat=95.0, secret=marker)],
        }
        recorded = http.post("/v1/records", json=batch)
        assert recorded.status_code == 207, recorded.text
    result = recorded.json()
    return Ingested(marker, data_type, stored.json()["id"], result["id"], result["results"][0]["id"])


@pytest.fixture(scope="module")
def restricted(stack: PrivateStack) -> Ingested:
    return _ingest(stack, "restricted")


@pytest.fixture(scope="module")
def public(stack: PrivateStack) -> Ingested:
    return _ingest(stack, "public")


# -- reading Kafka ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """One Kafka record as it arrived, and its decoded form."""

    seen: Seen
    value: bytes
    header_bytes: bytes

    def contains(self, marker: str) -> bool:
        needle = marker.encode()
        return needle in self.value or needle in self.header_bytes or needle in self.seen.key.encode()

    @property
    def classification(self) -> int:
        meta = getattr(self.seen.payload, "metadata", None)
        return int(meta.classification) if meta is not None else md.CLASSIFICATION_UNSPECIFIED


def _raw(message: Any) -> Raw:
    headers = parse_headers(message.headers())
    _, payload = decode(headers, message.value() or b"")
    seen = Seen(
        message.topic() or "",
        (message.key() or b"").decode(),
        headers,
        payload,
        message.partition() or 0,
        message.offset() or 0,
    )
    header_bytes = b"".join(k.encode() + (v or b"") for k, v in message.headers() or [])
    return Raw(seen, message.value() or b"", header_bytes)


def read_to_end(config: dict[str, Any], group: str, topics: Iterable[str], wait_s: float = 60.0) -> list[Raw]:
    """Every record on `topics` from the beginning to their current end (assigned, nothing committed;
    librdkafka still looks up the coordinator of `group`, so it must be one the user may use)."""
    consumer = Consumer({**config, "group.id": group, "enable.auto.commit": False})
    try:
        ends: dict[tuple[str, int], int] = {}
        assignment = []
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=15).topics[topic]
            assert meta.error is None, f"{topic}: {meta.error}"
            for partition in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
                if high > low:
                    ends[(topic, partition)] = high
                    assignment.append(TopicPartition(topic, partition, low))
        consumer.assign(assignment)
        found: list[Raw] = []
        done: set[tuple[str, int]] = set()
        deadline = time.monotonic() + wait_s
        while len(done) < len(ends) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            where = (message.topic() or "", message.partition() or 0)
            if (message.offset() or 0) + 1 >= ends[where]:
                done.add(where)
            found.append(_raw(message))
        assert len(done) == len(ends), f"could not read {sorted(ends)} to the end within {wait_s}s"
        return found
    finally:
        consumer.close()


def consume_as_group(
    config: dict[str, Any],
    group: str,
    topics: list[str],
    until: Callable[[list[Raw]], bool],
    wait_s: float = 60.0,
) -> list[Raw]:
    """Subscribe as a member of `group` from the earliest offsets, until `until(found)`."""
    consumer = Consumer({**config, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe(topics)
    found: list[Raw] = []
    try:
        deadline = time.monotonic() + wait_s
        while not until(found) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            found.append(_raw(message))
        return found
    finally:
        consumer.close()


def first_error(config: dict[str, Any], group: str, topic: str, wait_s: float = 30.0) -> KafkaError:
    """The error a member of `group` subscribing to `topic` gets (fails if it gets a record)."""
    consumer = Consumer({**config, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            assert error is not None, f"{config['sasl.username']} received a record from {topic} as {group}"
            return error
        raise AssertionError(f"no error within {wait_s}s")
    finally:
        consumer.close()


def _ids(found: Iterable[Raw]) -> dict[str, str]:
    """ce_id -> topic."""
    return {r.seen.headers["ce_id"]: r.seen.topic for r in found}


def _has_every_event_of(data: Ingested, topics: tuple[str, str, str]) -> Callable[[list[Raw]], bool]:
    """The object's and the batch's DataStored, the record's event and the dead letter, on `topics`."""
    stored, records, dead = topics

    def check(found: list[Raw]) -> bool:
        ids = _ids(found)
        letters = [r for r in found if r.seen.topic == dead and r.seen.data_type == data.data_type]
        return (
            ids.get(data.object_id) == stored
            and ids.get(data.batch_id) == stored
            and ids.get(data.record_id) == records
            and len(letters) == 1
        )

    return check


# -- the tests --------------------------------------------------------------------------------


def test_up_upgrades_an_older_stack(stack: PrivateStack) -> None:
    creds = load(stack.state_dir / "credentials.json")
    assert creds is not None and creds.kafka_simulation_password  # generated into the old file
    assert stack.env["KAFKA_SIMULATION_PASSWORD"] == creds.kafka_simulation_password
    admin = kafka_admin.admin_client(
        stack.env["KAFKA_BOOTSTRAP"], stack.env["PANTHEON_CA_FILE"], creds.kafka_admin_password
    )
    existing = set(admin.describe_acls(_any(), request_timeout=30).result())
    assert not existing & set(EARLIER_ACLS), "the old prefix grants survived the upgrade"
    assert set(kafka_admin.desired_acls()) <= existing
    managed = {f"User:{u}" for u in kafka_admin.MANAGED_USERS}
    assert {b for b in existing if b.principal in managed} == set(kafka_admin.desired_acls())
    topics = admin.list_topics(timeout=15).topics
    for public_topic, twin in zip(PUBLIC_TOPICS, RESTRICTED_TOPICS, strict=True):
        assert len(topics[twin.name].partitions) == len(topics[public_topic.name].partitions)
    # The user created by `up` (not by the storage format) authenticates with the new password.
    assert AdminClient(simulation(stack)).list_topics(timeout=15).brokers


def test_the_generic_reader_sees_public_data_and_no_restricted_byte(
    stack: PrivateStack, restricted: Ingested, public: Ingested
) -> None:
    group = f"pantheon-test-{uuid.uuid4().hex[:8]}"
    found = read_to_end(reader(stack), group, [t.name for t in PUBLIC_TOPICS])
    assert _has_every_event_of(public, (DATA_STORED.name, RECORDS.name, DEAD_LETTER.name))(found)
    leaked = [r.seen for r in found if r.contains(restricted.marker)]
    assert not leaked, f"restricted data reached pantheon-reader: {leaked}"
    assert not set(_ids(found)) & {restricted.object_id, restricted.batch_id, restricted.record_id}
    assert all(r.classification != md.CLASSIFICATION_RESTRICTED for r in found)
    assert not [r for r in found if r.seen.data_type == restricted.data_type]


@pytest.mark.parametrize("topic", [t.name for t in RESTRICTED_TOPICS])
def test_the_generic_reader_is_refused_on_every_restricted_topic(
    stack: PrivateStack, restricted: Ingested, topic: str
) -> None:
    meta = AdminClient(reader(stack)).list_topics(topic, timeout=15).topics[topic]
    assert meta.error is not None and meta.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, meta.error
    error = first_error(reader(stack), f"pantheon-test-{uuid.uuid4().hex[:8]}", topic)
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


def test_the_generic_reader_cannot_write_to_the_restricted_dead_letter_topic(stack: PrivateStack) -> None:
    producer = Producer(reader(stack, **{"message.timeout.ms": 20000}))
    reports: list[Any] = []
    producer.produce(RESTRICTED_DEAD_LETTER.name, value=b"x", on_delivery=lambda err, _m: reports.append(err))
    producer.flush(30)
    assert reports and reports[0] is not None and reports[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_the_simulation_engine_receives_restricted_and_public_events(
    stack: PrivateStack, restricted: Ingested, public: Ingested
) -> None:
    restricted_topics = (RESTRICTED_DATA_STORED.name, RESTRICTED_RECORDS.name, RESTRICTED_DEAD_LETTER.name)
    public_topics = (DATA_STORED.name, RECORDS.name, DEAD_LETTER.name)
    wanted = [_has_every_event_of(restricted, restricted_topics), _has_every_event_of(public, public_topics)]
    found = consume_as_group(
        simulation(stack),
        f"simulation-engine-test-{uuid.uuid4().hex[:8]}",
        [*restricted_topics, *public_topics],
        lambda seen: all(check(seen) for check in wanted),
    )
    assert all(check(found) for check in wanted), sorted(_ids(found).items())
    (event,) = [r.seen.payload for r in found if r.seen.headers["ce_id"] == restricted.object_id]
    assert isinstance(event, events_pb2.DataStored)
    assert event.metadata.classification == md.CLASSIFICATION_RESTRICTED
    assert event.metadata.entity_id == restricted.marker
    (item,) = [r.seen.payload for r in found if r.seen.headers["ce_id"] == restricted.record_id]
    assert isinstance(item, events_pb2.RecordIngested) and item.payload["secret"] == restricted.marker
    # Its group namespace is its own: pantheon-reader's groups are not.
    error = first_error(simulation(stack), f"pantheon-{uuid.uuid4().hex[:8]}", RESTRICTED_DATA_STORED.name)
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, error
