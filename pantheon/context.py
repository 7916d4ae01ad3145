"""Per-call context: the request id of the current call.

Set once where a call enters a service (the gRPC interceptor) and read
wherever it must travel on: logs, calls to other services, Kafka headers.
The trace context is OpenTelemetry's current span (pantheon/tracing.py),
which the client interceptor passes on.
"""

from __future__ import annotations

import logging
import uuid
from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="")

#: gRPC metadata key that carries the request id between processes.
REQUEST_ID_HEADER = "x-request-id"


def new_request_id() -> str:
    return uuid.uuid4().hex


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    """gRPC metadata that passes the request id to the next service (the
    channel's tracing interceptor adds the trace context)."""
    rid = request_id.get()
    return ((REQUEST_ID_HEADER, rid),) if rid else ()


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every log record (install in entry points)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True
