"""Benchmarks of the Pantheon paths against the raw backends, in one run.

Each scenario measures Pantheon's path and the raw backend doing the same
work on the same machine, back to back, and reports the ratio: absolute
numbers drift on a shared machine, ratios much less. Peak RSS of the
services process is read from /proc (VmHWM, reset before the run).
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
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import urllib3
from confluent_kafka import Producer
from minio import Minio
from pantheon_api.events.v1 import events_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as pb_grpc
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.devstack import stack
from pantheon.devstack.paths import StackPaths
from pantheon.events.cloudevents import headers_for
from pantheon.metadata.ulid import new_ulid
from pantheon.server import secure_channel

MiB = 2**20


@dataclass
class Scenario:
    name: str
    unit: str
    throughput: float
    raw_throughput: float
    ratio: float


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
        context = ssl.create_default_context(cafile=env["PANTHEON_CA_FILE"])
        self.minio = Minio(
            env["PANTHEON_S3_ENDPOINT"].removeprefix("https://"),
            access_key=env["PANTHEON_S3_ACCESS_KEY"],
            secret_key=env["PANTHEON_S3_SECRET_KEY"],
            secure=True,
            http_client=urllib3.PoolManager(ssl_context=context, maxsize=8),
        )
        self.kafka_config = {
            "bootstrap.servers": env["PANTHEON_KAFKA_BOOTSTRAP"],
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": env["PANTHEON_KAFKA_USERNAME"],
            "sasl.password": env["PANTHEON_KAFKA_PASSWORD"],
            "ssl.ca.location": env["PANTHEON_CA_FILE"],
        }

    # -- large object -------------------------------------------------------

    async def large_object(self, size: int) -> Scenario:
        data = tiff(size)
        meta = md.Metadata(
            data_type="imagery.satellite",
            source="bench",
            location=md.GeoPoint(latitude=37.98, longitude=23.72),
        )
        meta.observed_at.FromDatetime(datetime.now(UTC) - timedelta(minutes=5))

        async def stream() -> AsyncIterator[pb.IngestObjectRequest]:
            yield pb.IngestObjectRequest(
                header=pb.ObjectHeader(metadata=meta, declared_media_type="image/tiff")
            )
            view = memoryview(data)
            for start in range(0, len(data), MiB):
                yield pb.IngestObjectRequest(chunk=bytes(view[start : start + MiB]))

        channel = secure_channel(self.env["PANTHEON_GRPC_TARGET"], self.env["PANTHEON_CA_FILE"])
        async with channel:
            stub = pb_grpc.IngestionServiceStub(channel)
            started = time.perf_counter()
            await stub.IngestObject(stream(), timeout=600)
            ours = time.perf_counter() - started

        started = time.perf_counter()
        await asyncio.to_thread(
            self.minio.put_object,
            "pantheon-imagery",
            f"bench/raw/{new_ulid()}.tif",
            io.BytesIO(data),
            len(data),
            content_type="image/tiff",
        )
        raw = time.perf_counter() - started
        return _scenario(f"object_{size // MiB}MiB", "MiB/s", _mib_per_s(size, ours), _mib_per_s(size, raw))

    # -- record batches -----------------------------------------------------

    async def record_batches(self, batches: int, size: int) -> Scenario:
        channel = secure_channel(self.env["PANTHEON_GRPC_TARGET"], self.env["PANTHEON_CA_FILE"])
        prepared = [records(size, b) for b in range(batches)]
        async with channel:
            stub = pb_grpc.IngestionServiceStub(channel)
            started = time.perf_counter()
            for batch in prepared:
                await stub.IngestRecords(
                    pb.IngestRecordsRequest(data_type="sensor.temperature", source="bench", records=batch),
                    timeout=60,
                )
            ours = time.perf_counter() - started
        raw = await asyncio.to_thread(self._raw_batches, prepared)
        total = batches * size
        return _scenario(f"records_{size}_per_batch", "records/s", total / ours, total / raw)

    def _raw_batches(self, prepared: list[list[pb.Record]]) -> float:
        """The same records as raw protobuf events plus one raw PUT per batch."""
        producer = Producer({**self.kafka_config, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
        topic = self.env.get("PANTHEON_RECORDS_TOPIC", "pantheon.records.v1")
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


def _scenario(name: str, unit: str, ours: float, raw: float) -> Scenario:
    return Scenario(name, unit, round(ours, 1), round(raw, 1), round(ours / raw, 3))


def _services_pid() -> int:
    return int(StackPaths.from_env().services_pidfile.read_text())


def reset_peak(pid: int) -> None:
    # "5" resets VmHWM (peak RSS) to the current RSS (Linux >= 4.0).
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM")


async def run(quick: bool, only: str | None = None) -> dict[str, Any]:
    env = {**os.environ, **stack.environment()}
    bench = Bench(env)
    pid = _services_pid()
    reset_peak(pid)
    steps: dict[str, Callable[[], Any]] = {
        "object": lambda: bench.large_object((64 if quick else 256) * MiB),
        "records": lambda: bench.record_batches(3 if quick else 20, 1000),
    }
    scenarios = [await step() for name, step in steps.items() if only in (None, name)]
    return {"scenarios": [asdict(s) for s in scenarios], "peak_rss_mib": {"services": peak_rss_mib(pid)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes; finishes in under a minute")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--only", choices=["object", "records"], help="run one scenario")
    args = parser.parse_args()
    result = asyncio.run(run(args.quick, args.only))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'scenario':<26} {'unit':<10} {'pantheon':>10} {'raw':>10} {'ratio':>7}")
    for s in result["scenarios"]:
        print(
            f"{s['name']:<26} {s['unit']:<10} {s['throughput']:>10} {s['raw_throughput']:>10} {s['ratio']:>7}"
        )
    for process, mib in result["peak_rss_mib"].items():
        print(f"peak RSS {process}: {mib} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
