"""The MinIO server: built from source with Go, started with TLS and SSE-S3.

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
from pantheon.devstack.settings import HOST, Settings

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


def install_certs(paths: StackPaths, certs: CertFiles) -> None:
    """Lay out MinIO's --certs-dir: public.crt, private.key, CAs/ca.crt."""
    target = paths.minio_certs
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


def start(settings: Settings, binary: Path, creds: Credentials) -> int:
    """Start MinIO in the background; returns its pid."""
    p = settings.paths
    p.minio_data.mkdir(parents=True, exist_ok=True)
    argv = [
        str(binary),
        "server",
        str(p.minio_data),
        "--address",
        settings.minio_address,
        "--console-address",
        f"{HOST}:{settings.minio_console_port}",
        "--certs-dir",
        str(p.minio_certs),
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
    return process.start(argv, pidfile=p.minio_pidfile, log_file=p.minio_logs / "minio.log", env=env)


def running_pid(paths: StackPaths) -> int | None:
    return process.running_pid(paths.minio_pidfile, paths.process_marker, CMDLINE_MARK)


def stop(paths: StackPaths) -> int | None:
    return process.stop(paths.minio_pidfile, paths.process_marker, CMDLINE_MARK)


def server_log(paths: StackPaths) -> Path:
    return paths.minio_logs / "minio.log"


def is_live(settings: Settings, ca_file: Path, timeout: float = 3.0) -> bool:
    """Whether the liveness endpoint answers 200 over TLS verified by the dev CA."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    url = f"{settings.minio_endpoint}/minio/health/live"
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_live(
    settings: Settings,
    ca_file: Path,
    *,
    timeout: float,
    still_running: Callable[[], bool],
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not still_running():
            raise RuntimeError("the MinIO process exited during startup")
        if is_live(settings, ca_file):
            return
        time.sleep(0.25)
    raise TimeoutError(f"MinIO not live after {timeout:.0f}s")
