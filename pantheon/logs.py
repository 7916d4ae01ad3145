"""Logging set-up for the services' entry points: text or JSON lines, with the request id.

The formats and the variables (`PANTHEON_LOG_FORMAT`, `PANTHEON_LOG_LEVEL`)
are envconfig's, shared with the gateway; this adds the request id of the
current gRPC call (pantheon/context.py) to every line.
"""

from __future__ import annotations

from pantheon.context import RequestIdFilter
from pantheon.envconfig import JsonFormatter, LogSettings, configure_logging

__all__ = ["JsonFormatter", "LogSettings", "configure"]


def configure(log_file: str | None = None, settings: LogSettings | None = None) -> None:
    """Send logs to `log_file` (or stderr) as `settings` (else the environment) say.
    A bad `PANTHEON_LOG_*` value raises `ConfigError`."""
    configure_logging(settings or LogSettings.from_env(), log_file, RequestIdFilter())
