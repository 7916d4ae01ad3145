"""The gateway's settings: one typed object read from `PANTHEON_*` variables.

Its own variables have the prefix `PANTHEON_GATEWAY_`; it shares the
deployment's `PANTHEON_CA_FILE`, `PANTHEON_GRPC_TARGET`, `PANTHEON_CLIENT_*`
and `PANTHEON_LOG_*` with the services and the CLI. There is no plaintext
mode: the gateway serves HTTPS only (a certificate and key are required) and
reaches the gRPC services over TLS only (a CA file is required). Every limit
and deadline has a variable; the README's "Configuration" lists them with
their defaults (tests/unit/test_config_reference.py keeps it true). The base
is envconfig's, shared with the services (the gateway may not import
`pantheon`): a bad value is a `ConfigError` of one line naming the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, Any, Self

from pydantic import AfterValidator, model_validator

from pantheon.envconfig import ConfigError, EnvSettings, variable, variables
from pantheon.envconfig.settings import MAX_SECONDS, OptionalText, Text, seconds, whole

__all__ = ["ConfigError", "GatewaySettings", "ReplicaLimits"]

MiB = 2**20
GiB = 2**30
#: The largest rate any rate setting may hold (bytes or requests per second).
MAX_RATE = 10**12


def _rate(name: str, default: float) -> Any:
    return variable(
        name,
        default=default,
        gt=0,
        le=MAX_RATE,
        allow_inf_nan=False,
        description=f"a rate > 0 and at most {MAX_RATE}",
    )


def _target(value: str) -> str:
    # Any gRPC target but a URL: `host:port`, `dns:///name:port`, or an
    # address list of replicas, `ipv4:10.0.0.1:50051,10.0.0.2:50051`.
    if "://" in value and not value.startswith(("dns:", "ipv4:", "ipv6:", "unix:")):
        raise ValueError("expected a gRPC target such as host:port (TLS is implied)")
    return value


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:
        raise ValueError("expected host:port")
    return value


def _authority(value: str | None) -> str | None:
    if value is not None and any(c.isspace() or not c.isprintable() or c in ",/@" for c in value):
        raise ValueError("expected a host name")
    return value


@dataclass(frozen=True)
class ReplicaLimits:
    """The per-key budgets one gateway replica enforces (`GatewaySettings.per_replica`)."""

    rate_per_s: float
    rate_burst: int
    max_concurrent_uploads: int


class GatewaySettings(EnvSettings):
    """Everything the gateway needs: endpoints, TLS files, keys, limits, deadlines."""

    #: gRPC target of the ingestion and storage services (TLS): `host:port`,
    #: `dns:///name:port` or a list of replicas such as
    #: `ipv4:10.0.0.1:50051,10.0.0.2:50051` (gateway/channel.py balances them).
    grpc_target: Annotated[Text, AfterValidator(_target)] = variable(
        "PANTHEON_GRPC_TARGET", default="127.0.0.1:50051"
    )
    #: CA bundle that signs the services' certificate.
    ca_file: Text = variable("PANTHEON_CA_FILE")
    #: Certificate chain and key the gateway serves HTTPS with (the services'
    #: by default).
    tls_cert_file: Text = variable("PANTHEON_GATEWAY_TLS_CERT_FILE", "PANTHEON_TLS_CERT_FILE")
    tls_key_file: Text = variable("PANTHEON_GATEWAY_TLS_KEY_FILE", "PANTHEON_TLS_KEY_FILE")
    #: JSON file with the API keys (sha256 hashes only); see gateway/auth.py.
    api_keys_file: Text = variable("PANTHEON_API_KEYS_FILE")
    #: The gateway's workload identity: the client certificate (SPIFFE ID
    #: `spiffe://<trust domain>/gateway`) and key it presents to the services.
    client_cert_file: Text = variable("PANTHEON_CLIENT_CERT_FILE")
    client_key_file: Text = variable("PANTHEON_CLIENT_KEY_FILE")
    #: Where HTTPS is served, `host:port`.
    listen: Annotated[Text, AfterValidator(_listen)] = variable(
        "PANTHEON_GATEWAY_LISTEN", default="127.0.0.1:8443"
    )
    #: The name the services' certificate is checked against when the target
    #: does not carry it (`PANTHEON_GRPC_AUTHORITY`; an `ipv4:` list
    #: defaults to its first address).
    grpc_authority: Annotated[OptionalText, AfterValidator(_authority)] = variable(
        "PANTHEON_GRPC_AUTHORITY", default=None
    )
    #: Gateway replicas behind one balancer: each enforces 1/N of every
    #: per-key budget (rate, burst, concurrent uploads), so N of them
    #: together allow what the settings say, not N times it.
    replicas: int = whole("PANTHEON_GATEWAY_REPLICAS", 1, high=1000)

    #: Base deadline of an ingest call (records batch, object upload).
    ingest_deadline_s: float = seconds("PANTHEON_GATEWAY_INGEST_DEADLINE_S", 30.0)
    #: Deadline of a read call (stat, search, health).
    read_deadline_s: float = seconds("PANTHEON_GATEWAY_READ_DEADLINE_S", 10.0)
    #: Streams (uploads, downloads) get `base + size / min_stream_rate` so a
    #: large object is not cut off; uploads of unknown size get the maximum.
    min_stream_rate_bps: float = _rate("PANTHEON_GATEWAY_MIN_STREAM_RATE_BPS", 8 * MiB)
    max_stream_deadline_s: float = seconds("PANTHEON_GATEWAY_MAX_STREAM_DEADLINE_S", 3600.0)

    #: Largest body of POST /v1/objects (raw or multipart), at most S3's 5 TiB.
    max_object_bytes: int = whole("PANTHEON_GATEWAY_MAX_OBJECT_BYTES", 5 * GiB, high=5 * 2**40)
    #: Largest body of POST /v1/records (it becomes one gRPC message).
    max_records_bytes: int = whole("PANTHEON_GATEWAY_MAX_RECORDS_BYTES", 16 * MiB)
    #: Most records in one batch.
    max_records: int = whole("PANTHEON_GATEWAY_MAX_RECORDS", 10_000)
    #: Largest `metadata` part of a multipart upload.
    max_metadata_part_bytes: int = whole("PANTHEON_GATEWAY_MAX_METADATA_BYTES", 64 * 1024)
    #: Size of the content chunks sent to the ingestion service (the gRPC chunk limit bounds it).
    chunk_bytes: int = whole("PANTHEON_GATEWAY_CHUNK_BYTES", MiB, high=4 * MiB)

    #: Per-key token bucket: sustained requests per second and burst size,
    #: across all replicas (`per_replica()` is what one enforces).
    rate_per_s: float = _rate("PANTHEON_GATEWAY_RATE_PER_S", 200.0)
    rate_burst: int = whole("PANTHEON_GATEWAY_RATE_BURST", 400)
    #: Uploads (POST /v1/objects and /v1/records) one key may have in progress
    #: at once, across all replicas; one more is answered 429
    #: `too_many_concurrent_uploads`.
    max_concurrent_uploads: int = whole("PANTHEON_GATEWAY_MAX_CONCURRENT_UPLOADS", 32)

    #: Connections and requests this process holds at once (uvicorn's
    #: `limit_concurrency`; a capacity of the process, not a per-key budget,
    #: so not divided among replicas); past it: 503 `overloaded`.
    max_connections: int = whole("PANTHEON_GATEWAY_MAX_CONNECTIONS", 512)
    #: Time a client has to send a request's line and headers: from the TLS
    #: handshake's end (or the first byte of a request on a kept-alive
    #: connection) to the end of the headers. Past it: 408, connection closed.
    header_timeout_s: float = seconds("PANTHEON_GATEWAY_HEADER_TIMEOUT_S", 10.0)
    #: Largest request line plus headers; past it: 431, connection closed.
    max_header_bytes: int = whole("PANTHEON_GATEWAY_MAX_HEADER_BYTES", 32 * 1024)
    #: Slow bodies: the longest wait for the next piece of a body, and the
    #: grace period of the minimum rate below.
    body_timeout_s: float = seconds("PANTHEON_GATEWAY_BODY_TIMEOUT_S", 15.0)
    #: Minimum average rate of a body once the grace period is used up: the
    #: time spent waiting for body bytes may be at most `body_timeout_s` plus
    #: one second per `body_min_rate_bps` bytes received. Past it: 408.
    body_min_rate_bps: float = _rate("PANTHEON_GATEWAY_BODY_MIN_RATE_BPS", 16 * 1024)
    #: Idle time after which a kept-alive connection is closed.
    keep_alive_timeout_s: int = whole("PANTHEON_GATEWAY_KEEP_ALIVE_TIMEOUT_S", 30, high=MAX_SECONDS)

    @model_validator(mode="after")
    def _files_exist(self) -> Self:
        self.check()
        return self

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def check(self) -> None:
        """Refuse TLS and key files that are not there: the gateway would
        start and then fail every call, or serve without its keys."""
        for name in (
            "ca_file",
            "tls_cert_file",
            "tls_key_file",
            "api_keys_file",
            "client_cert_file",
            "client_key_file",
        ):
            path = getattr(self, name)
            if not os.path.isfile(path):
                variable_name = " or ".join(variables(type(self).model_fields[name]))
                raise ConfigError(f"{variable_name}: expected a readable file, got {path!r}")

    def per_replica(self) -> ReplicaLimits:
        """The per-key budgets one of `replicas` gateways enforces: the rate
        divided, the burst and concurrent uploads divided but at least 1."""
        return ReplicaLimits(
            rate_per_s=self.rate_per_s / self.replicas,
            rate_burst=max(1, self.rate_burst // self.replicas),
            max_concurrent_uploads=max(1, self.max_concurrent_uploads // self.replicas),
        )

    def stream_deadline(self, base_s: float, size: int | None) -> float:
        """Deadline of a stream of `size` bytes (None: unknown, the maximum)."""
        if size is None:
            return self.max_stream_deadline_s
        return min(self.max_stream_deadline_s, base_s + size / self.min_stream_rate_bps)
