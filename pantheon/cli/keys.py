"""`pantheon keys create|list|revoke`: the gateway's API keys file.

The file (`PANTHEON_API_KEYS_FILE`, or `--file`) holds only SHA-256 hashes
of keys; a new key is printed once and never stored. The gateway re-reads
the file within a second of a change. Entries carry an `id` (the first 12
hex characters of the hash) to list and revoke them by.

Nothing is written that the gateway would not load: the principal must be a
source name, scopes `ingest` and/or `read`, data-type patterns `*`,
`<prefix>.*` or a data type, and the whole resulting file is checked as the
gateway checks it. (A file the gateway cannot load makes it refuse every
key with 503 `keys_unavailable` until the file is fixed.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pantheon.cli.rest import CliError
from pantheon.cli.settings import CliSettings

# The rules of the gateway's keys file (gateway/auth.py). The pantheon package
# never imports the gateway, so they are repeated here, and
# tests/unit/test_keys_grammar.py checks that both sides accept and refuse
# the same principals, scopes, patterns and documents.
SCOPES = ("ingest", "read")
_SOURCE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]{0,30}(\.[a-z][a-z0-9_]{0,30}){0,3}(\.\*)?)$")

_SOURCE_RULE = "a source name: 2-63 lower-case letters, digits and '-', not starting with '-'"
_PATTERN_RULE = "'*', '<prefix>.*' (such as 'sensor.*') or a data type (such as 'sensor.air_quality')"


def _is_source(value: Any) -> bool:
    return isinstance(value, str) and _SOURCE.fullmatch(value) is not None


def _is_pattern(value: Any) -> bool:
    return isinstance(value, str) and _PATTERN.fullmatch(value) is not None


def check_principal(principal: str) -> str:
    """`principal` if it is a valid source name; CliError otherwise."""
    if not _is_source(principal):
        hint = re.sub(r"[^a-z0-9-]+", "-", principal.lower()).strip("-")[:63]
        suggestion = f" (such as {hint!r})" if _is_source(hint) else ""
        raise CliError(f"principal {principal!r} is not {_SOURCE_RULE}{suggestion}")
    return principal


def check_scopes(text: str) -> list[str]:
    """The scopes in a comma-separated list, sorted and unique; CliError unless ingest and/or read."""
    scopes = sorted({part.strip() for part in text.split(",")})
    if not scopes or not set(scopes) <= set(SCOPES):
        raise CliError(f"scopes are ingest, read or ingest,read (got {text!r})")
    return scopes


def check_data_types(text: str) -> list[str]:
    """The data-type patterns in a comma-separated list, in order, unique; CliError for an invalid one."""
    patterns = list(dict.fromkeys(part.strip() for part in text.split(",")))
    for pattern in patterns:
        if not _is_pattern(pattern):
            raise CliError(f"data-type pattern {pattern!r} is invalid: use {_PATTERN_RULE}")
    return patterns


def document_problem(document: Any) -> str | None:
    """Why the gateway would refuse to load `document` as its keys file, or None if it would load it.

    The same checks, in the same order, as gateway/auth.py `KeyStore.from_document`.
    """
    keys = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(keys, list):
        return 'the keys file must be a JSON object {"keys": [...]}'
    for index, raw in enumerate(keys):
        where = f"keys[{index}]"
        if not isinstance(raw, Mapping):
            return f"{where} is not an object"
        if not _is_source(raw.get("principal")):
            return f"{where}.principal must be {_SOURCE_RULE}"
        digest = raw.get("key_sha256")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            return f"{where}.key_sha256 must be 64 lower-case hex characters"
        scopes = raw.get("scopes")
        if not isinstance(scopes, list) or not scopes or not all(s in SCOPES for s in scopes):
            return f"{where}.scopes must be a non-empty list of {list(SCOPES)}"
        patterns = raw.get("data_types", ["*"])
        if not isinstance(patterns, list) or not patterns:
            return f"{where}.data_types must be a non-empty list"
        if not all(_is_pattern(pattern) for pattern in patterns):
            return f"{where}.data_types has an invalid pattern (use {_PATTERN_RULE})"
        if not isinstance(raw.get("may_read_restricted", False), bool):
            return f"{where}.may_read_restricted must be true or false"
    digests = [raw["key_sha256"] for raw in keys]
    if len(set(digests)) != len(digests):
        return "the keys file lists the same key twice"
    return None


def _path(args: argparse.Namespace) -> Path:
    name = args.file or CliSettings.from_env().api_keys_file
    if not name:
        raise CliError(
            'no keys file: pass --file or set PANTHEON_API_KEYS_FILE (eval "$(scripts/stack env)")'
        )
    return Path(name)


def _read(path: Path) -> dict[str, Any]:
    """The keys file's document (empty if there is no file); CliError if it is not `{"keys": [...]}`."""
    if not path.exists():
        return {"keys": []}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    except (ValueError, RecursionError):
        raise CliError(f"{path} is not valid JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise CliError(f'{path} must hold {{"keys": [...]}}')
    return document


def _write(path: Path, document: dict[str, Any], *, was: str | None) -> None:
    """Replace the keys file with `document`, unless the gateway could not load it.

    `was` is the problem of the document as read, if any, for the message.
    """
    problem = document_problem(document)
    if problem is not None:
        if was is not None:
            raise CliError(
                f"{path} is already invalid, so the gateway refuses every key (503 keys_unavailable): "
                f"{problem}; nothing written, fix the file (or revoke that entry) first"
            )
        raise CliError(f"nothing written: the gateway could not load the result: {problem}")
    # Atomic and owner-only from the start: the gateway may read it at any moment.
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(document, indent=2) + "\n")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CliError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None


def run_create(args: argparse.Namespace) -> int:
    principal = check_principal(args.principal)
    scopes = check_scopes(args.scopes)
    data_types = check_data_types(args.data_types)
    path = _path(args)
    document = _read(path)
    was = document_problem(document)
    key = "pk_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    document["keys"].append(
        {
            "id": digest[:12],
            "principal": principal,
            "key_sha256": digest,
            "scopes": scopes,
            "data_types": data_types,
            "may_read_restricted": args.restricted,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    _write(path, document, was=was)
    if args.json:
        print(json.dumps({"id": digest[:12], "principal": principal, "key": key}))
    else:
        print(f"id {digest[:12]} for {principal} ({','.join(scopes)}; {','.join(data_types)})")
        print(f"key (shown once, store it now): {key}")
    return 0


def _id(entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return ""
    return str(entry.get("id") or str(entry.get("key_sha256") or "")[:12])


def run_list(args: argparse.Namespace) -> int:
    path = _path(args)
    document = _read(path)
    for entry in document["keys"]:
        if not isinstance(entry, Mapping):
            continue  # named by the warning below
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
                f"{line['id']}  {line['principal']!s:<20} {','.join(map(str, line['scopes'] or []))}  "
                f"{','.join(map(str, line['data_types'] or []))}"
                f"{'  +restricted' if line['may_read_restricted'] is True else ''}"
            )
    problem = document_problem(document)
    if problem is not None:
        print(
            f"pantheon keys: warning: the gateway cannot load {path}, so it refuses every key "
            f"(503 keys_unavailable): {problem}",
            file=sys.stderr,
        )
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    path = _path(args)
    document = _read(path)
    was = document_problem(document)
    kept = [e for e in document["keys"] if _id(e) != args.id]
    if len(kept) == len(document["keys"]):
        raise CliError(f"no key with id {args.id}")
    document["keys"] = kept
    _write(path, document, was=was)
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
    create.add_argument(
        "--principal",
        required=True,
        help="the source this key ingests as: lower-case letters, digits and '-' (vienna-sensors)",
    )
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
