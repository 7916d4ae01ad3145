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
- lost: acknowledged but not stored, or not announced;
- duplicated: distinct stored copies or distinct event ids beyond one per
  idempotency key (records: per record; keyless objects: each its own unit);
- out_of_order: per Kafka key, consumed events (deduplicated by ce_id) whose
  sequence number is not greater than the previous one;
- unannounced: stored objects (record batches included) without their
  DataStored event, visible or not;
- orphaned: stored objects nobody can reach and nothing will announce: not
  visible (neither `ids/<id>` in the index bucket nor GET 200 through REST)
  and not waiting for the reconciler (`pending/<id>`); plus DataStored
  events whose object is not stored (`orphaned_objects` and `orphan_events`
  in the notes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import signal
import struct
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition
from minio import Minio
from minio.error import S3Error

from pantheon.events.consumer import EventConsumer, EventNotProcessed, Received
from pantheon.events.topics import DATA_STORED, DEAD_LETTER, RECORDS
from pantheon.storage.buckets import INDEX_BUCKET
from tests.integration.support import Seen
from tests.reliability.stack import PrivateStack

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
    #: Stored objects without their DataStored event (visible or not).
    unannounced: int = 0
    #: Stored objects neither visible nor pending, plus DataStored events without their object.
    orphaned: int = 0
    #: HA scenarios: the longest time without any acknowledgement after the fault (seconds).
    unavailable_s: float = 0.0
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


def records_body(data_type: str, seqs: range, entities: int, base: datetime, prefix: str = "ent") -> bytes:
    """A JSON batch; record `seq` belongs to entity `<prefix>-<seq % entities>`, observed at base + seq ms."""
    records = [
        {
            "entity_id": f"{prefix}-{seq % entities}",
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


def bucket_of(data_type: str) -> str:
    return "pantheon-" + data_type.split(".", 1)[0]


def _id_of(name: str) -> str:
    return name.rsplit("_", 1)[1].split(".", 1)[0]


def stored_objects(stack: PrivateStack, data_type: str) -> list[str]:
    found = stack.root_s3().list_objects(bucket_of(data_type), prefix=f"v1/{data_type}/", recursive=True)
    return [o.object_name or "" for o in found]


def _payload(seen: Seen) -> Any:
    """The decoded event (DataStored or Record: both carry `metadata`)."""
    return seen.payload


def _events(stack: PrivateStack, data_type: str) -> tuple[list[Seen], list[Seen]]:
    seen = stack.read_all([DATA_STORED.name, RECORDS.name])
    mine = [s for s in seen if _payload(s).metadata.data_type == data_type]
    return [s for s in mine if s.topic == DATA_STORED.name], [s for s in mine if s.topic == RECORDS.name]


def _exists(s3: Minio, bucket: str, name: str) -> bool:
    try:
        s3.stat_object(bucket, name)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
            return False
        raise
    return True


def index_state(stack: PrivateStack, object_ids: Iterable[str]) -> dict[str, tuple[bool, bool]]:
    """Per object id: (bound under `ids/`, marked `pending/`) in the index bucket (root S3 client)."""
    s3 = stack.root_s3()
    return {
        oid: (_exists(s3, INDEX_BUCKET, f"ids/{oid}"), _exists(s3, INDEX_BUCKET, f"pending/{oid}"))
        for oid in object_ids
    }


def _get_ok(http: httpx.Client, object_id: str) -> bool:
    with http.stream("GET", f"/v1/objects/{object_id}") as response:  # the status only, not the bytes
        return response.status_code == 200


def _audit(
    stack: PrivateStack, object_ids: set[str], event_ids: set[str], notes: dict[str, Any]
) -> tuple[int, int]:
    """(unannounced, orphaned) for the stored objects and DataStored event ids of one data type."""
    state = index_state(stack, object_ids)
    not_bound = sorted(oid for oid, (bound, _) in state.items() if not bound)
    with stack.http() as http:
        # Visible: bound under ids/ (what Get, Stat and Search answer from), or GET 200 through REST.
        not_visible = [oid for oid in not_bound if not _get_ok(http, oid)]
    waiting = [oid for oid in not_visible if state[oid][1]]
    orphaned = [oid for oid in not_visible if not state[oid][1]]
    orphan_events = sorted(eid for eid in event_ids if eid not in object_ids)
    notes.update(
        unannounced=sorted(oid for oid in object_ids if oid not in event_ids),
        not_visible=not_visible,
        pending=waiting,
        orphaned_objects=orphaned,
        orphan_events=orphan_events,
        # Visible, yet still marked pending: a marker the commit did not remove.
        stale_markers=sorted(oid for oid in object_ids if oid not in not_visible and state[oid][1]),
    )
    return len(notes["unannounced"]), len(orphaned) + len(orphan_events)


def count_objects(
    stack: PrivateStack, scenario: str, data_type: str, sent: int, acked: dict[str, str], **notes: Any
) -> Row:
    """Counts for object-level scenarios; `acked` maps idempotency key -> the id in the 2xx body."""
    names = stored_objects(stack, data_type)
    object_ids = [_id_of(n) for n in names]
    announced, _ = _events(stack, data_type)
    event_ids = {e.headers["ce_id"] for e in announced}
    key_of = {e.headers["ce_id"]: _payload(e).metadata.idempotency_key for e in announced}

    lost = sum(1 for oid in acked.values() if oid not in object_ids or oid not in event_ids)
    unannounced, orphaned = _audit(stack, set(object_ids), event_ids, notes)

    # A keyless object (or one whose event is missing) is a unit of its own.
    per_key_objects: dict[str, set[str]] = defaultdict(set)
    for oid in object_ids:
        per_key_objects[key_of.get(oid) or f"?{oid}"].add(oid)
    per_key_events: dict[str, set[str]] = defaultdict(set)
    for eid in event_ids:
        per_key_events[key_of[eid] or f"?{eid}"].add(eid)
    duplicated = sum(len(v) - 1 for v in per_key_objects.values()) + sum(
        len(v) - 1 for v in per_key_events.values()
    )
    duplicated += len(object_ids) - len(set(object_ids))
    return Row(
        scenario,
        sent,
        len(acked),
        len(set(object_ids)),
        len(event_ids),
        lost,
        duplicated,
        0,
        unannounced,
        orphaned,
        notes=notes,
    )


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
        response = s3.get_object(bucket_of(data_type), name)
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
        seq = int(_payload(e).payload["seq"])
        events_by_seq[seq].add(eid)
        if e.key in last_seq and seq <= last_seq[e.key]:
            out_of_order += 1
        last_seq[e.key] = max(seq, last_seq.get(e.key, seq))

    lost = sum(
        1
        for seq, rid in acked.items()
        if rid not in stored.get(seq, ()) or rid not in events_by_seq.get(seq, ())
    )
    # Batches are the stored objects here; the columns count them, not their records.
    unannounced, orphaned = _audit(stack, set(counts), batch_events, notes)
    duplicated = (
        sum(len(v) - 1 for v in stored.values())
        + sum(len(v) - 1 for v in events_by_seq.values())
        + (rows - sum(len(v) for v in stored.values()))
    )
    notes.update(objects=len(names), raw_record_events=len(record_events), data_stored=len(batch_events))
    return Row(
        scenario,
        sent,
        len(acked),
        len(stored),
        len(first),
        lost,
        duplicated,
        out_of_order,
        unannounced,
        orphaned,
        notes=notes,
    )


def merge(scenario: str, parts: dict[str, Row]) -> Row:
    """One row of several counts (objects and records: the units add up as they are)."""
    total = Row(scenario, 0, 0, 0, 0, 0, 0, 0)
    for name, part in parts.items():
        for column, value in part.as_dict().items():
            if column != "scenario":
                setattr(total, column, getattr(total, column) + value)
        total.notes[name] = part.notes
    return total


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
    crash = {"PANTHEON_FAULT_INJECTION": "1", "PANTHEON_FAULT_CRASH_BEFORE_PUBLISH": "1"}
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

#: The client's timeout while the services are frozen, as a multiple of the gateway's deadline:
#: the gateway's own 504 comes well before it, so a client-side timeout means a hang.
HANG_FACTOR = 4


def services_frozen(stack: PrivateStack) -> Row:
    """While the services are SIGSTOPped, an upload and a read get the gateway's own 504
    (`deadline_exceeded`) and /healthz answers 200. Notes: `ingest` and `read` are
    (attempts, seconds, the gateway's deadline, reason); `healthz` is (answers, mean seconds)."""
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
                http,
                "POST",
                "/v1/objects",
                params=params,
                headers=headers1,
                content=b'{"a":2}',
                retry=False,
                timeout=HANG_FACTOR * ingest_deadline,
            )
            took = round(time.monotonic() - started, 2)
            notes["ingest"] = (frozen.attempts, took, ingest_deadline, _reason(frozen.response))
            started = time.monotonic()
            read = send(
                http,
                "GET",
                f"/v1/objects/{first_id}/metadata",
                retry=False,
                timeout=HANG_FACTOR * read_deadline,
            )
            took = round(time.monotonic() - started, 2)
            notes["read"] = (read.attempts, took, read_deadline, _reason(read.response))
            started = time.monotonic()
            # /healthz waits on nothing; the read deadline's multiple only catches a hang.
            health = [
                send(http, "GET", "/healthz", retry=False, timeout=HANG_FACTOR * read_deadline).attempts[-1]
                for _ in range(5)
            ]
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


def _log_count(stack: PrivateStack, text: str) -> int:
    """Lines of the services' log containing `text` (the log is appended to across restarts)."""
    path = stack.state_dir / "services" / "services.log"
    if not path.exists():
        return 0
    with path.open(errors="replace") as log:
        return sum(1 for line in log if text in line)


def _reason(response: httpx.Response | None) -> str:
    if response is None or response.headers.get("content-type", "").split(";")[0] not in (
        "application/json",
        "application/problem+json",
    ):
        return ""
    body = response.json()
    return str(body.get("reason", "")) if isinstance(body, dict) else ""


# -- f. keyless calls die between store and publish; the reconciler announces them ------------


def _after_crash(stack: PrivateStack, data_type: str) -> dict[str, int]:
    """What the backends hold for `data_type` while the services are down (S3 and Kafka only)."""
    ids = [_id_of(n) for n in stored_objects(stack, data_type)]
    state = index_state(stack, ids)
    announced, records = _events(stack, data_type)
    return {
        "stored": len(ids),
        "data_stored": len(announced),
        "record_events": len(records),
        "bound": sum(1 for bound, _ in state.values() if bound),
        "pending": sum(1 for _, marked in state.values() if marked),
    }


def _wait_visible(stack: PrivateStack, data_types: list[str], budget_s: float) -> list[str]:
    """Wait until every stored object of `data_types` is bound and unmarked; those that are not."""
    deadline = time.monotonic() + budget_s
    while True:
        ids = [_id_of(n) for t in data_types for n in stored_objects(stack, t)]
        left = [oid for oid, (bound, marked) in index_state(stack, ids).items() if not bound or marked]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(1)


def keyless_crash(stack: PrivateStack, records: int = 20) -> Row:
    """A keyless object and a keyless batch, each call dying between store and publish.

    Without a key the client cannot retry safely (a retry stores a second
    copy), so it does not: the reconciler alone must announce what was
    stored, then make it visible. Units: 1 object + `records` records."""
    doc_type, rec_type = unique_type(), unique_type()
    doc = json.dumps({"pm10": 17.5, "run": uuid.uuid4().hex}).encode()
    seqs = range(0, records)
    batch_body = records_body(rec_type, seqs, 4, datetime.now(UTC) - timedelta(minutes=5))
    crash = {"PANTHEON_FAULT_INJECTION": "1", "PANTHEON_FAULT_CRASH_BEFORE_PUBLISH": "1"}
    first: dict[str, list[str]] = {}
    before: dict[str, dict[str, int]] = {}
    with stack.http() as http:
        try:
            stack.stop("services")
            stack.up(extra=crash)
            first["doc"] = send(
                http,
                "POST",
                "/v1/objects",
                params=object_params(doc_type),
                headers={"Content-Type": "application/json"},
                content=doc,
                retry=False,
            ).attempts
            # Checked right after the crash, before anything restarts the services.
            before["doc"] = _after_crash(stack, doc_type)
            stack.up(extra=crash)  # the crash took the services down
            first["batch"] = send(
                http,
                "POST",
                "/v1/records",
                headers={"Content-Type": "application/json"},
                content=batch_body,
                retry=False,
            ).attempts
            before["batch"] = _after_crash(stack, rec_type)
        finally:
            stack.stop("services")
            stack.up()  # without the fault flag: its reconciler finds the markers
    # Markers older than PANTHEON_RECONCILE_AFTER_S, every PANTHEON_RECONCILE_INTERVAL_S.
    left = _wait_visible(stack, [doc_type, rec_type], budget_s=90)
    parts = {
        "doc": count_objects(stack, "doc", doc_type, 1, {}),
        "batch": count_records(stack, "batch", rec_type, records, {}),
    }
    row = merge("keyless crash before publish, reconciled", parts)
    row.notes.update(
        first_attempts=first, before_restart=before, not_reconciled=left, client_errors_expected=True
    )
    return row


# -- g. a fatal idempotent-producer error in the running services, under load ----------------


def producer_fatal(
    stack: PrivateStack,
    objects: int = 60,
    batches: int = 30,
    batch: int = 10,
    workers: int = 3,
    faults: int = 2,
) -> Row:
    """Keyed objects and batches through REST; SIGUSR1 (pantheon/faults.py) kills the
    services' producer `faults` times, spread over the load (the first replacement
    is immediate; a second one within a minute waits a backoff, during which
    ingest is refused with 503 and the clients retry). Units: objects + records."""
    obj_type, rec_type = unique_type(), unique_type()
    run = uuid.uuid4().hex[:8]
    params = object_params(obj_type)
    base = datetime.now(UTC) - timedelta(minutes=30)
    jobs = [("object", i) for i in range(objects)] + [("batch", j) for j in range(batches)]
    jobs.sort(key=lambda job: job[1] / (objects if job[0] == "object" else batches))  # interleaved
    lock = threading.Lock()
    done = 0
    statuses: dict[str, int] = defaultdict(int)
    not_ready: list[dict[str, str]] = []
    stop_watching = threading.Event()
    replaced = "kafka producer: replaced after a fatal error"
    replaced_before = _log_count(stack, replaced)
    injected_before = _log_count(stack, "fault injection: SIGUSR1 received")

    def one(job: tuple[str, int]) -> tuple[str, int, Outcome]:
        nonlocal done
        kind, n = job
        with stack.http(timeout=30) as http:
            if kind == "object":
                outcome = send(
                    http,
                    "POST",
                    "/v1/objects",
                    params=params,
                    headers={"Content-Type": "application/json", "Idempotency-Key": f"pf-{run}-o{n}"},
                    content=json.dumps({"n": n, "run": run}).encode(),
                    budget_s=120,
                )
            else:
                seqs = range(n * batch, (n + 1) * batch)
                outcome = send(
                    http,
                    "POST",
                    "/v1/records",
                    headers={"Content-Type": "application/json", "Idempotency-Key": f"pf-{run}-b{n}"},
                    # Entities of their own: concurrent requests have no order between them.
                    content=records_body(rec_type, seqs, 5, base, prefix=f"b{n}"),
                    budget_s=120,
                )
        with lock:
            done += 1
            for a in outcome.attempts:
                statuses[a] += 1
        return kind, n, outcome

    def watch_readiness() -> None:
        # The health entries follow a probe every few seconds: a short NOT_SERVING may pass unseen.
        with stack.http(timeout=10) as http:
            while not stop_watching.is_set():
                try:
                    answer = http.get("/readyz")
                    if answer.status_code != 200:
                        not_ready.append(answer.json().get("checks", {}))
                except httpx.HTTPError as exc:
                    not_ready.append({"error": type(exc).__name__})
                stop_watching.wait(0.2)

    try:
        stack.stop("services")
        stack.up(extra={"PANTHEON_FAULT_INJECTION": "1"})
        watcher = threading.Thread(target=watch_readiness)
        watcher.start()
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(one, job) for job in jobs]
            signalled_at = []
            for n in range(1, faults + 1):
                while done < len(jobs) * n // (faults + 1):
                    time.sleep(0.05)
                signalled_at.append(done)
                stack.signal("services", signal.SIGUSR1)
                # A signal while the dead producer is still being retired would be a no-op.
                deadline = time.monotonic() + 30
                while _log_count(stack, replaced) - replaced_before < n and time.monotonic() < deadline:
                    time.sleep(0.1)
            results = [f.result() for f in futures]
        stop_watching.set()
        watcher.join()
        acked_objects = {
            str(n): o.response.json()["id"]
            for kind, n, o in results
            if kind == "object" and o.ok and o.response
        }
        acked_records: dict[int, str] = {}
        for kind, n, o in results:
            if kind == "batch":
                acked_records.update(_accepted(o, range(n * batch, (n + 1) * batch)))
        parts = {
            "uploads": count_objects(stack, "uploads", obj_type, objects, acked_objects),
            "batches": count_records(stack, "batches", rec_type, batches * batch, acked_records),
        }
    finally:
        stop_watching.set()
        stack.stop("services")
        stack.up()  # without fault injection
    row = merge("producer fatal error (SIGUSR1) under load", parts)
    row.notes.update(
        signalled_after=signalled_at,
        statuses=dict(statuses),
        not_ready=not_ready[:5],
        not_ready_samples=len(not_ready),
        injected=_log_count(stack, "fault injection: SIGUSR1 received") - injected_before,
        producers_replaced=_log_count(stack, replaced) - replaced_before,
    )
    return row


# -- h. a consumer fails an event while the dead-letter topic is unreachable ------------------


class _OnLog(logging.Handler):
    """Calls `action` once, on the first log message starting with `prefix`."""

    def __init__(self, prefix: str, action: Callable[[], None]) -> None:
        super().__init__()
        self.prefix, self.action, self.fired = prefix, action, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.fired and record.getMessage().startswith(self.prefix):
            self.fired = True
            self.action()


def consumer_dlq_down(stack: PrivateStack, records: int = 8) -> Row:
    """A downstream consumer (pantheon.events.consumer) whose handler fails one record
    event while Kafka is SIGSTOPped, so the dead letter cannot be acknowledged.

    It must seek back and raise instead of committing past the event; after
    Kafka is back, the next member of its group gets the event again. `lost`
    also counts record events no consumer of the group ever handled."""
    data_type = unique_type()
    run = uuid.uuid4().hex[:8]
    group = f"pantheon-reliability-{run}"
    fail_seq = records // 2
    handled: dict[str, list[str]] = {"first": [], "second": []}
    failed: list[str] = []

    def handler(name: str) -> Callable[[Received], None]:
        def handle(received: Received) -> None:
            if _payload_of(received).metadata.data_type != data_type:
                return
            if name == "first" and int(_payload_of(received).payload["seq"]) == fail_seq and not failed:
                failed.append(received.attributes.id)
                # The dead-letter topic becomes unreachable right as the handler fails.
                stack.signal("kafka", signal.SIGSTOP)
                raise RuntimeError("simulation engine rejected it")
            handled[name].append(received.attributes.id)

        return handle

    def resume() -> None:
        with contextlib.suppress(AssertionError, ProcessLookupError):
            stack.signal("kafka", signal.SIGCONT)

    config = stack.kafka_config()
    notes: dict[str, Any] = {}
    # Kafka comes back once the consumer gave up on the dead letter (it then seeks back and commits).
    hook = _OnLog("consumer: stopping at", resume)
    consumer_log = logging.getLogger("pantheon.events.consumer")
    consumer_log.addHandler(hook)
    try:
        first = EventConsumer(
            config,
            group,
            [RECORDS.name],
            handler("first"),
            dlq_topic=DEAD_LETTER.name,
            from_beginning=False,
            dlq_timeout_s=5,
        )
        first.wait_until_assigned()
        seqs = range(records)
        with stack.http() as http:
            outcome = send(
                http,
                "POST",
                "/v1/records",
                headers={"Content-Type": "application/json", "Idempotency-Key": f"cd-{run}"},
                content=records_body(data_type, seqs, records, datetime.now(UTC) - timedelta(minutes=5)),
            )
        acked = _accepted(outcome, seqs)
        try:
            first.run(idle_timeout_s=20)
            notes["stopped"] = None
        except EventNotProcessed as stop:
            notes["stopped"] = {"offset": stop.offset, "partition": stop.partition, "reason": stop.reason}
        finally:
            resume()
            first.close()
        if notes["stopped"] is not None:
            notes["committed_after_stop"] = _committed(
                config, group, RECORDS.name, notes["stopped"]["partition"]
            )
        second = EventConsumer(
            config, group, [RECORDS.name], handler("second"), dlq_topic=DEAD_LETTER.name, from_beginning=False
        )
        try:
            wanted = set(acked.values())
            deadline = time.monotonic() + 60
            while (
                not wanted <= set(handled["first"]) | set(handled["second"]) and time.monotonic() < deadline
            ):
                second.poll_once(0.5)
        finally:
            second.close()
    finally:
        resume()
        consumer_log.removeHandler(hook)
    row = count_records(stack, "consumer: handler fails, DLQ unreachable", data_type, records, acked)
    skipped = set(acked.values()) - set(handled["first"]) - set(handled["second"])
    row.lost += len(skipped)
    letters = [
        s for s in stack.read_all([DEAD_LETTER.name]) if failed and s.headers.get("ce_subject") == failed[0]
    ]
    notes.update(
        failed_event=failed[0] if failed else None,
        handled_first=len(handled["first"]),
        handled_second=len(handled["second"]),
        failed_redelivered=bool(failed) and failed[0] in handled["second"],
        skipped=sorted(skipped),
        late_dead_letters=len(letters),
    )
    row.notes.update(notes)
    return row


def _payload_of(received: Received) -> Any:
    return received.payload


def _committed(config: dict[str, Any], group: str, topic: str, partition: int) -> int:
    reader = Consumer({**config, "group.id": group, "enable.auto.commit": False})
    try:
        (done,) = reader.committed([TopicPartition(topic, partition)], timeout=15)
        return int(done.offset)
    finally:
        reader.close()


# -- i. a slow keyed upload holds its lease; a dead one is taken over ------------------------


def trickle(side: int, seconds: float) -> Iterator[bytes]:
    """A side x side TIFF as a chunked body: a third at once, the rest in 16 pieces over `seconds`.

    The gateway opens the gRPC call only once it holds a whole chunk
    (PANTHEON_GATEWAY_CHUNK_BYTES, 1 MiB): the first third (>= 1 MiB from
    side 2048) makes the service claim the key at once, and the call then
    stays open, waiting for content, for `seconds`."""
    yield tiff_header(side)
    pixels = bytes(range(256)) * (side * side // 256)
    head = len(pixels) // 3
    yield pixels[:head]
    step = -(-(len(pixels) - head) // 16)
    for start in range(head, len(pixels), step):
        time.sleep(seconds / 16)
        yield pixels[start : start + step]


def _wait_claimed(stack: PrivateStack, source: str, key: str, budget_s: float = 60) -> bool:
    """Whether the idempotency record of (source, key) appears in the index bucket within the budget."""
    # The layout of pantheon/storage/index.py: idempotency/<source>/<sha256(key)>.
    name = f"idempotency/{source}/{hashlib.sha256(key.encode()).hexdigest()}"
    s3 = stack.root_s3()
    deadline = time.monotonic() + budget_s
    while not _exists(s3, INDEX_BUCKET, name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def lease_takeover(stack: PrivateStack, side: int = 2048) -> Row:
    """(1) A keyed upload trickling for 4x the stale-claim age while the same key is
    retried every second: every retry must get 409 `in_progress` (the lease is
    renewed), then the upload 201 and a retry its replay. (2) The services
    SIGKILLed during a slow keyed upload: after a restart, a retry takes the
    stale claim over and completes. Units: the two uploads."""
    data_type = unique_type("imagery")
    run = uuid.uuid4().hex[:8]
    stale_s = float(stack.env["PANTHEON_STALE_CLAIM_S"])
    source = "demo-city"  # the principal of PANTHEON_API_KEY
    params = object_params(data_type)
    took_over = "took over the idempotency key"
    notes: dict[str, Any] = {}
    acked: dict[str, str] = {}

    def key(name: str) -> str:
        return f"lt-{run}-{name}"

    def post(http: httpx.Client, name: str, body: Callable[[], Iterator[bytes]], **kw: Any) -> Outcome:
        headers = {"Content-Type": "image/tiff", "Idempotency-Key": key(name)}
        return send(http, "POST", "/v1/objects", params=params, headers=headers, content=body, **kw)

    def slow_upload(name: str, into: dict[str, Outcome]) -> threading.Thread:
        def upload() -> None:
            with stack.http(timeout=120) as http:
                into[name] = post(http, name, lambda: trickle(side, 4 * stale_s), retry=False)

        thread = threading.Thread(target=upload)
        thread.start()
        return thread

    # (1) the lease holds while the upload runs: retries only once the slow call holds the key
    took_over_before = _log_count(stack, took_over)
    slow: dict[str, Outcome] = {}
    uploader = slow_upload("lease", slow)
    claimed = _wait_claimed(stack, source, key("lease"))
    started = time.monotonic()
    retries: list[tuple[float, str, str]] = []
    with stack.http(timeout=60) as http:
        while claimed and uploader.is_alive():
            answer = post(http, "lease", lambda: tiff_body(side), retry=False)
            retries.append(
                (round(time.monotonic() - started, 1), answer.attempts[-1], _reason(answer.response))
            )
            time.sleep(1)
        uploader.join()
        replay = post(http, "lease", lambda: tiff_body(side), budget_s=60)
    first = slow["lease"]
    if first.ok and first.response is not None:
        acked["lease"] = first.response.json()["id"]
    notes["lease"] = {
        "claimed": claimed,
        "upload": first.attempts,
        "retries": retries,
        "replayed": bool(replay.ok and replay.response is not None and replay.response.json()["replayed"]),
        "replay_attempts": replay.attempts,
        "took_over": _log_count(stack, took_over) - took_over_before,
    }

    # (2) the holder dies mid-upload; after a restart a retry takes the stale claim over
    took_over_before = _log_count(stack, took_over)
    uploader = slow_upload("takeover", slow)
    claimed = _wait_claimed(stack, source, key("takeover"))
    time.sleep(1)  # the holder renews its lease meanwhile
    killed = claimed and uploader.is_alive()
    if killed:
        stack.kill("services")
    uploader.join()
    stack.up()
    with stack.http(timeout=120) as http:
        retry = post(http, "takeover", lambda: tiff_body(side), budget_s=120, also_retry=frozenset({500}))
        replay = post(http, "takeover", lambda: tiff_body(side), budget_s=60)
    if retry.ok and retry.response is not None:
        acked["takeover"] = retry.response.json()["id"]
    notes["takeover"] = {
        "claimed": claimed,
        "killed": killed,
        "dead_upload": slow["takeover"].attempts,
        "retry": retry.attempts,
        "replayed": bool(replay.ok and replay.response is not None and replay.response.json()["replayed"]),
        "took_over": _log_count(stack, took_over) - took_over_before,
    }
    return count_objects(
        stack, "slow keyed upload: lease held, then taken over", data_type, 2, acked, **notes
    )


SCENARIOS: dict[str, Callable[..., Row]] = {
    "kafka": kafka_killed_during_records,
    "minio": minio_killed_during_upload,
    "crash": crash_between_store_and_publish,
    "frozen": services_frozen,
    "gateway": gateway_restarted_under_load,
    "keyless-crash": keyless_crash,
    "producer-fatal": producer_fatal,
    "consumer-dlq-down": consumer_dlq_down,
    "lease-takeover": lease_takeover,
}
