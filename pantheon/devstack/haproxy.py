"""haproxy in front of the HA profile's MinIO nodes and gateway replicas.

TCP passthrough: TLS ends at MinIO and at the gateway, so the balancer holds
no key and clients verify the same certificate as without it. haproxy checks
every backend over TLS (verified by the dev CA) once a second; a node that
fails two checks takes no new connections and its open ones are cut, and a
connection refused by a dead node is retried on another one. A gateway is
taken out only when it stops answering: a 503 from it means busy.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pantheon.devstack import process
from pantheon.devstack.certs import CertFiles
from pantheon.devstack.files import write_atomic
from pantheon.devstack.paths import StackPaths
from pantheon.devstack.settings import Settings

#: Part of the command line; guards against a reused pid (see process.py).
CMDLINE_MARK = "haproxy -db -f "


def binary() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").is_file() else None)
    if not found:
        raise RuntimeError("haproxy not found; scripts/bootstrap installs it (apt-get install haproxy)")
    return found


def config(settings: Settings, certs: CertFiles) -> str:
    check = f"check check-ssl verify required ca-file {certs.ca_cert} inter 1s fall 2 rise 2"
    # A MinIO node that stops answering is cut off, open connections too (a
    # frozen node would otherwise hold them until the client gives up).
    minio = "\n".join(
        f"    server {n.name} {n.address} {check} on-marked-down shutdown-sessions"
        for n in settings.minio_nodes
    )
    gateways = "\n".join(f"    server {r.name} {r.listen} {check}" for r in settings.gateway_replicas)
    return f"""\
# Written by pantheon.devstack on every `up --ha`; edit the generator, not this file.
global
    log stdout format raw local0
    maxconn 4096

defaults
    mode tcp
    log global
    option tcplog
    # Only sessions that ended badly and backends going up or down.
    option dontlog-normal
    timeout connect 2s
    # Long uploads and downloads stream through: idle limits, not totals.
    timeout client 10m
    timeout server 10m
    timeout check 2s
    # A connection a dead node refused is retried on another node.
    retries 3
    option redispatch

frontend s3
    bind {settings.minio_address}
    default_backend minio

backend minio
    balance leastconn
    option httpchk
    http-check send meth GET uri /minio/health/live
    http-check expect status 200
{minio}

frontend rest
    bind {settings.gateway_listen}
    default_backend gateways

backend gateways
    balance leastconn
    option httpchk
    http-check send meth GET uri /healthz
    # 503 is a gateway at its connection limit: busy, not down. Taking it
    # out would move its load onto the other one and cut its uploads.
    http-check expect rstatus ^(200|503)$
{gateways}
"""


def is_current(settings: Settings, certs: CertFiles) -> bool:
    """Whether the config file on disk (the running haproxy's) is what `config` writes now."""
    path = config_file(settings.paths)
    return path.is_file() and path.read_text() == config(settings, certs)


def config_file(paths: StackPaths) -> Path:
    return paths.haproxy / "haproxy.cfg"


def pidfile(paths: StackPaths) -> Path:
    return paths.haproxy / "haproxy.pid"


def log_file(paths: StackPaths) -> Path:
    return paths.haproxy / "haproxy.log"


def start(settings: Settings, certs: CertFiles) -> int:
    """Write the config, check it, start haproxy in the foreground of its own session."""
    p = settings.paths
    cfg = config_file(p)
    write_atomic(cfg, config(settings, certs).encode())
    checked = subprocess.run([binary(), "-c", "-q", "-f", str(cfg)], capture_output=True, text=True)
    if checked.returncode != 0:
        raise RuntimeError(f"haproxy refused {cfg}:\n{checked.stdout}{checked.stderr}")
    return process.start([binary(), "-db", "-f", str(cfg)], pidfile=pidfile(p), log_file=log_file(p))


def running_pid(paths: StackPaths) -> int | None:
    return process.running_pid(pidfile(paths), paths.process_marker, CMDLINE_MARK)


def stop(paths: StackPaths) -> int | None:
    return process.stop(pidfile(paths), paths.process_marker, CMDLINE_MARK)
