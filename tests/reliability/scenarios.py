"""Fault scenarios against a private stack, shared by the tests and `scripts/reliability`.

Each scenario drives client traffic through the REST edge (HTTPS, a demo API
key, `Idempotency-Key` on every request), injects one fault into a real
process (SIGKILL, SIGSTOP, a test-only crash point), brings it back, and then
counts from the backends themselves: objects in MinIO (root client, under the
scenario's own data type) and events on Kafka (read from the beginning of the
private stack's topics). Every scenario returns one `Row`.

Definitions (per scenario; the unit is a record for record scenarios and a
request/object otherwise):
- acknowledged: the client got a 2xx for it;
- lost: acknowledged but not stored, or not announced; plus stored objects
  without their DataStored event and events without their object;
- duplicated: distinct stored copies or distinct event ids beyond one per
  idempotency key (records: per record);
- out_of_order: per Kafka key, consumed events (deduplicated by ce_id) whose
  sequence number is not greater than the previous one.
"""

from __future__ import annotations

import json
import signal
import struct
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from pantheon.events.topics import DATA_STORED, RECORDS
from tests.reliability.stack import PrivateStack, Seen

#: Statuses a client retries with the same idempotency key (409: the key is
#: held by a call in progress; 429: rate limit; 503/504: backend away or slow).
RETRY_STATUSES = frozenset({409, 429, 502, 503, 504})


@dataclass
class Row:
    scenario: str
    sent: int
    acknowledged: int
    stored: int
    distinct_events: int
    lost: int
    duplicated: int
    out_of_order: int
    #: Stored objects that are visible (or stored and not pending) without their DataStored event.
    unannounced: int = 0
    #: Stored bytes nobody can reach: not visible, not pending, not announced.
    orphaned: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("notes")
        return data


# -- client side ---------------------------------------------------------------------------


def unique_type(domain: str = "sensor") -> str:
    return f"{domain}.rel_{uuid.uuid4().hex[:12]}"


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Outcome:
    """What one logical request ended with, after retries."""

    response: httpx.Response | None
    attempts: list[str]  # status codes or exception names, in order

    @property
    def ok(self) -> bool:
        return self.response is not None and 200 <= self.response.status_code < 300


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    budget_s: float = 120.0,
    retry: bool = True,
    also_retry: frozenset[int] = frozenset(),
    **kwargs: Any,
) -> Outcome:
    """Send until a non-retryable answer (or the budget runs out), reusing the same request.

    `content` may be a zero-argument callable returning a fresh body iterator
    for every attempt (streams cannot be replayed).
    """
    attempts: list[str] = []
    deadline = time.monotonic() + budget_s
    delay = 0.2
    last: httpx.Response | None = None
    body = kwargs.pop("content", None)
    while True:
        try:
            content = body() if callable(body) else body
            last = client.request(method, url, content=content, **kwargs)
            attempts.append(str(last.status_code))
            if last.status_code not in RETRY_STATUSES | also_retry:
                return Outcome(last, attempts)
            if last.status_code == 409 and last.json().get("reason") == "idempotency_key_reused":
                return Outcome(last, attempts)
            wait = min(float(last.headers.get("Retry-After", delay)), 2.0)
        except httpx.HTTPError as exc:
            attempts.append(type(exc).__name__)
            last = None
            wait = delay
        if not retry or time.monotonic() + wait > deadline:
            return Outcome(last, attempts)
        time.sleep(wait)
        delay = min(delay * 2, 2.0)


def records_body(data_type: str, seqs: range, entities: int, base: datetime) -> bytes:
    """A JSON batch; record `seq` belongs to entity `seq % entities` and is observed at base + seq ms."""
    records = [
        {
            "entity_id": f"ent-{seq % entities}",
            "observed_at": rfc3339(base + timedelta(milliseconds=seq)),
            "location": {"lat": 48.2 + (seq % entities) * 1e-3, "lon": 16.37},
            "payload": {"seq": seq},
        }
        for seq in seqs
    ]
    return json.dumps({"data_type": data_type, "records": records}).encode()


def object_params(data_type: str, minutes_ago: float = 1.0) -> dict[str, Any]:
    return {
        "data_type": data_type,
        "observed_at": rfc3339(datetime.now(UTC) - timedelta(minutes=minutes_ago)),
        "lat": 48.2082,
        "lon": 16.3738,
    }


def tiff_header(side: int) -> bytes:
    """Little-endian TIFF header and IFD for one uncompressed side x side 8-bit strip after it."""
    entries = [(256, side), (257, side), (258, 8), (259, 1), (262, 1), (273, 0), (277, 1), (278, side)]
    entries.append((279, side * side))
    pixels_at = 8 + 2 + len(entries) * 12 + 4
    ifd = struct.pack("<H", len(entries))
    for tag, value in entries:
        ifd += struct.pack("<HHII", tag, 4, 1, pixels_at if tag == 273 else value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00"


def tiff_body(side: int, on_progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    yield tiff_header(side)
    row = bytes(range(256)) * (side // 256)
    rows_per_piece = max(1, (1 << 20) // side)
    sent = 0
    for _ in range(side // rows_per_piece):
        piece = row * rows_per_piece
        sent += len(piece)
        if on_progress is not None:
            on_progress(sent)
        yield piece


# -- counting what the backends hold --------------------------------------------------------


def _bucket(data_type: str) -> str:
    return "pantheon-" + data_type.split(".", 1)[0]


def _id_of(name: str) -> str:
    return name.rsplit("_", 1)[1].split(".", 1)[0]


def stored_objects(stack: PrivateStack, data_type: str) -> list[str]:
    found = stack.root_s3().list_objects(_bucket(data_type), prefix=f"v1/{data_type}/", recursive=True)
    return [o.object_name or "" for o in found]


def _events(stack: PrivateStack, data_type: str) -> tuple[list[Seen], list[Seen]]:
    seen = stack.read_all([DATA_STORED.name, RECORDS.name])
    mine = [s for s in seen if s.payload.metadata.data_type == data_type]
    return [s for s in mine if s.topic == DATA_STORED.name], [s for s in mine if s.topic == RECORDS.name]


def count_objects(
    stack: PrivateStack, scenario: str, data_type: str, sent: int, acked: dict[str, str], **notes: Any
) -> Row:
    """Counts for object-level scenarios; `acked` maps idempotency key -> the id in the 2xx body."""
    names = stored_objects(stack, data_type)
    object_ids = [_id_of(n) for n in names]
    announced, _ = _events(stack, data_type)
    event_ids = {e.headers["ce_id"] for e in announced}
    key_of = {e.headers["ce_id"]: e.payload.metadata.idempotency_key for e in announced}

    lost = sum(1 for oid in acked.values() if oid not in object_ids or oid not in event_ids)
    unannounced = [oid for oid in object_ids if oid not in event_ids]
    orphans = [eid for eid in event_ids if eid not in object_ids]
    lost += len(unannounced) + len(orphans)

    per_key_objects: dict[str, set[str]] = defaultdict(set)
    for oid in object_ids:
        per_key_objects[key_of.get(oid, f"?{oid}")].add(oid)
    per_key_events: dict[str, set[str]] = defaultdict(set)
    for eid in event_ids:
        per_key_events[key_of[eid]].add(eid)
    duplicated = sum(len(v) - 1 for v in per_key_objects.values()) + sum(
        len(v) - 1 for v in per_key_events.values()
    )
    duplicated += len(object_ids) - len(set(object_ids))
    notes.update(unannounced=unannounced, orphan_events=orphans)
    return Row(scenario, sent, len(acked), len(set(object_ids)), len(event_ids), lost, duplicated, 0, notes=notes)


def count_records(
    stack: PrivateStack, scenario: str, data_type: str, sent: int, acked: dict[int, str], **notes: Any
) -> Row:
    """Counts for record scenarios; `acked` maps a record's seq -> the record id in the 2xx body."""
    s3 = stack.root_s3()
    names = stored_objects(stack, data_type)
    stored: dict[int, set[str]] = defaultdict(set)
    rows = 0
    counts: dict[str, int] = {}
    for name in names:
        response = s3.get_object(_bucket(data_type), name)
        try:
            lines = response.read().splitlines()
        finally:
            response.close()
            response.release_conn()
        counts[_id_of(name)] = len(lines)
        for line in lines:
            row = json.loads(line)
            stored[int(row["payload"]["seq"])].add(row["id"])
            rows += 1
    announced, record_events = _events(stack, data_type)
    batch_events = {e.headers["ce_id"] for e in announced}

    # What a consumer sees: events in partition order, deduplicated by ce_id.
    record_events.sort(key=lambda e: (e.partition, e.offset))
    first: dict[str, Seen] = {}
    for e in record_events:
        first.setdefault(e.headers["ce_id"], e)
    events_by_seq: dict[int, set[str]] = defaultdict(set)
    last_seq: dict[str, int] = {}
    out_of_order = 0
    for eid, e in first.items():
        seq = int(e.payload.payload["seq"])
        events_by_seq[seq].add(eid)
        if e.key in last_seq and seq <= last_seq[e.key]:
            out_of_order += 1
        last_seq[e.key] = max(seq, last_seq.get(e.key, seq))

    lost = sum(
        1
        for seq, rid in acked.items()
        if rid not in stored.get(seq, ()) or rid not in events_by_seq.get(seq, ())
    )
    unannounced = [oid for oid in counts if oid not in batch_events]
    orphans = [eid for eid in batch_events if eid not in counts]
    lost += sum(counts[o] for o in unannounced) + len(orphans)
    duplicated = (
        sum(len(v) - 1 for v in stored.values())
        + sum(len(v) - 1 for v in events_by_seq.values())
        + (rows - sum(len(v) for v in stored.values()))
    )
    notes.update(objects=len(names), raw_record_events=len(record_events), unannounced=unannounced)
    return Row(scenario, sent, len(acked), len(stored), len(first), lost, duplicated, out_of_order, notes=notes)


def _accepted(outcome: Outcome, seqs: range) -> dict[int, str]:
    if not outcome.ok or outcome.response is None:
        return {}
    results = outcome.response.json()["results"]
    return {seqs[r["index"]]: r["id"] for r in results if r["status"] == "accepted"}


# -- a. Kafka SIGKILLed during a records ingest -----------------------------------------------


def kafka_killed_during_records(stack: PrivateStack, records: int = 2000, batch: int = 100) -> Row:
    data_type = unique_type()
    run = uuid.uuid4().hex[:8]
    base = datetime.now(UTC) - timedelta(minutes=30)
    batches = [range(start, min(start + batch, records)) for start in range(0, records, batch)]
    bodies = [records_body(data_type, seqs, 20, base) for seqs in batches]
    kill_after = max(1, len(batches) // 3)
    acked: dict[int, str] = {}
    attempts: list[list[str]] = []
    restarter: threading.Thread | None = None

    def restart() -> None:
        time.sleep(3)
        stack.up()

    with stack.http() as http:
        for i, (seqs, body) in enumerate(zip(batches, bodies, strict=True)):
            if i == kill_after:
                stack.kill("kafka")
                restarter = threading.Thread(target=restart)
                restarter.start()
            outcome = send(
                http,
                "POST",
                "/v1/records",
                content=body,
                headers={"Content-Type": "application/json", "Idempotency-Key": f"rel-{run}-{i}"},
                budget_s=180,
            )
            attempts.append(outcome.attempts)
            acked.update(_accepted(outcome, seqs))
    if restarter is not None:
        restarter.join()
    retried = sum(1 for a in attempts if len(a) > 1)
    return count_records(
        stack, "kafka SIGKILL during records ingest", data_type, records, acked, batches_retried=retried
    )


# -- b. MinIO SIGKILLed mid-way through a large upload and a records batch --------------------


def minio_killed_during_upload(stack: PrivateStack, side: int = 8192) -> Row:
    data_type = unique_type("imagery")
    run = uuid.uuid4().hex[:8]
    killed = threading.Event()
    size = side * side

    def kill_midway(sent: int) -> None:
        if not killed.is_set() and sent >= size // 4:
            killed.set()
            stack.kill("minio")

    params = object_params(data_type)
    upload_headers = {"Content-Type": "image/tiff", "Idempotency-Key": f"rel-{run}-tiff"}
    records_headers = {"Content-Type": "application/json", "Idempotency-Key": f"rel-{run}-batch"}
    seqs = range(0, 50)
    batch_body = records_body(data_type, seqs, 5, datetime.now(UTC) - timedelta(minutes=5))
    first: dict[str, list[str]] = {}
    with stack.http(timeout=120) as http:
        outcome = send(
            http,
            "POST",
            "/v1/objects",
            params=params,
            headers=upload_headers,
            content=lambda: tiff_body(side, kill_midway),
            retry=False,
        )
        first["upload"] = outcome.attempts
        outcome_b = send(
            http, "POST", "/v1/records", headers=records_headers, content=batch_body, retry=False
        )
        first["batch"] = outcome_b.attempts
        # Nothing may have been announced while MinIO was away.
        during = len(stored_objects_safe(stack, data_type)), 0
        stack.up()
        again = send(
            http,
            "POST",
            "/v1/objects",
            params=params,
            headers=upload_headers,
            content=lambda: tiff_body(side),
            budget_s=120,
            also_retry=frozenset({500}),
        )
        again_b = send(http, "POST", "/v1/records", headers=records_headers, content=batch_body, budget_s=60)
        replay = send(http, "POST", "/v1/records", headers=records_headers, content=batch_body, budget_s=60)
    acked = {}
    for name, o in (("tiff", again), ("batch", again_b)):
        if o.ok and o.response is not None:
            acked[name] = o.response.json()["id"]
    replayed = replay.ok and replay.response is not None and replay.response.json()["replayed"]
    return count_objects(
        stack,
        "minio SIGKILL mid-upload + batch",
        data_type,
        2,
        acked,
        first_attempts=first,
        during=during,
        retry_attempts={"upload": again.attempts, "batch": again_b.attempts},
        replayed=replayed,
    )


def stored_objects_safe(stack: PrivateStack, data_type: str) -> list[str]:
    """Stored objects, or [] while MinIO is unreachable."""
    try:
        return stored_objects(stack, data_type)
    except Exception:
        return []


# -- c. the services crash between the MinIO write and the Kafka publish ----------------------


def crash_between_store_and_publish(stack: PrivateStack) -> Row:
    data_type = unique_type()
    run = uuid.uuid4().hex[:8]
    doc_headers = {"Content-Type": "application/json", "Idempotency-Key": f"rel-{run}-doc"}
    doc = json.dumps({"pm10": 17.5, "run": run}).encode()
    params = object_params(data_type)
    seqs = range(0, 20)
    batch_body = records_body(data_type, seqs, 4, datetime.now(UTC) - timedelta(minutes=5))
    batch_headers = {"Content-Type": "application/json", "Idempotency-Key": f"rel-{run}-batch"}
    crash = {"PANTHEON_FAULT_CRASH_BEFORE_PUBLISH": "1"}
    first: dict[str, list[str]] = {}
    with stack.http() as http:
        try:
            stack.stop("services")
            stack.up(extra=crash)
            first["doc"] = send(
                http, "POST", "/v1/objects", params=params, headers=doc_headers, content=doc, retry=False
            ).attempts
            stack.up(extra=crash)  # the crash took the services down
            first["batch"] = send(
                http, "POST", "/v1/records", headers=batch_headers, content=batch_body, retry=False
            ).attempts
            stored_before = len(stored_objects(stack, data_type))
            announced_before = len(_events(stack, data_type)[0])
        finally:
            stack.stop("services")
            stack.up()  # without the fault flag
        doc_out = send(
            http, "POST", "/v1/objects", params=params, headers=doc_headers, content=doc, budget_s=60
        )
        batch_out = send(http, "POST", "/v1/records", headers=batch_headers, content=batch_body, budget_s=60)
        replay = send(
            http, "POST", "/v1/objects", params=params, headers=doc_headers, content=doc, budget_s=60
        )
    acked = {}
    for name, o in (("doc", doc_out), ("batch", batch_out)):
        if o.ok and o.response is not None:
            acked[name] = o.response.json()["id"]
    return count_objects(
        stack,
        "services crash between store and publish",
        data_type,
        2,
        acked,
        first_attempts=first,
        stored_before_retry=stored_before,
        announced_before_retry=announced_before,
        retry_attempts={"doc": doc_out.attempts, "batch": batch_out.attempts},
        replayed=bool(replay.ok and replay.response is not None and replay.response.json()["replayed"]),
    )


# -- d. the services frozen (SIGSTOP) ----------------------------------------------------------


def services_frozen(stack: PrivateStack) -> Row:
    data_type = unique_type()
    run = uuid.uuid4().hex[:8]
    params = object_params(data_type)
    headers0 = {"Content-Type": "application/json", "Idempotency-Key": f"rel-{run}-0"}
    headers1 = {"Content-Type": "application/json", "Idempotency-Key": f"rel-{run}-1"}
    ingest_deadline = float(stack.env["PANTHEON_GATEWAY_INGEST_DEADLINE_S"])
    read_deadline = float(stack.env["PANTHEON_GATEWAY_READ_DEADLINE_S"])
    notes: dict[str, Any] = {}
    with stack.http(timeout=60) as http:
        before = send(http, "POST", "/v1/objects", params=params, headers=headers0, content=b'{"a":1}')
        assert before.ok and before.response is not None, before.attempts
        first_id = before.response.json()["id"]
        stack.signal("services", signal.SIGSTOP)
        try:
            started = time.monotonic()
            frozen = send(
                http, "POST", "/v1/objects", params=params, headers=headers1, content=b'{"a":2}', retry=False
            )
            notes["ingest"] = (frozen.attempts, round(time.monotonic() - started, 2), ingest_deadline)
            started = time.monotonic()
            read = http.get(f"/v1/objects/{first_id}/metadata")
            notes["read"] = (read.status_code, round(time.monotonic() - started, 2), read_deadline)
            started = time.monotonic()
            health = [http.get("/healthz").status_code for _ in range(5)]
            notes["healthz"] = (health, round((time.monotonic() - started) / 5, 3))
        finally:
            stack.signal("services", signal.SIGCONT)
        after = send(
            http, "POST", "/v1/objects", params=params, headers=headers1, content=b'{"a":2}', budget_s=60
        )
        notes["after"] = after.attempts
        notes["read_after"] = http.get(f"/v1/objects/{first_id}/metadata").status_code
    acked = {"0": first_id}
    if after.ok and after.response is not None:
        acked["1"] = after.response.json()["id"]
    return count_objects(stack, "services SIGSTOP (frozen)", data_type, 2, acked, **notes)


# -- e. the gateway restarted under load -------------------------------------------------------


def gateway_restarted_under_load(stack: PrivateStack, requests: int = 120, workers: int = 4) -> Row:
    data_type = unique_type()
    run = uuid.uuid4().hex[:8]
    params = object_params(data_type)
    done = 0
    lock = threading.Lock()
    statuses: dict[str, int] = defaultdict(int)

    def one(i: int) -> tuple[int, Outcome]:
        nonlocal done
        headers = {"Content-Type": "application/json", "Idempotency-Key": f"rel-{run}-{i}"}
        with stack.http(timeout=30) as http:
            outcome = send(
                http,
                "POST",
                "/v1/objects",
                params=params,
                headers=headers,
                content=json.dumps({"i": i, "run": run}).encode(),
                budget_s=90,
            )
        with lock:
            done += 1
            for a in outcome.attempts:
                statuses[a] += 1
        return i, outcome

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(one, i) for i in range(requests)]
        while done < requests // 3:
            time.sleep(0.05)
        stack.kill("gateway")
        stack.up()
        outcomes = [f.result() for f in futures]
    acked = {str(i): o.response.json()["id"] for i, o in outcomes if o.ok and o.response is not None}
    unexpected = {
        k: v
        for k, v in statuses.items()
        if k.isdigit() and not (k.startswith("2") or int(k) in RETRY_STATUSES)
    }
    return count_objects(
        stack,
        "gateway SIGKILL + restart under load",
        data_type,
        requests,
        acked,
        statuses=dict(statuses),
        unexpected=unexpected,
    )


SCENARIOS: dict[str, Callable[..., Row]] = {
    "kafka": kafka_killed_during_records,
    "minio": minio_killed_during_upload,
    "crash": crash_between_store_and_publish,
    "frozen": services_frozen,
    "gateway": gateway_restarted_under_load,
}
