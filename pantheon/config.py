"""Settings, one typed object per component, read from `PANTHEON_*` variables.

Every setting has an environment variable; `scripts/stack env` prints the
values for the local dev stack. There are no insecure fallbacks: TLS files
and credentials must be given, and plaintext endpoints are refused.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from pantheon.events import topics


class ConfigError(ValueError):
    """A setting is missing or unsafe."""


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, default)
    if value is None or value == "":
        raise ConfigError(f"{name} is not set")
    return value


def _key(env: Mapping[str, str], name: str, size: int) -> bytes | None:
    """An optional secret key given as base64."""
    raw = env.get(name)
    if not raw:
        return None
    try:
        key = base64.b64decode(raw, validate=True)
    except ValueError:
        key = b""
    if len(key) != size:
        raise ConfigError(f"{name} must be the base64 of {size} random bytes")
    return key


@dataclass(frozen=True)
class TLSSettings:
    """Certificate files for a TLS endpoint and the CA that signs its peers."""

    ca_file: str
    cert_file: str
    key_file: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> TLSSettings:
        return cls(
            ca_file=_get(env, "PANTHEON_CA_FILE"),
            cert_file=_get(env, "PANTHEON_TLS_CERT_FILE"),
            key_file=_get(env, "PANTHEON_TLS_KEY_FILE"),
        )


@dataclass(frozen=True)
class ClientIdentity:
    """The workload identity a process presents when it calls a Pantheon
    service: a client certificate (with a SPIFFE ID) and its key."""

    cert_file: str
    key_file: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ClientIdentity:
        return cls(
            cert_file=_get(env, "PANTHEON_CLIENT_CERT_FILE"),
            key_file=_get(env, "PANTHEON_CLIENT_KEY_FILE"),
        )


@dataclass(frozen=True)
class KafkaSettings:
    """How the services reach Kafka (SASL_SSL with SCRAM-SHA-512 only)."""

    bootstrap: str
    username: str
    password: str = field(repr=False)
    ca_file: str
    events_topic: str = topics.DATA_STORED.name
    records_topic: str = topics.RECORDS.name
    dlq_topic: str = topics.DEAD_LETTER.name
    #: Where the same events go when their data is RESTRICTED (readable only
    #: by Kafka users holding the restricted grant).
    restricted_events_topic: str = topics.RESTRICTED_DATA_STORED.name
    restricted_records_topic: str = topics.RESTRICTED_RECORDS.name
    restricted_dlq_topic: str = topics.RESTRICTED_DEAD_LETTER.name
    #: Batches produce calls made within this window into one request.
    linger_ms: int = 5
    #: How long the producer keeps retrying one event before failing the call;
    #: also how long a call waits for room in a full local queue before it
    #: fails with UNAVAILABLE (having queued none of its events).
    delivery_timeout_ms: int = 15000
    #: Bounds of the producer's local queue (librdkafka's
    #: queue.buffering.max.messages and .kbytes): events awaiting delivery.
    queue_max_messages: int = 100_000
    queue_max_kbytes: int = 256 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> KafkaSettings:
        return cls(
            bootstrap=_get(env, "PANTHEON_KAFKA_BOOTSTRAP"),
            username=_get(env, "PANTHEON_KAFKA_USERNAME"),
            password=_get(env, "PANTHEON_KAFKA_PASSWORD"),
            ca_file=_get(env, "PANTHEON_CA_FILE"),
            events_topic=_get(env, "PANTHEON_EVENTS_TOPIC", topics.DATA_STORED.name),
            records_topic=_get(env, "PANTHEON_RECORDS_TOPIC", topics.RECORDS.name),
            dlq_topic=_get(env, "PANTHEON_DLQ_TOPIC", topics.DEAD_LETTER.name),
            restricted_events_topic=_get(
                env, "PANTHEON_RESTRICTED_EVENTS_TOPIC", topics.RESTRICTED_DATA_STORED.name
            ),
            restricted_records_topic=_get(
                env, "PANTHEON_RESTRICTED_RECORDS_TOPIC", topics.RESTRICTED_RECORDS.name
            ),
            restricted_dlq_topic=_get(
                env, "PANTHEON_RESTRICTED_DLQ_TOPIC", topics.RESTRICTED_DEAD_LETTER.name
            ),
            linger_ms=int(_get(env, "PANTHEON_KAFKA_LINGER_MS", "5")),
            delivery_timeout_ms=int(_get(env, "PANTHEON_KAFKA_DELIVERY_TIMEOUT_MS", "15000")),
            queue_max_messages=int(_get(env, "PANTHEON_KAFKA_QUEUE_MAX_MESSAGES", "100000")),
            queue_max_kbytes=int(_get(env, "PANTHEON_KAFKA_QUEUE_MAX_KBYTES", str(256 * 1024))),
        )

    def client_config(self) -> dict[str, str | int | bool]:
        """librdkafka settings shared by producers and consumers."""
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": self.username,
            "sasl.password": self.password,
            "ssl.ca.location": self.ca_file,
            "ssl.endpoint.identification.algorithm": "https",
        }


@dataclass(frozen=True)
class S3Settings:
    """How the storage service reaches MinIO or another S3 store."""

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    ca_file: str | None
    region: str = "us-east-1"
    #: Multipart part size (S3's minimum, 5 MiB, by default): the storage
    #: service holds about three parts per upload in memory, so this bounds
    #: memory per concurrent upload. Objects may have up to 10000 parts.
    part_size: int = 5 * 2**20
    #: Threads of the object store's own pool (blocking S3 calls run there,
    #: not in the default executor), and its HTTP connections to the store.
    threads: int = 16
    #: Longest wait for the store's next bytes (its answer to a request, or
    #: the next piece of a download). A distributed MinIO that has just lost
    #: its write quorum holds writes for seconds before refusing them; past
    #: this the call fails UNAVAILABLE instead of holding a thread.
    read_timeout_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> S3Settings:
        endpoint = _get(env, "PANTHEON_S3_ENDPOINT")
        if not endpoint.startswith("https://"):
            raise ConfigError("PANTHEON_S3_ENDPOINT must be an https:// URL")
        return cls(
            endpoint=endpoint,
            access_key=_get(env, "PANTHEON_S3_ACCESS_KEY"),
            secret_key=_get(env, "PANTHEON_S3_SECRET_KEY"),
            ca_file=env.get("PANTHEON_S3_CA_FILE") or env.get("PANTHEON_CA_FILE") or None,
            region=_get(env, "PANTHEON_S3_REGION", "us-east-1"),
            part_size=int(_get(env, "PANTHEON_S3_PART_SIZE", str(5 * 2**20))),
            threads=int(_get(env, "PANTHEON_S3_THREADS", "16")),
            read_timeout_s=float(_get(env, "PANTHEON_S3_READ_TIMEOUT_S", "10")),
        )


@dataclass(frozen=True)
class ServiceSettings:
    """The gRPC server hosting the ingestion and storage services."""

    listen: str
    tls: TLSSettings
    kafka: KafkaSettings
    s3: S3Settings
    #: The mesh policy: what each workload identity may call (pantheon/policy.py).
    policy_file: str
    #: `local` hosts the storage service in the same process and calls it
    #: in-process; `host:port` (or any gRPC target, such as an `ipv4:` list
    #: of replicas) calls a remote storage service over TLS.
    storage_target: str = "local"
    #: The identity ingestion presents to a remote storage service.
    identity: ClientIdentity | None = None
    #: The name a remote storage service's certificate is checked against,
    #: when the target does not name it (an `ipv4:` address list defaults
    #: to its first address; pantheon/client_channel.py).
    grpc_authority: str | None = None
    #: Largest object accepted, in bytes.
    max_object_bytes: int = 5 * 2**30
    #: Largest record document (IngestRecordDocument), parsed whole.
    max_record_document_bytes: int = 16 * 2**20
    #: Deadline the ingestion service gives its own calls to storage.
    backend_deadline_s: float = 30.0
    #: An unfinished idempotency claim older than this belongs to a call that
    #: died; the next retry resumes it under the same id.
    stale_claim_s: float = 60.0
    #: The reconciler's pass interval, and the age of a pending marker before
    #: it acts on it (pantheon/ingest/reconciler.py): an object whose call
    #: died is announced within about their sum.
    reconcile_interval_s: float = 10.0
    reconcile_after_s: float = 10.0
    #: Test-only fault: exit the process right after an object is stored and
    #: before its events are published (`PANTHEON_FAULT_CRASH_BEFORE_PUBLISH=1`).
    #: Ignored unless `fault_injection` arms pantheon/faults.py.
    crash_before_publish: bool = False
    #: Test-only: SIGUSR1 injects a fatal Kafka producer error (pantheon/faults.py;
    #: `PANTHEON_FAULT_INJECTION=1`). Off by default.
    fault_injection: bool = False
    #: Where Prometheus metrics are served (HTTPS); empty turns them off.
    metrics_listen: str = "127.0.0.1:9464"
    #: Most RPCs the server runs at once (health checks and streams
    #: included); one more is refused at once with RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int = 64
    #: Key that seals search page tokens (32 bytes), the same on every
    #: replica; without one, each process makes its own, and a token only
    #: pages on the process that issued it.
    page_token_key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServiceSettings:
        storage_target = _get(env, "PANTHEON_STORAGE_TARGET", "local")
        return cls(
            listen=_get(env, "PANTHEON_GRPC_LISTEN", "127.0.0.1:50051"),
            tls=TLSSettings.from_env(env),
            kafka=KafkaSettings.from_env(env),
            s3=S3Settings.from_env(env),
            policy_file=_get(env, "PANTHEON_POLICY_FILE"),
            storage_target=storage_target,
            identity=None if storage_target == "local" else ClientIdentity.from_env(env),
            grpc_authority=env.get("PANTHEON_GRPC_AUTHORITY") or None,
            max_object_bytes=int(_get(env, "PANTHEON_MAX_OBJECT_BYTES", str(5 * 2**30))),
            max_record_document_bytes=int(_get(env, "PANTHEON_MAX_RECORD_DOCUMENT_BYTES", str(16 * 2**20))),
            backend_deadline_s=float(_get(env, "PANTHEON_BACKEND_DEADLINE_S", "30")),
            stale_claim_s=float(_get(env, "PANTHEON_STALE_CLAIM_S", "60")),
            reconcile_interval_s=float(_get(env, "PANTHEON_RECONCILE_INTERVAL_S", "10")),
            reconcile_after_s=float(_get(env, "PANTHEON_RECONCILE_AFTER_S", "10")),
            crash_before_publish=env.get("PANTHEON_FAULT_CRASH_BEFORE_PUBLISH") == "1",
            fault_injection=env.get("PANTHEON_FAULT_INJECTION") == "1",
            metrics_listen=env.get("PANTHEON_METRICS_LISTEN", "127.0.0.1:9464"),
            max_concurrent_rpcs=int(_get(env, "PANTHEON_MAX_CONCURRENT_RPCS", "64")),
            page_token_key=_key(env, "PANTHEON_PAGE_TOKEN_KEY", 32),
        )
