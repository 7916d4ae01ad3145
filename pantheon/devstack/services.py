"""The Pantheon gRPC services as dev-stack processes (`pantheon serve`), one per replica."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pantheon.devstack import process
from pantheon.devstack.paths import StackPaths
from pantheon.devstack.settings import Replica

#: Part of the command line; guards against a reused pid (see process.py).
CMDLINE_MARK = "pantheon serve"


def start(paths: StackPaths, replica: Replica, env: Mapping[str, str]) -> int:
    replica.dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pantheon", "serve", "--log-file", str(replica.log)]
    return process.start(
        argv,
        pidfile=replica.pidfile,
        # The services' own output (tracebacks at start-up) lands beside the log.
        log_file=replica.stdout,
        env={
            **env,
            "PANTHEON_GRPC_LISTEN": replica.listen,
            "PANTHEON_METRICS_LISTEN": replica.metrics_listen,
        },
        cwd=Path(__file__).resolve().parents[2],
    )


def running_pid(paths: StackPaths, replica: Replica) -> int | None:
    return process.running_pid(replica.pidfile, paths.process_marker, (CMDLINE_MARK, str(replica.log)))


def stop(paths: StackPaths, replica: Replica) -> int | None:
    return process.stop(replica.pidfile, paths.process_marker, (CMDLINE_MARK, str(replica.log)))


def is_serving(target: str, ca_file: Path, identity: tuple[Path, Path], timeout: float = 2.0) -> bool:
    """Whether the standard gRPC health check answers SERVING over mutual TLS
    (`identity` is a client certificate and its key)."""
    cert, key = identity
    try:
        credentials = grpc.ssl_channel_credentials(ca_file.read_bytes(), key.read_bytes(), cert.read_bytes())
    except OSError:
        return False
    with grpc.secure_channel(target, credentials) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def wait_serving(
    target: str,
    ca_file: Path,
    identity: tuple[Path, Path],
    *,
    timeout: float,
    still_running: Callable[[], bool],
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_serving(target, ca_file, identity):
            return
        if not still_running():
            raise RuntimeError("the services exited during start-up")
        time.sleep(0.2)
    raise TimeoutError(f"the services did not answer health checks within {timeout:.0f}s")
