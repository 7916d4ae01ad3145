"""The transport floor of a large object: Pantheon's own S3 upload behind C relays instead of its hops.

Pantheon's object paths carry every byte over more TLS connections than a
raw PUT does: over gRPC, client -> services -> MinIO (one hop more); over
REST, client -> gateway -> services -> MinIO (two more). This runs the
services' own upload code (`S3ObjectStore.put_stream`: SHA-256 of the
content, a CRC32 per part, two parts in flight, a conditional completion)
from the benchmark's process, through one or two haproxy relays that end TLS
and open it again (C code that parses nothing) in place of the gRPC and REST
hops. Pantheon's rows can then be read against what those hops would cost if
they were as cheap as a relay: the gap is what its hops cost in Python.

The relays listen on free loopback ports for the length of the scenario
only. They present the dev stack's server certificate; its key is not
copied: haproxy loads `<certificate>.key` beside the certificate, a symbolic
link to the stack's key file. They verify MinIO's certificate against the
dev CA. haproxy is the one scripts/bootstrap installs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType

from pantheon.config import S3Settings
from pantheon.devstack.haproxy import binary
from pantheon.metadata.ulid import new_ulid
from pantheon.storage.s3 import S3ObjectStore

_START_S = 10.0
_STOP_S = 10.0
_ATTEMPTS = 3


def _free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all held open while chosen)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            s = held.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Relays:
    """Two chained TLS relays in front of the store: `endpoint(1)` is one hop away, `endpoint(2)` two."""

    def __init__(self, store_address: str, cert_file: Path, key_file: Path, ca_file: Path) -> None:
        self._store = store_address
        self._cert, self._key, self._ca = cert_file, key_file, ca_file
        self._ports: list[int] = []
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_tail = ""

    def endpoint(self, hops: int) -> str:
        return f"127.0.0.1:{self._ports[hops - 1]}"

    def _config(self, cert: Path) -> str:
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
    bind 127.0.0.1:{one} ssl crt {cert}
    default_backend store
backend store
    server store {self._store} {verify}
frontend two_hops
    bind 127.0.0.1:{two} ssl crt {cert}
    default_backend one_hop
backend one_hop
    server one_hop 127.0.0.1:{one} {verify}
"""

    def __enter__(self) -> Relays:
        try:
            for _ in range(_ATTEMPTS):
                if self._start():
                    return self
                self._stop()
            raise RuntimeError(f"the benchmark's TLS relays (haproxy) did not start: {self._log_tail}")
        except BaseException:
            self._stop()
            raise

    def _start(self) -> bool:
        """Start haproxy on fresh ports; whether both relays listen in time (a port
        taken meanwhile makes it exit, and the caller tries again)."""
        self._dir = tempfile.TemporaryDirectory(prefix="pantheon-bench-relay-")
        folder = Path(self._dir.name)
        cert = folder / "server.pem"
        cert.write_bytes(self._cert.read_bytes())
        Path(f"{cert}.key").symlink_to(self._key.resolve())
        self._ports = _free_ports(2)
        cfg = folder / "relay.cfg"
        cfg.write_text(self._config(cert))
        with (folder / "haproxy.log").open("wb") as log:
            self._process = subprocess.Popen(
                [binary(), "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + _START_S
        while not all(_listening(port) for port in self._ports):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._log_tail = (folder / "haproxy.log").read_text(errors="replace")[-500:]
                return False
            time.sleep(0.05)
        return True

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        try:
            if self._process is not None:
                self._process.terminate()
                try:
                    self._process.wait(_STOP_S)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
        finally:
            self._process = None
            if self._dir is not None:
                self._dir.cleanup()
                self._dir = None


def upload(env: Mapping[str, str], endpoint: str, data: bytes, chunk: int) -> None:
    """Store `data` as the services do, through the S3 endpoint `endpoint`, in chunks of `chunk` bytes.

    Blocking: the store runs on an event loop of its own, closed afterwards
    (with the loop goes the store's write-quorum watch on the relay).
    """
    store = S3ObjectStore(S3Settings.from_env({**env, "PANTHEON_S3_ENDPOINT": f"https://{endpoint}"}))

    async def chunks() -> AsyncIterator[bytes]:
        view = memoryview(data)
        for start in range(0, len(data), chunk):
            yield bytes(view[start : start + chunk])

    key = f"bench/floor/{new_ulid()}.tif"
    asyncio.run(store.put_stream("pantheon-imagery", key, chunks(), "image/tiff", {}))
