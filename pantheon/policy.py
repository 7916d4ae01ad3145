"""The mesh policy: what each workload identity may do, and the grant of a call.

Every gRPC caller presents a client certificate from the deployment's CA; its
identity is the certificate's SPIFFE ID, `spiffe://<trust domain>/<name>`.
One JSON file (`PANTHEON_POLICY_FILE`) says what each name may do:

    {"trust_domain": "pantheon.local",
     "identities": {
       "simulation-engine": {
         "methods": ["IngestionService/*", "StorageService/GetObject"],
         "sources": ["simulation-engine"],
         "write_types": ["simulation.*"],
         "read_types": ["*"],
         "read_restricted": false,
         "act_for_principals": false,
         "certificates": ["<sha256 of the certificate, hex>"]}}}

- `methods`: `<Service>/<Method>`, `<Service>/*` or `*`; health and
  reflection need no entry.
- `sources`: the sources it may ingest as (`*`, `<prefix>*` or exact).
- `write_types`, `read_types`: data-type patterns (`*`, `<prefix>.*` or exact).
- `read_restricted`: whether it may read RESTRICTED data.
- `act_for_principals`: it calls on behalf of external principals (the
  gateway) and must then name one in every data call; the principal's own
  grant narrows the identity's (it still ingests only as sources its rule
  allows).
- `certificates`: if given, only these certificates (SHA-256 of their DER
  form) carry the identity, so a revoked certificate stays revoked even when
  its name is enrolled again. `pantheon identity create` records it.

The file is re-read when it changes (checked at most once a second). A file
that is missing or invalid refuses everyone (fail closed) until it is fixed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import ssl
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.errors import PermissionDenied, Unavailable
from pantheon.metadata.access import is_restricted

log = logging.getLogger(__name__)

DEFAULT_TRUST_DOMAIN = "pantheon.local"

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9.-]{0,253}$")
_METHOD = re.compile(r"^(\*|(IngestionService|StorageService)/(\*|[A-Z][A-Za-z]{0,63}))$")
_SOURCE = re.compile(r"^(\*|[a-z0-9][a-z0-9-]{0,62}\*?)$")
_TYPE = re.compile(r"^(\*|[a-z][a-z0-9_]{0,30}(\.[a-z][a-z0-9_]{0,30}){0,3}(\.\*)?)$")
_KEYS = frozenset(
    {
        "methods",
        "sources",
        "write_types",
        "read_types",
        "read_restricted",
        "act_for_principals",
        "certificates",
    }
)
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


#: Method groups, as the policy file names them.
INGEST_METHODS = (
    "IngestionService/IngestObject",
    "IngestionService/IngestRecords",
    "IngestionService/IngestRecordDocument",
    "IngestionService/GetIngestResult",
)
READ_METHODS = ("StorageService/GetObject", "StorageService/StatObject", "StorageService/SearchObjects")
#: Operator methods: a reconciler pass on demand (`pantheon reconcile`).
OPERATE_METHODS = ("IngestionService/Reconcile",)

#: gRPC metadata entry of the principal assertion (a serialized md.Principal).
PRINCIPAL_HEADER = "x-pantheon-principal-bin"


class PolicyError(ValueError):
    """The policy file is missing or malformed (the message names the entry)."""


@lru_cache(maxsize=1024)
def fingerprint(pem: bytes) -> str:
    """SHA-256 of a PEM certificate's DER form (hex), as the policy lists it."""
    try:
        der = ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return ""
    return hashlib.sha256(der).hexdigest()


def type_matches(pattern: str, data_type: str) -> bool:
    """Whether `data_type` falls under `pattern` (`*`, `sensor.*`, or exact)."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return data_type.startswith(pattern[:-1])
    return data_type == pattern


def source_matches(pattern: str, source: str) -> bool:
    """Whether `source` falls under `pattern` (`*`, `test-*`, or exact)."""
    if pattern.endswith("*"):
        return source.startswith(pattern[:-1])
    return source == pattern


def _short_method(full: str) -> str:
    """`/pantheon_api.ingest.v1.IngestionService/IngestObject` -> `IngestionService/IngestObject`."""
    service, _, method = full.lstrip("/").rpartition("/")
    return f"{service.rpartition('.')[2]}/{method}"


@dataclass(frozen=True)
class Rule:
    """What one workload identity may do."""

    name: str
    methods: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    write_types: tuple[str, ...] = ()
    read_types: tuple[str, ...] = ()
    read_restricted: bool = False
    act_for_principals: bool = False
    certificates: tuple[str, ...] = ()

    def holds(self, fingerprint: str) -> bool:
        """Whether a certificate with this fingerprint carries the identity."""
        return not self.certificates or fingerprint in self.certificates

    def may_call(self, full_method: str) -> bool:
        short = _short_method(full_method)
        service = short.split("/", 1)[0]
        return any(m in ("*", short, f"{service}/*") for m in self.methods)


#: Calls a service makes to itself in-process (ingestion to its local
#: storage): the caller was already checked where the call entered.
INTERNAL = Rule("internal", ("*",), ("*",), ("*",), ("*",), read_restricted=True)


def _strings(raw: Mapping[str, Any], key: str, grammar: re.Pattern[str], where: str) -> tuple[str, ...]:
    values = raw.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and grammar.fullmatch(v) for v in values):
        raise PolicyError(f"{where}.{key} must be a list of patterns like {grammar.pattern}")
    return tuple(values)


def _flag(raw: Mapping[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise PolicyError(f"{where}.{key} must be true or false")
    return value


def rule_from(name: str, raw: Any) -> Rule:
    """One identity's entry, validated; raises PolicyError naming the field."""
    where = f"identities.{name}"
    if not _NAME.fullmatch(name):
        raise PolicyError(f"{where}: names are lower-case letters, digits and dashes")
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} must be an object")
    unknown = set(raw) - _KEYS
    if unknown:
        raise PolicyError(f"{where} has unknown fields {sorted(unknown)}")
    return Rule(
        name=name,
        methods=_strings(raw, "methods", _METHOD, where),
        sources=_strings(raw, "sources", _SOURCE, where),
        write_types=_strings(raw, "write_types", _TYPE, where),
        read_types=_strings(raw, "read_types", _TYPE, where),
        read_restricted=_flag(raw, "read_restricted", where),
        act_for_principals=_flag(raw, "act_for_principals", where),
        certificates=_strings(raw, "certificates", _FINGERPRINT, where),
    )


def rule_document(rule: Rule) -> dict[str, Any]:
    """The policy file entry of `rule` (the inverse of `rule_from`)."""
    return {
        "methods": list(rule.methods),
        "sources": list(rule.sources),
        "write_types": list(rule.write_types),
        "read_types": list(rule.read_types),
        "read_restricted": rule.read_restricted,
        "act_for_principals": rule.act_for_principals,
        "certificates": list(rule.certificates),
    }


@dataclass(frozen=True)
class Policy:
    """Every identity's rule, by SPIFFE ID."""

    trust_domain: str
    rules: Mapping[str, Rule] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Any) -> Policy:
        if not isinstance(document, Mapping) or not isinstance(document.get("identities"), Mapping):
            raise PolicyError('the policy file must be a JSON object {"identities": {...}}')
        domain = document.get("trust_domain", DEFAULT_TRUST_DOMAIN)
        if not isinstance(domain, str) or not _TRUST_DOMAIN.fullmatch(domain):
            raise PolicyError("trust_domain must be a DNS-like name such as pantheon.local")
        rules = {name: rule_from(name, raw) for name, raw in document["identities"].items()}
        return cls(domain, rules)

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PolicyError(f"cannot read the policy file {path}: {type(exc).__name__}") from None
        return cls.from_document(document)

    def spiffe_id(self, name: str) -> str:
        return f"spiffe://{self.trust_domain}/{name}"

    def rule_for(self, spiffe_id: str) -> Rule | None:
        prefix = f"spiffe://{self.trust_domain}/"
        if not spiffe_id.startswith(prefix):
            return None
        return self.rules.get(spiffe_id[len(prefix) :])


class PolicyFile:
    """The policy, re-read from its file when that changes; fail closed.

    `current()` raises UNAVAILABLE while the file is missing or invalid, so
    no call passes on a policy nobody can read.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._policy: Policy | None = None
        self._stamp: tuple[int, ...] | None = None
        self._checked = float("-inf")
        self._refresh()

    def _stamp_now(self) -> tuple[int, ...] | None:
        try:
            info = self._path.stat()
        except OSError:
            return None
        # ctime and inode too: a chmod, or a replacement that kept the mtime
        # and size (cp -p, rsync -t), is a change to look at.
        return (info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_size)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        stamp = self._stamp_now()
        if stamp == self._stamp and stamp is not None and self._policy is not None:
            return  # unchanged and good; a broken policy is re-read every time
        self._stamp = stamp
        try:
            self._policy = Policy.load(self._path)
        except PolicyError as exc:
            self._policy = None
            log.error("refusing every gRPC caller until the policy file is fixed: %s", exc)
            return
        log.info("loaded the mesh policy for %d identities from %s", len(self._policy.rules), self._path)

    def current(self) -> Policy:
        self._refresh()
        if self._policy is None:
            raise Unavailable("the service's access policy is unreadable", reason="policy_unavailable")
        return self._policy


@dataclass(frozen=True)
class Grant:
    """What the current call may do: its identity's rule, narrowed by a principal."""

    rule: Rule
    principal: md.Principal | None = None

    @property
    def who(self) -> str:
        if self.principal is not None:
            return f"{self.rule.name} for {self.principal.name}"
        return self.rule.name

    def may_act_as(self, source: str) -> bool:
        if self.principal is not None and source != self.principal.name:
            return False
        return any(source_matches(p, source) for p in self.rule.sources)

    def _principal_covers(self, data_type: str) -> bool:
        return self.principal is None or any(type_matches(p, data_type) for p in self.principal.data_types)

    def may_write(self, data_type: str) -> bool:
        if self.principal is not None and not self.principal.may_ingest:
            return False
        own = any(type_matches(p, data_type) for p in self.rule.write_types)
        return own and self._principal_covers(data_type)

    def may_read_type(self, data_type: str) -> bool:
        if self.principal is not None and not self.principal.may_read:
            return False
        own = any(type_matches(p, data_type) for p in self.rule.read_types)
        return own and self._principal_covers(data_type)

    @property
    def may_read_restricted(self) -> bool:
        by_principal = self.principal is None or self.principal.may_read_restricted
        return self.rule.read_restricted and by_principal

    def may_read(self, meta: md.Metadata) -> bool:
        restricted = is_restricted(meta.classification)
        return self.may_read_type(meta.data_type) and (self.may_read_restricted or not restricted)

    # -- checks that raise PERMISSION_DENIED ----------------------------------
    # The messages name neither the identity nor what the refused object is:
    # they reach external callers through the gateway. The log says who.

    def _denied(self, message: str, reason: str) -> PermissionDenied:
        log.info("denied %s: %s", self.who, reason)
        return PermissionDenied(message, reason=reason)

    def check_source(self, source: str) -> None:
        if not self.may_act_as(source):
            raise self._denied("the caller may not ingest as this source", "source_not_allowed")

    def check_ingest(self, source: str, data_type: str) -> None:
        self.check_source(source)
        if not self.may_write(data_type):
            raise self._denied("the caller may not ingest this data type", "data_type_not_allowed")

    def check_read_type(self, data_type: str) -> None:
        if not self.may_read_type(data_type):
            raise self._denied("the caller may not read this data type", "data_type_not_allowed")

    def check_read(self, meta: md.Metadata) -> None:
        self.check_read_type(meta.data_type)
        if not self.may_read(meta):
            raise self._denied("the caller may not read restricted data", "restricted")


INTERNAL_GRANT = Grant(INTERNAL)

#: The grant of the current call, set by the interceptor where a call enters.
#: Outside a call it allows nothing, so a servicer reached some other way
#: fails closed.
NOBODY = Grant(Rule("nobody"))
current_grant: ContextVar[Grant] = ContextVar("current_grant", default=NOBODY)
