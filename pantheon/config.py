"""Settings of the services, one typed object per component, read from `PANTHEON_*` variables.

Every setting has an environment variable (the README's "Configuration"
lists them, and tests/unit/test_config_reference.py keeps the two equal);
`scripts/stack env` prints the values for the local dev stack. There are no
insecure fallbacks: TLS files and credentials must be given, and plaintext
endpoints are refused. A bad value is a `ConfigError` of one line naming the
variable (pantheon/envconfig/settings.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Self

from pydantic import BeforeValidator, model_validator

from pantheon.envconfig import ConfigError, EnvSettings, variable
from pantheon.envconfig.settings import (
    MAX_WHOLE,
    Flag,
    HttpsUrl,
    OptionalText,
    Text,
    base64_key,
    seconds,
    whole,
)
from pantheon.events import topics

__all__ = [
    "ClientIdentity",
    "ConfigError",
    "KafkaSettings",
    "S3Settings",
    "ServiceSettings",
    "TLSSettings",
]

MiB = 2**20
GiB = 2**30
#: S3's bounds on a multipart part, and on an object.
S3_MIN_PART = 5 * MiB
S3_MAX_PART = 5 * GiB
S3_MAX_OBJECT = 5 * 2**40


class TLSSettings(EnvSettings):
    """Certificate files for a TLS endpoint and the CA that signs its peers."""

    ca_file: Text = variable("PANTHEON_CA_FILE")
    cert_file: Text = variable("PANTHEON_TLS_CERT_FILE")
    key_file: Text = variable("PANTHEON_TLS_KEY_FILE")


class ClientIdentity(EnvSettings):
    """The workload identity a process presents when it calls a Pantheon
    service: a client certificate (with a SPIFFE ID) and its key."""

    cert_file: Text = variable("PANTHEON_CLIENT_CERT_FILE")
    key_file: Text = variable("PANTHEON_CLIENT_KEY_FILE")


class KafkaSettings(EnvSettings):
    """How the services reach Kafka (SASL_SSL with SCRAM-SHA-512 only)."""

    bootstrap: Text = variable("PANTHEON_KAFKA_BOOTSTRAP")
    username: Text = variable("PANTHEON_KAFKA_USERNAME")
    password: Text = variable("PANTHEON_KAFKA_PASSWORD", repr=False)
    ca_file: Text = variable("PANTHEON_CA_FILE")
    events_topic: Text = variable("PANTHEON_EVENTS_TOPIC", default=topics.DATA_STORED.name)
    records_topic: Text = variable("PANTHEON_RECORDS_TOPIC", default=topics.RECORDS.name)
    dlq_topic: Text = variable("PANTHEON_DLQ_TOPIC", default=topics.DEAD_LETTER.name)
    #: Where the same events go when their data is RESTRICTED (readable only
    #: by Kafka users holding the restricted grant).
    restricted_events_topic: Text = variable(
        "PANTHEON_RESTRICTED_EVENTS_TOPIC", default=topics.RESTRICTED_DATA_STORED.name
    )
    restricted_records_topic: Text = variable(
        "PANTHEON_RESTRICTED_RECORDS_TOPIC", default=topics.RESTRICTED_RECORDS.name
    )
    restricted_dlq_topic: Text = variable(
        "PANTHEON_RESTRICTED_DLQ_TOPIC", default=topics.RESTRICTED_DEAD_LETTER.name
    )
    #: Batches produce calls made within this window into one request
    #: (librdkafka's linger.ms, at most 900000).
    #: 0: an event is sent at once (each ingest waits for its own, measured
    #: 5 ms of a small ingest's latency at librdkafka's default of 5); events
    #: queued while a send is in flight still go out together.
    linger_ms: int = whole("PANTHEON_KAFKA_LINGER_MS", 0, low=0, high=900_000)
    #: How long the producer keeps retrying one event before failing the call;
    #: also how long a call waits for room in a full local queue before it
    #: fails with UNAVAILABLE (having queued none of its events).
    delivery_timeout_ms: int = whole("PANTHEON_KAFKA_DELIVERY_TIMEOUT_MS", 15000)
    #: Bounds of the producer's local queue (librdkafka's
    #: queue.buffering.max.messages and .kbytes): events awaiting delivery.
    queue_max_messages: int = whole("PANTHEON_KAFKA_QUEUE_MAX_MESSAGES", 100_000)
    queue_max_kbytes: int = whole("PANTHEON_KAFKA_QUEUE_MAX_KBYTES", 256 * 1024)

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


class S3Settings(EnvSettings):
    """How the storage service reaches MinIO or another S3 store."""

    endpoint: HttpsUrl = variable("PANTHEON_S3_ENDPOINT")
    access_key: Text = variable("PANTHEON_S3_ACCESS_KEY")
    secret_key: Text = variable("PANTHEON_S3_SECRET_KEY", repr=False)
    #: The CA of the store's certificate; the deployment's CA by default.
    ca_file: OptionalText = variable("PANTHEON_S3_CA_FILE", "PANTHEON_CA_FILE", default=None)
    region: Text = variable("PANTHEON_S3_REGION", default="us-east-1")
    #: Multipart part size (S3's minimum, 5 MiB, by default): the storage
    #: service holds about three parts per upload in memory (two in flight,
    #: one streaming in), so this bounds memory per concurrent upload.
    #: Objects may have up to 10000 parts.
    part_size: int = whole("PANTHEON_S3_PART_SIZE", S3_MIN_PART, low=S3_MIN_PART, high=S3_MAX_PART)
    #: Threads of the object store's own pool (blocking S3 calls run there,
    #: not in the default executor), and its HTTP connections to the store.
    threads: int = whole("PANTHEON_S3_THREADS", 16, high=1024)
    #: Longest wait for the store's next bytes (its answer to a request, or
    #: the next piece of a download). A distributed MinIO that has just lost
    #: its write quorum holds writes for seconds before refusing them; past
    #: this the call fails UNAVAILABLE instead of holding a thread.
    read_timeout_s: float = seconds("PANTHEON_S3_READ_TIMEOUT_S", 10.0)


class ServiceSettings(EnvSettings):
    """The gRPC server hosting the ingestion and storage services."""

    tls: TLSSettings
    kafka: KafkaSettings
    s3: S3Settings
    listen: Text = variable("PANTHEON_GRPC_LISTEN", default="127.0.0.1:50051")
    #: The mesh policy: what each workload identity may call (pantheon/policy.py).
    policy_file: Text = variable("PANTHEON_POLICY_FILE")
    #: `local` hosts the storage service in the same process and calls it
    #: in-process; `host:port` (or any gRPC target, such as an `ipv4:` list
    #: of replicas) calls a remote storage service over TLS.
    storage_target: Text = variable("PANTHEON_STORAGE_TARGET", default="local")
    #: The identity ingestion presents to a remote storage service.
    identity: ClientIdentity | None = None
    #: The name a remote storage service's certificate is checked against,
    #: when the target does not name it (an `ipv4:` address list defaults
    #: to its first address; pantheon/client_channel.py).
    grpc_authority: OptionalText = variable("PANTHEON_GRPC_AUTHORITY", default=None)
    #: Largest object accepted, in bytes (at most S3's 5 TiB).
    max_object_bytes: int = whole("PANTHEON_MAX_OBJECT_BYTES", 5 * GiB, high=S3_MAX_OBJECT)
    #: Largest record document (IngestRecordDocument), parsed whole.
    max_record_document_bytes: int = whole("PANTHEON_MAX_RECORD_DOCUMENT_BYTES", 16 * MiB, high=MAX_WHOLE)
    #: Deadline the ingestion service gives its own calls to storage.
    backend_deadline_s: float = seconds("PANTHEON_BACKEND_DEADLINE_S", 30.0)
    #: An unfinished idempotency claim older than this belongs to a call that
    #: died; the next retry resumes it under the same id.
    stale_claim_s: float = seconds("PANTHEON_STALE_CLAIM_S", 60.0)
    #: The reconciler's pass interval, and the age of a pending marker before
    #: it acts on it (pantheon/ingest/reconciler.py): an object whose call
    #: died is announced within about their sum.
    reconcile_interval_s: float = seconds("PANTHEON_RECONCILE_INTERVAL_S", 10.0)
    reconcile_after_s: float = seconds("PANTHEON_RECONCILE_AFTER_S", 10.0)
    #: Test-only fault: exit the process right after an object is stored and
    #: before its events are published (`PANTHEON_FAULT_CRASH_BEFORE_PUBLISH=1`).
    #: Ignored unless `fault_injection` arms pantheon/faults.py.
    crash_before_publish: Flag = variable("PANTHEON_FAULT_CRASH_BEFORE_PUBLISH", default=False)
    #: Test-only: SIGUSR1 injects a fatal Kafka producer error (pantheon/faults.py;
    #: `PANTHEON_FAULT_INJECTION=1`). Off by default.
    fault_injection: Flag = variable("PANTHEON_FAULT_INJECTION", default=False)
    #: Where Prometheus metrics are served (HTTPS); empty turns them off.
    metrics_listen: str = variable("PANTHEON_METRICS_LISTEN", default="127.0.0.1:9464")
    #: Most RPCs the server runs at once (health checks and streams
    #: included); one more is refused at once with RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int = whole("PANTHEON_MAX_CONCURRENT_RPCS", 64, high=100_000)
    #: Key that seals search page tokens (32 bytes), the same on every
    #: replica; without one, each process makes its own, and a token only
    #: pages on the process that issued it.
    page_token_key: Annotated[bytes | None, BeforeValidator(base64_key(32))] = variable(
        "PANTHEON_PAGE_TOKEN_KEY", default=None, repr=False
    )

    @model_validator(mode="after")
    def _remote_storage_needs_an_identity(self) -> Self:
        if self.storage_target != "local" and self.identity is None:
            raise ConfigError(
                "PANTHEON_CLIENT_CERT_FILE and PANTHEON_CLIENT_KEY_FILE are required "
                "with a remote PANTHEON_STORAGE_TARGET"
            )
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        target = env.get("PANTHEON_STORAGE_TARGET", "local")
        identity = None
        if target not in ("local", ""):
            try:
                identity = ClientIdentity.from_env(env)
            except ConfigError as exc:
                raise ConfigError(f"{exc}, and required with PANTHEON_STORAGE_TARGET={target!r}") from None
        return cls.load(
            env,
            tls=TLSSettings.from_env(env),
            kafka=KafkaSettings.from_env(env),
            s3=S3Settings.from_env(env),
            identity=identity,
        )
