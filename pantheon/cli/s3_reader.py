"""`pantheon s3-reader create|list|revoke`: read-only MinIO keys for downstream readers.

Components that read objects straight from MinIO (any S3 client) get a key
of their own that may only read and list the buckets its data-type patterns
cover:

- `*`: every domain's bucket; `weather.*`: `pantheon-weather`;
- a longer prefix (`sensor.air.*`) or an exact type (`sensor.air_quality`):
  that domain's bucket, limited to the object names of those types
  (`v1/sensor.air_quality/...`) for reading and for listing.

The `-restricted` buckets (RESTRICTED data) are covered only with
`--restricted`, and never `pantheon-index` (every object's metadata,
RESTRICTED included). The key may call exactly s3:GetObject, s3:ListBucket
and s3:GetBucketLocation: no write, no delete, no admin API.

Each reader is a MinIO user `pantheon-reader-<name>` with the policy of the
same name. Its secret is random and printed once. The command runs as
MinIO's root user through the admin API: `MINIO_ENDPOINT`,
`MINIO_ROOT_USER`, `MINIO_ROOT_PASSWORD` and `PANTHEON_CA_FILE`
(`eval "$(scripts/stack env)"` sets them for the dev stack); `--endpoint`,
`--root-user`, `--root-password-file` and `--ca-file` override them.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import certifi
import urllib3
from minio import MinioAdmin
from minio.credentials.providers import StaticProvider
from minio.error import MinioAdminException

from pantheon.cli.reader_policy import (
    NAME_RULE,
    check_name,
    check_patterns,
    readable_resources,
    reader_policy,
    reader_scopes,
)
from pantheon.cli.rest import CliError
from pantheon.cli.settings import CliSettings

#: Users and policies of readers are named `pantheon-reader-<name>`.
READER_PREFIX = "pantheon-reader-"

# The policy a reader gets is built in pantheon.cli.reader_policy; this module
# talks to MinIO's admin API (the docstring above is the command's --help).


def _endpoint(value: str) -> str:
    """`host:port` of an `https://` endpoint (a bare `host:port` means https); plaintext is refused."""
    if value.startswith("http://"):
        raise CliError(f"MinIO endpoint {value!r} is plain HTTP: only https:// is accepted")
    address = value.removeprefix("https://").rstrip("/")
    if not address or "/" in address:
        raise CliError(f"MinIO endpoint {value!r} is not https://<host>:<port>")
    return address


def _admin(args: argparse.Namespace) -> tuple[MinioAdmin, str]:
    settings = CliSettings.from_env()
    endpoint = args.endpoint or settings.minio_endpoint
    user = args.root_user or settings.minio_root_user
    if args.root_password_file:
        try:
            password: str | None = Path(args.root_password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CliError(
                f"cannot read {args.root_password_file}: {exc.strerror or type(exc).__name__}"
            ) from None
    else:
        password = settings.minio_root_password
    hint = ' (for the dev stack: eval "$(scripts/stack env)")'
    if not endpoint:
        raise CliError("MINIO_ENDPOINT is not set and no --endpoint given" + hint)
    if not user or not password:
        raise CliError("MinIO root credentials missing: set MINIO_ROOT_USER and MINIO_ROOT_PASSWORD" + hint)
    ca_file = args.ca_file or settings.ca_file
    if ca_file and not Path(ca_file).is_file():
        raise CliError(f"CA file {ca_file} does not exist")
    address = _endpoint(endpoint)
    http = urllib3.PoolManager(
        cert_reqs="CERT_REQUIRED",
        ca_certs=ca_file or certifi.where(),
        timeout=urllib3.Timeout(connect=5.0, read=15.0),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(502, 503, 504)),
    )
    admin = MinioAdmin(
        endpoint=address, credentials=StaticProvider(user, password), secure=True, http_client=http
    )
    return admin, f"https://{address}"


def _code(exc: MinioAdminException) -> str:
    try:
        return str(json.loads(exc._body).get("Code") or exc._code)
    except (ValueError, TypeError, AttributeError):
        return str(exc._code)


def _refused(exc: MinioAdminException, what: str) -> CliError:
    try:
        message = str(json.loads(exc._body).get("Message") or "")
    except (ValueError, TypeError, AttributeError):
        message = ""
    return CliError(f"MinIO refused to {what}: {_code(exc)} {message}".rstrip())


def _exists(admin: MinioAdmin, access_key: str) -> bool:
    try:
        admin.user_info(access_key)
    except MinioAdminException as exc:
        if _code(exc) == "XMinioAdminNoSuchUser":
            return False
        raise _refused(exc, f"look up {access_key}") from None
    return True


def _unreachable(endpoint: str, exc: Exception) -> CliError:
    reason = getattr(exc, "reason", None)
    detail = type(reason).__name__ if isinstance(reason, Exception) else type(exc).__name__
    if "SSL" in detail:
        detail += " (is PANTHEON_CA_FILE or --ca-file the CA of MinIO's certificate?)"
    return CliError(f"cannot reach MinIO at {endpoint}: {detail}")


def _create(args: argparse.Namespace, admin: MinioAdmin, endpoint: str) -> int:
    name = check_name(args.name)
    patterns = check_patterns(args.data_types)
    policy = reader_policy(patterns, restricted=args.restricted)
    access_key = policy_name = READER_PREFIX + name
    if _exists(admin, access_key):
        raise CliError(f"reader {name} already exists (revoke it first to replace its key)")
    # 40 characters, MinIO's maximum secret length.
    secret = secrets.token_urlsafe(30)
    done: list[str] = []
    try:
        admin.policy_add(policy_name, policy=policy)
        done.append("policy")
        admin.user_add(access_key, secret)
        done.append("user")
        admin.attach_policy([policy_name], user=access_key)
    except BaseException:
        # Nothing half-made stays behind: no user without its policy, no stray policy.
        if "user" in done:
            _quietly(admin.user_remove, access_key)
        if "policy" in done:
            _quietly(admin.policy_remove, policy_name)
        raise
    buckets = reader_scopes(patterns, restricted=args.restricted)
    if args.json:
        print(
            json.dumps(
                {
                    "name": name,
                    "endpoint": endpoint,
                    "access_key": access_key,
                    "secret_key": secret,
                    "data_types": patterns,
                    "restricted": args.restricted,
                    "readable": readable_resources(policy),
                    "buckets": sorted(buckets),
                }
            )
        )
        return 0
    print(f"reader {name}: read-only ({','.join(patterns)}{'; +restricted' if args.restricted else ''})")
    for resource in readable_resources(policy):
        print(f"  may read {resource}")
    print(f"endpoint:   {endpoint}")
    print(f"access key: {access_key}")
    print(f"secret key (shown once, store it now): {secret}")
    return 0


def _quietly(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except Exception as exc:  # best effort: report, keep the original error
        print(
            f"pantheon s3-reader: could not undo {call.__name__}({args[0]}): {type(exc).__name__}",
            file=sys.stderr,
        )


def _list(args: argparse.Namespace, admin: MinioAdmin, endpoint: str) -> int:
    try:
        users = json.loads(admin.user_list())
    except MinioAdminException as exc:
        raise _refused(exc, "list users") from None
    readers = sorted(k for k in users if k.startswith(READER_PREFIX))
    if not readers and not args.json:
        print("no readers")
    for access_key in readers:
        info = users[access_key] if isinstance(users[access_key], Mapping) else {}
        attached = [p for p in str(info.get("policyName") or "").split(",") if p]
        readable: list[str] = []
        for policy_name in attached:
            try:
                readable += readable_resources(json.loads(admin.policy_info(policy_name)))
            except (MinioAdminException, ValueError):
                readable.append(f"(policy {policy_name} unreadable)")
        line = {
            "name": access_key.removeprefix(READER_PREFIX),
            "access_key": access_key,
            "status": info.get("status", ""),
            "policies": attached,
            "readable": readable,
        }
        if args.json:
            print(json.dumps(line))
        else:
            print(f"{line['name']:<20} {line['status']!s:<9} {' '.join(readable) or '(nothing)'}")
    return 0


def _policy_exists(admin: MinioAdmin, policy_name: str) -> bool:
    try:
        admin.policy_info(policy_name)
    except MinioAdminException as exc:
        if _code(exc) == "XMinioAdminNoSuchPolicy":
            return False
        raise _refused(exc, f"look up policy {policy_name}") from None
    return True


def _revoke(args: argparse.Namespace, admin: MinioAdmin, endpoint: str) -> int:
    name = check_name(args.name)
    access_key = policy_name = READER_PREFIX + name
    # MinIO answers a removal of a missing policy with success: look first.
    removed = []
    if _exists(admin, access_key):
        admin.user_remove(access_key)  # its key stops working at once
        removed.append("user")
    if _policy_exists(admin, policy_name):
        admin.policy_remove(policy_name)
        removed.append("policy")
    if not removed:
        raise CliError(f"no reader {name}")
    print(f"revoked {name} ({' and '.join(removed)} {access_key} removed)")
    return 0


_ACTIONS = {"create": _create, "list": _list, "revoke": _revoke}


def run(args: argparse.Namespace) -> int:
    if args.action in ("create", "revoke"):
        check_name(args.name)  # before any connection
    if args.action == "create":
        reader_policy(check_patterns(args.data_types), restricted=args.restricted)
    admin, endpoint = _admin(args)
    try:
        return _ACTIONS[args.action](args, admin, endpoint)
    except MinioAdminException as exc:
        raise _refused(exc, args.action) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _unreachable(endpoint, exc) from None


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "s3-reader",
        help="create, list and revoke read-only MinIO keys for downstream readers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create",
        help="a read-only key for the buckets of some data types; prints its secret once",
        epilog="examples:\n"
        '  eval "$(scripts/stack env)"\n'
        "  pantheon s3-reader create viz --data-types 'weather.*,sensor.air_quality'\n"
        "  pantheon s3-reader create crisis-desk --data-types 'hazard.*' --restricted",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("name", metavar="NAME", help=f"the reader's name: {NAME_RULE}")
    create.add_argument(
        "--data-types",
        required=True,
        help="comma-separated patterns: '*', 'weather.*', 'sensor.air_quality'",
    )
    create.add_argument(
        "--restricted", action="store_true", help="may read RESTRICTED data too (the -restricted buckets)"
    )
    create.add_argument("--json", action="store_true", help="print one JSON object (secret included)")
    listing = actions.add_parser("list", help="show the readers and what each may read (never secrets)")
    listing.add_argument("--json", action="store_true", help="one JSON object per reader")
    revoke = actions.add_parser("revoke", help="remove a reader's user and policy; its key stops working")
    revoke.add_argument("name", metavar="NAME")
    for sub in (create, listing, revoke):
        sub.add_argument("--endpoint", help="MinIO, https://<host>:<port> (default: $MINIO_ENDPOINT)")
        sub.add_argument("--root-user", help="MinIO's root user (default: $MINIO_ROOT_USER)")
        sub.add_argument(
            "--root-password-file",
            help="a file holding the root password (default: $MINIO_ROOT_PASSWORD; not a flag, "
            "so it never shows in the process list)",
        )
        sub.add_argument(
            "--ca-file", help="CA of MinIO's certificate (default: $PANTHEON_CA_FILE, else the system's)"
        )
        sub.set_defaults(run=run)
