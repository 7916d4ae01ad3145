"""Helpers for integration tests against the real stack: gRPC calls, and
watching Kafka for the events a test caused."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from confluent_kafka import Consumer, TopicPartition
from google.protobuf.message import Message
from minio import Minio
from pantheon_api.events.v1 import events_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as pb_grpc
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.config import ClientIdentity
from pantheon.events.cloudevents import decode, parse_headers
from pantheon.events.producer import Event
from pantheon.events.topics import DATA_STORED
from pantheon.metadata.ulid import new_ulid
from pantheon.server import secure_channel

#: The dev stack's port variables, in the order `private_stack_env` fills them.
PORT_VARIABLES = (
    "PANTHEON_KAFKA_PORT",
    "PANTHEON_KAFKA_CONTROLLER_PORT",
    "PANTHEON_MINIO_PORT",
    "PANTHEON_MINIO_CONSOLE_PORT",
    "PANTHEON_GRPC_PORT",
    "PANTHEON_GATEWAY_PORT",
    "PANTHEON_METRICS_PORT",
)


def free_ports(n: int) -> list[int]:
    """`n` TCP ports free on loopback right now."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def private_stack_env(state_dir: Path, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Environment for a second dev stack: its own state dir and free ports,
    so tests that kill backends never touch the shared stack."""
    ports = free_ports(len(PORT_VARIABLES))
    return {
        **base,
        "PANTHEON_STACK_DIR": str(state_dir),
        **{name: str(port) for name, port in zip(PORT_VARIABLES, ports, strict=True)},
    }


def unique_source() -> str:
    """A source name no other test uses, so every assertion can be scoped to it."""
    return f"test-{uuid.uuid4().hex[:12]}"


def metadata(source: str, data_type: str = "sensor.temperature", **fields: Any) -> md.Metadata:
    fields.setdefault("location", md.GeoPoint(latitude=48.2082, longitude=16.3738))
    m = md.Metadata(data_type=data_type, source=source, **fields)
    m.observed_at.FromDatetime(datetime.now(UTC) - timedelta(minutes=1))
    return m


def data_stored_event(source: str) -> Event:
    """A DataStored event about a made-up object of `source`, for event-library tests."""
    meta = metadata(source)
    meta.id = new_ulid()
    payload = events_pb2.DataStored(event_id=meta.id, metadata=meta)
    payload.object.bucket, payload.object.key = "pantheon-sensor", f"v1/x/{meta.id}"
    return Event(DATA_STORED.name, source, payload, meta.id, source, subject=meta.id)


def record(entity: str, t: datetime, lat: float = 48.2, lon: float = 16.37, **payload: Any) -> pb.Record:
    r = pb.Record(entity_id=entity, location=md.GeoPoint(latitude=lat, longitude=lon))
    r.observed_at.FromDatetime(t)
    r.payload.update(payload)
    return r


def ingest_stub(env: dict[str, str]) -> tuple[grpc.aio.Channel, pb_grpc.IngestionServiceAsyncStub]:
    channel = secure_channel(
        env["PANTHEON_GRPC_TARGET"], env["PANTHEON_CA_FILE"], ClientIdentity.from_env(env)
    )
    return channel, pb_grpc.IngestionServiceStub(channel)  # type: ignore[return-value]


async def object_requests(
    meta: md.Metadata, body: bytes, media_type: str, chunk: int = 64 * 1024
) -> AsyncIterator[pb.IngestObjectRequest]:
    yield pb.IngestObjectRequest(header=pb.ObjectHeader(metadata=meta, declared_media_type=media_type))
    for start in range(0, len(body), chunk):
        yield pb.IngestObjectRequest(chunk=body[start : start + chunk])


async def ingest(
    stub: pb_grpc.IngestionServiceAsyncStub, meta: md.Metadata, body: bytes, media_type: str
) -> pb.IngestObjectResponse:
    response: pb.IngestObjectResponse = await stub.IngestObject(
        object_requests(meta, body, media_type), timeout=30
    )
    return response


def stored_keys(client: Minio, bucket: str, data_type: str, source: str) -> list[str]:
    """Every object key stored for `source` (names embed data type and source)."""
    prefix = f"v1/{data_type}/{source}/"
    return [o.object_name or "" for o in client.list_objects(bucket, prefix=prefix, recursive=True)]


@dataclass(frozen=True)
class Seen:
    """One event read back from Kafka."""

    topic: str
    key: str
    headers: dict[str, str]
    payload: Message
    partition: int
    offset: int

    @property
    def data_type(self) -> str:
        meta = getattr(self.payload, "metadata", None)
        return str(meta.data_type) if meta is not None else ""


class EventWatcher:
    """Reads what is published to some topics from the moment it is created.

    Partitions are assigned at their current end, so only events produced
    after creation are seen; no consumer group is joined (fast, no rebalance).
    """

    def __init__(self, config: dict[str, Any], topics: Iterable[str]) -> None:
        self._consumer = Consumer(
            {**config, "group.id": f"pantheon-test-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
        )
        assignment = []
        for topic in topics:
            meta = self._consumer.list_topics(topic, timeout=10).topics[topic]
            for partition in meta.partitions:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                assignment.append(TopicPartition(topic, partition, high))
        self._consumer.assign(assignment)
        self.seen: list[Seen] = []

    def collect(
        self, match: Callable[[Seen], bool], *, count: int | None = None, wait_s: float = 5.0
    ) -> list[Seen]:
        """Events matching `match`: waits until `count` arrived, or `wait_s` passed."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            message = self._consumer.poll(0.2)
            if message is None or message.error() is not None:
                if count is not None and sum(map(match, self.seen)) >= count:
                    break
                continue
            headers = parse_headers(message.headers())
            _, payload = decode(headers, message.value() or b"")
            self.seen.append(
                Seen(
                    message.topic() or "",
                    (message.key() or b"").decode(),
                    headers,
                    payload,
                    message.partition() or 0,
                    message.offset() or 0,
                )
            )
            if count is not None and sum(map(match, self.seen)) >= count:
                break
        return [s for s in self.seen if match(s)]

    def close(self) -> None:
        self._consumer.close()


def from_source(source: str) -> Callable[[Seen], bool]:
    return lambda seen: seen.headers.get("ce_source") == f"/pantheon/{source}"
