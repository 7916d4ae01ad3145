"""OpenTelemetry tracing: setup from the standard OTEL_* variables, and the
few helpers the services' seams use to record spans and carry the context.

Off unless configured: with no `OTEL_TRACES_EXPORTER` and no OTLP endpoint,
no SDK is installed and every tracer is the API's no-op one (a span costs a
function call; no context is propagated). Entry points call `configure`
once, before they create channels or servers.

The context travels one way: the current span is the only trace context.
It goes into gRPC metadata by the client interceptors (`client_interceptors`), is
taken back out by the server interceptor (`server_span`), and goes into
Kafka headers as `traceparent` (`traceparent`); the consumer helper
continues it (`continue_from`). The gateway has its own copy of the setup
and the client interceptor (gateway/tracing.py): it may not import this
package.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
#: A version-00 `traceparent` is 55 characters; later versions may append
#: fields. Anything longer is not looked at (hostile or broken senders).
MAX_TRACEPARENT = 128

_PROPAGATOR = TraceContextTextMapPropagator()
tracer = trace.get_tracer("pantheon")


def exporters(env: Mapping[str, str]) -> list[str]:
    """The span exporters the environment asks for ([] means tracing is off).

    `OTEL_TRACES_EXPORTER` (`otlp`, `console`, `none`; comma separated) is
    read as the SDK documents it; unset, an OTLP endpoint alone turns the
    `otlp` exporter on. `OTEL_SDK_DISABLED=true` wins over both."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names and (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        names = ["otlp"]
    return [n for n in names if n != "none"]


def configure(default_service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Install the SDK with the exporters `env` asks for; False (and nothing
    installed) when it asks for none."""
    env = os.environ if env is None else env
    wanted = exporters(env)
    if not wanted:
        return False
    # Imported only when tracing is on: the off path loads no SDK.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or default_service_name})
    )
    for name in wanted:
        exporter: SpanExporter
        if name == "otlp":
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol and protocol != "http/protobuf":
                log.warning("tracing: OTLP protocol %r is not installed; using http/protobuf", protocol)
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        elif name == "console":
            exporter = ConsoleSpanExporter()
        else:
            log.warning("tracing: unknown exporter %r in OTEL_TRACES_EXPORTER, ignored", name)
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info(
        "tracing on: %s, exporters %s", provider.resource.attributes.get(SERVICE_NAME), ", ".join(wanted)
    )
    return True


def enabled() -> bool:
    """Whether an SDK is installed (by `configure`, or by a test); channels
    get the tracing interceptor only then, so tracing off costs them nothing."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


# -- the context on the wire ------------------------------------------------------


def traceparent(span: Span | None = None) -> str:
    """The W3C `traceparent` of `span` (default: the current one); '' if none."""
    carrier: dict[str, str] = {}
    context = trace.set_span_in_context(span) if span is not None else None
    _PROPAGATOR.inject(carrier, context=context)
    return carrier.get(TRACEPARENT, "")


def parent_from(value: Any) -> otel_context.Context | None:
    """The trace context a `traceparent` value names, or None if it names none.

    Values from the network are untrusted: anything not text, longer than
    `MAX_TRACEPARENT`, or malformed is ignored, never an error."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str) or not value or len(value) > MAX_TRACEPARENT:
        return None
    context = _PROPAGATOR.extract({TRACEPARENT: value})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def set_error(span: Span, description: str) -> None:
    if span.is_recording():
        span.set_status(Status(StatusCode.ERROR, description))


# -- gRPC -------------------------------------------------------------------------


def _rpc_attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def start_rpc_span(method: str, kind: SpanKind, parent: otel_context.Context | None = None) -> Span:
    """A span for one call of `method` (`/package.Service/Method`)."""
    return tracer.start_span(
        method.lstrip("/"), context=parent, kind=kind, attributes=_rpc_attributes(method)
    )


def end_rpc_span(span: Span, code: grpc.StatusCode | None) -> None:
    """Record the call's status code on `span` and end it."""
    if span.is_recording() and code is not None:
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


def server_span(method: str, metadata: Mapping[str, Any]) -> Span:
    """The SERVER span of an incoming call, continuing its caller's trace,
    made current for the rest of the call's task (which ends with the call:
    nothing to detach)."""
    span = start_rpc_span(method, SpanKind.SERVER, parent_from(metadata.get(TRACEPARENT)))
    otel_context.attach(trace.set_span_in_context(span))
    return span


def _status_now(call: Any) -> grpc.StatusCode | None:
    """The status of a finished aio call, from a done callback (which cannot
    await: `code()` of a finished call completes without suspending)."""
    coroutine = call.code()
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except Exception:  # cancelled before it started, or the like
        return None
    coroutine.close()
    return None


def _with_traceparent(details: grpc.aio.ClientCallDetails, span: Span) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    if value := traceparent(span):
        metadata[TRACEPARENT] = value
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _ClientTracing:
    """A CLIENT span per call, whose context goes out as `traceparent`."""

    async def _intercept(
        self, continuation: Callable[..., Awaitable[Any]], details: Any, request: Any
    ) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        span = start_rpc_span(method, SpanKind.CLIENT)
        if not span.get_span_context().is_valid:  # tracing off, and no trace to pass on
            return await continuation(details, request)
        try:
            call = await continuation(_with_traceparent(details, span), request)
        except BaseException:
            end_rpc_span(span, grpc.StatusCode.UNKNOWN)
            raise
        try:
            call.add_done_callback(lambda done: end_rpc_span(span, _status_now(done)))
        except NotImplementedError:  # an already-finished call of another interceptor
            end_rpc_span(span, None)
        return call


class _UnaryUnary(_ClientTracing, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._intercept(continuation, client_call_details, request)


class _UnaryStream(_ClientTracing, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._intercept(continuation, client_call_details, request)


class _StreamUnary(_ClientTracing, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, requests: Any) -> Any:
        return await self._intercept(continuation, client_call_details, requests)


class _StreamStream(_ClientTracing, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, requests: Any
    ) -> Any:
        return await self._intercept(continuation, client_call_details, requests)


def client_interceptors() -> list[grpc.aio.ClientInterceptor] | None:
    """The tracing interceptors of a channel (one per call type: a channel
    files each interceptor under the first type it implements); None while
    tracing is off, so a channel then has none."""
    if not enabled():
        return None
    return [_UnaryUnary(), _UnaryStream(), _StreamUnary(), _StreamStream()]
