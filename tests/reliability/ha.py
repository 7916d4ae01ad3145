"""Node kills on the HA profile, each under a steady mixed ingest load, then the chaos checker.

    scripts/reliability --ha [--only leader-kill,minio-node,...] [--json] [--verbose]

A private HA stack (three Kafka nodes, four MinIO nodes and two gateways
behind haproxy, two service replicas) takes the chaos workload: worker
threads sending objects and record batches through the REST edge and over
gRPC, keyed and keyless, retrying like a careful client. Once the load is
steady, one scripted fault runs; the load goes on through it and a little
after; then everything is healed, the reconciler gets its time, and the
checker of tests/reliability/chaos.py counts lost, duplicated, out-of-order,
unannounced and orphaned units from the backends themselves.

`longest unavailability` is the longest time, from the fault until the
load stopped, in which no request was acknowledged: with five workers
sending back to back, acknowledgements normally come every few
milliseconds, so a gap is the time every client spent failing and
retrying. It is a measurement, reported, not a pass/fail threshold.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka.admin import AdminClient

from pantheon.devstack import process
from pantheon.events.topics import RECORDS
from pantheon.metadata import naming
from pantheon.storage.buckets import INDEX_BUCKET
from tests.reliability.chaos import WORKERS, Request, Workload, check, failed, heal, settle
from tests.reliability.report import table
from tests.reliability.scenarios import (
    Row,
    bucket_of,
    count_objects,
    merge,
    object_params,
    send,
    stored_objects,
    tiff_body,
)
from tests.reliability.stack import PrivateStack

Log = Callable[[str], None]

#: Load before the fault, so that it hits requests in flight.
WARMUP_S = 6.0
#: Load after the last restart, so that recovery shows in the gaps.
COOLDOWN_S = 8.0
#: How long a killed node stays dead before the restart.
DOWN_S = 10.0


# -- looking at the cluster -------------------------------------------------------------------


def _admin(stack: PrivateStack) -> AdminClient:
    # Quiet: while a broker is dead, librdkafka logs every refused connection.
    return AdminClient({**stack.kafka_config(), "log_level": 0})


def records_leader(stack: PrivateStack) -> int:
    """The broker leading partition 0 of the records topic."""
    meta = _admin(stack).list_topics(RECORDS.name, timeout=15)
    return int(meta.topics[RECORDS.name].partitions[0].leader)


def under_replicated(stack: PrivateStack) -> int:
    """Partitions of our topics whose in-sync replicas are fewer than their replicas."""
    meta = _admin(stack).list_topics(timeout=15)
    return sum(
        len(p.isrs) < len(p.replicas)
        for name, topic in meta.topics.items()
        if name.startswith("pantheon.")
        for p in topic.partitions.values()
    )


def wait_in_sync(stack: PrivateStack, budget_s: float = 120.0) -> float:
    """Seconds until every partition is fully replicated again (or the budget is spent)."""
    started = time.monotonic()
    while time.monotonic() < started + budget_s:
        try:
            if under_replicated(stack) == 0:
                break
        except Exception:  # a broker may still be restarting: ask again
            pass
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def _copies(stack: PrivateStack, data_types: list[str]) -> list[tuple[str, str]]:
    """(bucket, name) of the runs' objects and their index entries (`ids/<id>`: what makes them visible)."""
    found = []
    for data_type in data_types:
        for name in stored_objects(stack, data_type):
            found += [(bucket_of(data_type), name), (INDEX_BUCKET, f"ids/{naming.parse_key(name).id}")]
    return found


def unhealed_copies(stack: PrivateStack, data_types: list[str]) -> int:
    """(object, drive) pairs without the object's erasure-coded part on that drive."""
    nodes = stack.settings().minio_nodes
    return sum(
        not (n.data / bucket / name / "xl.meta").is_file()
        for bucket, name in _copies(stack, data_types)
        for n in nodes
    )


def wait_healed(
    stack: PrivateStack, data_types: list[str], log: Log, budget_s: float = 180.0
) -> dict[str, Any]:
    """Read every object of the runs until every drive holds its part: MinIO heals a missed
    write when the object is read, or when its scanner comes by."""
    started = time.monotonic()
    first = missing = unhealed_copies(stack, data_types)
    s3 = stack.root_s3()
    while missing and time.monotonic() < started + budget_s:
        for bucket, name in _copies(stack, data_types):
            response = s3.get_object(bucket, name)
            response.read()
            response.close()
            response.release_conn()
        time.sleep(2)
        missing = unhealed_copies(stack, data_types)
    log(f"  missing copies: {first} at first, {missing} after {time.monotonic() - started:.0f}s")
    return {"missing_copies_before_heal": first, "unhealed_copies": missing}


def rss_mib(stack: PrivateStack) -> float:
    """Resident memory of every process of the stack, summed."""
    total_kib = 0
    for pid in process.pids_referencing(str(stack.state_dir) + "/"):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return round(total_kib / 1024, 1)


# -- the faults ---------------------------------------------------------------------------------


@dataclass
class Faulted:
    """What a fault script reports: notes, and rows of its own traffic beside the load's."""

    notes: dict[str, Any]
    rows: list[Row] = field(default_factory=list)


def leader_kill(stack: PrivateStack, data_type: str, log: Log) -> Faulted:
    """SIGKILL the broker leading the records partition; restart it once another broker
    leads (and DOWN_S has passed)."""
    leader = records_leader(stack)
    killed_at = time.monotonic()
    stack.kill(f"kafka-{leader}")
    log(f"  killed kafka-{leader}, the records leader")
    moved_after = None
    # Generous: a busy machine may take long to fence the dead broker; that shows in the numbers.
    while time.monotonic() < killed_at + 120 and (
        moved_after is None or time.monotonic() < killed_at + DOWN_S
    ):
        try:
            if moved_after is None and records_leader(stack) not in (leader, -1):
                moved_after = round(time.monotonic() - killed_at, 1)
        except Exception:  # metadata may be briefly unavailable
            pass
        time.sleep(0.2)
    stack.up()
    violations = [] if moved_after is not None else [f"no other broker took over from kafka-{leader}"]
    return Faulted(
        {
            "killed": f"kafka-{leader}",
            "leader_moved_after_s": moved_after,
            "in_sync_after_s": wait_in_sync(stack),
            "violations": violations,
        }
    )


def _big_upload(
    stack: PrivateStack, data_type: str, on_progress: Callable[[int], None], side: int
) -> tuple[list[str], dict[str, str]]:
    """A keyed TIFF upload through the REST edge, retried like the workload does:
    its attempts, and {key: id} once acknowledged."""
    key = f"ha-{uuid.uuid4().hex[:8]}-tiff"
    with stack.http(timeout=120) as http:
        outcome = send(
            http,
            "POST",
            "/v1/objects",
            params=object_params(data_type),
            headers={"Content-Type": "image/tiff", "Idempotency-Key": key},
            content=lambda: tiff_body(side, on_progress),
            budget_s=180,
        )
    acked = {key: outcome.response.json()["id"]} if outcome.ok and outcome.response is not None else {}
    return outcome.attempts, acked


def minio_node_kill(stack: PrivateStack, data_type: str, log: Log) -> Faulted:
    """SIGKILL one MinIO node a quarter into a large upload (batches are in flight from the load);
    reads and writes go on through the balancer; restart it and wait for the copies to heal."""
    side = 4096
    killed = threading.Event()

    def kill_midway(sent: int) -> None:
        if not killed.is_set() and sent >= side * side // 4:
            killed.set()
            stack.kill("minio-2")
            log("  killed minio-2 mid-upload")

    seeded = _seed(stack, data_type)
    # The TIFF has a data type of its own: the chaos checker reads JSON and CSV uploads.
    imagery = "imagery." + data_type.split(".", 1)[1]
    attempts, acked = _big_upload(stack, imagery, kill_midway, side)
    reads = _reads_during(stack, seeded, seconds=DOWN_S / 2)
    stack.up()
    healed = wait_healed(stack, [data_type, imagery], log)
    violations = _only_ok(reads) + ([] if acked else ["the large upload was not acknowledged"])
    if not healed["missing_copies_before_heal"]:
        # Writes went on while a node was dead: some copies must have been missing.
        violations.append("no copy was missing after the restart: the heal check measured nothing")
    notes = {
        "killed": "minio-2",
        "upload_attempts": attempts,
        "reads_while_down": reads,
        "violations": violations,
        **healed,
    }
    upload = count_objects(stack, "large upload", imagery, 1, acked)
    return Faulted(notes, [upload])


def _seed(stack: PrivateStack, data_type: str, n: int = 5) -> list[str]:
    """Ids of `n` small objects acknowledged before the fault: what reads during it ask for."""
    ids = []
    with stack.http(timeout=30) as http:
        for _ in range(n):
            outcome = send(
                http,
                "POST",
                "/v1/objects",
                params=object_params(data_type),
                headers={"Content-Type": "application/json", "Idempotency-Key": f"ha-seed-{uuid.uuid4()}"},
                content=json.dumps({"chaos": f"ha-seed-{uuid.uuid4()}"}).encode(),
            )
            assert outcome.ok and outcome.response is not None, outcome.attempts
            ids.append(outcome.response.json()["id"])
    return ids


def _reads_during(stack: PrivateStack, ids: list[str], seconds: float) -> dict[str, int]:
    """GETs of `ids` for `seconds`: answers by status."""
    statuses: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    with stack.http(timeout=10) as http:
        while time.monotonic() < deadline:
            for oid in ids:
                try:
                    status = str(http.get(f"/v1/objects/{oid}").status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                statuses[status] = statuses.get(status, 0) + 1
            time.sleep(0.2)
    return statuses


def _only_ok(reads: dict[str, int]) -> list[str]:
    return [] if set(reads) == {"200"} else [f"reads while a node was down answered {reads}"]


def minio_quorum_loss(stack: PrivateStack, data_type: str, log: Log) -> Faulted:
    """SIGKILL two of four MinIO nodes: writes must fail fast with 503 and Retry-After while
    reads go on; restart both, writes resume and missing copies heal."""
    seeded = _seed(stack, data_type)
    stack.kill("minio-3")
    stack.kill("minio-4")
    log("  killed minio-3 and minio-4: no write quorum")
    time.sleep(2)  # the balancer's checks see them gone
    writes: list[dict[str, Any]] = []
    with stack.http(timeout=30) as http:
        for _ in range(5):
            started = time.monotonic()
            try:
                response = http.post(
                    "/v1/objects",
                    params=object_params(data_type),
                    headers={
                        "Content-Type": "application/json",
                        "Idempotency-Key": f"ha-probe-{uuid.uuid4()}",
                    },
                    content=json.dumps({"chaos": f"ha-probe-{uuid.uuid4()}"}).encode(),
                )
                writes.append(
                    {
                        "status": response.status_code,
                        "retry_after": response.headers.get("Retry-After"),
                        "ms": round((time.monotonic() - started) * 1000),
                    }
                )
            except httpx.HTTPError as exc:
                writes.append(
                    {"status": type(exc).__name__, "ms": round((time.monotonic() - started) * 1000)}
                )
            time.sleep(0.5)
    reads = _reads_during(stack, seeded, seconds=3)
    stack.up()
    refused_well = all(w["status"] == 503 and w.get("retry_after") for w in writes)
    return Faulted(
        {
            "killed": "minio-3, minio-4",
            "probe_writes_while_down": writes,
            "slowest_refusal_ms": max(w["ms"] for w in writes),
            "reads_while_down": reads,
            "violations": _only_ok(reads)
            + ([] if refused_well else ["a write was not refused with 503 and Retry-After"]),
            **wait_healed(stack, [data_type], log),
        }
    )


def replica_kills(stack: PrivateStack, data_type: str, log: Log) -> Faulted:
    """SIGKILL one service replica, restart it; then one gateway replica, restart it."""
    for name in ("services-1", "gateway-1"):
        stack.kill(name)
        log(f"  killed {name}")
        time.sleep(DOWN_S / 2)
        stack.up()
        time.sleep(COOLDOWN_S / 2)
    return Faulted({"killed": "services-1, then gateway-1"})


def rolling_restart(stack: PrivateStack, data_type: str, log: Log) -> Faulted:
    """Restart the three brokers one after the other (SIGTERM: a controlled shutdown), each once
    the previous one is back in sync."""
    took: dict[str, float] = {}
    for node in stack.settings().kafka_nodes:
        started = time.monotonic()
        stack.stop(node.name)
        stack.up()
        wait_in_sync(stack)
        took[node.name] = round(time.monotonic() - started, 1)
        log(f"  restarted {node.name} in {took[node.name]}s")
    return Faulted({"restart_s": took})


@dataclass(frozen=True)
class Scenario:
    title: str
    fault: Callable[[PrivateStack, str, Log], Faulted]


SCENARIOS: dict[str, Scenario] = {
    "leader-kill": Scenario("SIGKILL the records leader broker", leader_kill),
    "minio-node": Scenario("SIGKILL 1 of 4 MinIO nodes mid-upload", minio_node_kill),
    "minio-quorum": Scenario("SIGKILL 2 of 4 MinIO nodes (no write quorum)", minio_quorum_loss),
    "replicas": Scenario("SIGKILL a service replica, then a gateway", replica_kills),
    "rolling-restart": Scenario("rolling restart of the 3 brokers", rolling_restart),
}


def longest_gap(requests: list[Request], start: float, end: float) -> float:
    """The longest time within [start, end] without an acknowledgement."""
    times = sorted(r.acked_at for r in requests if r.acked and start <= r.acked_at <= end)
    edges = [start, *times, end]
    return round(max(b - a for a, b in itertools.pairwise(edges)), 1)


def run(stack: PrivateStack, name: str, log: Log, seed: int = 1) -> Row:
    """One scenario: steady load, the fault, more load, heal, reconcile, check."""
    scenario = SCENARIOS[name]
    run_id = uuid.uuid4().hex[:8]
    data_type = f"sensor.ha_{run_id}"
    since = datetime.now(UTC) - timedelta(hours=1)
    workload = Workload(stack, run_id, data_type, seed, float("inf"), threading.Event())
    log(f"{name} ({run_id}): {scenario.title}")
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(workload.worker, w) for w in range(WORKERS)]
        try:
            time.sleep(WARMUP_S)
            fault_at = time.monotonic()
            faulted = scenario.fault(stack, data_type, log)
            time.sleep(COOLDOWN_S)
        finally:
            load_end = time.monotonic()
            workload.stop.set()
            heal(stack)
        requests = [r for f in futures for r in f.result()]
    notes = {
        **faulted.notes,
        "reconcile": settle(stack, data_type, log),
        # Requests that gave up (their retry budget ran out): what they last got.
        "unacknowledged": [r.attempts[-3:] for r in requests if not r.acked],
    }
    row = check(stack, data_type, requests, since, notes)
    if faulted.rows:
        row = merge(scenario.title, {"load": row, **{r.scenario: r for r in faulted.rows}})
        row.notes.update(faulted.notes)
    row.scenario = scenario.title
    row.unavailable_s = longest_gap(requests, fault_at, load_end)
    return row


def bad(row: Row) -> bool:
    """Anything lost, duplicated, out of order, unannounced or orphaned, copies left unhealed,
    a scenario's own condition broken (`violations`), or nothing acknowledged at all."""
    return (
        failed(row)
        or bool(row.notes.get("unhealed_copies"))
        or bool(row.notes.get("violations"))
        or row.acknowledged == 0
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ha", action="store_true", required=True, help="run the HA scenarios")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--verbose", action="store_true", help="print progress and notes to stderr")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        if args.verbose:
            print(message, file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="pantheon-ha-"))
    stack = PrivateStack.create(tmp / "stack", ha=True)
    print(f"starting a private HA stack in {tmp} ...", file=sys.stderr)
    rows: list[Row] = []
    try:
        stack.up()
        memory = rss_mib(stack)
        for name in args.only.split(","):
            started = time.monotonic()
            print(f"scenario {name} ...", file=sys.stderr)
            rows.append(run(stack, name, log))
            print(f"  {time.monotonic() - started:.0f}s", file=sys.stderr)
            log(f"  notes: {json.dumps(rows[-1].notes, default=str)[:4000]}")
    finally:
        stack.down()
    if any(bad(r) for r in rows):
        print(f"the private stack's state and logs are kept in {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp)
    if args.json:
        print(json.dumps({"profile_rss_mib": memory, "rows": [r.as_dict() for r in rows]}, indent=2))
    else:
        print(table(rows, unavailability=True))
        print(f"memory of the HA profile after start-up: {memory} MiB resident")
    return 1 if any(bad(r) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
