"""Talking to the dev broker as a client: readiness, topics, users and ACLs.

Everything goes over the SASL_SSL listener as `admin`, the same path real
clients take, so "ready" means TLS, SCRAM and the authorizer all work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException

# confluent_kafka ships type hints but re-exports these without __all__, which
# strict mypy reports; the names are its documented public API.
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from pantheon.devstack.credentials import (
    KAFKA_ADMIN_USER,
    KAFKA_INGEST_USER,
    KAFKA_READER_USER,
    KAFKA_SIMULATION_USER,
    Credentials,
)
from pantheon.events.topics import (
    ALL_TOPICS,
    DEAD_LETTER,
    PUBLIC_TOPICS,
    RESTRICTED_DEAD_LETTER,
    Topic,
    min_insync_replicas,
    restricted_twin,
)

log = logging.getLogger(__name__)

#: librdkafka logs every refused connection while the broker boots; keep
#: that out of the user's terminal unless they asked for debug output.
_rdkafka_log = logging.getLogger(__name__ + ".librdkafka")

#: Consumer groups of the generic reader must start with this prefix; it is
#: the only group namespace pantheon-reader may join (no wildcard groups, so
#: a leaked reader password cannot hijack someone else's group offsets).
GROUP_PREFIX = "pantheon-"
CLUSTER_RESOURCE = "kafka-cluster"
#: PBKDF2 rounds of the SCRAM credentials `up` writes (Kafka allows 4096..16384).
SCRAM_ITERATIONS = 8192


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
    brokers: int = 1,
) -> None:
    """Poll broker metadata until `brokers` brokers are registered; fail early if a JVM died.

    Raises TimeoutError (or RuntimeError if the process exited).
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not still_running():
            raise RuntimeError("the Kafka process exited during startup")
        try:
            md = admin.list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            if len(md.brokers) >= brokers:
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


def ensure_topics(admin: AdminClient, replication_factor: int = 1, timeout: float = 30.0) -> list[str]:
    """Create every topic in ALL_TOPICS that does not exist yet; returns those created."""
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(
            t.name,
            num_partitions=t.partitions,
            replication_factor=replication_factor,
            config={**t.config, "min.insync.replicas": str(min_insync_replicas(replication_factor))},
        )
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


@dataclass(frozen=True)
class KafkaConsumer:
    """A consuming component: its own SCRAM user and exactly what it may read.

    It may Read and Describe `topics` (public ones) and, if it holds the
    RESTRICTED grant, their restricted twins; Write the dead-letter topic of
    each tier it reads (the consumer helper parks what it cannot process
    there); and join consumer groups starting with `group_prefix` only.
    """

    user: str
    group_prefix: str
    restricted: bool = False
    topics: tuple[Topic, ...] = PUBLIC_TOPICS

    @property
    def read_topics(self) -> tuple[Topic, ...]:
        twins = tuple(restricted_twin(t) for t in self.topics) if self.restricted else ()
        return self.topics + twins

    @property
    def dead_letter_topics(self) -> tuple[Topic, ...]:
        return (DEAD_LETTER, RESTRICTED_DEAD_LETTER) if self.restricted else (DEAD_LETTER,)

    def acls(self) -> list[AclBinding]:
        topic, literal = ResourceType.TOPIC, ResourcePatternType.LITERAL
        grants = [
            _acl(self.user, topic, t.name, literal, op)
            for t in self.read_topics
            for op in (AclOperation.READ, AclOperation.DESCRIBE)
        ]
        grants += [
            _acl(self.user, topic, t.name, literal, AclOperation.WRITE) for t in self.dead_letter_topics
        ]
        grants.append(
            _acl(
                self.user,
                ResourceType.GROUP,
                self.group_prefix,
                ResourcePatternType.PREFIXED,
                AclOperation.READ,
            )
        )
        return grants


#: Every component that consumes Pantheon's events, one line each. A new
#: component is a line here, plus its password in credentials.Credentials
#: (kafka_scram_users) and, if developers need it, an export in environment.environment.
CONSUMERS: tuple[KafkaConsumer, ...] = (
    # The generic reader (the demo, `pantheon tail`, any downstream tool):
    # PUBLIC and INTERNAL data only. `scripts/stack env` exports it as KAFKA_SASL_*.
    KafkaConsumer(KAFKA_READER_USER, group_prefix=GROUP_PREFIX),
    # An internal component holding the RESTRICTED grant.
    KafkaConsumer(KAFKA_SIMULATION_USER, group_prefix="simulation-engine-", restricted=True),
)

#: The producer (the Pantheon services) and every consumer: the users whose
#: SCRAM credentials and ACLs `up` owns. admin is the broker's super user.
MANAGED_USERS: tuple[str, ...] = (KAFKA_INGEST_USER, *(c.user for c in CONSUMERS))


def producer_acls() -> list[AclBinding]:
    """pantheon-ingest: Write + Describe on exactly Pantheon's topics (public and
    restricted), IdempotentWrite on the cluster (idempotent producer). It reads nothing."""
    literal = ResourcePatternType.LITERAL
    grants = [
        _acl(KAFKA_INGEST_USER, ResourceType.TOPIC, t.name, literal, op)
        for t in ALL_TOPICS
        for op in (AclOperation.WRITE, AclOperation.DESCRIBE)
    ]
    grants.append(
        _acl(KAFKA_INGEST_USER, ResourceType.BROKER, CLUSTER_RESOURCE, literal, AclOperation.IDEMPOTENT_WRITE)
    )
    return grants


def desired_acls() -> list[AclBinding]:
    """Least privilege for every managed user: the producer's grants and each consumer's.

    Topic grants are literal (never a `pantheon.` prefix): a prefix would
    also cover the restricted topics and any topic added later.
    """
    return producer_acls() + [b for c in CONSUMERS for b in c.acls()]


def stale_acls(existing: Iterable[AclBinding], desired: Iterable[AclBinding]) -> list[AclBinding]:
    """ACLs of managed users that are not desired (e.g. the `pantheon.` prefix
    grants of earlier versions, which would also cover the restricted topics)."""
    managed = {f"User:{u}" for u in MANAGED_USERS}
    wanted = set(desired)
    return [b for b in existing if b.principal in managed and b not in wanted]


def ensure_users(admin: AdminClient, creds: Credentials, timeout: float = 30.0) -> None:
    """Create or reset the SCRAM credential of every managed user from `creds`.

    The storage is formatted with the users of its time; a stack formatted by
    an earlier version lacks users added since. Upserting them all keeps the
    broker in step with credentials.json either way (admin, the broker's own
    identity, is left alone).
    """
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    passwords = creds.kafka_scram_users()
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(u, info, passwords[u].encode()) for u in MANAGED_USERS
    ]
    for _user, fut in admin.alter_user_scram_credentials(upserts, request_timeout=timeout).items():
        fut.result()


def ensure_acls(admin: AdminClient, timeout: float = 30.0) -> list[AclBinding]:
    """Converge the managed users' ACLs to desired_acls(); returns the ACLs removed.

    Grants are created first (Kafka treats re-creating an ACL as a no-op), so
    a consumer never loses access it keeps; then every other ACL of a managed
    user is deleted with a filter matching exactly that binding.
    """
    desired = desired_acls()
    for _binding, fut in admin.create_acls(desired, request_timeout=timeout).items():
        fut.result()
    # None matches any name, principal and host (documented; the type stubs say str).
    anything: Any = None
    everything = AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    existing: list[AclBinding] = admin.describe_acls(everything, request_timeout=timeout).result()
    stale = stale_acls(existing, desired)
    if not stale:
        return []
    filters = [
        AclBindingFilter(
            b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type
        )
        for b in stale
    ]
    for _filter, fut in admin.delete_acls(filters, request_timeout=timeout).items():
        for removed in fut.result():
            log.info("removed stale Kafka ACL %s", removed)
    return stale
