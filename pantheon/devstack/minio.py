"""The MinIO server: built from source with Go, started with TLS and SSE-S3.

One node in the single profile; in the HA profile four nodes on loopback
form one erasure set (parity 2) behind haproxy (pantheon/devstack/haproxy.py).

MinIO no longer publishes binaries we can reach, and the Go module proxy
refuses its RELEASE.* tags (not semver), so the module is pinned by the
pseudo-version of a commit and built with `go install` into the cache.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from pantheon.devstack import process
from pantheon.devstack.certs import CertFiles
from pantheon.devstack.credentials import Credentials
from pantheon.devstack.paths import StackPaths
from pantheon.devstack.settings import HOST, MinioNode, Settings

log = logging.getLogger(__name__)

MINIO_MODULE = "github.com/minio/minio"
#: The commit after RELEASE.2025-10-15T17-29-55Z that the dev stack runs.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"


#: Present in the server's command line; with the state dir it identifies our MinIO.
CMDLINE_MARK = f"minio-{MINIO_VERSION} server "


def binary_path(paths: StackPaths) -> Path:
    return paths.cache / "bin" / f"minio-{MINIO_VERSION}"


def ensure_binary(paths: StackPaths) -> Path:
    """Build the pinned MinIO with `go install` unless the cache has it."""
    final = binary_path(paths)
    if final.is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    # A lock, because two `up`s at once would otherwise both spend minutes
    # compiling; the second waits and then finds the binary.
    with (final.parent / ".minio-build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_file():
            return final
        go = shutil.which("go")
        if not go:
            raise RuntimeError("go not found on PATH; MinIO is built from source with Go")
        paths.cache_logs.mkdir(parents=True, exist_ok=True)
        build_log = paths.cache_logs / "minio-build.log"
        log.info("building MinIO %s with Go (a few minutes; log: %s)", MINIO_VERSION, build_log)
        with (
            tempfile.TemporaryDirectory(dir=final.parent, prefix=".minio-build-") as gobin,
            build_log.open("ab") as out,
        ):
            env = {**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0"}
            result = subprocess.run(
                [go, "install", f"{MINIO_MODULE}@{MINIO_VERSION}"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            if result.returncode != 0:
                raise RuntimeError(f"MinIO build failed; see {build_log}")
            # Same filesystem as the final path, so the rename is atomic.
            os.replace(Path(gobin) / "minio", final)
    return final


def install_certs(node: MinioNode, certs: CertFiles) -> None:
    """Lay out the node's --certs-dir: public.crt, private.key, CAs/ca.crt."""
    target = node.certs
    (target / "CAs").mkdir(parents=True, exist_ok=True)
    os.chmod(target, 0o700)
    for src, dst, mode in (
        (certs.server_cert, target / "public.crt", 0o644),
        (certs.server_key, target / "private.key", 0o600),
        (certs.ca_cert, target / "CAs" / "ca.crt", 0o644),
    ):
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, dst)


def start(settings: Settings, node: MinioNode, binary: Path, creds: Credentials) -> int:
    """Start one MinIO node in the background; returns its pid."""
    nodes = settings.minio_nodes
    for each in nodes:
        each.data.mkdir(parents=True, exist_ok=True)
    # A cluster's nodes list every drive, explicitly: the `{1...4}` expansion
    # would give all four nodes the same paths on this one host.
    drives = [str(node.data)] if len(nodes) == 1 else [f"{each.endpoint}{each.data}" for each in nodes]
    argv = [
        str(binary),
        "server",
        *drives,
        "--address",
        node.address,
        "--console-address",
        f"{HOST}:{node.console_port}",
        "--certs-dir",
        str(node.certs),
    ]
    # Secrets travel in the environment (readable only by the owner via
    # /proc/<pid>/environ), never on the command line.
    env = {
        **os.environ,
        "MINIO_ROOT_USER": creds.minio_root_user,
        "MINIO_ROOT_PASSWORD": creds.minio_root_password,
        "MINIO_KMS_SECRET_KEY": creds.minio_kms_secret_key,
        "MINIO_UPDATE": "off",  # no update checks: only package registries are reachable
    }
    if len(nodes) > 1:
        env.update(
            # Several drives on the root disk are refused outside CI mode;
            # production gives each node its own disk.
            MINIO_CI_CD="1",
            # Undocumented (minio/minio PR #19453): in what looks like a
            # container, a node waits forever to find itself among the
            # endpoints unless told which one it is.
            _MINIO_SERVER_LOCAL=node.address,
        )
    return process.start(argv, pidfile=node.pidfile, log_file=server_log(node), env=env)


def _expect(node: MinioNode) -> tuple[str, str]:
    # Every node's command line lists every drive; its own certs dir tells
    # them apart (by path, so `down` needs no port variables).
    return (CMDLINE_MARK, f"--certs-dir {node.certs}")


def running_pid(paths: StackPaths, node: MinioNode) -> int | None:
    return process.running_pid(node.pidfile, paths.process_marker, _expect(node))


def stop(paths: StackPaths, node: MinioNode) -> int | None:
    return process.stop(node.pidfile, paths.process_marker, _expect(node))


def server_log(node: MinioNode) -> Path:
    return node.logs / "minio.log"


def _health(endpoint: str, ca_file: Path, check: str, timeout: float) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(f"{endpoint}/minio/health/{check}", timeout=timeout, context=ctx) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def is_live(endpoint: str, ca_file: Path, timeout: float = 3.0) -> bool:
    """Whether the server at `endpoint` answers its liveness check over TLS verified by the dev CA."""
    return _health(endpoint, ca_file, "live", timeout)


def has_write_quorum(endpoint: str, ca_file: Path, timeout: float = 3.0) -> bool:
    """Whether the cluster behind `endpoint` can take writes (`/minio/health/cluster`)."""
    return _health(endpoint, ca_file, "cluster", timeout)


def wait_ready(
    endpoint: str,
    ca_file: Path,
    *,
    timeout: float,
    still_running: Callable[[], bool],
) -> None:
    """Wait until `endpoint` is live and, for a cluster, has write quorum."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not still_running():
            raise RuntimeError("a MinIO process exited during startup")
        if is_live(endpoint, ca_file) and has_write_quorum(endpoint, ca_file):
            return
        time.sleep(0.25)
    raise TimeoutError(f"MinIO not ready after {timeout:.0f}s")
