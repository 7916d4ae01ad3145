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

Fail closed: a keys file that is missing, unreadable or invalid when it is
re-read leaves the store with no keys at all (never the keys last read: a
revoked key must not outlive its revocation), and `authenticate` raises
`KeysUnavailable` until the file loads again.

`pantheon keys` (pantheon/cli/keys.py) writes this file; it may not import
the gateway, so it keeps its own copy of the rules below, and
tests/unit/test_keys_grammar.py checks that the two agree.
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


#: Seconds between checks of the keys file for changes.
CHECK_INTERVAL_S = 1.0


class KeyFileError(ValueError):
    """The keys file is missing or malformed (the message names the entry, never a key)."""


class KeysUnavailable(Exception):
    """The keys file could not be loaded, so no key can be checked: every key is refused."""


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
    if (
        not isinstance(scopes, list)
        or not scopes
        or not all(isinstance(s, str) and s in SCOPES for s in scopes)
    ):
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
    most once every `check_interval_s`, a second by default), so `pantheon
    keys create|revoke` take effect without a restart. At start-up a bad
    file is an error (`load` raises `KeyFileError`). A file that later goes
    missing, becomes unreadable or no longer validates empties the store and
    marks it broken: `authenticate` raises `KeysUnavailable` and `problem()`
    says why, until a check finds the file loadable again (while broken the
    file is re-read at every check, changed or not, so a fixed permission
    also counts). The change is logged once at ERROR, naming the file and
    the problem, never a key.
    """

    def __init__(
        self,
        entries: Iterable[_Entry],
        path: Path | None = None,
        *,
        check_interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self._entries = tuple(entries)
        self._path = path
        self._problem: str | None = None
        self._stamp = self._stamp_of(path)
        self._interval = check_interval_s
        self._checked = time.monotonic()

    @staticmethod
    def _stamp_of(path: Path | None) -> tuple[int, int, int, int] | None:
        try:
            info = path.stat() if path is not None else None
        except OSError:
            return None
        if info is None:
            return None
        # ctime and inode too: a chmod or an atomic replace of equal size counts as a change.
        return (info.st_mtime_ns, info.st_ctime_ns, info.st_size, info.st_ino)

    @classmethod
    def from_document(
        cls, document: Any, path: Path | None = None, *, check_interval_s: float = CHECK_INTERVAL_S
    ) -> KeyStore:
        keys = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(keys, list):
            raise KeyFileError('the keys file must be a JSON object {"keys": [...]}')
        entries = [_entry(raw, i) for i, raw in enumerate(keys)]
        if len({e.key_sha256 for e in entries}) != len(entries):
            raise KeyFileError("the keys file lists the same key twice")
        return cls(entries, path, check_interval_s=check_interval_s)

    @classmethod
    def load(cls, path: str | Path, *, check_interval_s: float = CHECK_INTERVAL_S) -> KeyStore:
        """The keys in `path`; `KeyFileError` (naming the file) if it cannot be read or is invalid."""
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            # The parser's message names a position, never the file's content.
            raise KeyFileError(
                f"cannot read the keys file {path}: invalid JSON ({exc.msg} at line {exc.lineno} "
                f"column {exc.colno})"
            ) from None
        except OSError as exc:
            raise KeyFileError(
                f"cannot read the keys file {path}: {exc.strerror or type(exc).__name__}"
            ) from None
        except (ValueError, RecursionError) as exc:  # not UTF-8, or nested too deeply
            raise KeyFileError(f"cannot read the keys file {path}: {type(exc).__name__}") from None
        try:
            return cls.from_document(document, Path(path), check_interval_s=check_interval_s)
        except KeyFileError as exc:
            raise KeyFileError(f"the keys file {path} is invalid: {exc}") from None

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._path is None or now - self._checked < self._interval:
            return
        self._checked = now
        stamp = self._stamp_of(self._path)
        if stamp == self._stamp and self._problem is None:
            return
        try:
            fresh = KeyStore.load(self._path)
        except Exception as exc:  # anything at all, not only the problems foreseen
            problem = (
                str(exc)
                if isinstance(exc, KeyFileError)
                else f"cannot load the keys file {self._path}: {type(exc).__name__}"
            )
            # Fail closed: forget every key rather than keep a stale (perhaps revoked) one.
            self._entries, self._stamp = (), stamp
            if problem != self._problem:
                log.error("refusing every API key until the keys file is fixed: %s", problem)
            self._problem = problem
            return
        recovered = self._problem is not None
        self._entries, self._stamp, self._problem = fresh._entries, stamp, None
        log.info(
            "%s %d API keys from %s", "recovered: loaded" if recovered else "reloaded", len(self), self._path
        )

    def problem(self) -> str | None:
        """Why no key is accepted (the keys file is missing or invalid), or None when the store is usable.

        Checks the file first, as `authenticate` does, so a readiness probe
        notices a repair even while no authenticated request arrives.
        """
        self._refresh()
        return self._problem

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, key: str) -> Principal | None:
        """The principal of `key`, or None; the time taken does not depend on which entry matches.

        Raises `KeysUnavailable` while the keys file cannot be loaded: then
        no key can be checked, including one that is perfectly valid, so the
        caller must answer "unavailable, retry" (503), not "bad key" (401).
        """
        self._refresh()
        if self._problem is not None:
            raise KeysUnavailable(self._problem)
        presented = hash_key(key).encode("ascii")
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.key_sha256):
                found = entry.principal
        return found
