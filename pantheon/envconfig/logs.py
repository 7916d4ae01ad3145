"""Log set-up for entry points: text or JSON lines (`PANTHEON_LOG_FORMAT`).

Modules only call `logging.getLogger(__name__)`; processes (the services,
the gateway) call `configure_logging` once. `PANTHEON_LOG_FORMAT=json` gives
one JSON object per line (time, level, logger, request_id, message, and the
exception type if any), which log shippers read without parsing rules.
Exception text and tracebacks are kept out of JSON lines: they may carry
secrets from a backend's message.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator

from pantheon.envconfig.settings import EnvSettings, variable

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class LogSettings(EnvSettings):
    """How a process logs (the services and the gateway read the same variables)."""

    #: `text` for people, `json` for log shippers (one object per line).
    format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = variable(
        "PANTHEON_LOG_FORMAT", default="text", description="text or json"
    )
    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)] = (
        variable(
            "PANTHEON_LOG_LEVEL", default="INFO", description="one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
        )
    )


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


class _NoRequestId(logging.Filter):
    """Gives `request_id` a placeholder where the process has none to add."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = "-"
        return True


def configure_logging(
    settings: LogSettings, log_file: str | None = None, request_ids: logging.Filter | None = None
) -> None:
    """Send logs to `log_file` (or stderr) as `settings` say; `request_ids`
    adds each record's request id (a placeholder without one)."""
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler()
    handler.addFilter(request_ids or _NoRequestId())
    handler.setFormatter(JsonFormatter() if settings.format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=settings.level, handlers=[handler], force=True)
