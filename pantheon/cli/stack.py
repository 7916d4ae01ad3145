"""`pantheon stack up|down|status|env`: the local dev stack (as scripts/stack)."""

from __future__ import annotations

import argparse
from typing import Any

from pantheon.devstack.__main__ import main as devstack_main


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "stack",
        help="start, stop, inspect the local dev stack",
        description="The local dev stack (Kafka, MinIO, services, gateway) on loopback; see scripts/stack.",
        epilog='example:\n  pantheon stack up && eval "$(pantheon stack env)"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["up", "down", "status", "env"])
    parser.add_argument("--purge", action="store_true", help="with down: delete the stack's data too")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    argv = [args.action] + (["--purge"] if args.purge and args.action == "down" else [])
    return devstack_main(argv)
