"""Captures for the cross-language checkers: raw Kafka records of one source
plus what the gRPC responses promised, in the JSON both checkers read
(tests/interop/go/capture.go), and deliberately damaged copies of them."""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from google.protobuf.message import Message
from pantheon_api.events.v1 import events_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md

from tests.integration.support import ingest, ingest_stub, metadata, record

Capture = dict[str, Any]


class RawWatcher:
    """Reads the raw records (value bytes, headers in order) published to some
    topics after it was created; no consumer group is joined."""

    def __init__(self, config: dict[str, Any], topics: Iterable[str]) -> None:
        self._consumer = Consumer(
            {**config, "group.id": f"pantheon-interop-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
        )
        assignment = []
        for topic in topics:
            partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
            for partition in partitions:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                assignment.append(TopicPartition(topic, partition, high))
        self._consumer.assign(assignment)

    def collect(self, source: str, count: int, wait_s: float = 30.0) -> list[dict[str, Any]]:
        """The first `count` records whose ce_source is `source` (fewer if `wait_s` passes)."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait_s
        while len(found) < count and time.monotonic() < deadline:
            message = self._consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            headers = [(k, _text(v)) for k, v in message.headers() or []]
            if ("ce_source", f"/pantheon/{source}") not in headers:
                continue
            found.append(
                {
                    "topic": message.topic(),
                    "partition": message.partition(),
                    "offset": message.offset(),
                    "key": (message.key() or b"").decode(),
                    "headers": [list(h) for h in headers],
                    "value": base64.b64encode(message.value() or b"").decode(),
                }
            )
        return found

    def close(self) -> None:
        self._consumer.close()


def _text(value: str | bytes | None) -> str:
    return value.decode() if isinstance(value, bytes) else value or ""


def _expected_object(m: md.Metadata, ref: md.ObjectRef, event_id: str) -> dict[str, Any]:
    return {
        "id": m.id,
        "event_id": event_id,
        "data_type": m.data_type,
        "format": md.Format.Name(m.format),
        "media_type": m.media_type,
        "bucket": ref.bucket,
        "key": ref.key,
        "sha256": ref.sha256,
        "size_bytes": str(ref.size_bytes),
    }


async def python_capture(env: dict[str, str], kafka_config: dict[str, Any]) -> Capture:
    """Ingests a CSV record batch and a GeoJSON object from Python as a new
    source and captures the events they caused."""
    source = f"interop-py-{uuid.uuid4().hex[:12]}"
    watcher = RawWatcher(kafka_config, [env["PANTHEON_EVENTS_TOPIC"], env["PANTHEON_RECORDS_TOPIC"]])
    try:
        start = datetime.now(UTC) - timedelta(minutes=5)
        payloads: list[dict[str, Any]] = [
            {"water_level_m": 2.75, "gauge": "danube-reichsbruecke"},
            {"water_level_m": 2.8, "gauge": "danube-reichsbruecke"},
            {"water_level_m": 1.05, "gauge": "wien-river"},
        ]
        entities = ["gauge-17", "gauge-17", "gauge-4"]
        records = [
            record(entity, start + timedelta(minutes=i), lat=48.23 - i / 100, lon=16.41, **payload)
            for i, (entity, payload) in enumerate(zip(entities, payloads, strict=True))
        ]
        geojson = json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [16.41, 48.23]},
                        "properties": {"severity": "moderate"},
                    }
                ],
            }
        ).encode()
        channel, stub = ingest_stub(env)
        async with channel:
            batch = await stub.IngestRecords(
                pb.IngestRecordsRequest(
                    data_type="hazard.flood_gauge",
                    source=source,
                    batch_format=pb.BATCH_FORMAT_CSV,
                    provider="City of Vienna",
                    records=records,
                ),
                timeout=30,
            )
            obj = await ingest(
                stub,
                metadata(source, "report.incident", entity_id="incident-42"),
                geojson,
                "application/geo+json",
            )
        if batch.accepted_count != len(records):
            raise AssertionError(f"IngestRecords accepted {batch.accepted_count} of {len(records)}")
        expected_records = [
            {
                "id": result.id,
                "event_id": result.event_id,
                "data_type": "hazard.flood_gauge",
                "entity_id": entities[result.index],
                "batch_id": batch.metadata.id,
                "batch_key": batch.object.key,
                "batch_index": result.index,
                "payload": payloads[result.index],
            }
            for result in batch.results
        ]
        expected = {
            "objects": [
                _expected_object(batch.metadata, batch.object, batch.event_id),
                _expected_object(obj.metadata, obj.object, obj.event_id),
            ],
            "records": expected_records,
        }
        captured = watcher.collect(source, count=len(expected["objects"]) + len(expected_records))
    finally:
        watcher.close()
    return {"source": source, "expected": expected, "records": captured}


def _edit_payload(capture: Capture, schema: str, edit: Any) -> None:
    """Decodes the first record carrying `schema`, applies `edit`, re-encodes it."""
    classes: dict[str, type[Message]] = {
        "DataStored": events_pb2.DataStored,
        "RecordIngested": events_pb2.RecordIngested,
    }
    cls = classes[schema]
    for rec in capture["records"]:
        if ("ce_dataschema", f"proto:{cls.DESCRIPTOR.full_name}") in map(tuple, rec["headers"]):
            payload = cls.FromString(base64.b64decode(rec["value"]))
            edit(payload)
            rec["value"] = base64.b64encode(payload.SerializeToString()).decode()
            return
    raise AssertionError(f"the capture holds no {schema}")


def _drop_header(capture: Capture, name: str) -> None:
    rec = capture["records"][0]
    rec["headers"] = [h for h in rec["headers"] if h[0] != name]


def _drop_record_event(capture: Capture) -> None:
    schema = "proto:pantheon_api.events.v1.RecordIngested"
    drop = next(i for i, r in enumerate(capture["records"]) if ["ce_dataschema", schema] in r["headers"])
    del capture["records"][drop]


#: Damage done to a good capture -> what the checker must then report.
DAMAGE: dict[str, tuple[Any, str]] = {
    "missing-ce_type": (lambda c: _drop_header(c, "ce_type"), "header ce_type is missing"),
    "missing-ce_time": (lambda c: _drop_header(c, "ce_time"), "header ce_time is missing"),
    "missing-content-type": (lambda c: _drop_header(c, "content-type"), "header content-type is missing"),
    "missing-observed_at": (
        lambda c: _edit_payload(c, "DataStored", lambda p: p.metadata.ClearField("observed_at")),
        "metadata.observed_at is missing",
    ),
    "missing-object-ref": (
        lambda c: _edit_payload(c, "DataStored", lambda p: p.ClearField("object")),
        "object is missing",
    ),
    "wrong-data-type": (
        lambda c: _edit_payload(
            c, "RecordIngested", lambda p: setattr(p.metadata, "data_type", "sensor.other")
        ),
        'metadata.data_type is "sensor.other"',
    ),
    "missing-payload": (
        lambda c: _edit_payload(c, "RecordIngested", lambda p: p.ClearField("payload")),
        "payload is missing",
    ),
    "missing-event": (_drop_record_event, "seen 0 times, want exactly once"),
    "undecodable-value": (
        lambda c: c["records"][0].update(value=base64.b64encode(b"\xff\xff\xff").decode()),
        "value does not decode",
    ),
}


def damaged(capture: Capture, kind: str) -> Capture:
    bad = copy.deepcopy(capture)
    DAMAGE[kind][0](bad)
    return bad
