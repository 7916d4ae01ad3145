"""Logging set-up for entry points: text or JSON lines, with the request id.

Modules only call `logging.getLogger(__name__)`; processes call `configure`
once. `PANTHEON_LOG_FORMAT=json` gives one JSON object per line (time,
level, logger, request_id, message, and the exception type if any), which
log shippers read without parsing rules. Exception text and tracebacks are
kept out of JSON lines: they may carry secrets from a backend's message.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

from pantheon.context import RequestIdFilter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__
        return json.dumps(line, ensure_ascii=False)


def configure(log_file: str | None = None, fmt: str | None = None, level: str | None = None) -> None:
    """Send logs to `log_file` (or stderr) as text or JSON lines."""
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    chosen = (fmt or os.environ.get("PANTHEON_LOG_FORMAT", "text")).lower()
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(
        level=(level or os.environ.get("PANTHEON_LOG_LEVEL", "INFO")).upper(), handlers=[handler], force=True
    )
