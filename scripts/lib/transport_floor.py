"""The transport floor of a large object: the raw PUT through the design's TLS hops.

Pantheon's object paths carry every byte over more TLS connections than a
raw PUT does: over gRPC, client -> services -> MinIO (one hop more); over
REST, client -> gateway -> services -> MinIO (two more). Every hop decrypts
and encrypts again, and the services hash the content (SHA-256). This runs
the raw minio-py PUT through one or two haproxy relays that end TLS and open
it again (C code, no parsing), hashing the body as the services do, so the
object rows can be read against what those hops alone cost on this machine.

haproxy is the one scripts/bootstrap installs for the HA profile; the relays
listen on free loopback ports for the length of the scenario only, with the
dev stack's server certificate, and verify MinIO's against the dev CA.
"""

from __future__ import annotations

import hashlib
import io
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from pantheon.devstack.haproxy import binary

_START_S = 10.0


class HashingReader(io.BytesIO):
    """The body as the services see it: every byte through SHA-256 once."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.digest = hashlib.sha256()

    def read(self, size: int | None = -1) -> bytes:
        piece = super().read(size)
        self.digest.update(piece)
        return piece


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Relays:
    """Two chained TLS relays in front of MinIO: `endpoint(1)` is one hop away, `endpoint(2)` two."""

    def __init__(self, minio_address: str, cert_file: Path, key_file: Path, ca_file: Path) -> None:
        self._minio = minio_address
        self._cert, self._key, self._ca = cert_file, key_file, ca_file
        self._ports = (_free_port(), _free_port())
        self._dir = tempfile.TemporaryDirectory(prefix="pantheon-bench-relay-")
        self._process: subprocess.Popen[bytes] | None = None

    def endpoint(self, hops: int) -> str:
        return f"127.0.0.1:{self._ports[hops - 1]}"

    def _config(self, pem: Path) -> str:
        verify = f"ssl verify required ca-file {self._ca} verifyhost localhost"
        one, two = self._ports
        return f"""\
global
    maxconn 256
defaults
    mode tcp
    timeout connect 2s
    timeout client 10m
    timeout server 10m
frontend one_hop
    bind 127.0.0.1:{one} ssl crt {pem}
    default_backend minio
backend minio
    server minio {self._minio} {verify}
frontend two_hops
    bind 127.0.0.1:{two} ssl crt {pem}
    default_backend one_hop
backend one_hop
    server one_hop 127.0.0.1:{one} {verify}
"""

    def __enter__(self) -> Relays:
        folder = Path(self._dir.name)
        pem = folder / "server.pem"  # haproxy takes the certificate and its key in one file
        pem.touch(mode=0o600)
        pem.write_bytes(self._cert.read_bytes() + self._key.read_bytes())
        cfg = folder / "relay.cfg"
        cfg.write_text(self._config(pem))
        self._process = subprocess.Popen(
            [binary(), "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + _START_S
        while not all(_listening(port) for port in self._ports):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._stop()
                raise RuntimeError("the benchmark's TLS relays did not start (haproxy)")
            time.sleep(0.05)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None
        self._dir.cleanup()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def hashed_put(client: Any, data: bytes, name: str) -> None:
    """The raw PUT of `data`, hashed as it is read."""
    client.put_object("pantheon-imagery", name, HashingReader(data), len(data), content_type="image/tiff")
