"""Calm-client latency under hostile load: a report, not a test.

How much a calm client's latency suffers while someone else misbehaves is a
timing measurement, and timing belongs in a report (`scripts/reliability
--hostile`), not in the pass/fail suite. This module measures it: the calm
client sends small ingests with one key, in rounds that alternate between
quiet and loaded (so drift in a shared machine's load lands on both sides of
the ratio alike), and the report gives its p99 under load as a ratio to its
unloaded p99, with what the hostile traffic got back.

    report = measure(url, ca_file, calm_key, lambda: rate_flood(url, ca_file, key, 200))
    report.ratio            # loaded p99 / unloaded p99; aim <= 2 (moonshot 1.2)

Ready-made hostile loads: `rate_flood` (small ingests at a fixed rate with
another key, in a process of its own so it does not slow the measuring one)
and `slow_uploads` (N uploads whose chunked bodies trickle in a byte at a
time). `fairness` is the old fairness test's measurement: a key flooding at
ten times its rate limit. Any context manager that starts a load on entry
and stops it on exit will do.

From Python: `sys.path.insert(0, "scripts/lib"); import calm_client`. From a
shell, against a running gateway (settings from `scripts/stack env`):

    .venv/bin/python scripts/lib/calm_client.py fairness --rate 20
    .venv/bin/python scripts/lib/calm_client.py slow-uploads --count 40
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import httpx

#: Data type of the calm client's ingests (demo-agency, key B, may write it).
CALM_DATA_TYPE = "weather.observation"


@dataclass
class CalmReport:
    """The calm client's p99 with and without the hostile load."""

    name: str
    unloaded_p99_ms: float
    loaded_p99_ms: float
    ratio: float
    calm_failures: int
    #: HTTP status (or "closed"/"error") -> count, for the hostile requests.
    hostile_outcomes: dict[str, int] = field(default_factory=dict)
    #: Seconds each hostile request took, where the load measures it, and
    #: their p99 and maximum.
    hostile_seconds: list[float] = field(default_factory=list)
    hostile_p99_s: float = 0.0
    hostile_max_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


def _observed() -> str:
    return (datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _client(url: str, ca_file: str, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=url,
        verify=ssl.create_default_context(cafile=ca_file),
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def calm_latencies_ms(client: httpx.Client, count: int, spacing_s: float) -> tuple[list[float], int]:
    """Latencies of `count` small ingests, one after the other; and how many failed."""
    found: list[float] = []
    failures = 0
    for _ in range(count):
        started = time.perf_counter()
        response = client.post(
            "/v1/objects",
            params={"data_type": CALM_DATA_TYPE, "lat": 38.0, "lon": 23.7, "observed_at": _observed()},
            content=b'{"wind_kmh": 41}',
            headers={"Content-Type": "application/json"},
        )
        found.append((time.perf_counter() - started) * 1000)
        failures += response.status_code != 201
        time.sleep(spacing_s)
    return found, failures


@dataclass
class HostileLoad:
    """What a hostile load reports once stopped."""

    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)


def measure(
    url: str,
    ca_file: str,
    calm_key: str,
    hostile: Callable[[], AbstractContextManager[HostileLoad]],
    *,
    name: str = "hostile",
    rounds: int = 3,
    samples: int = 50,
    spacing_s: float = 0.02,
    settle_s: float = 1.0,
) -> CalmReport:
    """The calm client's p99 in quiet rounds and in rounds under `hostile()`."""
    unloaded: list[float] = []
    loaded: list[float] = []
    failures = 0
    outcomes: Counter[str] = Counter()
    seconds: list[float] = []
    with _client(url, ca_file, calm_key) as calm:
        calm_latencies_ms(calm, 5, spacing_s)  # warm up the connection and caches
        for _ in range(rounds):
            quiet, failed = calm_latencies_ms(calm, samples, spacing_s)
            unloaded += quiet
            failures += failed
            with hostile() as load:
                time.sleep(settle_s)  # let the load get going (and exhaust its burst)
                busy, failed = calm_latencies_ms(calm, samples, spacing_s)
                loaded += busy
                failures += failed
            outcomes.update(load.outcomes)
            seconds += load.seconds
    quiet_p99, busy_p99 = p99(unloaded), p99(loaded)
    return CalmReport(
        name=name,
        unloaded_p99_ms=round(quiet_p99, 2),
        loaded_p99_ms=round(busy_p99, 2),
        ratio=round(busy_p99 / quiet_p99, 3) if quiet_p99 else 0.0,
        calm_failures=failures,
        hostile_outcomes={str(k): v for k, v in sorted(outcomes.items(), key=lambda kv: str(kv[0]))},
        hostile_seconds=[round(s, 3) for s in seconds],
        hostile_p99_s=round(p99(seconds), 3),
        hostile_max_s=round(max(seconds, default=0.0), 3),
    )


# -- hostile loads -------------------------------------------------------------------

#: Sends small ingests at a fixed rate until terminated, then prints the
#: statuses it got and the seconds each took, as JSON (a process of its own).
_FLOOD = """
import json, os, signal, ssl, sys, time
from datetime import UTC, datetime, timedelta
import httpx
url, ca, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
statuses, seconds, stop = [], [], []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
client = httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=ca),
                      headers={"Authorization": "Bearer " + os.environ["FLOOD_KEY"]}, timeout=30)
start = time.perf_counter()
while not stop:
    due = start + len(statuses) / rate
    time.sleep(max(0.0, due - time.perf_counter()))
    observed = (datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    params = {"data_type": "sensor.air_quality", "lat": 48.2, "lon": 16.4, "observed_at": observed}
    headers = {"Content-Type": "application/json"}
    started = time.perf_counter()
    statuses.append(client.post("/v1/objects", content=b"{}", headers=headers, params=params).status_code)
    seconds.append(time.perf_counter() - started)
print(json.dumps({"statuses": statuses, "seconds": seconds}))
"""


@contextlib.contextmanager
def rate_flood(url: str, ca_file: str, key: str, rate_per_s: float) -> Iterator[HostileLoad]:
    """Small ingests with `key` at `rate_per_s`, from another process."""
    load = HostileLoad()
    flood = subprocess.Popen(
        [sys.executable, "-c", _FLOOD, url, ca_file, str(rate_per_s)],
        env={**os.environ, "FLOOD_KEY": key},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield load
    finally:
        flood.terminate()
        out, _ = flood.communicate(timeout=60)
        lines = out.strip().splitlines()
        if lines:
            found = json.loads(lines[-1])
            load.outcomes.update(str(status) for status in found["statuses"])
            load.seconds += found["seconds"]


def _slow_upload(url: str, ca_file: str, key: str, stop: threading.Event, load: HostileLoad) -> None:
    """One upload whose chunked body trickles in a byte a second until the
    server answers (408, 429...) or `stop` is set."""
    target = urlparse(url)
    host, port = target.hostname or "127.0.0.1", target.port or 443
    context = ssl.create_default_context(cafile=ca_file)
    started = time.perf_counter()
    outcome = "stopped"
    try:
        with (
            socket.create_connection((host, port), timeout=60) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            query = f"data_type=sensor.air_quality&lat=48.2&lon=16.4&observed_at={_observed()}"
            tls.sendall(
                (
                    f"POST /v1/objects?{query} HTTP/1.1\r\nHost: {host}\r\n"
                    f"Authorization: Bearer {key}\r\nContent-Type: text/csv\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n"
                ).encode()
            )
            tls.settimeout(1.0)
            while not stop.is_set():
                try:
                    answer = tls.recv(4096)
                except TimeoutError:
                    tls.sendall(b"1\r\na\r\n")  # one more byte of body
                    continue
                outcome = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed"
                break
    except OSError:
        outcome = "closed" if not stop.is_set() else "stopped"
    load.seconds.append(time.perf_counter() - started)
    load.outcomes[outcome] += 1


def _slow_uploads_here(url: str, ca_file: str, key: str, count: int, stop: threading.Event) -> HostileLoad:
    load = HostileLoad()
    threads = [
        threading.Thread(target=_slow_upload, args=(url, ca_file, key, stop, load), daemon=True)
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(timeout=10)
    return load


@contextlib.contextmanager
def slow_uploads(url: str, ca_file: str, key: str, count: int = 40) -> Iterator[HostileLoad]:
    """`count` slow uploads with `key`, each on its own connection, from
    another process (its threads would slow the measuring one)."""
    load = HostileLoad()
    worker = subprocess.Popen(
        [sys.executable, __file__, "_slow-uploads", url, ca_file, str(count)],
        env={**os.environ, "HOSTILE_KEY": key},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield load
    finally:
        worker.terminate()
        out, _ = worker.communicate(timeout=60)
        lines = out.strip().splitlines()
        if lines:
            found = json.loads(lines[-1])
            load.outcomes.update(found["outcomes"])
            load.seconds += found["seconds"]


def _slow_upload_worker(url: str, ca_file: str, count: int) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    load = _slow_uploads_here(url, ca_file, os.environ["HOSTILE_KEY"], count, stop)
    print(json.dumps({"outcomes": dict(load.outcomes), "seconds": load.seconds}))
    return 0


# -- the reports --------------------------------------------------------------------


def fairness(url: str, ca_file: str, flood_key: str, calm_key: str, rate_per_s: float) -> CalmReport:
    """A key flooding at ten times its rate limit (`rate_per_s`, the gateway's
    PANTHEON_GATEWAY_RATE_PER_S) against a calm key's p99."""
    return measure(
        url,
        ca_file,
        calm_key,
        lambda: rate_flood(url, ca_file, flood_key, 10 * rate_per_s),
        name=f"rate_flood_{10 * rate_per_s:g}_per_s",
    )


def slow_upload_report(
    url: str, ca_file: str, hostile_key: str, calm_key: str, count: int = 40
) -> CalmReport:
    """`count` slow uploads (one key) against a calm key's p99."""
    return measure(
        url,
        ca_file,
        calm_key,
        lambda: slow_uploads(url, ca_file, hostile_key, count),
        name=f"slow_uploads_{count}",
        rounds=2,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_slow-uploads"]:  # the worker process of slow_uploads()
        return _slow_upload_worker(argv[1], argv[2], int(argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", choices=("fairness", "slow-uploads"))
    parser.add_argument("--rate", type=float, help="the gateway's per-key rate limit (fairness)")
    parser.add_argument("--count", type=int, default=40, help="slow uploads at once")
    args = parser.parse_args(argv)
    env = os.environ
    url, ca = env["PANTHEON_GATEWAY_URL"], env["PANTHEON_CA_FILE"]
    hostile_key, calm_key = env["PANTHEON_API_KEY"], env["PANTHEON_API_KEY_B"]
    if args.report == "fairness":
        rate = args.rate or float(env.get("PANTHEON_GATEWAY_RATE_PER_S", "200"))
        report = fairness(url, ca, hostile_key, calm_key, rate)
    else:
        report = slow_upload_report(url, ca, hostile_key, calm_key, args.count)
    print(json.dumps(report.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
