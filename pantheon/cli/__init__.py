"""The `pantheon` command.

    pantheon ingest PATH...        upload files and folders (REST, resumable)
    pantheon records FILE          send a CSV or NDJSON file of records
    pantheon search                find objects by data type, source, time, area
    pantheon get ID                download an object or its metadata
    pantheon tail [TOPIC]          follow a topic and print decoded events
    pantheon keys ...              create, list, revoke API keys
    pantheon s3-reader ...         create, list, revoke read-only MinIO keys
    pantheon identity ...          enrol, list, revoke workload identities (gRPC mesh)
    pantheon stack ...             the local dev stack: up, down, status, env
    pantheon serve                 run the ingestion and storage gRPC services
    pantheon reconcile             announce what dead ingest calls stored (one pass now)

Settings come from `PANTHEON_*` variables: `eval "$(scripts/stack env)"`.
Each command has --help with examples.
"""

from __future__ import annotations

import argparse
import sys

from pantheon.cli import identity, ingest, keys, query, reconcile, s3_reader, serve, stack, tail
from pantheon.cli.errors import CliError
from pantheon.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pantheon",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ingest.add_parsers(commands)
    query.add_parsers(commands)
    tail.add_parser(commands)
    keys.add_parser(commands)
    s3_reader.add_parser(commands)
    identity.add_parser(commands)
    stack.add_parser(commands)
    serve.add_parser(commands)
    reconcile.add_parser(commands)
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
    except CliError as exc:
        print(f"pantheon {args.command}: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # a malformed variable: one line naming it
        print(f"pantheon {args.command}: configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
