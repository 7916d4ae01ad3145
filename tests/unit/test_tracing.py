"""Tracing: one ingest is one connected trace, from the REST edge through the
gRPC services and Kafka to the consumer helper, recorded by the SDK's
in-memory exporter; hostile trace headers at the edge and on Kafka are
ignored, never an error; and with nothing configured, tracing stays off.

The SDK is installed once for the session (OpenTelemetry allows one global
provider per process): spans are kept only while a test here asks for them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway import tracing as gateway_tracing
from gateway.app import create_app
from pantheon import tracing
from pantheon.config import KafkaSettings, S3Settings
from pantheon.devstack.mesh import GATEWAY
from pantheon.events.consumer import EventConsumer, Received
from pantheon.events.producer import KafkaPublisher
from pantheon.server import Running, create_server
from pantheon.storage.s3 import S3ObjectStore
from tests.unit.fakes import MemoryObjectStore
from tests.unit.kafka_fakes import (
    FakeConsumer,
    FakeMessage,
    FakeProducer,
    fake_kafka,
    record,
)
from tests.unit.mesh import Mesh, make_mesh
from tests.unit.test_gateway_app import CITY, auth, keys, settings

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-b7ad6b7169203331-01"


class _Switch(SimpleSpanProcessor):
    """Exports a finished span only while a test here is running."""

    on = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            super().on_end(span)


_EXPORTER = InMemorySpanExporter()
_SWITCH = _Switch(_EXPORTER)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if not tracing.enabled():
        provider = TracerProvider()
        provider.add_span_processor(_SWITCH)
        trace.set_tracer_provider(provider)
    assert tracing.enabled(), "another SDK provider was installed first"
    _EXPORTER.clear()
    _SWITCH.on = True
    try:
        yield _EXPORTER
    finally:
        _SWITCH.on = False
        _EXPORTER.clear()


class RecordingProducer(FakeProducer):
    """Keeps every message produced, and Kafka acknowledges each at once."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[FakeMessage] = []

    def produce(self, topic: str, *, value: bytes, key: bytes, headers: Any, on_delivery: Any) -> None:
        super().produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
        self.messages.append(FakeMessage(topic, 0, len(self.messages), value, list(headers), key))
        self.deliver()


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> list[FakeConsumer]:
    return fake_kafka(monkeypatch)


def consume(messages: Sequence[FakeMessage], kafka: list[FakeConsumer], handler: Any = None) -> int:
    topics = sorted({message.topic() for message in messages})
    events = EventConsumer(
        {}, "pantheon-test", topics, handler or (lambda _: None), dlq_topic="pantheon.dead-letter.v1"
    )
    kafka[-1].add(*messages)
    try:
        return events.run(idle_timeout_s=0)
    finally:
        events.close()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[Mesh, Running, RecordingProducer]]:
    mesh = make_mesh(tmp_path / "mesh")
    producer = RecordingProducer()
    publisher = KafkaPublisher(
        KafkaSettings(bootstrap="unused:1", username="u", password="p", ca_file="/ca.pem"), producer=producer
    )
    running = await create_server(mesh.service_settings(), store=MemoryObjectStore(), publisher=publisher)
    try:
        yield mesh, running, producer
    finally:
        await running.stop(0)


async def gateway_call(
    tmp_path: Path, mesh: Mesh, port: int, headers: list[tuple[str, str | bytes]]
) -> httpx.Response:
    """One object upload through the gateway app, to the services on `port`."""
    cert, key = mesh.identity(GATEWAY).cert_file, mesh.identity(GATEWAY).key_file
    app = create_app(
        settings(
            tmp_path,
            grpc_target=f"localhost:{port}",
            ca_file=mesh.tls.ca_file,
            client_cert_file=cert,
            client_key_file=key,
        ),
        keys=keys(),
    )
    params = {
        "data_type": "sensor.air_quality",
        "observed_at": "2024-01-01T00:00:00Z",
        "lat": 48.2,
        "lon": 16.37,
    }
    body = json.dumps({"entity_id": "vie-1", "pm25": 7.5}).encode()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://gateway.test") as http:
            return await http.post(
                "/v1/objects",
                params=params,
                content=body,
                headers=[*auth(CITY).items(), ("Content-Type", "application/json"), *headers],
            )


def by_id(spans: Sequence[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {span.context.span_id: span for span in spans}


def ancestry(span: ReadableSpan, spans: dict[int, ReadableSpan]) -> list[str]:
    """The names from `span` up to its trace's root."""
    names = [span.name]
    while span.parent is not None:
        span = spans[span.parent.span_id]
        names.append(span.name)
    return names


async def test_one_ingest_is_one_trace_from_http_to_the_consumer(
    tmp_path: Path, stack: tuple[Mesh, Running, RecordingProducer], kafka: list[FakeConsumer], spans: Any
) -> None:
    mesh, running, producer = stack
    response = await gateway_call(tmp_path, mesh, running.port, _one(CALLER_TRACEPARENT))
    assert response.status_code == 201, response.text
    # The event carries the trace on to the consumer helper, which continues it.
    handled: list[str] = []

    def handler(received: Received) -> None:
        with tracing.tracer.start_as_current_span("simulation.update"):
            handled.append(received.attributes.id)

    assert consume(producer.messages, kafka, handler) == 1
    assert handled == [response.json()["id"]]

    finished = spans.get_finished_spans()
    (root,) = [s for s in finished if s.name == "POST /v1/objects"]
    trace_id = root.context.trace_id
    assert root.kind is SpanKind.SERVER and root.parent is None
    assert {s.context.trace_id for s in finished} == {trace_id}, "one ingest, one trace"
    # A new trace at the public edge, linked to the caller's.
    assert trace_id != int(CALLER_TRACE, 16)
    assert [format(link.context.trace_id, "032x") for link in root.links] == [CALLER_TRACE]

    spans_by_id = by_id(finished)
    (handled_span,) = [s for s in finished if s.name == "simulation.update"]
    ingest = "pantheon_api.ingest.v1.IngestionService/IngestObject"
    assert ancestry(handled_span, spans_by_id) == [
        "simulation.update",
        "process pantheon.data-stored.v1",
        "send pantheon.data-stored.v1",
        ingest,  # the services' SERVER span
        ingest,  # the gateway's CLIENT span
        "POST /v1/objects",
    ]
    kinds = {(s.name, s.kind) for s in finished}
    assert {
        (ingest, SpanKind.CLIENT),
        (ingest, SpanKind.SERVER),
        ("send pantheon.data-stored.v1", SpanKind.PRODUCER),
        ("process pantheon.data-stored.v1", SpanKind.CONSUMER),
        ("pantheon_api.storage.v1.StorageService/PutObject", SpanKind.INTERNAL),
    } <= kinds
    (server,) = [s for s in finished if s.name == ingest and s.kind is SpanKind.SERVER]
    assert server.attributes is not None and server.attributes["rpc.grpc.status_code"] == 0
    (put,) = [s for s in finished if s.name.endswith("StorageService/PutObject")]
    assert ancestry(put, spans_by_id)[1:] == [ingest, ingest, "POST /v1/objects"]


def _one(value: str) -> list[tuple[str, str | bytes]]:
    return [("traceparent", value)]


@pytest.mark.parametrize(
    "headers",
    [
        _one("garbage"),
        _one("00-" + "0" * 32 + "-b7ad6b7169203331-01"),  # the invalid all-zero trace id
        _one("ff-" + CALLER_TRACE + "-b7ad6b7169203331-01"),  # the forbidden version
        _one(CALLER_TRACEPARENT + "-" + "a" * 60_000),  # oversize
        _one("00-" + CALLER_TRACE.upper() + "-b7ad6b7169203331-01"),
        [("traceparent", b"\xe9" * 55)],  # not ASCII
        [("traceparent", "x")] * 50 + _one(CALLER_TRACEPARENT),  # many: only the first counts
    ],
    ids=["garbage", "zero-trace-id", "version-ff", "oversize", "uppercase", "non-ascii", "many"],
)
async def test_a_hostile_traceparent_at_the_edge_starts_an_unlinked_trace(
    tmp_path: Path,
    stack: tuple[Mesh, Running, RecordingProducer],
    spans: Any,
    headers: list[tuple[str, str | bytes]],
) -> None:
    mesh, running, _ = stack
    response = await gateway_call(tmp_path, mesh, running.port, headers)
    assert response.status_code == 201, response.text
    finished = spans.get_finished_spans()
    (root,) = [s for s in finished if s.name == "POST /v1/objects"]
    assert root.parent is None
    assert list(root.links) == []
    assert {s.context.trace_id for s in finished} == {root.context.trace_id}


def _with_traceparent(message: FakeMessage, *values: bytes) -> FakeMessage:
    headers = [(k, v) for k, v in message.headers() if k != "traceparent"]
    headers += [("traceparent", value) for value in values]
    return FakeMessage(message.topic(), 0, message.offset(), message.value(), headers)


def test_the_consumer_continues_the_producers_trace(kafka: list[FakeConsumer], spans: Any) -> None:
    message = _with_traceparent(record("pantheon.data-stored.v1", 0, 0, "e1"), CALLER_TRACEPARENT.encode())
    assert consume([message], kafka) == 1
    (span,) = spans.get_finished_spans()
    assert span.kind is SpanKind.CONSUMER
    assert span.parent is not None and format(span.context.trace_id, "032x") == CALLER_TRACE


@pytest.mark.parametrize(
    "values",
    [
        [b"garbage"],
        [b"\xff\xfe" * 40],
        [CALLER_TRACEPARENT.encode() + b"-" + b"a" * 1_000_000],
        [b"00-" + b"0" * 32 + b"-b7ad6b7169203331-01"],
        [b"x"] * 10_000,
        [],
    ],
)
def test_hostile_traceparent_headers_on_kafka_start_a_new_trace(
    kafka: list[FakeConsumer], spans: Any, values: list[bytes]
) -> None:
    handled: list[str] = []
    message = _with_traceparent(record("pantheon.data-stored.v1", 0, 0, "e1"), *values)
    assert consume([message], kafka, lambda received: handled.append(received.attributes.id)) == 1
    assert handled == ["e1"]
    (span,) = spans.get_finished_spans()
    assert span.parent is None


async def test_each_s3_call_is_a_client_span(spans: Any) -> None:
    store = S3ObjectStore(S3Settings(endpoint="https://127.0.0.1:9", access_key="a", secret_key="s"))

    def put_object(client: object, bucket: str, key: str) -> str:
        return "etag"

    def next_piece() -> bytes:  # not an S3 call of its own: no span
        return b""

    with tracing.tracer.start_as_current_span("caller"):
        assert (
            await store._run(
                put_object, None, "pantheon-sensor", "a/b", operation="PutObject", bucket="pantheon-sensor"
            )
            == "etag"
        )
        await store._run(next_piece)
    s3, caller = spans.get_finished_spans()
    assert (s3.name, s3.kind) == ("S3.PutObject", SpanKind.CLIENT)
    assert s3.attributes is not None and s3.attributes["aws.s3.bucket"] == "pantheon-sensor"
    assert s3.parent is not None and s3.parent.span_id == caller.context.span_id


def test_tracing_is_off_unless_configured() -> None:
    assert tracing.exporters({}) == []
    assert not tracing.configure("x", {})
    assert not gateway_tracing.configure({})
    assert tracing.exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) == ["otlp"]
    assert tracing.exporters({"OTEL_TRACES_EXPORTER": "console,otlp"}) == ["console", "otlp"]
    assert tracing.exporters({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}) == []
    assert tracing.exporters({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}) == []
