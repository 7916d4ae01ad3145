"""CLI: python -m pantheon.devstack up|down|status|env (see scripts/stack)."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from pantheon.devstack import stack, status
from pantheon.devstack.environment import environment, export_lines
from pantheon.devstack.errors import StackError
from pantheon.devstack.settings import HA, Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/stack",
        description="Run the local Kafka + MinIO dev stack (TLS, generated credentials).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="provision and start everything; wait until ready")
    p_up.add_argument(
        "--timeout",
        type=float,
        default=None,
        help=f"seconds to wait for readiness (default {stack.DEFAULT_TIMEOUT:.0f}; "
        f"{stack.HA_TIMEOUT:.0f} with --ha)",
    )
    p_up.add_argument(
        "--ha",
        action="store_true",
        help="the HA profile: 3 Kafka nodes, 4 MinIO nodes and 2 gateways behind haproxy, "
        "2 service replicas (recorded in the state dir: down/status/env follow it)",
    )
    p_down = sub.add_parser("down", help="stop what `up` started (data is kept)")
    p_down.add_argument(
        "--purge",
        action="store_true",
        help="also delete Kafka/MinIO data and logs (certs and credentials stay)",
    )
    sub.add_parser("status", help="one line per component; exit 0 only if all are ready")
    sub.add_parser("env", help="print `export` lines for endpoints and dev credentials")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Progress goes to stderr so `eval "$(scripts/stack env)"` stays clean.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="stack: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("pantheon.devstack.kafka_admin.librdkafka").setLevel(logging.CRITICAL)
    try:
        if args.command == "up":
            started = time.monotonic()
            settings = Settings.from_env(profile=HA if args.ha else None)
            stack.up(settings, timeout=args.timeout)
            logging.getLogger(__name__).info("stack up and ready in %.1fs", time.monotonic() - started)
            return 0
        if args.command == "down":
            stack.down(purge=args.purge)
            return 0
        if args.command == "status":
            statuses = status.status()
            for st in statuses:
                print(st.line())
            return 0 if all(st.ready for st in statuses) else 1
        if args.command == "env":
            print("\n".join(export_lines(environment())))
            return 0
    except (StackError, SettingsError) as exc:
        print(f"stack: error: {exc}", file=sys.stderr)
        return 1
    return 2  # unreachable: argparse enforces a known command


if __name__ == "__main__":
    sys.exit(main())
