"""The gateway's settings: one typed object read from `PANTHEON_*` variables.

There is no plaintext mode: the gateway serves HTTPS only (a certificate and
key are required) and reaches the gRPC services over TLS only (a CA file is
required). Every limit and deadline has a variable; the defaults suit one
machine and are documented in the README's "REST API" section.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

MiB = 2**20
GiB = 2**30


class ConfigError(ValueError):
    """A setting is missing, malformed or unsafe."""


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name) or default
    if not value:
        raise ConfigError(f"{name} is not set")
    return value


def _first(env: Mapping[str, str], *names: str) -> str:
    for name in names:
        if env.get(name):
            return env[name]
    raise ConfigError(f"{' or '.join(names)} is not set")


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= minimum:
        raise ConfigError(f"{name} must be greater than {minimum:g}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return int(_number(env, name, default))


def _whole(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    """A whole number of at least `minimum` (no fractions, unlike `_int`)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise ConfigError(f"{name}={raw!r} is not a whole number")
    if int(raw) < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return int(raw)


def _listen(raw: str) -> tuple[str, int]:
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"PANTHEON_GATEWAY_LISTEN={raw!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ReplicaLimits:
    """The per-key budgets one gateway replica enforces (`GatewaySettings.per_replica`)."""

    rate_per_s: float
    rate_burst: int
    max_concurrent_uploads: int


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the gateway needs: endpoints, TLS files, keys, limits, deadlines."""

    #: gRPC target of the ingestion and storage services (TLS): `host:port`,
    #: `dns:///name:port` or a list of replicas such as
    #: `ipv4:10.0.0.1:50051,10.0.0.2:50051` (gateway/channel.py balances them).
    grpc_target: str
    #: CA bundle that signs the services' certificate.
    ca_file: str
    #: Certificate chain and key the gateway serves HTTPS with.
    tls_cert_file: str
    tls_key_file: str
    #: JSON file with the API keys (sha256 hashes only); see gateway/auth.py.
    api_keys_file: str
    #: The gateway's workload identity: the client certificate (SPIFFE ID
    #: `spiffe://<trust domain>/gateway`) and key it presents to the services.
    client_cert_file: str
    client_key_file: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 8443
    #: The name the services' certificate is checked against when the target
    #: does not carry it (`PANTHEON_GRPC_AUTHORITY`; an `ipv4:` list
    #: defaults to its first address).
    grpc_authority: str | None = None
    #: Gateway replicas behind one balancer: each enforces 1/N of every
    #: per-key budget (rate, burst, concurrent uploads), so N of them
    #: together allow what the settings say, not N times it.
    replicas: int = 1

    #: Base deadline of an ingest call (records batch, object upload).
    ingest_deadline_s: float = 30.0
    #: Deadline of a read call (stat, search, health).
    read_deadline_s: float = 10.0
    #: Streams (uploads, downloads) get `base + size / min_stream_rate` so a
    #: large object is not cut off; uploads of unknown size get the maximum.
    min_stream_rate_bps: float = 8 * MiB
    max_stream_deadline_s: float = 3600.0

    #: Largest body of POST /v1/objects (raw or multipart).
    max_object_bytes: int = 5 * GiB
    #: Largest body of POST /v1/records (it becomes one gRPC message).
    max_records_bytes: int = 16 * MiB
    #: Most records in one batch.
    max_records: int = 10_000
    #: Largest `metadata` part of a multipart upload.
    max_metadata_part_bytes: int = 64 * 1024
    #: Size of the content chunks sent to the ingestion service.
    chunk_bytes: int = MiB

    #: Per-key token bucket: sustained requests per second and burst size,
    #: across all replicas (`per_replica()` is what one enforces).
    rate_per_s: float = 200.0
    rate_burst: int = 400
    #: Uploads (POST /v1/objects and /v1/records) one key may have in progress
    #: at once, across all replicas; one more is answered 429
    #: `too_many_concurrent_uploads`.
    max_concurrent_uploads: int = 32

    #: Connections and requests this process holds at once (uvicorn's
    #: `limit_concurrency`; a capacity of the process, not a per-key budget,
    #: so not divided among replicas); past it: 503 `overloaded`.
    max_connections: int = 512
    #: Time a client has to send a request's line and headers: from the TLS
    #: handshake's end (or the first byte of a request on a kept-alive
    #: connection) to the end of the headers. Past it: 408, connection closed.
    header_timeout_s: float = 10.0
    #: Largest request line plus headers; past it: 431, connection closed.
    max_header_bytes: int = 32 * 1024
    #: Slow bodies: the longest wait for the next piece of a body, and the
    #: grace period of the minimum rate below.
    body_timeout_s: float = 15.0
    #: Minimum average rate of a body once the grace period is used up: the
    #: time spent waiting for body bytes may be at most `body_timeout_s` plus
    #: one second per `body_min_rate_bps` bytes received. Past it: 408.
    body_min_rate_bps: float = 16 * 1024
    #: Idle time after which a kept-alive connection is closed.
    keep_alive_timeout_s: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> GatewaySettings:
        target = _get(env, "PANTHEON_GRPC_TARGET", "127.0.0.1:50051")
        # Any gRPC target but a URL: `host:port`, `dns:///name:port`, or an
        # address list of replicas, `ipv4:10.0.0.1:50051,10.0.0.2:50051`.
        if "://" in target and not target.startswith(("dns:", "ipv4:", "ipv6:", "unix:")):
            raise ConfigError("PANTHEON_GRPC_TARGET must be a gRPC target such as host:port (TLS is implied)")
        host, port = _listen(_get(env, "PANTHEON_GATEWAY_LISTEN", "127.0.0.1:8443"))
        settings = cls(
            grpc_target=target,
            ca_file=_get(env, "PANTHEON_CA_FILE"),
            tls_cert_file=_first(env, "PANTHEON_GATEWAY_TLS_CERT_FILE", "PANTHEON_TLS_CERT_FILE"),
            tls_key_file=_first(env, "PANTHEON_GATEWAY_TLS_KEY_FILE", "PANTHEON_TLS_KEY_FILE"),
            api_keys_file=_get(env, "PANTHEON_API_KEYS_FILE"),
            client_cert_file=_get(env, "PANTHEON_CLIENT_CERT_FILE"),
            client_key_file=_get(env, "PANTHEON_CLIENT_KEY_FILE"),
            listen_host=host,
            listen_port=port,
            grpc_authority=env.get("PANTHEON_GRPC_AUTHORITY") or None,
            replicas=_whole(env, "PANTHEON_GATEWAY_REPLICAS", 1, minimum=1),
            ingest_deadline_s=_number(env, "PANTHEON_GATEWAY_INGEST_DEADLINE_S", 30.0),
            read_deadline_s=_number(env, "PANTHEON_GATEWAY_READ_DEADLINE_S", 10.0),
            min_stream_rate_bps=_number(env, "PANTHEON_GATEWAY_MIN_STREAM_RATE_BPS", 8 * MiB),
            max_stream_deadline_s=_number(env, "PANTHEON_GATEWAY_MAX_STREAM_DEADLINE_S", 3600.0),
            max_object_bytes=_int(env, "PANTHEON_GATEWAY_MAX_OBJECT_BYTES", 5 * GiB),
            max_records_bytes=_int(env, "PANTHEON_GATEWAY_MAX_RECORDS_BYTES", 16 * MiB),
            max_records=_int(env, "PANTHEON_GATEWAY_MAX_RECORDS", 10_000),
            max_metadata_part_bytes=_int(env, "PANTHEON_GATEWAY_MAX_METADATA_BYTES", 64 * 1024),
            chunk_bytes=_int(env, "PANTHEON_GATEWAY_CHUNK_BYTES", MiB),
            rate_per_s=_number(env, "PANTHEON_GATEWAY_RATE_PER_S", 200.0),
            rate_burst=_int(env, "PANTHEON_GATEWAY_RATE_BURST", 400),
            max_concurrent_uploads=_int(env, "PANTHEON_GATEWAY_MAX_CONCURRENT_UPLOADS", 32),
            max_connections=_int(env, "PANTHEON_GATEWAY_MAX_CONNECTIONS", 512),
            header_timeout_s=_number(env, "PANTHEON_GATEWAY_HEADER_TIMEOUT_S", 10.0),
            max_header_bytes=_int(env, "PANTHEON_GATEWAY_MAX_HEADER_BYTES", 32 * 1024),
            body_timeout_s=_number(env, "PANTHEON_GATEWAY_BODY_TIMEOUT_S", 15.0),
            body_min_rate_bps=_number(env, "PANTHEON_GATEWAY_BODY_MIN_RATE_BPS", 16 * 1024),
            keep_alive_timeout_s=_int(env, "PANTHEON_GATEWAY_KEEP_ALIVE_TIMEOUT_S", 30),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse settings that cannot work or would weaken TLS."""
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
                raise ConfigError(f"{name} {path!r} is not a readable file")
        if not 0 < self.chunk_bytes <= 4 * MiB:
            raise ConfigError(
                "PANTHEON_GATEWAY_CHUNK_BYTES must be between 1 and 4194304 (the gRPC chunk limit)"
            )
        if self.rate_burst < 1:
            raise ConfigError("PANTHEON_GATEWAY_RATE_BURST must be at least 1")
        if self.replicas < 1:
            raise ConfigError("PANTHEON_GATEWAY_REPLICAS must be at least 1")
        if self.grpc_authority is not None and any(
            c.isspace() or not c.isprintable() or c in ",/@" for c in self.grpc_authority
        ):
            raise ConfigError(f"PANTHEON_GRPC_AUTHORITY={self.grpc_authority!r} is not a host name")

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
