"""`pantheon identity create|list|revoke`: enrol internal components in the mesh.

An identity is a client certificate signed by the deployment's CA whose only
name is `spiffe://<trust domain>/<name>`, plus an entry in the mesh policy
file (`PANTHEON_POLICY_FILE`) saying what that name may do. The services
re-read the policy within a second, so enrolling and revoking need no
restart. Each entry pins its certificate's fingerprint. Revoking removes the
entry (and the files, where enrolment put them): the certificate still
completes a handshake, but every call it makes is PERMISSION_DENIED, also
after the name is enrolled again with a new certificate.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from pantheon.cli.rest import CliError
from pantheon.cli.settings import CliSettings
from pantheon.devstack.certs import issue_identity
from pantheon.devstack.mesh import certificate_fingerprint, editing_policy, read_policy_document
from pantheon.policy import INGEST_METHODS, READ_METHODS, PolicyError, rule_document, rule_from

_GROUPS = {"ingest": INGEST_METHODS, "read": READ_METHODS}

_EXAMPLES = """\
examples:
  eval "$(scripts/stack env)"
  # a component that ingests simulation.* as itself and reads all but RESTRICTED data
  pantheon identity create flood-model --sources flood-model --write-types 'simulation.*'
  # a read-only dashboard that may read RESTRICTED weather data
  pantheon identity create dashboard --methods read --read-types 'weather.*' --read-restricted
  pantheon identity list
  pantheon identity revoke dashboard
"""


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _policy_path(args: argparse.Namespace) -> Path:
    name = args.policy_file or CliSettings.from_env().policy_file
    if not name:
        raise CliError(
            'no policy file: pass --policy-file or set PANTHEON_POLICY_FILE (eval "$(scripts/stack env)")'
        )
    return Path(name)


def _methods(text: str) -> list[str]:
    found: list[str] = []
    for part in _split(text):
        found += _GROUPS.get(part, (part,))
    return list(dict.fromkeys(found))


@contextmanager
def _editing(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with editing_policy(path) as document:
            yield document
    except PolicyError as exc:
        raise CliError(str(exc)) from None


def run_create(args: argparse.Namespace) -> int:
    path = _policy_path(args)
    raw = {
        "methods": _methods(args.methods),
        "sources": _split(args.sources),
        "write_types": _split(args.write_types),
        "read_types": _split(args.read_types),
        "read_restricted": args.read_restricted,
        "act_for_principals": False,
    }
    try:
        rule = rule_from(args.name, raw)
    except PolicyError as exc:
        raise CliError(str(exc)) from None
    settings = CliSettings.from_env()
    ca_cert = Path(args.ca_cert or settings.ca_file or "")
    ca_key = Path(args.ca_key) if args.ca_key else ca_cert.with_name("ca.key")
    if not ca_cert.is_file() or not ca_key.is_file():
        raise CliError("the CA certificate and key are needed to sign the identity (--ca-cert, --ca-key)")
    out_dir = Path(args.out_dir or settings.identities_dir)
    with _editing(path) as document:
        if rule.name in document["identities"]:
            raise CliError(f"identity {rule.name!r} exists; revoke it first to change it")
        spiffe_id = f"spiffe://{document.get('trust_domain', 'pantheon.local')}/{rule.name}"
        key, cert = issue_identity(ca_cert, ca_key, out_dir, rule.name, spiffe_id)
        # Pinned: this certificate alone carries the name, so one revoked
        # earlier under the same name stays refused.
        pinned = replace(rule, certificates=(certificate_fingerprint(cert),))
        document["identities"][rule.name] = rule_document(pinned)
    print(f"identity {spiffe_id}\n  certificate {cert}\n  key         {key}\n  policy      {path}")
    print("connect with PANTHEON_CLIENT_CERT_FILE / PANTHEON_CLIENT_KEY_FILE set to these files")
    return 0


def _grouped(methods: list[str]) -> str:
    """Methods with whole groups named by their group (`ingest`, `read`)."""
    shown = [group for group, members in _GROUPS.items() if set(members) <= set(methods)]
    covered = {m for group in shown for m in _GROUPS[group]}
    return ",".join(shown + [m for m in methods if m not in covered]) or "-"


def run_list(args: argparse.Namespace) -> int:
    try:
        document = read_policy_document(_policy_path(args))
    except PolicyError as exc:
        raise CliError(str(exc)) from None
    for name, entry in sorted(document["identities"].items()):
        flags = [f for f in ("read_restricted", "act_for_principals") if entry.get(f)]
        print(
            f"{name:<20} methods={_grouped(entry.get('methods', []))}"
            f" sources={','.join(entry.get('sources', [])) or '-'}"
            f" write={','.join(entry.get('write_types', [])) or '-'}"
            f" read={','.join(entry.get('read_types', [])) or '-'} {' '.join(flags)}".rstrip()
        )
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    path = _policy_path(args)
    with _editing(path) as document:
        if document["identities"].pop(args.name, None) is None:
            raise CliError(f"no identity {args.name!r} in {path}")
    # Its certificate is useless now; remove it where enrolment put it.
    out_dir = Path(CliSettings.from_env().identities_dir)
    for suffix in (".crt", ".key"):
        (out_dir / f"{args.name}{suffix}").unlink(missing_ok=True)
    print(f"revoked {args.name}: its calls are refused within a second")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "identity",
        help="enrol, list and revoke workload identities of the gRPC mesh",
        description=__doc__,
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--policy-file", help="the mesh policy (default: $PANTHEON_POLICY_FILE)")
    actions = parser.add_subparsers(dest="action", required=True)

    create = actions.add_parser("create", help="issue a certificate and add a policy entry")
    create.add_argument("name", help="lower-case letters, digits and dashes")
    create.add_argument(
        "--methods", default="ingest,read", help="ingest, read, or Service/Method,... [ingest,read]"
    )
    create.add_argument("--sources", default="", help="sources it may ingest as: names, prefix-* or * [none]")
    create.add_argument("--write-types", default="", help="data-type patterns it may ingest [none]")
    create.add_argument("--read-types", default="*", help="data-type patterns it may read [*]")
    create.add_argument("--read-restricted", action="store_true", help="it may read RESTRICTED data")
    create.add_argument("--ca-cert", help="CA certificate (default: $PANTHEON_CA_FILE)")
    create.add_argument("--ca-key", help="CA key (default: ca.key beside the CA certificate)")
    create.add_argument("--out-dir", help="where <name>.crt/.key go (default: $PANTHEON_IDENTITIES_DIR)")
    create.set_defaults(run=run_create)

    listing = actions.add_parser("list", help="what each identity may do")
    listing.set_defaults(run=run_list)

    revoke = actions.add_parser("revoke", help="remove an identity from the policy")
    revoke.add_argument("name")
    revoke.set_defaults(run=run_revoke)
