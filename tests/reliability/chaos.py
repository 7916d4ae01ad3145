"""A seeded random fault schedule under a mixed workload, then a Jepsen-style checker.

    scripts/reliability --chaos SECONDS --seed N [--json] [--verbose]

A few worker threads send objects and record batches for SECONDS, through
the REST edge and straight to the ingestion service over mutual-TLS gRPC,
with and without idempotency keys, retrying like a careful client (a
keyless retry may legitimately store a second copy). Meanwhile one fault at
a time, at seeded random moments: SIGKILL of kafka, minio, the services or
the gateway and a restart after 1-5 s, or SIGSTOP of one of them for 1-6 s.
After healing, the workers finish their retries, the reconciler gets its
time, and the checker reads the backends themselves: the data bucket (root
S3 client), the `pantheon-index` pending markers, REST reads and search,
and both event topics from the beginning.

Units are uploads and records (a batch object carries records and is
checked as an object, but counted through its records):
- lost: acknowledged, but not readable with its bytes, not found by search
  or not announced under its own id; plus events whose object or record is
  not stored and readable;
- duplicated: stored copies beyond one per idempotency key, and distinct
  events beyond one per stored object or record (copies from failed keyless
  attempts are `keyless_retry_copies` in the notes, not duplicates);
- out_of_order: per Kafka key, acknowledged records whose events (in
  partition order, first occurrence of each ce_id) are not in send order;
- unannounced: stored without its event although visible or still pending
  after the reconciler had its time;
- orphaned: stored without its event, neither visible nor pending.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as pb_grpc
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.client_channel import authority_options
from pantheon.config import ClientIdentity
from pantheon.events.topics import DATA_STORED, RECORDS
from pantheon.metadata import naming
from pantheon.server import MAX_MESSAGE_BYTES, channel_credentials
from pantheon.storage.buckets import INDEX_BUCKET
from pantheon.storage.index import PENDING_PREFIX
from tests.integration.support import Seen
from tests.reliability.report import table
from tests.reliability.scenarios import Row, object_params, records_body, send, stored_objects
from tests.reliability.stack import COMPONENTS, ROOT, PrivateStack

T = TypeVar("T")

WORKERS = 5
#: Entities each worker owns (records of one entity only ever come from one worker).
ENTITIES_PER_WORKER = 3
#: How long a client keeps retrying one logical request.
RETRY_BUDGET_S = 90.0
#: gRPC codes a client retries: the service or a backend is away, slow, or the key is busy.
GRPC_RETRY = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
)
GRPC_SOURCE = "chaos-grpc"


# -- the workload ------------------------------------------------------------------------------


@dataclass
class Request:
    """One logical request: what was sent and what it ended with after retries."""

    name: str  # also in the content, and the idempotency key when keyed
    kind: str  # "object" or "records"
    via: str  # "rest" or "grpc"
    keyed: bool
    content: bytes = b""  # objects
    seqs: range = range(0)  # records: their seqs (entity and order derive from them)
    attempts: list[str] = field(default_factory=list)
    #: From the 2xx answer: the object's (or batch object's) id and SHA-256.
    object_id: str = ""
    sha256: str = ""
    accepted: dict[int, str] = field(default_factory=dict)  # records: seq -> record id

    @property
    def acked(self) -> bool:
        return bool(self.object_id)


def object_content(name: str, worker: int, n: int, as_csv: bool) -> tuple[bytes, str]:
    if as_csv:
        return f"chaos,worker,n\n{name},{worker},{n}\n".encode(), "text/csv"
    return json.dumps({"chaos": name, "worker": worker, "n": n}).encode(), "application/json"


def parsed(name: str, content: bytes) -> Any:
    """An upload's content as data (the services store text formats in a canonical form)."""
    if name.endswith(".csv"):
        return list(csv.reader(io.StringIO(content.decode())))
    return json.loads(content)


def tag_of(name: str, content: bytes) -> str:
    """The logical request an uploaded object came from."""
    data = parsed(name, content)
    return str(data[1][0] if isinstance(data, list) else data["chaos"])


def call_grpc(call: Callable[[], T], attempts: list[str]) -> T | None:
    """`call` until it succeeds, fails for good, or the retry budget runs out."""
    deadline = time.monotonic() + RETRY_BUDGET_S
    delay = 0.2
    while True:
        try:
            result = call()
            attempts.append("OK")
            return result
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            attempts.append(code.name)
            if code not in GRPC_RETRY or time.monotonic() + delay > deadline:
                return None
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


@dataclass
class Workload:
    """What the workers share: where to send, until when, and the run's data type."""

    stack: PrivateStack
    run: str
    data_type: str
    seed: int
    deadline: float
    stop: threading.Event
    #: Records are observed at base + seq ms, so a batch object's time is within the search window.
    base: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(minutes=10))

    def worker(self, w: int) -> list[Request]:
        rng = random.Random(f"{self.seed}-{w}")
        done: list[Request] = []
        # Record seqs of worker w are w, w + WORKERS, ...: records_body puts seq on entity
        # ent-(seq % entities), so this worker alone owns its entities, and seq grows with send order.
        next_seq = w
        credentials = channel_credentials(
            self.stack.env["PANTHEON_CA_FILE"], ClientIdentity.from_env(self.stack.env)
        )
        target = self.stack.env["PANTHEON_GRPC_TARGET"]
        # An ipv4: list of replicas needs the authority (pantheon/client_channel.py).
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES), *authority_options(target)]
        with (
            self.stack.http(timeout=30) as http,
            grpc.secure_channel(target, credentials, options) as channel,
        ):
            stub = pb_grpc.IngestionServiceStub(channel)
            n = 0
            while time.monotonic() < self.deadline and not self.stop.is_set():
                kind = rng.choices(["object", "records"], weights=[55, 45])[0]
                via = rng.choices(["rest", "grpc"], weights=[60, 40])[0]
                request = Request(f"chaos-{self.run}-w{w}-{n}", kind, via, keyed=rng.random() < 0.6)
                if kind == "object":
                    request.content, media_type = object_content(request.name, w, n, rng.random() < 0.3)
                    if via == "rest":
                        self.rest_object(http, request, media_type)
                    else:
                        self.grpc_object(stub, request, media_type)
                else:
                    request.seqs = range(next_seq, next_seq + rng.randint(5, 40) * WORKERS, WORKERS)
                    next_seq = request.seqs.stop
                    if via == "rest":
                        self.rest_records(http, request)
                    else:
                        self.grpc_records(stub, request)
                done.append(request)
                n += 1
        return done

    def rest_object(self, http: httpx.Client, request: Request, media_type: str) -> None:
        headers = {"Content-Type": media_type}
        if request.keyed:
            headers["Idempotency-Key"] = request.name
        outcome = send(
            http,
            "POST",
            "/v1/objects",
            params=object_params(self.data_type),
            headers=headers,
            content=request.content,
            budget_s=RETRY_BUDGET_S,
        )
        request.attempts = outcome.attempts
        if outcome.ok and outcome.response is not None:
            body = outcome.response.json()
            request.object_id, request.sha256 = body["id"], body["sha256"]

    def rest_records(self, http: httpx.Client, request: Request) -> None:
        headers = {"Content-Type": "application/json"}
        if request.keyed:
            headers["Idempotency-Key"] = request.name
        body = records_body(self.data_type, request.seqs, WORKERS * ENTITIES_PER_WORKER, self.base)
        outcome = send(http, "POST", "/v1/records", headers=headers, content=body, budget_s=RETRY_BUDGET_S)
        request.attempts = outcome.attempts
        if outcome.ok and outcome.response is not None:
            answer = outcome.response.json()
            request.object_id, request.sha256 = answer["id"], answer["sha256"]
            request.accepted = {
                request.seqs[r["index"]]: r["id"] for r in answer["results"] if r["status"] == "accepted"
            }

    def grpc_object(self, stub: pb_grpc.IngestionServiceStub, request: Request, media_type: str) -> None:
        meta = md.Metadata(
            data_type=self.data_type,
            source=GRPC_SOURCE,
            location=md.GeoPoint(latitude=48.2082, longitude=16.3738),
            idempotency_key=request.name if request.keyed else "",
        )
        meta.observed_at.FromDatetime(datetime.now(UTC) - timedelta(minutes=1))
        header = pb.IngestObjectRequest(header=pb.ObjectHeader(metadata=meta, declared_media_type=media_type))

        def messages() -> Iterator[pb.IngestObjectRequest]:
            yield header
            yield pb.IngestObjectRequest(chunk=request.content)

        result = call_grpc(lambda: stub.IngestObject(messages(), timeout=15), request.attempts)
        if result is not None:
            request.object_id, request.sha256 = result.metadata.id, result.metadata.sha256

    def grpc_records(self, stub: pb_grpc.IngestionServiceStub, request: Request) -> None:
        # The same records the REST path sends, as protobuf.
        body = json.loads(
            records_body(self.data_type, request.seqs, WORKERS * ENTITIES_PER_WORKER, self.base)
        )
        records = []
        for r in body["records"]:
            record = pb.Record(
                entity_id=r["entity_id"],
                location=md.GeoPoint(latitude=r["location"]["lat"], longitude=r["location"]["lon"]),
            )
            record.observed_at.FromJsonString(r["observed_at"])
            record.payload.update(r["payload"])
            records.append(record)
        message = pb.IngestRecordsRequest(
            data_type=self.data_type,
            source=GRPC_SOURCE,
            idempotency_key=request.name if request.keyed else "",
            records=records,
        )
        result = call_grpc(lambda: stub.IngestRecords(message, timeout=15), request.attempts)
        if result is not None:
            request.object_id, request.sha256 = result.metadata.id, result.metadata.sha256
            request.accepted = {request.seqs[r.index]: r.id for r in result.results if r.status.code == 0}


# -- the faults ----------------------------------------------------------------------------------


@dataclass
class Fault:
    """One entry of the schedule."""

    at: float  # seconds since the run started
    action: str  # "kill" (SIGKILL, restart after `duration`) or "stop" (SIGSTOP, SIGCONT after `duration`)
    component: str
    duration: float
    error: str = ""


def inject_faults(
    stack: PrivateStack, rng: random.Random, started: float, deadline: float, log: Callable[[str], None]
) -> list[Fault]:
    """One fault at a time at random moments until `deadline`; every fault is undone before the next."""
    schedule: list[Fault] = []
    while True:
        gap = rng.uniform(4, 12)
        if time.monotonic() + gap >= deadline:
            return schedule
        time.sleep(gap)
        action, component = rng.choice(["kill", "stop"]), rng.choice(COMPONENTS)
        duration = round(rng.uniform(1, 5) if action == "kill" else rng.uniform(1, 6), 1)
        fault = Fault(round(time.monotonic() - started, 1), action, component, duration)
        schedule.append(fault)
        log(f"  t={fault.at:5.1f}s {action} {component} for {duration}s")
        if stack.pid(component) is None:  # it died on its own since the last fault: worth a note
            fault.error = "was not running"
            stack.up()
        elif action == "kill":
            stack.kill(component)
            time.sleep(duration)
            stack.up()
        else:
            stack.signal(component, signal.SIGSTOP)
            try:
                time.sleep(duration)
            finally:
                stack.signal(component, signal.SIGCONT)


def heal(stack: PrivateStack) -> None:
    """Continue whatever is stopped and start whatever is not running."""
    for component in COMPONENTS:
        if stack.pid(component) is not None:
            stack.signal(component, signal.SIGCONT)
    stack.up()


def settle(stack: PrivateStack, data_type: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Give the reconciler its time: the services' own loop until none of our pending markers is
    left (or 30 s), then one `pantheon reconcile` pass for whatever the loop left."""
    started = time.monotonic()
    pending = after_workload = len(pending_ids(stack, data_type))
    while pending and time.monotonic() < started + 30:
        time.sleep(1)
        pending = len(pending_ids(stack, data_type))
    waited = round(time.monotonic() - started, 1)
    log(f"  pending markers: {after_workload} after the workload, {pending} after {waited}s of the loop")
    # No call is running any more, so the pass may take markers of any age.
    cli = [str(ROOT / ".venv/bin/pantheon"), "reconcile", "--older-than", "0", "--json"]
    done = subprocess.run(cli, env=stack.env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"pantheon reconcile failed: {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    log(f"  pantheon reconcile: {report}")
    return {"after_workload": after_workload, "left_by_loop": pending, "loop_s": waited, "pass": report}


def pending_ids(stack: PrivateStack, data_type: str) -> set[str]:
    """Ids of our stored objects that still carry a pending marker."""
    found = stack.root_s3().list_objects(INDEX_BUCKET, prefix=PENDING_PREFIX)
    markers = {(o.object_name or "").removeprefix(PENDING_PREFIX) for o in found}
    return markers & {naming.parse_key(name).id for name in stored_objects(stack, data_type)}


# -- the checker ----------------------------------------------------------------------------------


@dataclass
class Stored:
    """One object in the data bucket, as the backends see it."""

    name: str
    id: str
    content: bytes  # as the root S3 client reads it
    visible: bool = False  # GET /v1/objects/{id} answers 200 with the same bytes
    found: bool = False  # search lists it
    pending: bool = False
    events: set[str] = field(default_factory=set)  # distinct DataStored ids pointing at it

    @property
    def batch(self) -> bool:
        # Batch objects are stored as NDJSON; the workload uploads only JSON and CSV.
        return self.name.endswith(".ndjson")

    @property
    def announced(self) -> bool:
        return self.id in self.events


def read_stored(stack: PrivateStack, data_type: str) -> dict[str, Stored]:
    s3 = stack.root_s3()
    bucket = "pantheon-" + data_type.split(".", 1)[0]
    stored: dict[str, Stored] = {}
    for name in stored_objects(stack, data_type):
        response = s3.get_object(bucket, name)
        try:
            content = response.read()
        finally:
            response.close()
            response.release_conn()
        oid = naming.parse_key(name).id
        stored[oid] = Stored(name, oid, content)
    return stored


def read_rest(stack: PrivateStack, data_type: str, stored: dict[str, Stored], since: datetime) -> None:
    """Visibility (REST reads) and search results for every stored object."""
    with stack.http(timeout=30) as http:
        for obj in stored.values():
            outcome = send(http, "GET", f"/v1/objects/{obj.id}", budget_s=30)
            response = outcome.response
            obj.visible = (
                response is not None and response.status_code == 200 and response.content == obj.content
            )
        params: dict[str, Any] = {
            "data_type": data_type,
            "since": since.isoformat(),
            "until": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
            "page_size": 1000,
        }
        while True:
            outcome = send(http, "GET", "/v1/objects", params=params, budget_s=30)
            assert outcome.ok and outcome.response is not None, f"search failed: {outcome.attempts}"
            page = outcome.response.json()
            for hit in page["objects"]:
                if hit["id"] in stored:
                    stored[hit["id"]].found = True
            if not page["next_page_token"]:
                return
            params["page_token"] = page["next_page_token"]


@dataclass
class StoredRecord:
    """One row of a stored batch object."""

    id: str
    seq: int
    batch: Stored


def check(
    stack: PrivateStack, data_type: str, requests: list[Request], since: datetime, notes: dict[str, Any]
) -> Row:
    stored = read_stored(stack, data_type)
    for oid in pending_ids(stack, data_type):
        stored[oid].pending = True
    read_rest(stack, data_type, stored, since)
    # A long run leaves many events to read back.
    topics = [DATA_STORED.name, RECORDS.name]
    events = [s for s in stack.read_all(topics, wait_s=120) if s.data_type == data_type]
    uploads = [obj for obj in stored.values() if not obj.batch]
    records = [
        StoredRecord(row["id"], int(row["payload"]["seq"]), obj)
        for obj in stored.values()
        if obj.batch
        for row in map(json.loads, obj.content.splitlines())
    ]
    record_by_id = {r.id: r for r in records}

    # Every DataStored event points at a readable object.
    by_name = {obj.name: obj for obj in stored.values()}
    events_without_object = set()
    upload_events = set()
    for e in events:
        if e.topic == DATA_STORED.name:
            ref = e.payload.object  # type: ignore[attr-defined]
            obj = by_name.get(ref.key)
            if obj is not None:
                obj.events.add(e.headers["ce_id"])
            if obj is None or not obj.visible:
                events_without_object.add(e.headers["ce_id"])
            if not ref.key.endswith(".ndjson"):
                upload_events.add(e.headers["ce_id"])
    # Record events as a deduplicating consumer sees them: in partition order, the first
    # occurrence of each ce_id; and the distinct ids claiming each row of a batch.
    record_events: dict[str, Seen] = {}
    per_row: dict[tuple[str, int], set[str]] = defaultdict(set)
    for e in sorted((e for e in events if e.topic == RECORDS.name), key=lambda e: (e.partition, e.offset)):
        record_events.setdefault(e.headers["ce_id"], e)
        per_row[(e.payload.batch_object.key, e.payload.batch_index)].add(e.headers["ce_id"])  # type: ignore[attr-defined]
    events_without_record = [
        rid for rid in record_events if rid not in record_by_id or not record_by_id[rid].batch.visible
    ]

    def intact(oid: str) -> bool:
        obj = stored.get(oid)
        return obj is not None and obj.visible and obj.found and obj.announced

    def lost_units(request: Request) -> int:
        if request.kind == "object":
            obj = stored.get(request.object_id)
            return int(
                obj is None
                or not intact(obj.id)
                or hashlib.sha256(obj.content).hexdigest() != request.sha256
                or parsed(obj.name, obj.content) != parsed(obj.name, request.content)
            )
        return sum(
            not intact(request.object_id)
            or rid not in record_events
            or rid not in record_by_id
            or record_by_id[rid].batch.id != request.object_id
            for rid in request.accepted.values()
        )

    lost = len(events_without_object) + len(events_without_record)
    lost += sum(lost_units(r) for r in requests if r.acked)

    # Copies of one logical unit (an upload, a record): beyond one, a duplicate when the request
    # had an idempotency key, else the expected price of a keyless retry.
    copies: dict[str, set[str]] = defaultdict(set)
    for obj in uploads:
        copies[tag_of(obj.name, obj.content)].add(obj.id)
    for r in records:
        copies[str(r.seq)].add(f"{r.batch.id}/{r.id}")
    duplicated = sum(max(0, len(obj.events) - 1) for obj in stored.values())
    duplicated += sum(len(ids) - 1 for ids in per_row.values())
    keyless_copies = 0
    for request in requests:
        names = [request.name] if request.kind == "object" else [str(s) for s in request.seqs]
        extra = sum(max(0, len(copies[u]) - 1) for u in names)
        if request.keyed:
            duplicated += extra
        else:
            keyless_copies += extra

    # Per-entity order of acknowledged records (each entity has its own Kafka key).
    acked_records = {rid for r in requests for rid in r.accepted.values()}
    last: dict[str, int] = {}
    out_of_order = 0
    for rid, e in record_events.items():
        if rid in acked_records:
            seq = int(e.payload.payload["seq"])  # type: ignore[attr-defined]
            out_of_order += e.key in last and seq <= last[e.key]
            last[e.key] = max(seq, last.get(e.key, seq))

    # Stored but not announced after the reconciler had its time: unannounced while anyone can
    # still see it or a marker says it is pending, orphaned otherwise.
    rows_of: dict[str, list[str]] = defaultdict(list)
    for r in records:
        rows_of[r.batch.id].append(r.id)
    unannounced = orphaned = 0
    for obj in stored.values():
        if not obj.batch:
            units = int(not obj.announced)
        elif not obj.announced:
            units = len(rows_of[obj.id])
        else:
            units = sum(rid not in record_events for rid in rows_of[obj.id])
        if obj.visible or obj.pending:
            unannounced += units
        else:
            orphaned += units

    notes.update(
        keyless_retry_copies=keyless_copies,
        retried=sum(len(r.attempts) > 1 for r in requests),
        attempts=dict(Counter(a for r in requests for a in r.attempts)),
        requests=dict(Counter(f"{r.via} {r.kind} {'keyed' if r.keyed else 'keyless'}" for r in requests)),
        events_without_object=sorted(events_without_object),
        events_without_record=events_without_record,
        visible_not_found=[obj.id for obj in stored.values() if obj.visible and not obj.found],
        pending_left=[obj.id for obj in stored.values() if obj.pending],
    )
    return Row(
        scenario="chaos",
        sent=sum(1 if r.kind == "object" else len(r.seqs) for r in requests),
        acknowledged=sum(1 if r.kind == "object" else len(r.accepted) for r in requests if r.acked),
        stored=len(uploads) + len(records),
        distinct_events=len(upload_events) + len(record_events),
        lost=lost,
        duplicated=duplicated,
        out_of_order=out_of_order,
        unannounced=unannounced,
        orphaned=orphaned,
        notes=notes,
    )


# -- the run ----------------------------------------------------------------------------------------


def run(
    stack: PrivateStack, seconds: float, seed: int, log: Callable[[str], None]
) -> tuple[Row, list[Fault]]:
    """The workload under the seeded fault schedule, then the checker's row."""
    run_id = uuid.uuid4().hex[:8]
    data_type = f"sensor.chaos_{run_id}"
    since = datetime.now(UTC) - timedelta(hours=1)
    started = time.monotonic()
    workload = Workload(stack, run_id, data_type, seed, started + seconds, threading.Event())
    log(f"chaos run {run_id}: {seconds:g}s, seed {seed}, data type {data_type}")
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(workload.worker, w) for w in range(WORKERS)]
        try:
            schedule = inject_faults(stack, random.Random(seed), started, workload.deadline, log)
        except BaseException:
            workload.stop.set()
            raise
        finally:
            heal(stack)
        log("healed; the workers finish their retries")
        requests = [r for f in futures for r in f.result()]
    log(f"{len(requests)} requests sent; waiting for the reconciler")
    notes: dict[str, Any] = {"reconcile": settle(stack, data_type, log), "faults": summary(schedule)}
    log("checking")
    row = check(stack, data_type, requests, since, notes)
    row.scenario = f"chaos {seconds:g}s seed {seed}"
    return row, schedule


def summary(schedule: list[Fault]) -> dict[str, int]:
    """Faults by kind; one that found its component already dead is a kind of its own."""
    return dict(Counter(f"{f.action} {f.component}" + (f" ({f.error})" if f.error else "") for f in schedule))


def failed(row: Row) -> bool:
    return bool(row.lost or row.duplicated or row.out_of_order or row.unannounced or row.orphaned)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--chaos", type=float, required=True, metavar="SECONDS", help="how long the workload runs"
    )
    parser.add_argument("--seed", type=int, default=1, help="seeds the fault schedule and the workload mix")
    parser.add_argument("--json", action="store_true", help="print the row and the schedule as JSON")
    parser.add_argument("--verbose", action="store_true", help="print faults and the row's notes to stderr")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        if args.verbose:
            print(message, file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="pantheon-chaos-"))
    stack = PrivateStack.create(tmp / "stack")
    print(f"starting a private stack in {tmp} ...", file=sys.stderr)
    try:
        stack.up()
        row, schedule = run(stack, args.chaos, args.seed, log)
    finally:
        stack.down()
    log(f"notes: {json.dumps(row.notes, indent=2)}")
    # The stack's logs and data explain a failure; a clean run leaves nothing behind.
    if failed(row):
        print(f"the private stack's state and logs are kept in {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp)
    if args.json:
        print(json.dumps({"rows": [row.as_dict()], "schedule": [asdict(f) for f in schedule]}, indent=2))
    else:
        print(table([row]))
        print("faults: " + ", ".join(f"{kind} x{n}" for kind, n in sorted(summary(schedule).items())))
    return 1 if failed(row) else 0


if __name__ == "__main__":
    sys.exit(main())
