"""Ports and addresses of the dev stack, overridable through the environment.

Everything listens on 127.0.0.1 only: the stack is for one developer's
machine, and loopback keeps the dev credentials off the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pantheon.devstack.paths import StackPaths

HOST = "127.0.0.1"


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    port = int(raw)
    if not 0 < port < 65536:
        raise ValueError(f"{name}={raw!r} is not a TCP port")
    return port


@dataclass(frozen=True)
class Settings:
    """One stack: its paths and its ports."""

    paths: StackPaths
    kafka_port: int
    kafka_controller_port: int
    minio_port: int
    minio_console_port: int
    grpc_port: int
    gateway_port: int = 8443
    metrics_port: int = 9464

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            paths=StackPaths.from_env(),
            kafka_port=_port("PANTHEON_KAFKA_PORT", 19092),
            kafka_controller_port=_port("PANTHEON_KAFKA_CONTROLLER_PORT", 19093),
            minio_port=_port("PANTHEON_MINIO_PORT", 9000),
            minio_console_port=_port("PANTHEON_MINIO_CONSOLE_PORT", 9001),
            grpc_port=_port("PANTHEON_GRPC_PORT", 50051),
            gateway_port=_port("PANTHEON_GATEWAY_PORT", 8443),
            metrics_port=_port("PANTHEON_METRICS_PORT", 9464),
        )

    @property
    def kafka_bootstrap(self) -> str:
        return f"{HOST}:{self.kafka_port}"

    @property
    def minio_address(self) -> str:
        return f"{HOST}:{self.minio_port}"

    @property
    def minio_endpoint(self) -> str:
        return f"https://{self.minio_address}"

    @property
    def grpc_target(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def gateway_listen(self) -> str:
        return f"{HOST}:{self.gateway_port}"

    @property
    def gateway_url(self) -> str:
        return f"https://{self.gateway_listen}"

    @property
    def metrics_listen(self) -> str:
        return f"{HOST}:{self.metrics_port}"
