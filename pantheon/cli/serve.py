"""`pantheon serve`: run the gRPC services until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import uvloop

from pantheon import logs, metrics, tracing
from pantheon.config import ConfigError, ServiceSettings
from pantheon.envconfig import heap
from pantheon.ingest import workers
from pantheon.policy import Policy, PolicyError
from pantheon.server import create_server

log = logging.getLogger(__name__)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the ingestion and storage gRPC services",
        description="Run the ingestion and storage gRPC services (TLS) until SIGINT or SIGTERM. "
        "Settings come from PANTHEON_* variables; see README, Configuration.",
    )
    parser.add_argument("--log-file", help="append logs to this file instead of stderr")
    parser.set_defaults(run=run)


async def _serve(settings: ServiceSettings) -> None:
    if settings.metrics_listen:
        metrics.serve(settings.metrics_listen, settings.tls)
    running = await create_server(settings)
    # Start the parsing processes now, so the first large document does not wait for one.
    workers.pool().warm()
    heap.tune_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("serving on port %d", running.port)
    await stop.wait()
    log.info("shutting down")
    await running.stop()
    workers.shutdown()


def run(args: argparse.Namespace) -> int:
    try:
        logs.configure(args.log_file)
        tracing.configure("pantheon-services")
        settings = ServiceSettings.from_env()
        Policy.load(Path(settings.policy_file))  # refuse to start on a policy nobody can read
    except (ConfigError, PolicyError) as exc:
        # One line on stderr (the log may be a file, or JSON): what to fix, no traceback.
        print(f"pantheon serve: configuration: {exc}", file=sys.stderr)
        if args.log_file and logging.getLogger().handlers:
            log.error("configuration: %s", exc)
        return 2
    heap.tune_malloc(os.environ, thresholds=False)  # before the server's threads allocate
    # uvloop: measured here, a small ingest costs the services about a
    # quarter less CPU on it than on asyncio's own loop (scripts/bench).
    # (The gateway stays on asyncio's loop: see gateway/__main__.py.)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(settings))
    return 0
