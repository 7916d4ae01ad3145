"""Per-call context: the request id and trace context of the current call.

Set once where a call enters a service (the gRPC interceptor) and read
wherever it must travel on: logs, calls to other services, Kafka headers.
"""

from __future__ import annotations

import logging
import uuid
from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="")
traceparent: ContextVar[str] = ContextVar("traceparent", default="")

#: gRPC metadata keys that carry the context between processes.
REQUEST_ID_HEADER = "x-request-id"
TRACEPARENT_HEADER = "traceparent"


def new_request_id() -> str:
    return uuid.uuid4().hex


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    """gRPC metadata that passes the current context to the next service."""
    found = []
    if rid := request_id.get():
        found.append((REQUEST_ID_HEADER, rid))
    if tp := traceparent.get():
        found.append((TRACEPARENT_HEADER, tp))
    return tuple(found)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every log record (install in entry points)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True
