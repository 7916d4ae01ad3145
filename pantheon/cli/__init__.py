"""The `pantheon` command.

    pantheon serve                 run the ingestion and storage gRPC services
    pantheon tail [TOPIC] [--json] follow a topic and print decoded events

Settings come from `PANTHEON_*` variables: `eval "$(scripts/stack env)"`.
"""

from __future__ import annotations

import argparse
import sys

from pantheon.cli import serve, tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pantheon",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve.add_parser(commands)
    tail.add_parser(commands)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
