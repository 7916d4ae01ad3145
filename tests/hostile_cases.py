"""The hostile-input catalogue: what an attacker holding a valid ingest key
sends, one class per entry, and what the stack must answer.

Each `Case` sends one crafted request (REST through the gateway with the
demo-city key, or gRPC as the dev-client identity) and says what must come
back: the status (a 4xx with the reason the code defines, or a 2xx when the
input is valid after all; never a 5xx, never a hang), how many objects may be
stored under the case's data type and which events may be published about
it. Every request has a client timeout of a few seconds.

Two users, one definition:

- `tests/integration/test_hostile_catalogue.py` runs every case once against
  the dev stack and checks the status, the bucket listing and Kafka;
- `scripts/reliability --hostile` (tests/reliability/hostile.py) runs each
  case in a loop while a calm client ingests and reads, and reports the calm
  client's p99 under it and how long the hostile requests took.

A case's data type is `sensor.hostile_<n>_<random>`, unique per run, so the
listing of `v1/<data_type>` and the events naming it belong to that case
alone. Read cases (ranges, page tokens) use objects seeded beforehand
(`make_seed`). Slow-client cases go to `Target.slow_gateway_url` when it is
set: a gateway with short slow-client timeouts, so they take seconds, not
the default 15.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import ssl
import struct
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlparse

import grpc
import httpx
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as pb_grpc
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as spb_grpc

from pantheon.config import ClientIdentity
from pantheon.errors import reason_of
from pantheon.server import secure_channel
from tests.samples import jpeg_segment, make_jpeg, make_png, make_tiff, png_chunk

#: Client timeout of an ordinary hostile request: any answer must come well within it.
TIMEOUT_S = 10.0
#: The source gRPC cases ingest as (dev-client may use any).
GRPC_SOURCE = "hostile-grpc"
#: Regex bait: a long run of digits, then a letter. A backtracking number
#: pattern tries every split of the digits before giving up.
BAIT_DIGITS = 40_000
#: Bait in a query parameter stays under the gateway's 32 KiB head cap.
QUERY_BAIT_DIGITS = 20_000
#: Event kinds, by their `ce_type` header.
EVENT_KINDS = {
    "pantheon.data.stored.v1": "stored",
    "pantheon.record.ingested.v1": "record",
    "pantheon.dead.letter.v1": "dead_letter",
}
#: Outcomes that are never acceptable: a server error, or no answer in time.
GRPC_SERVER_ERRORS = frozenset({"INTERNAL", "UNKNOWN", "DATA_LOSS", "UNIMPLEMENTED", "DEADLINE_EXCEEDED"})


def unacceptable(status: str) -> bool:
    """Whether an outcome's status is a server error or a hang (see `Outcome`)."""
    return status.startswith("5") or status in GRPC_SERVER_ERRORS or status == "timeout"


def bait(digits: int = BAIT_DIGITS, tail: str = "x") -> str:
    return "1" * digits + tail


# -- where requests go ---------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """Objects stored before the read cases run (ranges, page tokens)."""

    data_type: str
    object_id: str
    size: int
    page_token: str


@dataclass(frozen=True)
class Target:
    """The stack under attack: its gateway, the demo-city key and the gRPC services."""

    gateway_url: str
    ca_file: str
    key: str
    grpc_target: str
    cert_file: str
    key_file: str
    #: A gateway with short slow-client timeouts; "" means the main one.
    slow_gateway_url: str = ""
    body_timeout_s: float = 15.0
    header_timeout_s: float = 10.0
    seed: Seed | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> Target:
        identity = ClientIdentity.from_env(env)
        values: dict[str, Any] = {
            "gateway_url": env["PANTHEON_GATEWAY_URL"],
            "ca_file": env["PANTHEON_CA_FILE"],
            "key": env["PANTHEON_API_KEY"],
            "grpc_target": env["PANTHEON_GRPC_TARGET"],
            "cert_file": identity.cert_file,
            "key_file": identity.key_file,
            "body_timeout_s": float(env.get("PANTHEON_GATEWAY_BODY_TIMEOUT_S", "15")),
            "header_timeout_s": float(env.get("PANTHEON_GATEWAY_HEADER_TIMEOUT_S", "10")),
        }
        values.update(overrides)
        return cls(**values)

    @property
    def identity(self) -> ClientIdentity:
        return ClientIdentity(cert_file=self.cert_file, key_file=self.key_file)

    @property
    def slow_url(self) -> str:
        return self.slow_gateway_url or self.gateway_url

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Target:
        values = json.loads(text)
        seed = values.pop("seed")
        return cls(**values, seed=Seed(**seed) if seed else None)


# -- outcomes and expectations -------------------------------------------------------------


@dataclass
class Outcome:
    """What one hostile request got back.

    `status` is the HTTP status ("400"), the gRPC code's name ("OK",
    "INVALID_ARGUMENT"), "timeout" when no answer came within the client
    timeout, or "closed" when the connection ended without an answer.
    """

    status: str
    reason: str | None
    seconds: float
    body: Any = None

    @property
    def unacceptable(self) -> bool:
        """A server error or a hang: never the right answer to any input."""
        return unacceptable(self.status)

    def __str__(self) -> str:
        shown = json.dumps(self.body)[:600] if self.body is not None else ""
        return f"{self.status} {self.reason or ''} after {self.seconds:.2f}s {shown}".strip()


@dataclass(frozen=True)
class Expect:
    """What a case must get: one of `statuses`, the problem (or ErrorInfo)
    `reason` if given, `stored` objects under its data type and the events
    about it, counted by kind (`stored`, `record`, `dead_letter`)."""

    statuses: tuple[str, ...]
    reason: str | None = None
    stored: int = 0
    events: Mapping[str, int] = field(default_factory=dict)
    #: An upper bound on each stored object's size (to show what was left out).
    stored_max_bytes: int | None = None
    #: Records the answer reports rejected (record batches only).
    rejected: int | None = None

    @property
    def refused(self) -> bool:
        return self.stored == 0 and not self.events


def refused(status: str, reason: str | None = None) -> Expect:
    return Expect((status,), reason)


def accepted(status: str = "201", stored: int = 1, **events: int) -> Expect:
    return Expect((status,), None, stored, events or {"stored": 1})


@dataclass(frozen=True)
class Case:
    """One hostile class: `send(target, data_type)` makes the request."""

    name: str
    what: str
    send: Callable[[Target, str], Outcome]
    expect: Expect
    #: Reads the seeded objects; stores nothing of its own.
    reads_seed: bool = False
    #: Goes to the slow-client gateway (Target.slow_url) and takes about its timeout.
    slow: bool = False

    @property
    def transport(self) -> str:
        return "grpc" if self.name.startswith("grpc_") else "rest"


# -- REST ---------------------------------------------------------------------------------


@functools.cache
def tls_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def observed(minutes_ago: float = 1.0) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_or_none(response: httpx.Response) -> Any:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def rest(
    target: Target,
    method: str,
    path: str,
    *,
    params: Mapping[str, Any] | None = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_S,
    url: str | None = None,
) -> Outcome:
    """One HTTPS request with the demo-city key, on a connection of its own."""
    sent = {"Authorization": f"Bearer {target.key}", **(headers or {})}
    started = time.perf_counter()
    try:
        with httpx.Client(
            base_url=url or target.gateway_url, verify=tls_context(target.ca_file), timeout=timeout
        ) as client:
            response = client.request(method, path, params=params, content=content, headers=sent)
    except httpx.TimeoutException:
        return Outcome("timeout", None, time.perf_counter() - started)
    except httpx.HTTPError as exc:
        return Outcome("closed", type(exc).__name__, time.perf_counter() - started)
    elapsed = time.perf_counter() - started
    body = _json_or_none(response)
    reason = body.get("reason") if isinstance(body, dict) else None
    if body is None and response.status_code < 300:
        body = {"bytes": len(response.content)}
    return Outcome(str(response.status_code), reason, elapsed, body)


def object_params(data_type: str, **extra: Any) -> dict[str, Any]:
    return {"data_type": data_type, "observed_at": observed(), "lat": 48.2082, "lon": 16.3738, **extra}


def upload(
    target: Target, data_type: str, body: bytes, media_type: str, timeout: float = TIMEOUT_S, **params: Any
) -> Outcome:
    """POST /v1/objects with a raw body and the metadata in the query."""
    return rest(
        target,
        "POST",
        "/v1/objects",
        params=object_params(data_type, **params),
        content=body,
        headers={"Content-Type": media_type},
        timeout=timeout,
    )


def post_records(
    target: Target, data_type: str, body: bytes, media_type: str, timeout: float = TIMEOUT_S
) -> Outcome:
    """POST /v1/records with a record document."""
    return rest(
        target,
        "POST",
        "/v1/records",
        params={"data_type": data_type},
        content=body,
        headers={"Content-Type": media_type},
        timeout=timeout,
    )


def _answer_complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip() or b"0")
    return True


def _parse_answer(answer: bytes, seconds: float) -> Outcome:
    head, _, body = answer.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if not answer.startswith(b"HTTP/") or len(parts) < 2:
        return Outcome("closed", None, seconds)
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    reason = document.get("reason") if isinstance(document, dict) else None
    return Outcome(parts[1].decode(), reason, seconds, document)


def raw_exchange(
    target: Target,
    head: bytes,
    *,
    trickle: bytes = b"",
    every_s: float = 1.0,
    url: str | None = None,
    timeout: float = TIMEOUT_S,
) -> Outcome:
    """Send `head` at once, then `trickle` one byte every `every_s` seconds
    until the server answers; the answer (status and problem reason), or
    "timeout" if none came within `timeout`."""
    where = urlparse(url or target.gateway_url)
    host, port = where.hostname or "127.0.0.1", where.port or 443
    started = time.perf_counter()
    deadline = started + timeout
    answer = b""
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            tls_context(target.ca_file).wrap_socket(raw, server_hostname=host) as conn,
        ):
            conn.sendall(head)
            pending = trickle
            while (left := deadline - time.perf_counter()) > 0:
                conn.settimeout(min(every_s, left) if pending else left)
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    if pending:
                        conn.sendall(pending[:1])
                        pending = pending[1:]
                    continue
                if not data:
                    break
                answer += data
                if _answer_complete(answer):
                    break
    except OSError:
        pass
    seconds = time.perf_counter() - started
    if not answer:
        return Outcome("timeout" if seconds >= timeout else "closed", None, seconds)
    return _parse_answer(answer, seconds)


def request_head(
    target: Target, method: str, path: str, headers: Mapping[str, str], url: str | None = None
) -> bytes:
    host = urlparse(url or target.gateway_url).hostname or "127.0.0.1"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {target.key}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- gRPC ---------------------------------------------------------------------------------


def grpc_call(target: Target, call: Callable[[grpc.aio.Channel], Awaitable[Any]]) -> Outcome:
    """Run one call on a mutual-TLS channel as the dev-client identity."""

    async def run() -> Any:
        async with secure_channel(target.grpc_target, target.ca_file, target.identity) as channel:
            return await call(channel)

    started = time.perf_counter()
    try:
        result = asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        seconds = time.perf_counter() - started
        status = "timeout" if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED else exc.code().name
        return Outcome(status, reason_of(exc), seconds, {"details": (exc.details() or "")[:300]})
    seconds = time.perf_counter() - started
    body: dict[str, Any] = {}
    if isinstance(result, pb.IngestRecordsResponse):
        body = {"accepted": result.accepted_count, "rejected": result.rejected_count}
    elif isinstance(result, pb.IngestObjectResponse):
        body = {"key": result.object.key, "size": result.object.size_bytes}
    return Outcome("OK", None, seconds, body)


def grpc_metadata(data_type: str, **fields: Any) -> md.Metadata:
    fields.setdefault("location", md.GeoPoint(latitude=48.2082, longitude=16.3738))
    meta = md.Metadata(data_type=data_type, source=GRPC_SOURCE, **fields)
    meta.observed_at.FromDatetime(datetime.now(UTC) - timedelta(minutes=1))
    return meta


def grpc_object(
    target: Target,
    meta: md.Metadata,
    body: bytes,
    media_type: str,
    *,
    chunk: int = 1 << 20,
    timeout: float = TIMEOUT_S,
    before_header: bytes = b"",
) -> Outcome:
    """IngestObject: the header, then the body in chunks (`before_header`: a chunk sent first)."""

    async def requests() -> AsyncIterator[pb.IngestObjectRequest]:
        if before_header:
            yield pb.IngestObjectRequest(chunk=before_header)
        yield pb.IngestObjectRequest(header=pb.ObjectHeader(metadata=meta, declared_media_type=media_type))
        for start in range(0, len(body), chunk):
            yield pb.IngestObjectRequest(chunk=body[start : start + chunk])

    async def call(channel: grpc.aio.Channel) -> Any:
        return await pb_grpc.IngestionServiceStub(channel).IngestObject(requests(), timeout=timeout)

    return grpc_call(target, call)


def grpc_record(
    entity: str, payload: Mapping[str, Any] | None = None, lat: float = 48.2, lon: float = 16.37
) -> pb.Record:
    record = pb.Record(entity_id=entity, location=md.GeoPoint(latitude=lat, longitude=lon))
    record.observed_at.FromDatetime(datetime.now(UTC) - timedelta(minutes=1))
    record.payload.update(payload or {"pm10": 17.5})
    return record


def grpc_records(target: Target, data_type: str, records: Iterable[pb.Record]) -> Outcome:
    request = pb.IngestRecordsRequest(data_type=data_type, source=GRPC_SOURCE, records=list(records))

    async def call(channel: grpc.aio.Channel) -> Any:
        return await pb_grpc.IngestionServiceStub(channel).IngestRecords(request, timeout=TIMEOUT_S)

    return grpc_call(target, call)


def grpc_record_document(target: Target, data_type: str, body: bytes, media_type: str) -> Outcome:
    header = pb.RecordDocumentHeader(media_type=media_type, data_type=data_type, source=GRPC_SOURCE)

    async def requests() -> AsyncIterator[pb.IngestRecordDocumentRequest]:
        yield pb.IngestRecordDocumentRequest(header=header)
        for start in range(0, len(body), 1 << 20):
            yield pb.IngestRecordDocumentRequest(chunk=body[start : start + (1 << 20)])

    async def call(channel: grpc.aio.Channel) -> Any:
        response = await pb_grpc.IngestionServiceStub(channel).IngestRecordDocument(
            requests(), timeout=TIMEOUT_S
        )
        return response.result

    return grpc_call(target, call)


def grpc_search(target: Target, data_type: str, page_token: str) -> Outcome:
    request = spb.SearchObjectsRequest(data_type=data_type, page_size=1, page_token=page_token)

    async def call(channel: grpc.aio.Channel) -> Any:
        return await spb_grpc.StorageServiceStub(channel).SearchObjects(request, timeout=TIMEOUT_S)

    return grpc_call(target, call)


def grpc_get(target: Target, object_id: str, offset: int, length: int) -> Outcome:
    request = spb.GetObjectRequest(id=object_id, offset=offset, length=length)

    async def call(channel: grpc.aio.Channel) -> Any:
        stream = spb_grpc.StorageServiceStub(channel).GetObject(request, timeout=TIMEOUT_S)
        return [message async for message in stream]

    return grpc_call(target, call)


# -- bodies ---------------------------------------------------------------------------------


def csv_bytes(rows: Iterable[Iterable[object]]) -> bytes:
    return "".join(",".join(str(cell) for cell in row) + "\n" for row in rows).encode()


def bait_cells() -> list[str]:
    """Bait for each number syntax: integer, decimal, exponent, signed."""
    half = BAIT_DIGITS // 2
    return [bait(), "1" * half + "." + bait(half), "1" * half + "e" + bait(half), "-" + bait()]


def record_row(entity: str = "station-1", **overrides: str) -> dict[str, str]:
    row = {"entity_id": entity, "observed_at": observed(), "lat": "48.2", "lon": "16.37", "pm10": "17.5"}
    row.update(overrides)
    return row


def records_csv(rows: list[dict[str, str]]) -> bytes:
    names = list(rows[0])
    return csv_bytes([names, *([row[n] for n in names] for row in rows)])


def json_record(entity: str = "station-1", payload: Any = None, **location: Any) -> dict[str, Any]:
    return {
        "entity_id": entity,
        "observed_at": observed(),
        "location": location or {"lat": 48.2, "lon": 16.37},
        "payload": {"pm10": 17.5} if payload is None else payload,
    }


def deep_json(depth: int = 100_000) -> bytes:
    return b"[" * depth + b"]" * depth


def wide_csv(columns: int = 30_000, fixed: tuple[str, ...] = ()) -> bytes:
    names = [*fixed, *(f"c{i}" for i in range(columns))]
    values = [*(record_row()[n] for n in fixed), *("1" for _ in range(columns))]
    return csv_bytes([names, values])


def png_lying_chunk_length() -> bytes:
    """The IHDR chunk says it is 2 GiB long; the file ends 30 bytes later."""
    good = make_png()
    ihdr_at = 8
    return good[:ihdr_at] + struct.pack(">I", 0x7FFFFFF0) + good[ihdr_at + 4 :]


def png_huge_dimensions() -> bytes:
    """A valid PNG structure declaring 100000 x 100000 pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def tiff_ifd_loop() -> bytes:
    """A TIFF whose first IFD names itself as the next one."""
    good = bytearray(make_tiff())
    entries = struct.unpack_from("<H", good, 8)[0]
    struct.pack_into("<I", good, 8 + 2 + 12 * entries, 8)
    return bytes(good)


def jpeg_segment_past_end() -> bytes:
    """An APP1 segment that declares 65533 bytes; the file ends after 16."""
    return b"\xff\xd8" + b"\xff\xe1\xff\xff" + b"Exif\x00\x00" + b"\x00" * 10


def jpeg_huge_dimensions() -> bytes:
    good = make_jpeg()
    sof = jpeg_segment(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00")
    huge = jpeg_segment(0xC0, b"\x08\xff\xff\xff\xff\x01\x01\x11\x00")
    return good.replace(sof, huge)


def multipart_body(boundary: str, parts: Iterable[tuple[str, str, bytes]]) -> bytes:
    """Parts of (name, content type, content)."""
    out = b""
    for name, content_type, content in parts:
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        out += content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def metadata_part(data_type: str, **extra: Any) -> bytes:
    return json.dumps(
        {"data_type": data_type, "observed_at": observed(), "lat": 48.2, "lon": 16.37, **extra}
    ).encode()


def multipart_upload(target: Target, content_type: str, body: bytes) -> Outcome:
    return rest(target, "POST", "/v1/objects", content=body, headers={"Content-Type": content_type})


# -- the cases: REST, objects ----------------------------------------------------------------


def _csv_object_bait(t: Target, dt: str) -> Outcome:
    return upload(t, dt, csv_bytes([["a", "b", "c", "d"], bait_cells()]), "text/csv")


def _query_bait_data_type(t: Target, dt: str) -> Outcome:
    return upload(t, dt + "_" + bait(QUERY_BAIT_DIGITS), b'{"a": 1}', "application/json")


def _query_bait_observed_at(t: Target, dt: str) -> Outcome:
    return upload(
        t, dt, b'{"a": 1}', "application/json", observed_at="2024-01-01T00:00:" + bait(QUERY_BAIT_DIGITS)
    )


def _query_bait_coordinates(t: Target, dt: str) -> Outcome:
    third = QUERY_BAIT_DIGITS // 3
    return upload(t, dt, b'{"a": 1}', "application/json", lat=bait(third), lon=bait(third), alt=bait(third))


def _query_bait_text_fields(t: Target, dt: str) -> Outcome:
    third = QUERY_BAIT_DIGITS // 3
    return upload(
        t,
        dt,
        b'{"a": 1}',
        "application/json",
        entity_id=bait(third),
        labels=f"k={bait(third)}",
        schema_ref="https://x/" + bait(third),
    )


def _csv_object_wide(t: Target, dt: str) -> Outcome:
    return upload(t, dt, wide_csv(), "text/csv")


def _csv_object_long(t: Target, dt: str) -> Outcome:
    rows = (f"s{i},{i}.5,{i % 2 == 0}\n" for i in range(300_000))
    return upload(t, dt, b"station,pm10,ok\n" + "".join(rows).encode(), "text/csv")


def _csv_object_ragged(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n", "text/csv")


def _csv_object_bom(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b"\xef\xbb\xbfstation,pm10\ns-1,17.5\n", "text/csv")


def _json_object_bom(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b'\xef\xbb\xbf{"pm10": 17.5}', "application/json")


def _csv_object_invalid_utf8(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b"station,pm10\ns-\xff\xfe1,17.5\n", "text/csv")


def _json_object_invalid_utf8(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b'{"station": "s-\xc3\x281"}', "application/json")


def _csv_object_nul(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b"station,pm10\ns-\x001,17.5\n", "text/csv")


def _json_object_nul(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b'{"station": "s-\x001"}', "application/json")


def _json_object_deep(t: Target, dt: str) -> Outcome:
    return upload(t, dt, deep_json(), "application/json")


def _ndjson_object_deep(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b'{"a": 1}\n' + deep_json() + b"\n", "application/x-ndjson")


def _json_object_huge_number(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b'{"pm10": 1' + b"0" * 100_000 + b"}", "application/json")


def _json_object_nan_infinity(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b'{"pm10": NaN, "pm2_5": Infinity, "no2": -Infinity}', "application/json")


def _json_object_overflowing_exponent(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b'{"pm10": 1e999999, "pm2_5": -1e999999, "no2": 1e-999999}', "application/json")


def _json_object_63mib(t: Target, dt: str) -> Outcome:
    filler = b'"' + b"x" * (63 * 2**20) + b'"'
    return upload(t, dt, b'{"blob": ' + filler + b"}", "application/json")


def _labels_ten_250(t: Target, dt: str) -> Outcome:
    labels = ",".join(f"label_{i}={chr(97 + i) * 250}" for i in range(10))
    return upload(t, dt, b'{"pm10": 17.5}', "application/json", labels=labels)


def _labels_overflow(t: Target, dt: str) -> Outcome:
    labels = ",".join(f"label_{i}={'v' * 256}" for i in range(33))
    return upload(t, dt, b'{"pm10": 17.5}', "application/json", labels=labels)


def _png_lying_chunk(t: Target, dt: str) -> Outcome:
    return upload(t, dt, png_lying_chunk_length(), "image/png")


def _png_huge(t: Target, dt: str) -> Outcome:
    return upload(t, dt, png_huge_dimensions(), "image/png")


def _tiff_loop(t: Target, dt: str) -> Outcome:
    return upload(t, dt, tiff_ifd_loop(), "image/tiff")


def _jpeg_past_end(t: Target, dt: str) -> Outcome:
    return upload(t, dt, jpeg_segment_past_end(), "image/jpeg")


def _jpeg_huge(t: Target, dt: str) -> Outcome:
    return upload(t, dt, jpeg_huge_dimensions(), "image/jpeg")


def _multipart_no_boundary(t: Target, dt: str) -> Outcome:
    body = multipart_body(
        "b0undary", [("metadata", "application/json", metadata_part(dt)), ("file", "text/csv", b"a\n1\n")]
    )
    return multipart_upload(t, "multipart/form-data", body)


def _multipart_file_first(t: Target, dt: str) -> Outcome:
    body = multipart_body(
        "b0undary", [("file", "text/csv", b"a\n1\n"), ("metadata", "application/json", metadata_part(dt))]
    )
    return multipart_upload(t, "multipart/form-data; boundary=b0undary", body)


def _multipart_nested(t: Target, dt: str) -> Outcome:
    inner = multipart_body("inner", [("file", "text/csv", b"a\n1\n"), ("file", "text/csv", b"b\n2\n")])
    body = multipart_body(
        "outer",
        [
            ("metadata", "application/json", metadata_part(dt)),
            ("file", "multipart/mixed; boundary=inner", inner),
        ],
    )
    return multipart_upload(t, "multipart/form-data; boundary=outer", body)


def _multipart_huge_metadata(t: Target, dt: str) -> Outcome:
    meta = metadata_part(dt, provider="p" * (2 * 2**20))
    body = multipart_body(
        "b0undary", [("metadata", "application/json", meta), ("file", "text/csv", b"a\n1\n")]
    )
    return multipart_upload(t, "multipart/form-data; boundary=b0undary", body)


# -- REST, record documents -------------------------------------------------------------------


def _records_csv_bait_payload(t: Target, dt: str) -> Outcome:
    cells = bait_cells()
    rows = [record_row(f"station-{i}", pm10=cell) for i, cell in enumerate(cells)]
    return post_records(t, dt, records_csv(rows), "text/csv")


def _records_csv_bait_location(t: Target, dt: str) -> Outcome:
    row = record_row(lat=bait(), lon="-" + bait(), pm10="1")
    row["alt"] = "1" * 20_000 + "." + bait(20_000)
    return post_records(t, dt, records_csv([row]), "text/csv")


def _records_csv_bait_observed_at(t: Target, dt: str) -> Outcome:
    return post_records(
        t, dt, records_csv([record_row(observed_at="2024-01-01T00:00:" + bait())]), "text/csv"
    )


def _records_csv_bait_entity_id(t: Target, dt: str) -> Outcome:
    return post_records(t, dt, records_csv([record_row(entity=bait())]), "text/csv")


def _records_query_bait_data_type(t: Target, dt: str) -> Outcome:
    return post_records(t, dt + "_" + bait(QUERY_BAIT_DIGITS), records_csv([record_row()]), "text/csv")


def _records_csv_wide(t: Target, dt: str) -> Outcome:
    return post_records(t, dt, wide_csv(fixed=("entity_id", "observed_at", "lat", "lon")), "text/csv")


def _records_csv_long(t: Target, dt: str) -> Outcome:
    when = observed()
    rows = [f"s-{i},{when},48.2,16.37,{i}\n" for i in range(10_001)]
    return post_records(t, dt, ("entity_id,observed_at,lat,lon,pm10\n" + "".join(rows)).encode(), "text/csv")


def _records_csv_long_and_wide(t: Target, dt: str) -> Outcome:
    """The issue's 5000 rows x 700 columns: within the body limit, 3.5 million cells."""
    when = observed()
    names = "entity_id,observed_at,lat,lon," + ",".join(f"v{i}" for i in range(696)) + "\n"
    values = "," + ",".join("1.5" for _ in range(696)) + "\n"
    rows = "".join(f"s-{i},{when},48.2,16.37{values}" for i in range(5_000))
    return post_records(t, dt, (names + rows).encode(), "text/csv")


def _records_csv_ragged(t: Target, dt: str) -> Outcome:
    when = observed()
    body = f"entity_id,observed_at,lat,lon,pm10\ns-1,{when},48.2,16.37\ns-2,{when},48.2,16.37,1,2\n"
    return post_records(t, dt, body.encode(), "text/csv")


def _records_csv_bom(t: Target, dt: str) -> Outcome:
    return post_records(t, dt, b"\xef\xbb\xbf" + records_csv([record_row()]), "text/csv")


def _records_ndjson_invalid_utf8(t: Target, dt: str) -> Outcome:
    line = json.dumps(json_record(payload={"station": "S"})).encode().replace(b'"S"', b'"s-\xff\xfe"')
    return post_records(t, dt, line + b"\n", "application/x-ndjson")


def _records_csv_nul(t: Target, dt: str) -> Outcome:
    return post_records(t, dt, records_csv([record_row(pm10="a\x00b")]), "text/csv")


def _records_json_deep(t: Target, dt: str) -> Outcome:
    body = json.dumps({"records": [json_record(payload={"deep": None})]}).encode()
    return post_records(t, dt, body.replace(b"null", deep_json()), "application/json")


def _records_ndjson_deep(t: Target, dt: str) -> Outcome:
    line = json.dumps(json_record(payload={"deep": None})).encode().replace(b"null", deep_json())
    return post_records(t, dt, line + b"\n", "application/x-ndjson")


def _records_json_nan_location(t: Target, dt: str) -> Outcome:
    body = json.dumps({"records": [json_record(lat=float("nan"), lon=float("inf"))]}).encode()
    return post_records(t, dt, body, "application/json")


def _records_csv_nan_location(t: Target, dt: str) -> Outcome:
    return post_records(
        t, dt, records_csv([record_row(lat="NaN", lon="Infinity", pm10="-Infinity")]), "text/csv"
    )


def _records_json_huge_numbers(t: Target, dt: str) -> Outcome:
    body = json.dumps({"records": [json_record(lat=0, lon=0)]}).encode()
    body = body.replace(b'"lat": 0', b'"lat": 1e999999').replace(b'"lon": 0', b'"lon": 1' + b"0" * 10_000)
    return post_records(t, dt, body, "application/json")


def _records_json_oversize_record(t: Target, dt: str) -> Outcome:
    records = [
        json_record("station-0"),
        json_record("station-1", {"blob": "x" * 1_500_000}),
        json_record("station-2"),
    ]
    return post_records(t, dt, json.dumps({"records": records}).encode(), "application/json")


def _records_63mib(t: Target, dt: str) -> Outcome:
    head = request_head(
        t,
        "POST",
        f"/v1/records?data_type={dt}",
        {"Content-Type": "application/x-ndjson", "Content-Length": str(63 * 2**20)},
    )
    return raw_exchange(t, head)


# -- REST, reads of the seeded objects ------------------------------------------------------


def _seed(t: Target) -> Seed:
    if t.seed is None:
        raise RuntimeError("read cases need Target.seed (make_seed)")
    return t.seed


def _get_range(t: Target, value: str) -> Outcome:
    return rest(t, "GET", f"/v1/objects/{_seed(t).object_id}", headers={"Range": value})


def _search(t: Target, data_type: str, page_token: str) -> Outcome:
    return rest(
        t, "GET", "/v1/objects", params={"data_type": data_type, "page_size": 1, "page_token": page_token}
    )


def _tampered(token: str) -> str:
    middle = len(token) // 2
    flipped = "B" if token[middle] != "B" else "C"
    return token[:middle] + flipped + token[middle + 1 :]


# -- REST, heads and slow clients ---------------------------------------------------------------


def _header_overlong(t: Target, dt: str) -> Outcome:
    return rest(t, "GET", "/v1/objects", params={"data_type": dt}, headers={"X-Padding": "p" * 40_000})


def _headers_many(t: Target, dt: str) -> Outcome:
    headers = {f"X-Pad-{i}": "p" * 16 for i in range(2_000)}
    return rest(t, "GET", "/v1/objects", params={"data_type": dt}, headers=headers)


def _query_overlong(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b'{"pm10": 17.5}', "application/json", provider="p" * 40_000)


def _slow_loris_body(t: Target, dt: str) -> Outcome:
    query = urlencode(object_params(dt))
    head = request_head(
        t, "POST", f"/v1/objects?{query}", {"Content-Type": "text/csv", "Content-Length": "1000"}, t.slow_url
    )
    return raw_exchange(t, head, trickle=b"a\n1\n" * 250, url=t.slow_url, timeout=t.body_timeout_s + 10)


def _slow_loris_headers(t: Target, dt: str) -> Outcome:
    query = urlencode({"data_type": dt})
    whole = request_head(t, "GET", f"/v1/objects?{query}", {}, t.slow_url)
    return raw_exchange(t, whole[:1], trickle=whole[1:], url=t.slow_url, timeout=t.header_timeout_s + 10)


# -- gRPC ---------------------------------------------------------------------------------------


def _grpc_csv_bait(t: Target, dt: str) -> Outcome:
    return grpc_object(t, grpc_metadata(dt), csv_bytes([["a", "b", "c", "d"], bait_cells()]), "text/csv")


def _grpc_metadata_bait(t: Target, dt: str) -> Outcome:
    meta = grpc_metadata(dt + "_" + bait(), entity_id=bait(), provider=bait())
    return grpc_object(t, meta, b'{"pm10": 17.5}', "application/json")


def _grpc_csv_wide(t: Target, dt: str) -> Outcome:
    return grpc_object(t, grpc_metadata(dt), wide_csv(), "text/csv")


def _grpc_json_deep(t: Target, dt: str) -> Outcome:
    return grpc_object(t, grpc_metadata(dt), deep_json(), "application/json")


def _grpc_json_63mib(t: Target, dt: str) -> Outcome:
    body = b'{"blob": "' + b"x" * (63 * 2**20) + b'"}'
    return grpc_object(t, grpc_metadata(dt), body, "application/json")


def _grpc_png_huge(t: Target, dt: str) -> Outcome:
    return grpc_object(t, grpc_metadata(dt), png_huge_dimensions(), "image/png")


def _grpc_tiff_loop(t: Target, dt: str) -> Outcome:
    return grpc_object(t, grpc_metadata(dt), tiff_ifd_loop(), "image/tiff")


def _grpc_labels_ten_250(t: Target, dt: str) -> Outcome:
    labels = {f"label_{i}": chr(97 + i) * 250 for i in range(10)}
    return grpc_object(t, grpc_metadata(dt, labels=labels), b'{"pm10": 17.5}', "application/json")


def _grpc_chunk_before_header(t: Target, dt: str) -> Outcome:
    return grpc_object(t, grpc_metadata(dt), b'{"pm10": 17.5}', "application/json", before_header=b"{}")


def _grpc_records_oversize(t: Target, dt: str) -> Outcome:
    big = grpc_record("station-1", {"blob": "x" * 1_500_000})
    return grpc_records(t, dt, [grpc_record("station-0"), big, grpc_record("station-2")])


def _grpc_records_nan_location(t: Target, dt: str) -> Outcome:
    return grpc_records(t, dt, [grpc_record("station-0", lat=float("nan"), lon=float("inf"))])


def _grpc_records_nan_payload(t: Target, dt: str) -> Outcome:
    payload = {"pm10": float("nan"), "pm2_5": float("inf"), "no2": float("-inf")}
    return grpc_records(t, dt, [grpc_record("station-0", payload)])


def _grpc_document_wide(t: Target, dt: str) -> Outcome:
    return grpc_record_document(t, dt, wide_csv(fixed=("entity_id", "observed_at", "lat", "lon")), "text/csv")


def _grpc_document_deep(t: Target, dt: str) -> Outcome:
    line = json.dumps(json_record(payload={"deep": None})).encode().replace(b"null", deep_json())
    return grpc_record_document(t, dt, line + b"\n", "application/x-ndjson")


def _grpc_page_token_tampered(t: Target, dt: str) -> Outcome:
    seed = _seed(t)
    return grpc_search(t, seed.data_type, _tampered(seed.page_token))


def _grpc_get_past_end(t: Target, dt: str) -> Outcome:
    seed = _seed(t)
    return grpc_get(t, seed.object_id, seed.size + 2**40, 2**63)


# -- more REST: caps, framing, times and strings that do not convert --------------------------


def _json_too_many_keys(t: Target, dt: str) -> Outcome:
    return upload(t, dt, json.dumps({f"k{i}": 1 for i in range(10_001)}).encode(), "application/json")


def _json_key_too_long(t: Target, dt: str) -> Outcome:
    return upload(t, dt, json.dumps({"k" * 2_000: 1}).encode(), "application/json")


def _csv_column_name_too_long(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b"a" * 65 + b"\n1\n", "text/csv")


def _csv_cell_too_long(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b"a\n" + b"x" * 70_000 + b"\n", "text/csv")


def _csv_unterminated_quote(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b'a,b\n"' + b"x\n" * 1_000_000, "text/csv")


def _ndjson_line_too_long(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b'{"a": "' + b"x" * (2**20 + 10) + b'"}\n', "application/x-ndjson")


def _geojson_too_many_positions(t: Target, dt: str) -> Outcome:
    body = b'{"type": "MultiPoint", "coordinates": [' + b"[1.5,2.5]," * 1_000_000 + b"[1.5,2.5]]}"
    return upload(t, dt, body, "application/geo+json")


def _idempotency_key_bait(t: Target, dt: str) -> Outcome:
    headers = {"Content-Type": "application/json", "Idempotency-Key": bait(QUERY_BAIT_DIGITS)}
    return rest(t, "POST", "/v1/objects", params=object_params(dt), content=b'{"a": 1}', headers=headers)


def _framing(t: Target, dt: str, headers: dict[str, str], body: bytes) -> Outcome:
    head = request_head(t, "POST", f"/v1/records?data_type={dt}", {"Content-Type": "text/csv", **headers})
    return raw_exchange(t, head + body)


#: A time that is valid RFC 3339 but has no UTC form (year 0 or 10000 once the offset is applied).
TIME_BEFORE_YEAR_1 = "0001-01-01T00:00:00+14:00"
TIME_AFTER_YEAR_9999 = "9999-12-31T23:59:59-14:00"


def _query_observed_at_overflow(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b'{"a": 1}', "application/json", observed_at=TIME_BEFORE_YEAR_1)


def _search_window_overflow(t: Target, dt: str) -> Outcome:
    params = {"data_type": dt, "since": TIME_BEFORE_YEAR_1, "until": TIME_AFTER_YEAR_9999}
    return rest(t, "GET", "/v1/objects", params=params)


def _records_json_observed_at_overflow(t: Target, dt: str) -> Outcome:
    record = json_record()
    record["observed_at"] = TIME_AFTER_YEAR_9999
    return post_records(t, dt, json.dumps({"records": [record]}).encode(), "application/json")


def _records_json_surrogate_entity_id(t: Target, dt: str) -> Outcome:
    # json.dumps writes a lone surrogate as the legal JSON escape "\ud800".
    record = json_record()
    record["entity_id"] = "\ud800"
    return post_records(t, dt, json.dumps({"records": [record]}).encode(), "application/json")


def _records_json_surrogate_labels(t: Target, dt: str) -> Outcome:
    record = json_record()
    record["labels"] = {"site": "\udfff"}
    return post_records(t, dt, json.dumps({"records": [record]}).encode(), "application/json")


def _records_json_surrogate_batch_fields(t: Target, dt: str) -> Outcome:
    body = {"records": [json_record()], "provider": "\ud800", "labels": {"k": "\ud800"}}
    return post_records(t, dt, json.dumps(body).encode(), "application/json")


def _records_json_surrogate_payload(t: Target, dt: str) -> Outcome:
    record = json_record(payload={"s": "\ud800"})
    return post_records(t, dt, json.dumps({"records": [record]}).encode(), "application/json")


def _json_object_surrogate(t: Target, dt: str) -> Outcome:
    return upload(t, dt, b'{"s": "\\ud800", "\\udfff": 1}', "application/json")


# -- more gRPC: timestamps and messages that do not decode --------------------------------------


def _grpc_object_nanos(t: Target, dt: str) -> Outcome:
    meta = grpc_metadata(dt)
    meta.observed_at.nanos = -5
    return grpc_object(t, meta, b'{"pm10": 17.5}', "application/json")


def _grpc_records_nanos(t: Target, dt: str) -> Outcome:
    record = grpc_record("station-0")
    record.observed_at.nanos = 2_000_000_000
    return grpc_records(t, dt, [record])


def _grpc_validity_out_of_range(t: Target, dt: str) -> Outcome:
    meta = grpc_metadata(dt)
    meta.validity.start.seconds = 2**62  # past year 9999: no RFC 3339 form
    return grpc_object(t, meta, b'{"pm10": 17.5}', "application/json")


def _grpc_records_one_nan_altitude(t: Target, dt: str) -> Outcome:
    bad = grpc_record("station-1")
    bad.location.altitude_m = float("nan")
    return grpc_records(t, dt, [grpc_record("station-0"), bad])


def _varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([low])
        out += bytes([low | 0x80])


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _raw_records_call(t: Target, request: bytes) -> Outcome:
    async def call(channel: grpc.aio.Channel) -> Any:
        method = channel.unary_unary(
            "/pantheon_api.ingest.v1.IngestionService/IngestRecords",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.IngestRecordsResponse.FromString,
        )
        return await method(request, timeout=TIMEOUT_S)

    return grpc_call(t, call)


def _grpc_protobuf_too_deep(t: Target, dt: str) -> Outcome:
    """A record whose payload Struct nests 200 deep: past protobuf's decoding depth of 100."""
    nested = b""
    for _ in range(200):  # Struct.fields{"x": Value{struct_value: nested}}
        nested = _field(1, _field(1, b"x") + _field(2, _field(5, nested)))
    record = grpc_record("station-0")
    record.ClearField("payload")
    request = pb.IngestRecordsRequest(data_type=dt, source=GRPC_SOURCE).SerializeToString()
    return _raw_records_call(t, request + _field(5, record.SerializeToString() + _field(4, nested)))


def _grpc_protobuf_bad_utf8(t: Target, dt: str) -> Outcome:
    """A string field (the record's entity_id) holding bytes that are not UTF-8."""
    record = grpc_record("station-0")
    record.ClearField("entity_id")
    request = pb.IngestRecordsRequest(data_type=dt, source=GRPC_SOURCE).SerializeToString()
    return _raw_records_call(t, request + _field(5, _field(1, b"s-\xff\xfe") + record.SerializeToString()))


def _range_many(t: Target, dt: str) -> Outcome:
    return _get_range(t, "bytes=" + ",".join(f"{i}-{i}" for i in range(2000)))


def _range_malformed(t: Target, dt: str) -> Outcome:
    return _get_range(t, "bytes=--5,x-")


def _range_huge_numbers(t: Target, dt: str) -> Outcome:
    return _get_range(t, "bytes=" + "9" * 40 + "-")


def _range_past_end(t: Target, dt: str) -> Outcome:
    return _get_range(t, "bytes=2000000-")


def _page_token_tampered(t: Target, dt: str) -> Outcome:
    return _search(t, _seed(t).data_type, _tampered(_seed(t).page_token))


def _page_token_other_search(t: Target, dt: str) -> Outcome:
    return _search(t, dt, _seed(t).page_token)


def _page_token_garbage(t: Target, dt: str) -> Outcome:
    return _search(t, _seed(t).data_type, "A" * 2048)


def _content_length_negative(t: Target, dt: str) -> Outcome:
    return _framing(t, dt, {"Content-Length": "-1"}, b"")


def _content_length_twice(t: Target, dt: str) -> Outcome:
    return _framing(t, dt, {"Content-Length": "5", "Content-length": "6"}, b"a,b\n1")


def _content_length_and_chunked(t: Target, dt: str) -> Outcome:
    return _framing(t, dt, {"Content-Length": "5", "Transfer-Encoding": "chunked"}, b"0\r\n\r\n")


def _build() -> list[Case]:
    stored = accepted()
    invalid = "INVALID_ARGUMENT"
    one_record = {"stored": 1, "record": 1}
    oversize = {"stored": 1, "record": 2, "dead_letter": 1}
    # fmt: off
    return [
        # -- regex bait in every typed field -------------------------------------------------------
        Case("csv_object_regex_bait", "CSV object: 40000 digits then a letter, each number syntax",
             _csv_object_bait, stored),
        Case("records_csv_regex_bait_payload", "CSV record document: bait in payload cells",
             _records_csv_bait_payload, Expect(("201",), None, 1, {"stored": 1, "record": 4})),
        Case("records_csv_regex_bait_location", "CSV record document: bait in lat, lon and alt",
             _records_csv_bait_location, refused("400", "malformed_document")),
        Case("records_csv_regex_bait_observed_at", "CSV record document: bait in observed_at",
             _records_csv_bait_observed_at, refused("400", "malformed_document")),
        Case("records_csv_regex_bait_entity_id", "CSV record document: a 40001-character entity_id",
             _records_csv_bait_entity_id, refused("400", "validation_failed")),
        Case("query_regex_bait_data_type", "object upload: 20000-digit bait in data_type",
             _query_bait_data_type, refused("400", "validation_failed")),
        Case("query_regex_bait_observed_at", "object upload: bait in observed_at",
             _query_bait_observed_at, refused("422", "invalid_request")),
        Case("query_regex_bait_coordinates", "object upload: bait in lat, lon and alt",
             _query_bait_coordinates, refused("422", "invalid_request")),
        Case("query_regex_bait_text_fields", "object upload: bait in entity_id, labels and schema_ref",
             _query_bait_text_fields, refused("400", "validation_failed")),
        Case("idempotency_key_regex_bait", "object upload: a 20001-character Idempotency-Key",
             _idempotency_key_bait, refused("400", "validation_failed")),
        Case("records_query_regex_bait_data_type", "record document: bait in the data_type parameter",
             _records_query_bait_data_type, refused("400", "validation_failed")),
        # -- wide, long and ragged CSV; BOM; invalid UTF-8; NUL --------------------------------------
        Case("csv_object_wide", "CSV object with 30000 columns",
             _csv_object_wide, refused("400", "too_many_columns")),
        Case("records_csv_wide", "CSV record document with 30000 columns",
             _records_csv_wide, refused("400", "too_many_columns")),
        Case("csv_object_long", "CSV object of 300000 rows (valid)",
             _csv_object_long, stored),
        Case("records_csv_too_long", "CSV record document of 10001 rows",
             _records_csv_long, refused("413", "too_many_records")),
        Case("csv_object_ragged", "CSV object whose rows have 3, 2 and 4 cells",
             _csv_object_ragged, refused("400", "invalid_csv")),
        Case("records_csv_ragged", "CSV record document whose rows have 4 and 6 cells",
             _records_csv_ragged, refused("400", "malformed_document")),
        Case("csv_object_column_name_too_long", "CSV object with a 65-character column name",
             _csv_column_name_too_long, refused("400", "column_name_too_long")),
        Case("csv_object_cell_too_long", "CSV object with a 70000-character cell",
             _csv_cell_too_long, refused("400", "cell_too_long")),
        Case("csv_object_unterminated_quote", "CSV object whose quote never closes (2 MB)",
             _csv_unterminated_quote, refused("400", "record_too_long")),
        Case("csv_object_bom", "CSV object starting with a UTF-8 BOM (valid)",
             _csv_object_bom, stored),
        Case("json_object_bom", "JSON object starting with a UTF-8 BOM (valid)",
             _json_object_bom, stored),
        Case("records_csv_bom", "CSV record document starting with a UTF-8 BOM (valid)",
             _records_csv_bom, Expect(("201",), None, 1, one_record)),
        Case("csv_object_invalid_utf8", "CSV object with bytes FF FE in a cell",
             _csv_object_invalid_utf8, refused("400", "invalid_csv")),
        Case("json_object_invalid_utf8", "JSON object with an invalid UTF-8 sequence in a string",
             _json_object_invalid_utf8, refused("400", "invalid_json")),
        Case("records_ndjson_invalid_utf8", "NDJSON record document with bytes FF FE in a string",
             _records_ndjson_invalid_utf8, refused("400", "malformed_document")),
        Case("json_object_lone_surrogate", "JSON object with '\\ud800' escapes in a key and a value",
             _json_object_surrogate, refused("400", "invalid_json")),
        Case("records_json_lone_surrogate_payload", "JSON record document: '\\ud800' in a payload value",
             _records_json_surrogate_payload, refused("400", "malformed_document")),
        Case("records_json_lone_surrogate_entity_id", "JSON record document: entity_id '\\ud800'",
             _records_json_surrogate_entity_id, refused("400")),
        Case("records_json_lone_surrogate_labels", "JSON record document: a record label '\\udfff'",
             _records_json_surrogate_labels, refused("400")),
        Case("records_json_lone_surrogate_batch_fields", "JSON record document: provider, labels '\\ud800'",
             _records_json_surrogate_batch_fields, refused("400")),
        Case("csv_object_nul", "CSV object with a NUL byte in a cell (valid)",
             _csv_object_nul, stored),
        Case("json_object_nul", "JSON object with a raw NUL byte in a string",
             _json_object_nul, refused("400", "invalid_json")),
        Case("records_csv_nul", "CSV record document with a NUL byte in a payload cell (valid)",
             _records_csv_nul, Expect(("201",), None, 1, one_record)),
        # -- deep JSON, JSON caps, huge and non-finite numbers -----------------------------------------
        Case("json_object_deep", "JSON object nested 100000 deep",
             _json_object_deep, refused("400", "json_too_deep")),
        Case("ndjson_object_deep", "NDJSON object with a line nested 100000 deep",
             _ndjson_object_deep, refused("400", "json_too_deep")),
        Case("records_json_deep", "JSON record document: a payload nested 100000 deep",
             _records_json_deep, refused("400", "malformed_document")),
        Case("records_ndjson_deep", "NDJSON record document: a payload nested 100000 deep",
             _records_ndjson_deep, refused("400", "malformed_document")),
        Case("json_object_too_many_keys", "JSON object with 10001 keys",
             _json_too_many_keys, refused("400", "json_too_many_keys")),
        Case("json_object_key_too_long", "JSON object with a 2000-character key",
             _json_key_too_long, refused("400", "json_key_too_long")),
        Case("ndjson_object_line_too_long", "NDJSON object with a 1 MiB line",
             _ndjson_line_too_long, refused("400", "line_too_long")),
        Case("geojson_too_many_positions", "GeoJSON MultiPoint of 1000001 positions",
             _geojson_too_many_positions, refused("400", "too_many_positions")),
        Case("json_object_huge_number", "JSON object with a 100001-digit number",
             _json_object_huge_number, refused("400", "json_number_too_long")),
        Case("json_object_nan_infinity", "JSON object with NaN, Infinity and -Infinity",
             _json_object_nan_infinity, refused("400", "invalid_json")),
        Case("json_object_overflowing_exponent", "JSON object with 1e999999 and 1e-999999",
             _json_object_overflowing_exponent, refused("400", "invalid_json")),
        Case("records_json_nan_location", "JSON record document with lat NaN and lon Infinity",
             _records_json_nan_location, refused("400", "malformed_document")),
        Case("records_csv_nan_location", "CSV record document with lat NaN and lon Infinity",
             _records_csv_nan_location, refused("400", "malformed_document")),
        Case("records_json_huge_numbers", "JSON record document: lat 1e999999, a 10001-digit lon",
             _records_json_huge_numbers, refused("400", "malformed_document")),
        # -- times without a UTC form -----------------------------------------------------------------
        Case("query_observed_at_overflow", f"object upload: observed_at {TIME_BEFORE_YEAR_1}",
             _query_observed_at_overflow, Expect(("400", "422"))),
        Case("search_window_overflow", f"search since {TIME_BEFORE_YEAR_1} until {TIME_AFTER_YEAR_9999}",
             _search_window_overflow, Expect(("400", "422"))),
        Case("records_json_observed_at_overflow", f"JSON record document: observed_at {TIME_AFTER_YEAR_9999}",
             _records_json_observed_at_overflow, refused("400")),
        # -- oversize records and documents, label and metadata overflow ------------------------------
        Case("records_json_oversize_record", "JSON record document: one of three records is 1.5 MB",
             _records_json_oversize_record, Expect(("207",), None, 1, oversize, 64 * 1024, 1)),
        Case("json_object_63mib", "a 63 MiB JSON document",
             _json_object_63mib, refused("413", "json_too_large")),
        Case("records_63mib_declared", "a record document declaring 63 MiB",
             _records_63mib, refused("413", "body_too_large")),
        Case("labels_ten_250", "ten labels of 250 characters (valid)",
             _labels_ten_250, stored),
        Case("labels_overflow", "33 labels of 256 characters",
             _labels_overflow, refused("400", "validation_failed")),
        Case("multipart_metadata_2mib", "a multipart metadata part of 2 MiB",
             _multipart_huge_metadata, refused("413", "metadata_too_large")),
        # -- images -------------------------------------------------------------------------------------
        Case("png_lying_chunk_length", "PNG whose IHDR length says 2 GiB",
             _png_lying_chunk, refused("400", "corrupt_image")),
        Case("png_huge_dimensions", "PNG declaring 100000 x 100000 pixels",
             _png_huge, refused("400", "image_too_large")),
        Case("jpeg_huge_dimensions", "JPEG declaring 65535 x 65535 pixels",
             _jpeg_huge, refused("400", "image_too_large")),
        Case("tiff_ifd_loop", "TIFF whose IFD points at itself",
             _tiff_loop, refused("400", "corrupt_image")),
        Case("jpeg_segment_past_end", "JPEG whose APP1 segment runs past the end",
             _jpeg_past_end, refused("400", "corrupt_image")),
        # -- multipart ----------------------------------------------------------------------------------
        Case("multipart_no_boundary", "multipart/form-data without a boundary",
             _multipart_no_boundary, refused("422", "invalid_request")),
        Case("multipart_file_before_metadata", "multipart with the file part first",
             _multipart_file_first, refused("422", "invalid_request")),
        Case("multipart_nested", "multipart whose file part is itself multipart",
             _multipart_nested, refused("415", "unsupported_media_type")),
        # -- ranges and page tokens (on the seeded objects) ---------------------------------------------
        Case("range_many", "GET with 2000 ranges (ignored: the whole object)",
             _range_many, Expect(("200",)), reads_seed=True),
        Case("range_malformed", "GET with Range bytes=--5,x- (ignored)",
             _range_malformed, Expect(("200",)), reads_seed=True),
        Case("range_huge_numbers", "GET with a 40-digit range start (ignored)",
             _range_huge_numbers, Expect(("200",)), reads_seed=True),
        Case("range_past_end", "GET with Range bytes=2000000-",
             _range_past_end, refused("416", "range_not_satisfiable"), reads_seed=True),
        Case("page_token_tampered", "search with one character of the page token changed",
             _page_token_tampered, refused("400", "invalid_page_token"), reads_seed=True),
        Case("page_token_other_search", "search with the page token of another search",
             _page_token_other_search, refused("400", "invalid_page_token"), reads_seed=True),
        Case("page_token_garbage", "search with 2048 characters of made-up page token",
             _page_token_garbage, refused("400", "invalid_page_token"), reads_seed=True),
        # -- heads and framing --------------------------------------------------------------------------
        Case("header_overlong", "a 40000-byte header",
             _header_overlong, refused("431", "headers_too_large")),
        Case("headers_many", "2000 headers",
             _headers_many, refused("431", "headers_too_large")),
        Case("query_string_overlong", "a 40000-character query string",
             _query_overlong, refused("431", "headers_too_large")),
        Case("content_length_negative", "Content-Length: -1",
             _content_length_negative, refused("400")),
        Case("content_length_twice", "two different Content-Length headers",
             _content_length_twice, refused("400")),
        Case("content_length_and_chunked", "Content-Length with Transfer-Encoding: chunked",
             _content_length_and_chunked, refused("400")),
        # -- slow clients -------------------------------------------------------------------------------
        Case("slow_loris_body", "a body sent one byte a second",
             _slow_loris_body, refused("408", "body_timeout"), slow=True),
        Case("slow_loris_headers", "request headers sent one byte a second",
             _slow_loris_headers, refused("408", "header_timeout"), slow=True),
        # -- gRPC ---------------------------------------------------------------------------------------
        Case("grpc_csv_regex_bait", "IngestObject: CSV with bait in each number syntax (valid)",
             _grpc_csv_bait, Expect(("OK",), None, 1, {"stored": 1})),
        Case("grpc_metadata_regex_bait", "IngestObject: bait in data_type, entity_id and provider",
             _grpc_metadata_bait, refused(invalid, "validation_failed")),
        Case("grpc_csv_wide", "IngestObject: CSV with 30000 columns",
             _grpc_csv_wide, refused(invalid, "too_many_columns")),
        Case("grpc_json_deep", "IngestObject: JSON nested 100000 deep",
             _grpc_json_deep, refused(invalid, "json_too_deep")),
        Case("grpc_json_63mib", "IngestObject: a 63 MiB JSON document",
             _grpc_json_63mib, refused(invalid, "json_too_large")),
        Case("grpc_png_huge_dimensions", "IngestObject: PNG declaring 100000 x 100000 pixels",
             _grpc_png_huge, refused(invalid, "image_too_large")),
        Case("grpc_tiff_ifd_loop", "IngestObject: TIFF whose IFD points at itself",
             _grpc_tiff_loop, refused(invalid, "corrupt_image")),
        Case("grpc_labels_ten_250", "IngestObject: ten labels of 250 characters (valid)",
             _grpc_labels_ten_250, Expect(("OK",), None, 1, {"stored": 1})),
        Case("grpc_chunk_before_header", "IngestObject: a content chunk before the header",
             _grpc_chunk_before_header, refused(invalid, "missing_header")),
        Case("grpc_observed_at_bad_nanos", "IngestObject: observed_at with nanos -5",
             _grpc_object_nanos, refused(invalid)),
        Case("grpc_validity_out_of_range", "IngestObject: validity.start 2^62 s (past year 9999)",
             _grpc_validity_out_of_range, refused(invalid, "validation_failed")),
        Case("grpc_records_oversize_record", "IngestRecords: one of three records is 1.5 MB",
             _grpc_records_oversize, Expect(("OK",), None, 1, oversize, 64 * 1024, 1)),
        Case("grpc_records_one_nan_altitude", "IngestRecords: one of two records has altitude NaN",
             _grpc_records_one_nan_altitude,
             Expect(("OK",), None, 1, {"stored": 1, "record": 1, "dead_letter": 1}, None, 1)),
        Case("grpc_records_nan_location", "IngestRecords: lat NaN, lon Infinity",
             _grpc_records_nan_location, refused(invalid, "validation_failed")),
        Case("grpc_records_nan_payload", "IngestRecords: NaN and Infinity payload values",
             _grpc_records_nan_payload, refused(invalid)),
        Case("grpc_records_bad_nanos", "IngestRecords: observed_at with nanos 2e9",
             _grpc_records_nanos, refused(invalid)),
        Case("grpc_protobuf_too_deep", "IngestRecords: a payload Struct nested 200 deep (raw bytes)",
             _grpc_protobuf_too_deep, refused(invalid, "undecodable")),
        Case("grpc_protobuf_bad_utf8", "IngestRecords: an entity_id that is not UTF-8 (raw bytes)",
             _grpc_protobuf_bad_utf8, refused(invalid, "undecodable")),
        Case("grpc_record_document_wide", "IngestRecordDocument: CSV with 30000 columns",
             _grpc_document_wide, refused(invalid, "too_many_columns")),
        Case("grpc_record_document_deep", "IngestRecordDocument: NDJSON nested 100000 deep",
             _grpc_document_deep, refused(invalid, "malformed_document")),
        Case("grpc_page_token_tampered", "SearchObjects: a page token with one character changed",
             _grpc_page_token_tampered, refused(invalid, "invalid_page_token"), reads_seed=True),
        Case("grpc_get_past_end", "GetObject: offset 2^40 past the end, length 2^63",
             _grpc_get_past_end, refused("OUT_OF_RANGE", "range_not_satisfiable"), reads_seed=True),
        # -- the 5000 rows x 700 columns: over the record document cell cap -------------------
        Case("records_csv_long_and_wide", "CSV record document, 5000 rows x 700 columns (3.5 million cells)",
             _records_csv_long_and_wide, refused("400", "too_many_cells")),
    ]
    # fmt: on


CASES: tuple[Case, ...] = tuple(_build())
BY_NAME: dict[str, Case] = {case.name: case for case in CASES}


def data_type_for(index: int, run: str | None = None) -> str:
    """A data type of the case at `index`, unique to this run."""
    return f"sensor.hostile_{index}_{run or uuid.uuid4().hex[:8]}"


# -- seeding the read cases ------------------------------------------------------------------------


def make_seed(target: Target, data_type: str | None = None) -> Seed:
    """Two small objects under a fresh data type, and a page token of a search for them."""
    data_type = data_type or f"sensor.hostile_seed_{uuid.uuid4().hex[:8]}"
    found: list[Outcome] = [
        upload(
            target,
            data_type,
            json.dumps({"pm10": 17.5 + n, "station": f"s-{n}"}).encode(),
            "application/json",
        )
        for n in range(2)
    ]
    if any(o.status != "201" for o in found):
        raise RuntimeError(f"seeding failed: {[str(o) for o in found]}")
    first = found[0].body
    page = rest(target, "GET", "/v1/objects", params={"data_type": data_type, "page_size": 1})
    token = page.body.get("next_page_token") if isinstance(page.body, dict) else None
    if page.status != "200" or not token:
        raise RuntimeError(f"seeding failed: no page token ({page})")
    return Seed(data_type, first["id"], int(first["size"]), token)


def event_kind(ce_type: str) -> str:
    return EVENT_KINDS.get(ce_type, ce_type)
