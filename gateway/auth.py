"""API keys: who is calling, and what that principal may do.

Keys live in a JSON file (`PANTHEON_API_KEYS_FILE`) that holds only their
SHA-256 hashes, never the keys themselves:

    {"keys": [{"principal": "demo-city",
               "key_sha256": "<64 hex>",
               "scopes": ["ingest", "read"],
               "data_types": ["sensor.*", "weather.observation"],
               "may_read_restricted": false}]}

A principal is a source: it ingests only as itself. `data_types` patterns
(`*`, `<prefix>.*` or an exact data type) bound both what it may ingest and
what it may read; RESTRICTED data additionally needs `may_read_restricted`.
A presented key is hashed and compared with every configured hash using a
constant-time comparison; the plaintext key is never logged or kept.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCOPE_INGEST = "ingest"
SCOPE_READ = "read"
SCOPES = frozenset({SCOPE_INGEST, SCOPE_READ})

_SOURCE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]{0,30}(\.[a-z][a-z0-9_]{0,30}){0,3}(\.\*)?)$")


class KeyFileError(ValueError):
    """The keys file is missing or malformed (the message names the entry, never a key)."""


def hash_key(key: str) -> str:
    """The lower-case hex SHA-256 of an API key, as stored in the keys file."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def type_matches(pattern: str, data_type: str) -> bool:
    """Whether `data_type` falls under `pattern` (`*`, `sensor.*`, or exact)."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return data_type.startswith(pattern[:-1])
    return data_type == pattern


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a source with scopes."""

    name: str
    scopes: frozenset[str]
    data_types: tuple[str, ...]
    may_read_restricted: bool = False

    def covers(self, data_type: str) -> bool:
        return any(type_matches(p, data_type) for p in self.data_types)

    def may_ingest(self, data_type: str) -> bool:
        return SCOPE_INGEST in self.scopes and self.covers(data_type)

    def may_read_type(self, data_type: str) -> bool:
        return SCOPE_READ in self.scopes and self.covers(data_type)

    def may_read(self, data_type: str, restricted: bool) -> bool:
        return self.may_read_type(data_type) and (self.may_read_restricted or not restricted)


@dataclass(frozen=True)
class _Entry:
    key_sha256: bytes
    principal: Principal


def _entry(raw: Any, index: int) -> _Entry:
    where = f"keys[{index}]"
    if not isinstance(raw, Mapping):
        raise KeyFileError(f"{where} is not an object")
    principal = raw.get("principal")
    if not isinstance(principal, str) or not _SOURCE.fullmatch(principal):
        raise KeyFileError(f"{where}.principal must be a source name ([a-z0-9][a-z0-9-]{{1,62}})")
    digest = raw.get("key_sha256")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise KeyFileError(f"{where}.key_sha256 must be 64 lower-case hex characters")
    scopes = raw.get("scopes")
    if not isinstance(scopes, list) or not scopes or not set(scopes) <= SCOPES:
        raise KeyFileError(f"{where}.scopes must be a non-empty list of {sorted(SCOPES)}")
    patterns = raw.get("data_types", ["*"])
    if not isinstance(patterns, list) or not patterns:
        raise KeyFileError(f"{where}.data_types must be a non-empty list")
    for pattern in patterns:
        if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern):
            raise KeyFileError(f"{where}.data_types has an invalid pattern (use '*', 'sensor.*' or a type)")
    restricted = raw.get("may_read_restricted", False)
    if not isinstance(restricted, bool):
        raise KeyFileError(f"{where}.may_read_restricted must be true or false")
    return _Entry(
        digest.encode("ascii"),
        Principal(principal, frozenset(scopes), tuple(patterns), restricted),
    )


class KeyStore:
    """The configured API keys, looked up by the hash of a presented key.

    Loaded from a file, the store re-reads it when it changes (checked at
    most once a second), so `pantheon keys create|revoke` take effect
    without a restart. A file that no longer parses is ignored, keeping the
    keys last read, and logged.
    """

    def __init__(self, entries: Iterable[_Entry], path: Path | None = None) -> None:
        self._entries = tuple(entries)
        self._path = path
        self._stamp = self._stamp_of(path)
        self._checked = time.monotonic()

    @staticmethod
    def _stamp_of(path: Path | None) -> tuple[int, int] | None:
        try:
            info = path.stat() if path is not None else None
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size) if info is not None else None

    @classmethod
    def from_document(cls, document: Any, path: Path | None = None) -> KeyStore:
        keys = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(keys, list):
            raise KeyFileError('the keys file must be a JSON object {"keys": [...]}')
        entries = [_entry(raw, i) for i, raw in enumerate(keys)]
        if len({e.key_sha256 for e in entries}) != len(entries):
            raise KeyFileError("the keys file lists the same key twice")
        return cls(entries, path)

    @classmethod
    def load(cls, path: str | Path) -> KeyStore:
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot read the keys file {path}: {type(exc).__name__}") from None
        return cls.from_document(document, Path(path))

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._path is None or now - self._checked < 1.0:
            return
        self._checked = now
        stamp = self._stamp_of(self._path)
        if stamp == self._stamp:
            return
        try:
            fresh = KeyStore.load(self._path)
        except KeyFileError as exc:
            log.error("keeping the previous API keys: %s", exc)
            self._stamp = stamp
            return
        self._entries, self._stamp = fresh._entries, stamp
        log.info("reloaded %d API keys from %s", len(self._entries), self._path)

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, key: str) -> Principal | None:
        """The principal of `key`, or None; the time taken does not depend on which entry matches."""
        self._refresh()
        presented = hash_key(key).encode("ascii")
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.key_sha256):
                found = entry.principal
        return found
