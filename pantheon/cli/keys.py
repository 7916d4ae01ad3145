"""`pantheon keys create|list|revoke`: the gateway's API keys file.

The file (`PANTHEON_API_KEYS_FILE`, or `--file`) holds only SHA-256 hashes
of keys; a new key is printed once and never stored. The gateway re-reads
the file within a second of a change. Entries carry an `id` (the first 12
hex characters of the hash) to list and revoke them by.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pantheon.cli.rest import CliError


def _path(args: argparse.Namespace) -> Path:
    name = args.file or os.environ.get("PANTHEON_API_KEYS_FILE")
    if not name:
        raise CliError(
            'no keys file: pass --file or set PANTHEON_API_KEYS_FILE (eval "$(scripts/stack env)")'
        )
    return Path(name)


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"keys": []}
    try:
        document: dict[str, Any] = json.loads(path.read_text())
    except ValueError:
        raise CliError(f"{path} is not valid JSON") from None
    if not isinstance(document.get("keys"), list):
        raise CliError(f'{path} must hold {{"keys": [...]}}')
    return document


def _write(path: Path, document: dict[str, Any]) -> None:
    # Atomic and owner-only: the gateway may read it at any moment.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def run_create(args: argparse.Namespace) -> int:
    path = _path(args)
    document = _read(path)
    key = "pk_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    scopes = sorted(set(args.scopes.split(",")))
    if not set(scopes) <= {"ingest", "read"}:
        raise CliError("scopes are ingest, read or ingest,read")
    document["keys"].append(
        {
            "id": digest[:12],
            "principal": args.principal,
            "key_sha256": digest,
            "scopes": scopes,
            "data_types": args.data_types.split(","),
            "may_read_restricted": args.restricted,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    _write(path, document)
    if args.json:
        print(json.dumps({"id": digest[:12], "principal": args.principal, "key": key}))
    else:
        print(f"id {digest[:12]} for {args.principal} ({','.join(scopes)}; {args.data_types})")
        print(f"key (shown once, store it now): {key}")
    return 0


def _id(entry: dict[str, Any]) -> str:
    return str(entry.get("id") or entry.get("key_sha256", "")[:12])


def run_list(args: argparse.Namespace) -> int:
    for entry in _read(_path(args))["keys"]:
        line = {
            "id": _id(entry),
            "principal": entry.get("principal"),
            "scopes": entry.get("scopes"),
            "data_types": entry.get("data_types", ["*"]),
            "may_read_restricted": entry.get("may_read_restricted", False),
        }
        if args.json:
            print(json.dumps(line))
        else:
            print(
                f"{line['id']}  {line['principal']:<20} {','.join(line['scopes'] or [])}  "
                f"{','.join(line['data_types'])}{'  +restricted' if line['may_read_restricted'] else ''}"
            )
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    path = _path(args)
    document = _read(path)
    kept = [e for e in document["keys"] if _id(e) != args.id]
    if len(kept) == len(document["keys"]):
        raise CliError(f"no key with id {args.id}")
    document["keys"] = kept
    _write(path, document)
    print(f"revoked {args.id}")
    return 0


def add_parser(commands: Any) -> None:
    keys = commands.add_parser(
        "keys",
        help="create, list and revoke API keys",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create",
        help="add a key for a principal (a source); prints the key once",
        epilog="example:\n  pantheon keys create --principal vienna-sensors --scopes ingest \\\n"
        "      --data-types 'sensor.*'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("--principal", required=True, help="the source this key ingests as")
    create.add_argument("--scopes", default="ingest,read", help="ingest, read or ingest,read (default)")
    create.add_argument(
        "--data-types", default="*", help="comma-separated patterns: *, sensor.*, weather.observation"
    )
    create.add_argument("--restricted", action="store_true", help="may read RESTRICTED data")
    create.add_argument("--json", action="store_true")
    create.set_defaults(run=run_create)
    listing = actions.add_parser("list", help="show the configured keys (ids, never keys)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=run_list)
    revoke = actions.add_parser("revoke", help="remove a key by id")
    revoke.add_argument("id", metavar="ID")
    revoke.set_defaults(run=run_revoke)
    for parser in (create, listing, revoke):
        parser.add_argument("--file", help="the keys file (default: $PANTHEON_API_KEYS_FILE)")
