"""OpenTelemetry tracing at the REST edge: setup from the standard OTEL_*
variables, the span of each request, and the CLIENT span of each gRPC call.

A copy of what pantheon/tracing.py does for the services (the gateway may
not import that package); both read the same variables the same way. Off
unless `OTEL_TRACES_EXPORTER` or an OTLP endpoint is set: then no SDK is
loaded and every span is the API's no-op one.

The public edge does not continue an external caller's trace: every request
starts a trace of its own, under Pantheon's sampler, and a well-formed
incoming `traceparent` becomes a *link* of the request's span. A caller
therefore cannot force sampling (the flag in its header), nor make its
requests part of someone else's trace, while its own trace still leads to
ours through the link.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()
tracer = trace.get_tracer("gateway")


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Install the SDK with the exporters `env` asks for (as pantheon/tracing.py)."""
    env = os.environ if env is None else env
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names and (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        names = ["otlp"]
    names = [n for n in names if n in ("otlp", "console")]
    if not names or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    name = env.get("OTEL_SERVICE_NAME") or "pantheon-gateway"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    for exporter in names:
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter() if exporter == "otlp" else ConsoleSpanExporter())
        )
    trace.set_tracer_provider(provider)
    log.info("tracing on: %s, exporters %s", name, ", ".join(names))
    return True


def enabled() -> bool:
    """Whether an SDK is installed; the channel gets `client_interceptors` only then."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def request_span(method: str, path: str, caller_traceparent: str) -> Span:
    """The SERVER span of one request: a new trace, linked to the caller's
    (`caller_traceparent`, already checked by the middleware), if any."""
    links = []
    if caller_traceparent:
        caller = trace.get_current_span(_PROPAGATOR.extract({TRACEPARENT: caller_traceparent}))
        if caller.get_span_context().is_valid:
            links.append(Link(caller.get_span_context()))
    return tracer.start_span(
        method,
        context=otel_context.Context(),  # a root: the caller's context is not our parent
        kind=SpanKind.SERVER,
        links=links,
        attributes={"http.request.method": method, "url.path": path},
    )


def end_request_span(span: Span, method: str, route: str, status: int) -> None:
    if span.is_recording():
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
    span.end()


# -- the CLIENT span of each gRPC call (as pantheon/tracing.py) ----


def _end(span: Span, call: Any) -> None:
    code = None
    coroutine = call.code()  # a finished call's code() completes without suspending
    try:
        coroutine.send(None)
    except StopIteration as done:
        code = done.value
    except Exception:
        pass
    else:
        coroutine.close()
    if span.is_recording() and isinstance(code, grpc.StatusCode):
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


class _ClientTracing:
    """A CLIENT span per call, whose context goes out as `traceparent`."""

    async def _intercept(
        self, continuation: Callable[..., Awaitable[Any]], details: Any, request: Any
    ) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        service, _, name = method.lstrip("/").partition("/")
        span = tracer.start_span(
            method.lstrip("/"),
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        if not span.get_span_context().is_valid:  # tracing off
            return await continuation(details, request)
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        metadata[TRACEPARENT] = carrier[TRACEPARENT]
        details = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        try:
            call = await continuation(details, request)
        except BaseException:
            span.set_status(Status(StatusCode.ERROR))
            span.end()
            raise
        try:
            call.add_done_callback(lambda done: _end(span, done))
        except NotImplementedError:
            span.end()
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
