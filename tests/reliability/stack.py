"""A private dev stack for fault injection: own state dir, own ports, its own processes.

Fault scenarios kill, stop and restart backends; they never touch the shared
stack other tests use. Everything here goes through `scripts/stack` with a
private environment, and processes are found through the stack's pidfiles.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition
from minio import Minio

from pantheon.devstack import minio_admin, process
from pantheon.devstack.environment import environment
from pantheon.devstack.settings import Settings
from pantheon.events.cloudevents import decode, parse_headers
from pantheon.events.consumer import reader_config
from tests.integration.support import Seen, private_stack_env

ROOT = Path(__file__).resolve().parents[2]
#: The single profile's processes; a name here means the component's first node in the HA profile.
COMPONENTS = ("kafka", "minio", "services", "gateway")
#: The HA profile's ports relative to a free block's start (settings.py derives the nodes' own).
HA_PORTS = {
    "PANTHEON_KAFKA_PORT": 0,  # nodes at +0, +2, +4
    "PANTHEON_KAFKA_CONTROLLER_PORT": 1,  # +1, +3, +5
    "PANTHEON_GRPC_PORT": 6,  # replicas at +6, +7
    "PANTHEON_METRICS_PORT": 8,  # +8, +9
    "PANTHEON_MINIO_PORT": 10,  # haproxy; nodes at +20..+23
    "PANTHEON_MINIO_CONSOLE_PORT": 11,  # consoles at +31..+34
    "PANTHEON_GATEWAY_PORT": 40,  # haproxy; replicas at +50, +51
}
HA_BLOCK = 60


def _free_block(size: int) -> int:
    """The first port of `size` consecutive ports free on loopback right now."""
    rng = random.Random()
    for _ in range(200):
        start = rng.randrange(20_000, 60_000 - size)
        sockets: list[socket.socket] = []
        try:
            for port in range(start, start + size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {size} consecutive free ports on loopback")


def ha_stack_env(state_dir: Path) -> dict[str, str]:
    """Environment for a private HA stack: its own state dir and a free block of ports."""
    start = _free_block(HA_BLOCK)
    return {
        **os.environ,
        "PANTHEON_STACK_DIR": str(state_dir),
        "PANTHEON_STACK_PROFILE": "ha",
        **{name: str(start + offset) for name, offset in HA_PORTS.items()},
    }


#: Settings every private stack gets: fail fast when a backend goes away,
#: short gateway deadlines, and a short stale-claim age so a retry resumes
#: the claim of a call whose process died.
FAULT_SETTINGS = {
    "PANTHEON_KAFKA_DELIVERY_TIMEOUT_MS": "5000",
    "PANTHEON_STALE_CLAIM_S": "3",
    "PANTHEON_GATEWAY_INGEST_DEADLINE_S": "6",
    "PANTHEON_GATEWAY_READ_DEADLINE_S": "3",
    # The reconciler announces what a dead call stored: often, and soon.
    "PANTHEON_RECONCILE_INTERVAL_S": "2",
    "PANTHEON_RECONCILE_AFTER_S": "3",
}


@dataclass
class PrivateStack:
    state_dir: Path
    base_env: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)

    # -- lifecycle -----------------------------------------------------------------

    @classmethod
    def create(cls, state_dir: Path, ha: bool = False, **extra: str) -> PrivateStack:
        ports = ha_stack_env(state_dir) if ha else private_stack_env(state_dir)
        base = {**ports, **FAULT_SETTINGS, **extra}
        if not ha:
            base.pop("PANTHEON_STACK_PROFILE", None)
        # Faults are armed per start (`up(extra=...)`), never inherited.
        for name in ("PANTHEON_FAULT_INJECTION", "PANTHEON_FAULT_CRASH_BEFORE_PUBLISH"):
            base.pop(name, None)
        return cls(state_dir, base)

    def run(self, *args: str, extra: dict[str, str] | None = None, timeout: float = 300) -> None:
        env = {**self.base_env, **(extra or {})}
        done = subprocess.run(
            [str(ROOT / "scripts/stack"), *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"scripts/stack {' '.join(args)} failed:\n{done.stderr[-3000:]}")

    def up(self, extra: dict[str, str] | None = None) -> None:
        """Start whatever is not running (with `extra` settings for what starts now), then
        wait until the REST edge is ready: the gateways reach restarted services within
        their reconnect backoff (a second), and a scenario's next request must find them."""
        self.run("up", extra=extra)
        self.env = {**self.base_env, **environment(self.settings())}
        deadline = time.monotonic() + 60
        while True:
            try:
                with httpx.Client(verify=self.tls(), timeout=5) as client:
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the REST edge did not become ready within 60 s of `up`")
            time.sleep(0.2)

    def settings(self) -> Settings:
        """The stack's settings (its ports and nodes), read from its own environment."""
        saved = dict(os.environ)
        os.environ.update(self.base_env)
        try:
            return Settings.from_env()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def down(self) -> None:
        for name in self.processes():  # a stopped process ignores SIGTERM: let it run again
            pid = self.pid(name)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        self.run("down", timeout=180)

    # -- processes -------------------------------------------------------------------

    def processes(self) -> list[str]:
        """Every process by name: `kafka`.. in the single profile, `kafka-1`.. in the HA one."""
        s = self.settings()
        if not s.ha:
            return list(COMPONENTS)
        return [*s.pidfiles, "haproxy"]

    def pidfile(self, name: str) -> Path:
        """The pidfile of a process: a component (its first node) or a node's name."""
        s = self.settings()
        if name == "haproxy":
            return s.paths.haproxy / "haproxy.pid"
        first = {
            "kafka": s.kafka_nodes[0].pidfile,
            "minio": s.minio_nodes[0].pidfile,
            "services": s.service_replicas[0].pidfile,
            "gateway": s.gateway_replicas[0].pidfile,
        }
        return first.get(name) or s.pidfiles[name]

    def pid(self, component: str) -> int | None:
        """The component's pid from its pidfile, if that process is alive and ours."""
        return process.running_pid(self.pidfile(component), str(self.state_dir) + "/")

    def signal(self, component: str, sig: signal.Signals) -> int:
        pid = self.pid(component)
        assert pid is not None, f"{component} is not running"
        os.kill(pid, sig)
        return pid

    def kill(self, component: str) -> None:
        """SIGKILL and wait until the process is gone."""
        pid = self.signal(component, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while process.cmdline(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self, component: str) -> None:
        """Stop gracefully (SIGTERM, wait) through the pidfile; a no-op if it is not running."""
        pid = self.pid(component)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while process.cmdline(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.cmdline(pid):
            os.kill(pid, signal.SIGKILL)

    # -- clients -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.env["PANTHEON_GATEWAY_URL"]

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.env["PANTHEON_CA_FILE"])

    def http(self, key: str | None = None, timeout: float = 60.0) -> httpx.Client:
        key = key or self.env["PANTHEON_API_KEY"]
        return httpx.Client(
            base_url=self.url,
            verify=self.tls(),
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout,
        )

    def root_s3(self) -> Minio:
        return minio_admin.s3_client(
            self.env["MINIO_ENDPOINT"].removeprefix("https://"),
            self.env["MINIO_ROOT_USER"],
            self.env["MINIO_ROOT_PASSWORD"],
            Path(self.env["PANTHEON_CA_FILE"]),
        )

    def kafka_config(self) -> dict[str, Any]:
        return reader_config(self.env)

    def read_all(self, topics: Iterable[str], wait_s: float = 30.0) -> list[Seen]:
        """Every event on `topics` from the beginning to the current end, in partition order."""
        consumer = Consumer(
            {**self.kafka_config(), "group.id": "pantheon-reliability", "enable.auto.commit": False}
        )
        try:
            ends: dict[tuple[str, int], int] = {}
            assignment = []
            for topic in topics:
                meta = consumer.list_topics(topic, timeout=15).topics[topic]
                for partition in meta.partitions:
                    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
                    if high > low:
                        ends[(topic, partition)] = high
                        assignment.append(TopicPartition(topic, partition, low))
            consumer.assign(assignment)
            seen: list[Seen] = []
            done: set[tuple[str, int]] = set()
            deadline = time.monotonic() + wait_s
            while len(done) < len(ends) and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None or message.error() is not None:
                    continue
                where = (message.topic() or "", message.partition() or 0)
                offset = message.offset() or 0
                if offset + 1 >= ends[where]:
                    done.add(where)
                headers = parse_headers(message.headers())
                try:
                    _, payload = decode(headers, message.value() or b"")
                except ValueError:
                    continue
                seen.append(
                    Seen(
                        topic=where[0],
                        key=(message.key() or b"").decode(),
                        headers=headers,
                        payload=payload,
                        partition=where[1],
                        offset=offset,
                    )
                )
            if len(done) < len(ends):
                raise RuntimeError(f"could not read topics to their end within {wait_s}s")
            return seen
        finally:
            consumer.close()
