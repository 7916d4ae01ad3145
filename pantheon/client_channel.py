"""How every Pantheon client channel is set up: balancing, health, retries, authority.

A target may name several replicas (`ipv4:10.0.0.1:50051,10.0.0.2:50051`,
or a DNS name with several addresses). The channel then spreads calls over
them (`round_robin`) and watches each one's health (grpc.health.v1 Watch)
so a replica that is draining stops getting new calls before it goes away.
gRPC retries UNAVAILABLE itself, but only for the methods the contract
declares NO_SIDE_EFFECTS or IDEMPOTENT; an ingest call is never retried by
the channel (its caller retries with the same idempotency key).

The gateway builds the same channel from the same contract in
gateway/channel.py (it may not import this package).
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import descriptor_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2
from pantheon_api.storage.v1 import storage_service_pb2

#: The health-check name a client watches on each replica. Not "": that
#: one is NOT_SERVING while Kafka or the object store is down, which the
#: replicas share, so it would take every replica out of rotation at once
#: (reads included, and callers would lose the services' RetryInfo). The
#: service names are SERVING from start-up until the graceful shutdown.
HEALTH_CHECK_NAME = storage_service_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name

_RETRIED_LEVELS = (descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS, descriptor_pb2.MethodOptions.IDEMPOTENT)

_RETRY_POLICY = {
    "maxAttempts": 3,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def idempotent_methods() -> list[tuple[str, str]]:
    """(service, method) of every RPC the contract declares free of side
    effects or idempotent, and the health check (whose proto declares none)."""
    found = [
        (service.full_name, method.name)
        for file in (ingest_service_pb2.DESCRIPTOR, storage_service_pb2.DESCRIPTOR)
        for service in file.services_by_name.values()
        for method in service.methods
        if method.GetOptions().idempotency_level in _RETRIED_LEVELS
    ]
    return [*found, ("grpc.health.v1.Health", "Check")]


def service_config() -> dict[str, Any]:
    """The gRPC service config of a channel to the Pantheon services."""
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": HEALTH_CHECK_NAME},
        "methodConfig": [
            {
                "name": [{"service": s, "method": m} for s, m in idempotent_methods()],
                "retryPolicy": _RETRY_POLICY,
            }
        ],
    }


def default_authority(target: str, override: str | None = None) -> str | None:
    """The name the services' certificate is checked against, when gRPC's own
    choice would fail: `override` if given (`PANTHEON_GRPC_AUTHORITY`), else
    for an `ipv4:`/`ipv6:` address list the host of its first address (gRPC
    would take the whole list as the name). None leaves gRPC's choice
    (the host of `host:port` and `dns:` targets)."""
    if override:
        return override
    scheme, colon, addresses = target.partition(":")
    if not colon or scheme not in ("ipv4", "ipv6"):
        return None
    first = addresses.lstrip("/").split(",")[0]
    if scheme == "ipv6":
        # A bracketed address may carry a port; a bare one may not.
        return first.partition("]")[0] + "]" if first.startswith("[") else f"[{first}]"
    return first.partition(":")[0]


def authority_options(target: str, authority: str | None = None) -> list[tuple[str, str | int]]:
    """The `grpc.default_authority` option `default_authority` asks for, if any."""
    name = default_authority(target, authority)
    return [] if name is None else [("grpc.default_authority", name)]


def channel_options(target: str, authority: str | None = None) -> list[tuple[str, str | int]]:
    """Balancing, health checking and retries, and the authority an
    address-list target needs for TLS (see `default_authority`)."""
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(service_config())),
        # round_robin reconnects to a replica that went away by itself, with
        # a backoff that grows to 2 minutes by default; capped at a second, a
        # replica that is back takes calls again within a second.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 1000),
        *authority_options(target, authority),
    ]
