"""`python -m gateway`: serve the REST edge over HTTPS with uvicorn until SIGINT/SIGTERM.

Settings come from `PANTHEON_*` variables (see gateway/settings.py and the
README). Plain HTTP is never served: uvicorn gets the certificate and key,
and a client that does not speak TLS fails its handshake. uvicorn parses
HTTP with httptools, through a protocol that adds a header timeout and a
header size cap (gateway/slow_clients.py); `limit_concurrency` caps the
connections and requests held at once (503 `overloaded` with Retry-After).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn

from gateway import tracing
from gateway.app import create_app
from gateway.auth import KeyFileError
from gateway.middleware import RequestIdFilter
from gateway.settings import ConfigError, GatewaySettings
from gateway.slow_clients import guarded_protocol
from pantheon.envconfig import LogSettings, configure_logging, heap

log = logging.getLogger("gateway")


def _configure_logging(log_file: str | None, settings: LogSettings) -> None:
    """Text or JSON lines (`PANTHEON_LOG_FORMAT`, `PANTHEON_LOG_LEVEL`), as the services log."""
    configure_logging(settings, log_file, RequestIdFilter())
    # One line per request is the metrics' job; keep the log for what went wrong.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description="Serve the Pantheon REST API over HTTPS (settings from PANTHEON_* variables).",
    )
    parser.add_argument("--log-file", help="append logs to this file instead of stderr")
    args = parser.parse_args(argv)
    try:
        _configure_logging(args.log_file, LogSettings.from_env())
        tracing.configure()
        settings = GatewaySettings.from_env()
        app = create_app(settings)
    except (ConfigError, KeyFileError) as exc:
        # One line on stderr, whatever the log format: the operator's terminal
        # or the supervisor's log shows what to fix, with no traceback.
        sys.stderr.write(f"gateway: configuration: {exc}\n")
        if args.log_file and logging.getLogger().handlers:
            log.error("configuration: %s", exc)
        return 2
    heap.tune_malloc(os.environ, thresholds=True)
    heap.tune_collector()
    log.info("serving https://%s:%d", settings.listen_host, settings.listen_port)
    uvicorn.run(
        app,
        host=settings.listen_host,
        port=settings.listen_port,
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        # asyncio's own loop, not uvloop (which uvicorn would pick by itself):
        # on uvloop, a request answered before its body was read (413 at the
        # size limit) still had its whole body read in, instead of the
        # connection closing on the sender (tests/integration/test_gateway_limits.py).
        loop="asyncio",
        http=guarded_protocol(settings.header_timeout_s, settings.max_header_bytes),
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
