"""Benchmarks of the Pantheon paths against the raw backends, in one run.

Each scenario measures Pantheon's path and the raw backend doing the same
work on the same machine, and reports the ratio: absolute numbers drift on a
shared machine, ratios much less. The raw run brackets Pantheon's (once
before, once after; the ratio is against their mean, both are in
`raw_runs`), so a drift during the scenario weighs on both sides alike. Paths: the gRPC
services and the REST gateway, against one minio-py PUT (objects) and raw
confluent-kafka produce plus one PUT per batch (records); small objects from
16 and 64 concurrent clients (REST and gRPC) against as many threads of raw
SSE PUTs; plus the latency of single small REST ingests at a fixed rate,
beside raw small PUTs at the same rate. The small-object rows also measure
the design floor (design_floor.py): the backend requests a small ingest
makes, issued by the benchmark itself, with no Pantheon code in the way;
the object rows, their transport floor (transport_floor.py): the raw PUT
through the TLS hops of each path, hashed as the services hash it. Peak
RSS of the services and the gateway is read from /proc (VmHWM, reset
before the run).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import ssl
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import urllib3
from confluent_kafka import Producer
from minio import Minio
from minio.deleteobjects import DeleteObject
from pantheon_api.events.v1 import events_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as pb_grpc
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.config import ClientIdentity, KafkaSettings
from pantheon.devstack.environment import environment
from pantheon.devstack.settings import Settings
from pantheon.events.cloudevents import headers_for
from pantheon.metadata.ulid import new_ulid
from pantheon.server import secure_channel
from pantheon.storage import minio_calls

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu_share
import search_bench
import transport_floor
from design_floor import DesignFloor

MiB = 2**20


@dataclass
class Scenario:
    name: str
    unit: str
    throughput: float
    raw_throughput: float
    ratio: float
    #: Milliseconds of CPU per operation by component (cpu_share), Pantheon's path and the raw one.
    cpu_ms: dict[str, float] | None = None
    raw_cpu_ms: dict[str, float] | None = None
    #: The raw throughput before and after Pantheon's runs (`raw_throughput` is their mean).
    raw_runs: tuple[float, float] = (0.0, 0.0)


def tiff(size: int) -> bytes:
    """A valid greyscale TIFF of about `size` bytes (one strip of noise)."""
    pixels = size - 8 - 2 - 8 * 12 - 4
    tags = [(256, 1024), (257, pixels // 1024), (258, 8), (259, 1), (262, 1), (273, 8 + 2 + 8 * 12 + 4)]
    tags += [(278, pixels // 1024), (279, pixels)]
    ifd = (
        struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", t, 4, 1, v) for t, v in tags) + b"\0" * 4
    )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + os.urandom(pixels)


def records(n: int, batch: int) -> list[pb.Record]:
    start = datetime.now(UTC) - timedelta(hours=1)
    found = []
    for i in range(n):
        r = pb.Record(entity_id=f"bench-{i % 50}", location=md.GeoPoint(latitude=48.2, longitude=16.37))
        r.observed_at.FromDatetime(start + timedelta(milliseconds=batch * 1000 + i))
        r.payload.update({"temperature_c": 20.0 + i % 10, "humidity": 55})
        found.append(r)
    return found


def _mib_per_s(size: int, seconds: float) -> float:
    return size / MiB / seconds


class Bench:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.minio = self.s3_client()
        # The services' own producer user and settings: the same rights.
        self.kafka = KafkaSettings.from_env(env)

    def s3_client(self, connections: int = 8, client: type[Minio] = Minio) -> Minio:
        """`client` (minio-py's, or the services' own) with the services' S3 key."""
        context = ssl.create_default_context(cafile=self.env["PANTHEON_CA_FILE"])
        return client(
            _address(self.env),
            access_key=self.env["PANTHEON_S3_ACCESS_KEY"],
            secret_key=self.env["PANTHEON_S3_SECRET_KEY"],
            secure=True,
            http_client=urllib3.PoolManager(
                ssl_context=context, maxsize=connections, timeout=urllib3.Timeout(connect=2.0, read=60.0)
            ),
        )

    def design_floor(self, connections: int) -> DesignFloor:
        return DesignFloor(self.s3_client(connections, minio_calls.Client), self.kafka)

    def rest(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.env["PANTHEON_GATEWAY_URL"],
            verify=ssl.create_default_context(cafile=self.env["PANTHEON_CA_FILE"]),
            headers={"Authorization": f"Bearer {self.env['PANTHEON_API_KEY']}"},
            timeout=600,
        )

    # -- large object -------------------------------------------------------

    async def large_object(self, size: int) -> list[Scenario]:
        """One object of `size` bytes: gRPC, REST, and a raw minio-py PUT."""
        data = tiff(size)
        observed = datetime.now(UTC) - timedelta(minutes=5)
        meta = md.Metadata(
            data_type="imagery.satellite",
            source="demo-city",
            location=md.GeoPoint(latitude=37.98, longitude=23.72),
        )
        meta.observed_at.FromDatetime(observed)

        async def stream() -> AsyncIterator[pb.IngestObjectRequest]:
            yield pb.IngestObjectRequest(
                header=pb.ObjectHeader(metadata=meta, declared_media_type="image/tiff")
            )
            view = memoryview(data)
            for start in range(0, len(data), MiB):
                yield pb.IngestObjectRequest(chunk=bytes(view[start : start + MiB]))

        def raw_put() -> float:
            started = time.perf_counter()
            self.minio.put_object(
                "pantheon-imagery",
                f"bench/raw/{new_ulid()}.tif",
                io.BytesIO(data),
                len(data),
                content_type="image/tiff",
            )
            return _mib_per_s(size, time.perf_counter() - started)

        raw_before = await asyncio.to_thread(raw_put)
        floor_before = await asyncio.to_thread(self._transport_floor, data)
        channel = secure_channel(
            self.env["PANTHEON_GRPC_TARGET"], self.env["PANTHEON_CA_FILE"], ClientIdentity.from_env(self.env)
        )
        async with channel:
            stub = pb_grpc.IngestionServiceStub(channel)
            started = time.perf_counter()
            await stub.IngestObject(stream(), timeout=600)
            grpc_s = time.perf_counter() - started

        def body() -> Iterator[bytes]:
            view = memoryview(data)
            for start in range(0, len(data), MiB):
                yield bytes(view[start : start + MiB])

        params = {
            "data_type": "imagery.satellite",
            "lat": 37.98,
            "lon": 23.72,
            "observed_at": _rfc3339(observed),
        }
        with self.rest() as client:
            started = time.perf_counter()
            response = client.post(
                "/v1/objects", params=params, content=body(), headers={"Content-Type": "image/tiff"}
            )
            rest_s = time.perf_counter() - started
            response.raise_for_status()

        floor_after = await asyncio.to_thread(self._transport_floor, data)
        raw = (raw_before, await asyncio.to_thread(raw_put))
        name = f"object_{size // MiB}MiB"
        # Each floor against its own bracket: the mean of its runs before and after.
        floor = {hops: (floor_before[hops] + floor_after[hops]) / 2 for hops in (1, 2)}
        return [
            _scenario(f"grpc_{name}", "MiB/s", _mib_per_s(size, grpc_s), raw),
            _scenario(f"rest_{name}", "MiB/s", _mib_per_s(size, rest_s), raw),
            _scenario(f"floor_grpc_{name}", "MiB/s", floor[1], raw),
            _scenario(f"floor_rest_{name}", "MiB/s", floor[2], raw),
        ]

    def _transport_floor(self, data: bytes) -> dict[int, float]:
        """MiB/s of the services' own upload of `data` through one TLS relay
        (in place of gRPC's hop) and through two (REST's), keyed by hops."""
        env = self.env
        certs = (Path(env["PANTHEON_TLS_CERT_FILE"]), Path(env["PANTHEON_TLS_KEY_FILE"]))
        speeds = {}
        with transport_floor.Relays(_address(env), *certs, Path(env["PANTHEON_CA_FILE"])) as relays:
            for hops in (1, 2):
                started = time.perf_counter()
                transport_floor.upload(env, relays.endpoint(hops), data, MiB)
                speeds[hops] = _mib_per_s(len(data), time.perf_counter() - started)
        return speeds

    # -- record batches -----------------------------------------------------

    async def record_batches(self, batches: int, size: int) -> list[Scenario]:
        """Batches of `size` records: gRPC, REST (NDJSON), and raw produce + PUT."""
        channel = secure_channel(
            self.env["PANTHEON_GRPC_TARGET"], self.env["PANTHEON_CA_FILE"], ClientIdentity.from_env(self.env)
        )
        prepared = [records(size, b) for b in range(batches)]
        total = batches * size
        raw_before = total / await asyncio.to_thread(self._raw_batches, prepared)
        async with channel:
            stub = pb_grpc.IngestionServiceStub(channel)
            started = time.perf_counter()
            for batch in prepared:
                await stub.IngestRecords(
                    pb.IngestRecordsRequest(
                        data_type="sensor.temperature", source="demo-city", records=batch
                    ),
                    timeout=60,
                )
            grpc_s = time.perf_counter() - started

        bodies = [_ndjson(records(size, batches + b)) for b in range(batches)]
        with self.rest() as client:
            started = time.perf_counter()
            for body in bodies:
                response = client.post(
                    "/v1/records",
                    params={"data_type": "sensor.temperature"},
                    content=body,
                    headers={"Content-Type": "application/x-ndjson"},
                )
                response.raise_for_status()
            rest_s = time.perf_counter() - started

        raw = (raw_before, total / await asyncio.to_thread(self._raw_batches, prepared))
        name = f"records_{size}_per_batch"
        return [
            _scenario(f"grpc_{name}", "records/s", total / grpc_s, raw),
            _scenario(f"rest_{name}", "records/s", total / rest_s, raw),
        ]

    def _raw_batches(self, prepared: list[list[pb.Record]]) -> float:
        """The same records as raw protobuf events plus one raw PUT per batch."""
        config = self.kafka.client_config()
        producer = Producer({**config, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
        topic = self.kafka.records_topic
        started = time.perf_counter()
        for batch in prepared:
            lines = []
            for r in batch:
                event_id = new_ulid()
                meta = md.Metadata(
                    id=event_id, data_type="sensor.temperature", source="bench-raw", entity_id=r.entity_id
                )
                meta.location.CopyFrom(r.location)
                meta.observed_at.CopyFrom(r.observed_at)
                payload = events_pb2.RecordIngested(event_id=event_id, metadata=meta, payload=r.payload)
                producer.produce(
                    topic,
                    value=payload.SerializeToString(),
                    key=f"bench-raw/{r.entity_id}".encode(),
                    headers=headers_for(payload, event_id=event_id, source="bench-raw"),
                )
                producer.poll(0)
                lines.append(payload.SerializeToString())
            body = b"\n".join(lines)
            self.minio.put_object(
                "pantheon-sensor", f"bench/raw/{new_ulid()}.ndjson", io.BytesIO(body), len(body)
            )
            producer.flush(60)
        return time.perf_counter() - started

    # -- small objects from many clients at once ------------------------------

    async def small_concurrent(self, clients: int, count: int) -> list[Scenario]:
        """`count` small objects from `clients` concurrent clients: REST, gRPC, and raw SSE PUTs
        from as many threads (each with its own connection)."""
        per_client = max(1, count // clients)
        total = per_client * clients

        def rest_client(c: int) -> None:
            with self.rest() as client:
                for i in range(per_client):
                    while True:
                        response = _small_ingest(client, f"bench-{c}", i)
                        if response.status_code != 429:  # the key's rate limit: wait as told
                            break
                        time.sleep(float(response.headers.get("Retry-After", "1")))
                    response.raise_for_status()

        raw_client = self.s3_client(clients)

        def raw_client_puts(c: int) -> None:
            for i in range(per_client):
                data = b'{"pm10": %d}' % i
                raw_client.put_object(
                    "pantheon-sensor", f"bench/raw/{new_ulid()}.json", io.BytesIO(data), len(data)
                )

        def raw_run() -> tuple[float, dict[str, float]]:
            before, started = cpu_share.snapshot(stack), time.perf_counter()
            with ThreadPoolExecutor(max_workers=clients) as pool:
                list(pool.map(raw_client_puts, range(clients)))
            seconds = time.perf_counter() - started
            return total / seconds, cpu_share.per_operation(before, cpu_share.settled(stack), total)

        stack = Settings.from_env()
        raw_before, raw_cpu_before = raw_run()
        before, started = cpu_share.snapshot(stack), time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            list(pool.map(rest_client, range(clients)))
        rest_s = time.perf_counter() - started
        rest_cpu = cpu_share.per_operation(before, cpu_share.settled(stack), total)

        channel = secure_channel(
            self.env["PANTHEON_GRPC_TARGET"], self.env["PANTHEON_CA_FILE"], ClientIdentity.from_env(self.env)
        )

        async def grpc_client(stub: pb_grpc.IngestionServiceStub, c: int) -> None:
            for i in range(per_client):
                meta = md.Metadata(
                    data_type="sensor.air_quality",
                    source="demo-city",
                    entity_id=f"bench-{c}",
                    location=md.GeoPoint(latitude=48.2, longitude=16.37),
                )
                meta.observed_at.FromDatetime(datetime.now(UTC) - timedelta(seconds=1))
                header = pb.ObjectHeader(metadata=meta, declared_media_type="application/json")
                stream = [
                    pb.IngestObjectRequest(header=header),
                    pb.IngestObjectRequest(chunk=b'{"pm10": %d}' % i),
                ]
                await stub.IngestObject(iter(stream), timeout=60)

        async with channel:
            stub = pb_grpc.IngestionServiceStub(channel)
            before, started = cpu_share.snapshot(stack), time.perf_counter()
            await asyncio.gather(*(grpc_client(stub, c) for c in range(clients)))
            grpc_s = time.perf_counter() - started
            grpc_cpu = cpu_share.per_operation(before, cpu_share.settled(stack), total)

        floor = self.design_floor(clients)
        try:
            floor.warm(clients)
            before, started = cpu_share.snapshot(stack), time.perf_counter()
            with ThreadPoolExecutor(max_workers=clients) as pool:
                list(pool.map(floor.ingest, range(total)))
            floor_s = time.perf_counter() - started
            floor_cpu = cpu_share.per_operation(before, cpu_share.settled(stack), total)
        finally:
            floor.close()

        raw_after, raw_cpu_after = raw_run()
        raw, raw_cpu = (raw_before, raw_after), cpu_share.mean(raw_cpu_before, raw_cpu_after)
        return [
            _scenario(f"rest_small_x{clients}", "objects/s", total / rest_s, raw, rest_cpu, raw_cpu),
            _scenario(f"grpc_small_x{clients}", "objects/s", total / grpc_s, raw, grpc_cpu, raw_cpu),
            _scenario(f"floor_small_x{clients}", "objects/s", total / floor_s, raw, floor_cpu, raw_cpu),
        ]

    # -- small-object latency at a fixed rate ---------------------------------

    def small_latency(self, count: int, rate_per_s: float) -> list[dict[str, Any]]:
        """p50/p99/p99.9 of single small REST ingests started at `rate_per_s`,
        of the design floor's requests for as many ingests, and of raw minio-py
        PUTs of the same documents at the same rate."""
        with self.rest() as client:

            def ingest(i: int) -> None:
                _small_ingest(client, f"bench-{i % 20}", i).raise_for_status()

            pantheon = _open_loop(count, rate_per_s, ingest)

        floor = self.design_floor(_OPEN_LOOP_THREADS)
        try:
            floor.warm(_OPEN_LOOP_THREADS)
            design = _open_loop(count, rate_per_s, floor.ingest)
        finally:
            floor.close()

        def put(i: int) -> None:
            data = b'{"pm10": %d}' % i
            self.minio.put_object(
                "pantheon-sensor", f"bench/raw/{new_ulid()}.json", io.BytesIO(data), len(data)
            )

        return [
            {"path": "rest_small_object", **pantheon},
            {"path": "floor_small_ingest", **design},
            {"path": "raw_small_put", **_open_loop(count, rate_per_s, put)},
        ]


def _small_ingest(client: httpx.Client, entity: str, n: int) -> httpx.Response:
    """One small JSON document through the REST edge."""
    return client.post(
        "/v1/objects",
        params={
            "data_type": "sensor.air_quality",
            "lat": 48.2,
            "lon": 16.37,
            "observed_at": _rfc3339(datetime.now(UTC) - timedelta(seconds=1)),
            "entity_id": entity,
        },
        content=b'{"pm10": %d}' % n,
        headers={"Content-Type": "application/json"},
    )


#: Calls in flight at once in an open-loop run, at most.
_OPEN_LOOP_THREADS = 16


def _open_loop(count: int, rate_per_s: float, call: Callable[[int], None]) -> dict[str, float]:
    """p50/p99/p99.9 of `call(i)` for i < count, started at `rate_per_s`.

    Open loop: call i is due at start + i/rate whatever the others do, and its
    latency counts from when it was due, so a slow server cannot hide behind
    a slow client.
    """
    with ThreadPoolExecutor(max_workers=_OPEN_LOOP_THREADS) as pool:
        start = time.perf_counter() + 0.5

        def one(i: int) -> float:
            due = start + i / rate_per_s
            time.sleep(max(0.0, due - time.perf_counter()))
            call(i)
            return (time.perf_counter() - due) * 1000

        latencies = sorted(pool.map(one, range(count)))
    return {
        "rate_per_s": rate_per_s,
        "count": count,
        "p50": round(latencies[len(latencies) // 2], 1),
        "p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        "p999": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.999))], 1),
    }


#: Where the raw PUTs and the floors write, in every bucket they write to
#: (the search benchmark's sets and markers, under v1/ and bench/search/, stay).
WRITTEN = ("bench/raw/", "bench/floor/")


def remove_written(env: Mapping[str, str]) -> None:
    """Delete what the raw PUTs and the floors wrote: a run leaves over a GiB, and
    nothing of it is anybody's data. With the stack's root key (the storage key
    may not delete); a failure is reported, not raised, as the results stand."""
    try:
        root = Minio(
            _address(env),
            access_key=env["MINIO_ROOT_USER"],
            secret_key=env["MINIO_ROOT_PASSWORD"],
            secure=True,
            http_client=urllib3.PoolManager(
                ssl_context=ssl.create_default_context(cafile=env["PANTHEON_CA_FILE"])
            ),
        )
        for bucket in ("pantheon-imagery", "pantheon-sensor", "pantheon-index"):
            for prefix in WRITTEN:
                listed = root.list_objects(bucket, prefix=prefix, recursive=True)
                for error in root.remove_objects(bucket, (DeleteObject(o.object_name) for o in listed)):
                    print(f"bench: could not remove {bucket}/{error.name}: {error.message}", file=sys.stderr)
    except Exception as exc:  # cleaning up is best effort: the results stand
        print(f"bench: could not remove what the run wrote: {exc}", file=sys.stderr)


def _address(env: Mapping[str, str]) -> str:
    """host:port of the S3 endpoint."""
    return env["PANTHEON_S3_ENDPOINT"].removeprefix("https://")


def _rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ndjson(batch: list[pb.Record]) -> bytes:
    lines = []
    for r in batch:
        row = {
            "entity_id": r.entity_id,
            "observed_at": r.observed_at.ToJsonString(),
            "location": {"lat": r.location.latitude, "lon": r.location.longitude},
            "payload": dict(r.payload),
        }
        lines.append(json.dumps(row))
    return ("\n".join(lines) + "\n").encode()


def _scenario(
    name: str,
    unit: str,
    ours: float,
    raw_runs: tuple[float, float],
    cpu_ms: dict[str, float] | None = None,
    raw_cpu_ms: dict[str, float] | None = None,
) -> Scenario:
    """`ours` against the mean of the raw runs before and after it."""
    raw = sum(raw_runs) / len(raw_runs)
    runs = (round(raw_runs[0], 1), round(raw_runs[1], 1))
    return Scenario(name, unit, round(ours, 1), round(raw, 1), round(ours / raw, 3), cpu_ms, raw_cpu_ms, runs)


def _pid(component: str) -> int:
    """The first replica's pid (the HA profile has two of each)."""
    settings = Settings.from_env()
    replicas = settings.service_replicas if component == "services" else settings.gateway_replicas
    return int(replicas[0].pidfile.read_text())


def reset_peak(pid: int) -> None:
    # "5" resets VmHWM (peak RSS) to the current RSS (Linux >= 4.0).
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM")


async def run(quick: bool, only: str | None = None, rates: Sequence[float] = (100.0,)) -> dict[str, Any]:
    env = {**os.environ, **environment()}
    bench = Bench(env)
    if only == "search":  # its own report: latency by data size, not throughput
        return {
            "profile": Settings.from_env().profile,
            "search": await search_bench.run(env, bench.minio, quick),
        }
    pids = {name: _pid(name) for name in ("services", "gateway")}
    for pid in pids.values():
        reset_peak(pid)
    scenarios: list[Scenario] = []
    latency: list[dict[str, Any]] = []
    try:
        if only in (None, "object"):
            scenarios += await bench.large_object((64 if quick else 256) * MiB)
        if only in (None, "records"):
            scenarios += await bench.record_batches(3 if quick else 20, 1000)
        if only in (None, "concurrency"):
            for clients in (16, 64):
                scenarios += await bench.small_concurrent(clients, (128 if quick else 512))
        if only in (None, "latency"):
            for rate in rates:
                # Enough calls for a p99.9 that is not the slowest call alone.
                latency += await asyncio.to_thread(bench.small_latency, 100 if quick else 2000, rate)
    finally:
        await asyncio.to_thread(remove_written, env)
    return {
        "profile": Settings.from_env().profile,
        "scenarios": [asdict(s) for s in scenarios],
        "latency_ms": latency,
        "peak_rss_mib": {name: peak_rss_mib(pid) for name, pid in pids.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes; finishes in under a minute")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--only", choices=["object", "records", "concurrency", "latency", "search"], help="run one scenario"
    )
    parser.add_argument(
        "--rate",
        type=float,
        action="append",
        help="small ingests a second in the latency run (repeatable; default 100 and 500)",
    )
    parser.add_argument("--ha", action="store_true", help="the HA profile (scripts/bench starts its stack)")
    args = parser.parse_args()
    rates = args.rate or ([100.0] if args.quick else [100.0, 500.0])
    result = asyncio.run(run(args.quick, args.only, rates))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"profile: {Settings.from_env().profile}")
    if "search" in result:
        search_bench.print_table(result["search"])
        return 0
    print(f"{'scenario':<30} {'unit':<10} {'measured':>10} {'raw':>10} {'ratio':>7}   raw before / after")
    for s in result["scenarios"]:
        print(
            f"{s['name']:<30} {s['unit']:<10} {s['throughput']:>10} {s['raw_throughput']:>10} {s['ratio']:>7}"
            f"   {s['raw_runs'][0]} / {s['raw_runs'][1]}"
        )
    _print_cpu(result["scenarios"])
    for figures in result["latency_ms"]:
        print(
            f"{figures['path']}: p50 {figures['p50']} ms, p99 {figures['p99']} ms, p99.9 {figures['p999']} ms"
            f" at {figures['rate_per_s']:.0f} requests/s ({figures['count']} calls)"
        )
    for process, mib in result["peak_rss_mib"].items():
        print(f"peak RSS {process}: {mib} MiB")
    return 0


def _print_cpu(scenarios: list[dict[str, Any]]) -> None:
    """CPU per operation by component, Pantheon's path beside the raw one."""
    metered = [s for s in scenarios if s["cpu_ms"]]
    if not metered:
        return
    print(f"cpu ms per object{'':<13}" + "".join(f"{c:>10}" for c in (*cpu_share.COMPONENTS, "total")))
    for s in metered:
        for label, cpu in ((s["name"], s["cpu_ms"]), ("  raw", s["raw_cpu_ms"])):
            print(f"{label:<30}" + "".join(f"{v:>10.2f}" for v in (*cpu.values(), sum(cpu.values()))))


if __name__ == "__main__":
    sys.exit(main())
