"""Helpers for the REST gateway's integration tests: HTTPS clients, unique data types,
what was stored under them, what Kafka announced, and private gateway processes.

Every gateway test ingests as a demo principal (the key decides the source), so
tests isolate themselves by data type instead: `unique_type()` gives a data
type no other test uses, object keys start with `v1/<data_type>/`, and every
event carries the data type in its metadata.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from minio import Minio

from tests.integration.support import EventWatcher, Seen, free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]


def tls(ca_file: str) -> ssl.SSLContext:
    """A client TLS context that trusts the dev CA only."""
    return ssl.create_default_context(cafile=ca_file)


@dataclass(frozen=True)
class Gateway:
    """Where a gateway listens and the demo keys that work with it."""

    url: str
    ca_file: str
    key: str  # demo-city: ingest + read, every data type
    key_b: str  # demo-agency: ingest + read, weather.*, report.*, hazard.*
    key_readonly: str  # demo-viewer: read only, no RESTRICTED data

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Gateway:
        return cls(
            env["PANTHEON_GATEWAY_URL"],
            env["PANTHEON_CA_FILE"],
            env["PANTHEON_API_KEY"],
            env["PANTHEON_API_KEY_B"],
            env["PANTHEON_API_KEY_READONLY"],
        )

    def client(self, key: str | None = "", timeout: float = 60.0) -> httpx.Client:
        """An HTTPS client verified by the dev CA; key "" means the city key, None means no key."""
        key = self.key if key == "" else key
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return httpx.Client(base_url=self.url, verify=tls(self.ca_file), headers=headers, timeout=timeout)


def unique_type(domain: str = "sensor") -> str:
    return f"{domain}.gwtest_{uuid.uuid4().hex[:12]}"


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def observed(minutes_ago: float = 1.0) -> str:
    return rfc3339(datetime.now(UTC) - timedelta(minutes=minutes_ago))


def object_params(data_type: str, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "data_type": data_type,
        "observed_at": observed(),
        "lat": 48.2082,
        "lon": 16.3738,
    }
    params.update(extra)
    return params


def record(
    entity: str = "station-1", lat: float = 48.2, lon: float = 16.37, **payload: Any
) -> dict[str, Any]:
    return {
        "entity_id": entity,
        "observed_at": observed(),
        "location": {"lat": lat, "lon": lon},
        "payload": payload or {"pm10": 17.5},
    }


def bucket_of(data_type: str) -> str:
    return "pantheon-" + data_type.split(".", 1)[0]


def stored_keys(client: Minio, data_type: str) -> list[str]:
    """Every object stored under `data_type` (object names start with v1/<data_type>/)."""
    found = client.list_objects(bucket_of(data_type), prefix=f"v1/{data_type}/", recursive=True)
    return [o.object_name or "" for o in found]


# -- Kafka --------------------------------------------------------------------------------


Event = Seen


class Events(EventWatcher):
    """An EventWatcher with assertions: events must (or must not) arrive."""

    def wait_for(self, match: Callable[[Event], bool], count: int = 1, wait_s: float = 30.0) -> list[Event]:
        """At least `count` matching events (fails after `wait_s`)."""
        found = self.collect(match, count=count, wait_s=wait_s)
        assert len(found) >= count, f"expected {count} matching events within {wait_s}s, saw {len(found)}"
        return found

    def none_within(self, match: Callable[[Event], bool], wait_s: float = 3.0) -> None:
        """Asserts that no matching event arrives within `wait_s`."""
        found = self.collect(match, wait_s=wait_s)
        assert not found, f"unexpected events: {[(e.topic, e.headers.get('ce_id')) for e in found]}"


def of_type(data_type: str) -> Callable[[Event], bool]:
    return lambda event: event.data_type == data_type


# -- private gateway processes ---------------------------------------------------------------


@dataclass
class Process:
    url: str
    pid: int
    log_file: Path

    def peak_rss_kib(self) -> int:
        """VmHWM: the most resident memory the process ever had."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


@contextmanager
def own_gateway(stack_env: dict[str, str], tmp_path: Path, **settings: str) -> Iterator[Process]:
    """A gateway process of this test's own (same stack, own port and settings), stopped afterwards."""
    (port,) = free_ports(1)
    log_file = tmp_path / "gateway.log"
    identities = Path(stack_env["PANTHEON_IDENTITIES_DIR"])
    env = {
        **os.environ,
        **stack_env,
        "PANTHEON_GATEWAY_LISTEN": f"127.0.0.1:{port}",
        # The gateway's own workload identity (the stack's env carries dev-client's).
        "PANTHEON_CLIENT_CERT_FILE": str(identities / "gateway.crt"),
        "PANTHEON_CLIENT_KEY_FILE": str(identities / "gateway.key"),
        **settings,
    }
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if (
                    httpx.get(
                        f"{url}/healthz", verify=tls(stack_env["PANTHEON_CA_FILE"]), timeout=1
                    ).status_code
                    == 200
                ):
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the test gateway did not start:\n{log_file.read_text()[-3000:]}")
            time.sleep(0.1)
        yield Process(url, proc.pid, log_file)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
