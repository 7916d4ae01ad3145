"""The dev stack's variables (`scripts/stack`, `pantheon stack`): one typed object.

Where the stack keeps its state and cache, which profile it runs, and the
ports it listens on. Read with the same base as the services' and the
gateway's settings (envconfig), so a bad port is one line naming its
variable. The layout built from these (nodes, replicas, offsets) is
pantheon/devstack/settings.py's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from pantheon.envconfig import EnvSettings, variable
from pantheon.envconfig.settings import OptionalText, whole


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _port(name: str, default: int) -> Any:
    return whole(name, default, low=1, high=65535)


class StackVariables(EnvSettings):
    """What the environment says about the dev stack."""

    #: `single` or `ha`; unset: the state dir's record, else `single`.
    profile: Annotated[Literal["single", "ha"] | None, BeforeValidator(_blank_is_none)] = variable(
        "PANTHEON_STACK_PROFILE", default=None, description="single or ha"
    )
    #: The state dir (`<repo>/.stack` when unset) and the machine-wide cache
    #: (`~/.cache/pantheon` when unset).
    stack_dir: OptionalText = variable("PANTHEON_STACK_DIR", default=None)
    cache_dir: OptionalText = variable("PANTHEON_CACHE_DIR", default=None)
    kafka_port: int = _port("PANTHEON_KAFKA_PORT", 19092)
    kafka_controller_port: int = _port("PANTHEON_KAFKA_CONTROLLER_PORT", 19093)
    minio_port: int = _port("PANTHEON_MINIO_PORT", 9000)
    minio_console_port: int = _port("PANTHEON_MINIO_CONSOLE_PORT", 9001)
    grpc_port: int = _port("PANTHEON_GRPC_PORT", 50051)
    gateway_port: int = _port("PANTHEON_GATEWAY_PORT", 8443)
    metrics_port: int = _port("PANTHEON_METRICS_PORT", 9464)
