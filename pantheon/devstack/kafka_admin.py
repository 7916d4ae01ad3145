"""Talking to the dev broker as a client: readiness, topics and ACLs.

Everything goes over the SASL_SSL listener as `admin`, the same path real
clients take, so "ready" means TLS, SCRAM and the authorizer all work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

# confluent_kafka ships type hints but re-exports these without __all__, which
# strict mypy reports; the names are its documented public API.
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from pantheon.devstack.credentials import (
    KAFKA_ADMIN_USER,
    KAFKA_INGEST_USER,
    KAFKA_READER_USER,
)
from pantheon.events.topics import ALL_TOPICS, DEAD_LETTER

log = logging.getLogger(__name__)

#: librdkafka logs every refused connection while the broker boots; keep
#: that out of the user's terminal unless they asked for debug output.
_rdkafka_log = logging.getLogger(__name__ + ".librdkafka")

TOPIC_PREFIX = "pantheon."
#: Consumer groups of Pantheon's readers must start with this prefix; it is
#: the only group namespace pantheon-reader may join (no wildcard groups, so
#: a leaked reader password cannot hijack someone else's group offsets).
GROUP_PREFIX = "pantheon-"
CLUSTER_RESOURCE = "kafka-cluster"


def client_config(bootstrap: str, ca_file: str, username: str, password: str) -> dict[str, Any]:
    """A confluent_kafka config for SASL_SSL/SCRAM-SHA-512 against the dev broker."""
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": username,
        "sasl.password": password,
        "ssl.ca.location": ca_file,
        "ssl.endpoint.identification.algorithm": "https",
    }


def admin_client(bootstrap: str, ca_file: str, password: str) -> AdminClient:
    conf = client_config(bootstrap, ca_file, KAFKA_ADMIN_USER, password)
    conf["logger"] = _rdkafka_log
    conf["error_cb"] = lambda err: _rdkafka_log.debug("admin client error: %s", err)
    return AdminClient(conf)


def wait_ready(
    admin: AdminClient,
    *,
    timeout: float,
    still_running: Callable[[], bool],
) -> None:
    """Poll broker metadata until a broker answers; fail early if the JVM died.

    Raises TimeoutError (or RuntimeError if the process exited).
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not still_running():
            raise RuntimeError("the Kafka process exited during startup")
        try:
            md = admin.list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            if md.brokers:
                return
        except KafkaException as exc:
            last = exc
        time.sleep(0.5)  # between attempts only; each attempt already waited
    raise TimeoutError(f"Kafka not ready after {timeout:.0f}s (last error: {last})")


def is_ready(admin: AdminClient, timeout: float = 5.0) -> bool:
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except KafkaException:
        return False


def ensure_topics(admin: AdminClient, timeout: float = 30.0) -> list[str]:
    """Create every topic in ALL_TOPICS that does not exist yet; returns those created."""
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(t.name, num_partitions=t.partitions, replication_factor=1, config=dict(t.config))
        for t in ALL_TOPICS
        if t.name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, fut in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            # Another `up` racing us is fine; anything else is a real failure.
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def _acl(
    principal: str,
    restype: ResourceType,
    name: str,
    pattern: ResourcePatternType,
    op: AclOperation,
) -> AclBinding:
    return AclBinding(restype, name, pattern, f"User:{principal}", "*", op, AclPermissionType.ALLOW)


def desired_acls() -> list[AclBinding]:
    """Least privilege for the two service users.

    pantheon-ingest (the services' producer): Write + Describe on `pantheon.*`
    topics and IdempotentWrite on the cluster (idempotent producer). It cannot
    read anything.

    pantheon-reader (downstream consumers): Read + Describe on `pantheon.*`
    topics, Read on `pantheon-*` consumer groups, and Write on the dead-letter
    topic only, because consumers route messages they cannot process there.
    It cannot write to the data topics.
    """
    topic, group, cluster = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.BROKER
    prefixed, literal = ResourcePatternType.PREFIXED, ResourcePatternType.LITERAL
    return [
        _acl(KAFKA_INGEST_USER, topic, TOPIC_PREFIX, prefixed, AclOperation.WRITE),
        _acl(KAFKA_INGEST_USER, topic, TOPIC_PREFIX, prefixed, AclOperation.DESCRIBE),
        _acl(KAFKA_INGEST_USER, cluster, CLUSTER_RESOURCE, literal, AclOperation.IDEMPOTENT_WRITE),
        _acl(KAFKA_READER_USER, topic, TOPIC_PREFIX, prefixed, AclOperation.READ),
        _acl(KAFKA_READER_USER, topic, TOPIC_PREFIX, prefixed, AclOperation.DESCRIBE),
        _acl(KAFKA_READER_USER, topic, DEAD_LETTER.name, literal, AclOperation.WRITE),
        _acl(KAFKA_READER_USER, group, GROUP_PREFIX, prefixed, AclOperation.READ),
    ]


def ensure_acls(admin: AdminClient, timeout: float = 30.0) -> None:
    """Create the ACLs; Kafka treats re-creating an existing ACL as a no-op."""
    for _binding, fut in admin.create_acls(desired_acls(), request_timeout=timeout).items():
        fut.result()
