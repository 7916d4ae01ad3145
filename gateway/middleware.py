"""The ASGI middleware every request passes: request id, trace span, metrics, last-resort errors.

A pure ASGI middleware (not Starlette's BaseHTTPMiddleware), so streamed
bodies pass through untouched in both directions.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import tracing
from gateway.metrics import UNMATCHED, Metrics
from gateway.problems import MEDIA_TYPE, internal_error

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
#: The id of the request being served, for the log lines it causes.
current_request_id: ContextVar[str] = ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to every log record (as the services do)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# W3C trace context, version 00 (unknown versions are passed on if shaped alike).
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def accept_request_id(value: str | None) -> str:
    """The caller's request id if well formed, else a fresh one."""
    if value and _REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def accept_traceparent(value: str | None) -> str:
    """The caller's `traceparent` if well formed (and not the invalid all-zero ids), else ''."""
    if not value or len(value) > 128 or not _TRACEPARENT.fullmatch(value):
        return ""
    _, trace_id, parent_id, _ = value.split("-")
    if value.startswith("ff") or trace_id == "0" * 32 or parent_id == "0" * 16:
        return ""
    return value


def _has_body(headers: Headers) -> bool:
    length = headers.get("content-length")
    return "transfer-encoding" in headers or (length is not None and length.strip() not in ("", "0"))


#: Routes FastAPI serves itself (they leave no route in the scope).
_DOCUMENTATION_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect"})


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return scope["path"] if scope["path"] in _DOCUMENTATION_PATHS else UNMATCHED


class EdgeMiddleware:
    """Sets the request context (request id, and the request's span: a new
    trace linked to the caller's, see gateway/tracing.py), echoes
    `X-Request-Id`, measures, and answers unhandled errors."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = accept_request_id(headers.get(REQUEST_ID_HEADER))
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        id_token = current_request_id.set(request_id)
        span = tracing.request_span(
            scope["method"], scope["path"], accept_traceparent(headers.get(tracing.TRACEPARENT))
        )
        token = otel_context.attach(trace.set_span_in_context(span))

        received = 0
        status = 500
        started = False
        body_done = not _has_body(headers)

        async def counting_receive() -> Message:
            nonlocal received, body_done
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = body_done or not message.get("more_body", False)
            return message

        async def tagging_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                response_headers = MutableHeaders(scope=message)
                response_headers[REQUEST_ID_HEADER] = request_id
                if not body_done:
                    # Answered before the body was read (413, 401, a refusal
                    # by the services): close the connection, so the client
                    # stops sending instead of uploading the rest for nothing.
                    response_headers["connection"] = "close"
            await send(message)

        began = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, counting_receive, tagging_send)
        except ClientDisconnect:
            status = 499  # nginx's "client closed request", for the metrics only
            log.info("client went away during %s %s (request %s)", scope["method"], scope["path"], request_id)
        except Exception:
            if started:
                # Headers are out: all that is left is to cut the response
                # short, so the client sees a truncated body, never a wrong one.
                log.exception("response to request %s failed after it started", request_id)
            else:
                log.exception("unhandled error (request %s)", request_id)
                await self._send_internal_error(tagging_send, request_id, scope["path"])
        finally:
            self.metrics.in_flight.dec()
            route = _route_of(scope)
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - began, received)
            tracing.end_request_span(span, scope["method"], route, status)
            otel_context.detach(token)
            current_request_id.reset(id_token)

    @staticmethod
    async def _send_internal_error(send: Send, request_id: str, path: str) -> None:
        body = json.dumps(internal_error(request_id).body(request_id, path)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
