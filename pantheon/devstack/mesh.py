"""The dev stack's workload identities and the mesh policy that governs them.

Each built-in identity gets a client certificate from the dev CA whose only
name is its SPIFFE ID, and an entry in the policy file the services enforce.
Identities enrolled later (`pantheon identity create`) stay in the policy
file across `up`; the built-in entries are rewritten to their defaults.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from pantheon.devstack.certs import CertFiles, issue_identity
from pantheon.devstack.files import write_atomic
from pantheon.devstack.paths import StackPaths
from pantheon.policy import (
    DEFAULT_TRUST_DOMAIN,
    INGEST_METHODS,
    OPERATE_METHODS,
    READ_METHODS,
    Policy,
    PolicyError,
    Rule,
    fingerprint,
    rule_document,
)

GATEWAY = "gateway"
INGEST = "ingest"
DEV_CLIENT = "dev-client"
SIMULATION = "simulation-engine"

#: What each built-in identity may do (README, "The mesh").
BUILTIN: dict[str, Rule] = {
    # The REST edge: ingests and reads only on behalf of an API-key principal,
    # whose grant narrows this one in every call.
    GATEWAY: Rule(
        GATEWAY, INGEST_METHODS + READ_METHODS, ("*",), ("*",), ("*",), True, act_for_principals=True
    ),
    # The ingestion service calling a remote storage service: the only
    # identity that may write objects and idempotency records.
    INGEST: Rule(INGEST, ("StorageService/*",), ("*",), ("*",), ("*",), read_restricted=True),
    # An internal component: ingests `simulation.*` as itself, reads what is
    # not RESTRICTED.
    SIMULATION: Rule(SIMULATION, INGEST_METHODS + READ_METHODS, (SIMULATION,), ("simulation.*",), ("*",)),
    # The developer's own tools and tests on a dev stack: any source, every
    # data type. Never issue such an identity to a component.
    DEV_CLIENT: Rule(
        DEV_CLIENT,
        INGEST_METHODS + READ_METHODS + OPERATE_METHODS,
        ("*",),
        ("*",),
        ("*",),
        read_restricted=True,
    ),
}


def identity_files(paths: StackPaths, name: str) -> tuple[Path, Path]:
    """(certificate, key) of identity `name`."""
    return paths.identities / f"{name}.crt", paths.identities / f"{name}.key"


def read_policy_document(path: Path) -> dict[str, Any]:
    """The policy file's document; an empty policy if there is no file.

    A file that exists but does not load raises PolicyError: rewriting it
    would silently drop every identity it holds.
    """
    if not path.exists():
        return {"trust_domain": DEFAULT_TRUST_DOMAIN, "identities": {}}
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        raise PolicyError(f"{path} is not a readable JSON policy file; fix or remove it") from None
    Policy.from_document(document)
    return dict(document)


@contextmanager
def editing_policy(path: Path) -> Iterator[dict[str, Any]]:
    """The policy document to change in place, written back (validated,
    atomically) when the block ends without an error.

    An exclusive lock on `<file>.lock` spans the read, the change and the
    write, so two edits at once (an enrolment and a revocation) never undo
    each other.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        document = read_policy_document(path)
        yield document
        Policy.from_document(document)
        write_atomic(path, json.dumps(document, indent=2).encode() + b"\n")


def certificate_fingerprint(cert: Path) -> str:
    return fingerprint(cert.read_bytes())


def ensure_identities(paths: StackPaths, certs: CertFiles) -> None:
    """Issue missing built-in identities and write their policy entries.

    Each entry pins its certificate: a revoked built-in (`pantheon identity
    revoke`, which deletes its files) gets a new certificate on the next
    `up`, and the old one stays refused.
    """
    with editing_policy(paths.policy_file) as document:
        domain = document.setdefault("trust_domain", DEFAULT_TRUST_DOMAIN)
        for name, rule in BUILTIN.items():
            cert, key = identity_files(paths, name)
            if not (cert.is_file() and key.is_file()):
                issue_identity(
                    certs.ca_cert, certs.ca_key, paths.identities, name, f"spiffe://{domain}/{name}"
                )
            pinned = replace(rule, certificates=(certificate_fingerprint(cert),))
            document["identities"][name] = rule_document(pinned)
