"""The calm-client report: `scripts/reliability --hostile`.

For each class of the hostile-input catalogue (tests/hostile_cases.py, the
cases the catalogue test runs once), a worker process sends that class's
request again and again (one at a time, at most `--hostile-rate` a second)
while a calm client with another key makes small ingests and reads at a
steady pace. Quiet and loaded rounds alternate, so drift in the machine's
load lands on both sides of the ratio alike. Two loads of
scripts/lib/calm_client.py follow the classes: a key flooding at ten times
its rate limit (the old fairness test) and 40 slow uploads.

Per class it prints the calm client's p99 in quiet rounds and under the
class, their ratio (aim: at most 2, moonshot 1.2), and what the hostile
requests got and how long they took (p50, max). Timing is reported, never
judged: the exit status is 1 only if a hostile request got a 5xx or no
answer within its client timeout (a hang).

    scripts/reliability --hostile                    on a private stack (like the fault scenarios)
    scripts/reliability --hostile --dev-stack        against the running dev stack instead
    scripts/reliability --hostile --json --only csv_object_wide,slow_loris_body
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Protocol

import httpx

from tests.hostile_cases import BY_NAME, CASES, Target, data_type_for, make_seed, observed, unacceptable

ROOT = Path(__file__).resolve().parents[2]
#: The calm client's data type (its key, demo-agency, may write and read it).
CALM_DATA_TYPE = "weather.observation"
#: Settings of the private stack: the services' and gateway's defaults (the
#: fault scenarios' private stacks shorten some of them).
PRIVATE_STACK_SETTINGS = {
    "PANTHEON_KAFKA_DELIVERY_TIMEOUT_MS": "15000",
    "PANTHEON_STALE_CLAIM_S": "60",
    "PANTHEON_GATEWAY_INGEST_DEADLINE_S": "30",
    "PANTHEON_GATEWAY_READ_DEADLINE_S": "10",
}
RATE_FLOOD, SLOW_UPLOADS = "rate_flood", "slow_uploads"


def calm_client() -> ModuleType:
    """scripts/lib/calm_client.py (its own docstring says how it is imported)."""
    lib = str(ROOT / "scripts" / "lib")
    if lib not in sys.path:
        sys.path.insert(0, lib)
    import calm_client as module

    return module


class Load(Protocol):
    """What a hostile load reports once stopped (calm_client.HostileLoad has the same shape)."""

    outcomes: Counter[str]
    seconds: list[float]


@dataclass
class HostileLoad:
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    #: Set when a hostile request sent after `started` has been answered.
    answered: threading.Event = field(default_factory=threading.Event)


# -- the calm client -------------------------------------------------------------------


class Calm:
    """Small ingests and reads of the object it ingested, in turn, one at a time."""

    def __init__(self, url: str, ca_file: str, key: str) -> None:
        self._client = httpx.Client(
            base_url=url,
            verify=ssl.create_default_context(cafile=ca_file),
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        self._object_id: str | None = None
        self._turn = 0

    def close(self) -> None:
        self._client.close()

    def _one(self) -> bool:
        turn, self._turn = self._turn % 3, self._turn + 1
        if turn == 0 or self._object_id is None:
            response = self._client.post(
                "/v1/objects",
                params={"data_type": CALM_DATA_TYPE, "lat": 38.0, "lon": 23.7, "observed_at": observed(0.1)},
                content=b'{"wind_kmh": 41}',
                headers={"Content-Type": "application/json"},
            )
            if response.status_code == 201 and self._object_id is None:
                self._object_id = response.json()["id"]
            return response.status_code == 201
        path = f"/v1/objects/{self._object_id}" + ("/metadata" if turn == 1 else "")
        return self._client.get(path).status_code == 200

    def wait_quiet(self, threshold_ms: float, quiet_for_s: float = 1.0, timeout_s: float = 30.0) -> None:
        """Until requests have taken under `threshold_ms` for `quiet_for_s` in a row
        (work a hostile request left in the services has drained), or `timeout_s` passed."""
        deadline = time.monotonic() + timeout_s
        since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet_for_s:
            latency, _ = self.latencies_ms(1, 0.02)
            if latency[0] >= threshold_ms:
                since = time.monotonic()

    def latencies_ms(self, count: int, spacing_s: float) -> tuple[list[float], int]:
        """Latencies of `count` requests, `spacing_s` apart; and how many failed."""
        found: list[float] = []
        failures = 0
        for _ in range(count):
            started = time.perf_counter()
            try:
                ok = self._one()
            except httpx.HTTPError:
                ok = False
            found.append((time.perf_counter() - started) * 1000)
            failures += not ok
            time.sleep(spacing_s)
        return found, failures


# -- one row ----------------------------------------------------------------------------


@dataclass
class Row:
    """The calm client's p99 quiet and under one hostile class, and what the class got."""

    name: str
    via: str
    unloaded_p99_ms: float
    loaded_p99_ms: float
    ratio: float
    calm_failures: int
    hostile_requests: int
    hostile_p50_s: float
    hostile_max_s: float
    #: "<status> <reason>" -> count.
    hostile_outcomes: dict[str, int]
    #: Hostile requests answered with a 5xx, or not within their client timeout.
    unacceptable: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    calm: Calm,
    hostile: Callable[[], AbstractContextManager[Load]],
    *,
    name: str,
    via: str,
    rounds: int,
    samples: int,
    quiet_ms: float,
    quiet_p99_ms: float,
    spacing_s: float = 0.02,
    settle_s: float = 1.0,
    cover_s: float = 60.0,
) -> Row:
    """Quiet and loaded rounds of the calm client, in turn.

    Each quiet round starts once the services are quiet again (calm requests
    under three times `quiet_ms`, the quiet median, for a second) and is
    taken again (up to five times) while its p99 is over three times
    `quiet_p99_ms`, the p99 before any load. A loaded round starts
    `settle_s` after the load, takes `samples` calm requests and, for the
    catalogue's loads, goes on until a hostile request was answered (at most
    `cover_s`), so a slow hostile request is measured whole.
    """
    p99 = calm_client().p99
    unloaded: list[float] = []
    loaded: list[float] = []
    failures = 0
    outcomes: Counter[str] = Counter()
    seconds: list[float] = []
    for _ in range(rounds):
        for _attempt in range(5):  # a quiet round counts once it is quiet (left-over work drained)
            calm.wait_quiet(3 * quiet_ms)
            quiet, failed = calm.latencies_ms(samples, spacing_s)
            if p99(quiet) <= 3 * quiet_p99_ms:
                break
        unloaded += quiet
        failures += failed
        with hostile() as load:
            time.sleep(settle_s)
            busy, failed = calm.latencies_ms(samples, spacing_s)
            answered: threading.Event | None = getattr(load, "answered", None)
            deadline = time.monotonic() + cover_s
            while answered is not None and not answered.is_set() and time.monotonic() < deadline:
                more, more_failed = calm.latencies_ms(5, spacing_s)
                busy += more
                failed += more_failed
            loaded += busy
            failures += failed
        outcomes.update(load.outcomes)
        seconds += load.seconds
    quiet_p99, busy_p99 = p99(unloaded), p99(loaded)
    return Row(
        name=name,
        via=via,
        unloaded_p99_ms=round(quiet_p99, 1),
        loaded_p99_ms=round(busy_p99, 1),
        ratio=round(busy_p99 / quiet_p99, 2) if quiet_p99 else 0.0,
        calm_failures=failures,
        hostile_requests=len(seconds),
        hostile_p50_s=round(statistics.median(seconds), 3) if seconds else 0.0,
        hostile_max_s=round(max(seconds, default=0.0), 3),
        hostile_outcomes=dict(sorted(outcomes.items())),
        unacceptable=sum(n for outcome, n in outcomes.items() if unacceptable(outcome.split(" ", 1)[0])),
    )


# -- hostile loads -------------------------------------------------------------------------


@contextlib.contextmanager
def hostile_loop(case_name: str, target: Target, rate_per_s: float) -> Iterator[HostileLoad]:
    """The case's request again and again, from a worker process, while the block runs.

    The worker reports each answer as it comes and is killed when the block
    ends: a request still in flight then is abandoned (and not counted), so
    the load ends with the block.
    """
    load = HostileLoad()
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.hostile", "_worker", case_name],
        env={**os.environ, "HOSTILE_TARGET": target.to_json(), "HOSTILE_RATE": str(rate_per_s)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    ready = threading.Event()
    lock = threading.Lock()

    def read(stream: IO[str]) -> None:
        # "ready" once imported (it sends from then on), then one
        # "answered {outcome, seconds}" line per request.
        for line in stream:
            if line.startswith("ready"):
                ready.set()
            elif line.startswith("answered "):
                found = json.loads(line.removeprefix("answered "))
                with lock:
                    load.outcomes[found["outcome"]] += 1
                    load.seconds.append(found["seconds"])
                load.answered.set()

    reader = threading.Thread(target=read, args=(worker.stdout,), daemon=True)
    reader.start()
    try:
        ready.wait(30)
        yield load
    finally:
        worker.kill()
        worker.wait(30)
        reader.join(10)


def _worker(case_name: str) -> int:
    """The worker process of `hostile_loop`: sends until killed, one answer per line."""
    case = BY_NAME[case_name]
    target = Target.from_json(os.environ["HOSTILE_TARGET"])
    rate = float(os.environ["HOSTILE_RATE"])
    data_type = data_type_for(CASES.index(case))
    print("ready", flush=True)
    started = time.perf_counter()
    sent = 0
    while True:
        time.sleep(max(0.0, started + sent / rate - time.perf_counter()))
        outcome = case.send(target, data_type)
        sent += 1
        shown = f"{outcome.status} {outcome.reason}" if outcome.reason else outcome.status
        print("answered " + json.dumps({"outcome": shown, "seconds": round(outcome.seconds, 4)}), flush=True)


# -- the report ----------------------------------------------------------------------------------

HEADINGS = ("class", "via", "calm p99 quiet ms", "calm p99 loaded ms", "ratio", "hostile n", "p50 s", "max s")


def table(rows: list[Row]) -> str:
    cells = [(*HEADINGS, "hostile requests got")]
    for r in rows:
        got = ", ".join(f"{outcome} x{n}" for outcome, n in r.hostile_outcomes.items())
        name = r.name
        cells.append(
            (
                name,
                r.via,
                f"{r.unloaded_p99_ms:.1f}",
                f"{r.loaded_p99_ms:.1f}",
                f"{r.ratio:.2f}",
                str(r.hostile_requests),
                f"{r.hostile_p50_s:.3f}",
                f"{r.hostile_max_s:.3f}",
                got,
            )
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for n, row in enumerate(cells):
        padded = [
            v.ljust(w) if i in (0, 1, 8) else v.rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("| " + " | ".join(padded) + " |")
        if n == 0:
            lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    worst = max(rows, key=lambda r: r.ratio)
    over = [r.name for r in rows if r.ratio > 2]
    bad = [f"{r.name} ({r.unacceptable})" for r in rows if r.unacceptable]
    lines = [
        f"{len(rows)} classes; worst ratio {worst.ratio:.2f} ({worst.name}); "
        f"{len(over)} over 2x{': ' + ', '.join(over) if over else ''}",
        "hostile requests with a 5xx or no answer in time: " + (", ".join(bad) if bad else "none"),
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def stack_environment(dev_stack: bool) -> Iterator[dict[str, str]]:
    """The environment of the stack to measure: the dev stack, or a private one stopped afterwards."""
    if dev_stack:
        subprocess.run(
            [sys.executable, "-m", "pantheon.devstack", "up"],
            cwd=ROOT,
            check=True,
            timeout=900,
            stdout=sys.stderr,
        )
        from pantheon.devstack.environment import environment

        yield environment()
        return
    from tests.reliability.stack import PrivateStack

    with tempfile.TemporaryDirectory(prefix="pantheon-hostile-") as tmp:
        stack = PrivateStack.create(Path(tmp) / "stack", **PRIVATE_STACK_SETTINGS)
        print(f"starting a private stack in {tmp} ...", file=sys.stderr)
        try:
            stack.up()
            yield stack.env
        finally:
            stack.down()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        return _worker(argv[1])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--hostile", action="store_true", help="(how scripts/reliability selects this report)"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    parser.add_argument(
        "--only", help="comma-separated classes (default: rate_flood, slow_uploads, then every class)"
    )
    parser.add_argument("--dev-stack", action="store_true", help="measure the running dev stack")
    parser.add_argument("--rounds", type=int, default=2, help="quiet and loaded rounds per class")
    parser.add_argument("--samples", type=int, default=50, help="calm requests per round (at least)")
    parser.add_argument("--hostile-rate", type=float, default=10.0, help="most hostile requests a second")
    args = parser.parse_args(argv)
    # calm_client's loads first: the catalogue ends with its heaviest class.
    names = args.only.split(",") if args.only else [RATE_FLOOD, SLOW_UPLOADS] + [c.name for c in CASES]
    unknown = sorted(set(names) - set(BY_NAME) - {RATE_FLOOD, SLOW_UPLOADS})
    if unknown:
        parser.error(f"unknown classes: {', '.join(unknown)}")
    rows: list[Row] = []
    with stack_environment(args.dev_stack) as env:
        target = Target.from_env(env)
        target = replace(target, seed=make_seed(target))
        url, ca = env["PANTHEON_GATEWAY_URL"], env["PANTHEON_CA_FILE"]
        calm = Calm(url, ca, env["PANTHEON_API_KEY_B"])
        lib = calm_client()
        calm.latencies_ms(10, 0.02)  # warm the connection and the services
        baseline = calm.latencies_ms(args.samples, 0.02)[0]
        quiet_ms, quiet_p99_ms = statistics.median(baseline), lib.p99(baseline)
        try:
            for name in names:
                started = time.monotonic()
                print(f"{name} ...", file=sys.stderr, flush=True)
                load: Callable[[], AbstractContextManager[Load]]
                if name == RATE_FLOOD:
                    rate = float(env.get("PANTHEON_GATEWAY_RATE_PER_S", "200"))
                    load = lambda rate=rate: lib.rate_flood(url, ca, target.key, 10 * rate)  # noqa: E731
                    via = "rest"
                elif name == SLOW_UPLOADS:
                    load = lambda: lib.slow_uploads(url, ca, target.key, 40)  # noqa: E731
                    via = "rest"
                else:
                    case = BY_NAME[name]
                    load = lambda case=case: hostile_loop(case.name, target, args.hostile_rate)  # noqa: E731
                    via = case.transport
                row = measure(
                    calm,
                    load,
                    name=name,
                    via=via,
                    rounds=args.rounds,
                    samples=args.samples,
                    quiet_ms=quiet_ms,
                    quiet_p99_ms=quiet_p99_ms,
                )
                rows.append(row)
                print(
                    f"  ratio {row.ratio:.2f}, hostile p50 {row.hostile_p50_s:.3f}s max "
                    f"{row.hostile_max_s:.3f}s, {time.monotonic() - started:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            calm.close()
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(table(rows))
        print()
        print(summary(rows))
    return 1 if any(r.unacceptable for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
