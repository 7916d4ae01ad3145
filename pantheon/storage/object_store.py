"""The object store the storage service writes to: what it holds and how it fails.

The ObjectStore Protocol the storage service, the index and search are
written against; what it reports (StoredObject, Listing); the lost
compare-and-swap (PreconditionFailed); and the table that turns the S3
error codes the services expect into what a caller sees (`translate`).
The adapter on the S3 API, S3ObjectStore, is in s3.py; tests use an
in-memory store (tests/unit/fakes.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from minio.error import InvalidResponseError, S3Error, ServerError

from pantheon.errors import (
    Aborted,
    AlreadyExists,
    Internal,
    InvalidArgument,
    NotFound,
    PantheonError,
    Unavailable,
)

log = logging.getLogger(__name__)


class PreconditionFailed(Aborted):
    """A compare-and-swap write (`if_match`) lost: the object changed since
    it was read. The writer re-reads and decides again.

    Distinct from AlreadyExists, which is what a create-only write
    (`if_absent`) that finds the object reports: S3 answers both with 412
    PreconditionFailed, and the adapter tells them apart by which condition
    it sent. ABORTED if it ever reaches a caller: a conflict, retry the call.
    """

    reason = "precondition_failed"


class ExistingObject(AlreadyExists):
    """`put_stream` found the key written: nothing was written, and
    `sent_sha256` is the SHA-256 of the chunks it was given (read to the end),
    so that the caller can tell a retry of the same content from other content."""

    def __init__(self, message: str, sent_sha256: str) -> None:
        super().__init__(message)
        self.sent_sha256 = sent_sha256


@dataclass(frozen=True)
class StoredObject:
    """What the store reports about a written or existing object."""

    bucket: str
    key: str
    size: int
    etag: str
    version_id: str
    encryption: str
    sha256: str = ""
    content_type: str = ""
    user_metadata: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Listing:
    """One page of a prefix listing."""

    keys: list[str]
    prefixes: list[str]
    truncated: bool
    #: When each of `keys` was last written, in the same order.
    modified: list[datetime] = field(default_factory=list)


class ObjectStore(Protocol):
    """What the storage service needs from an object store."""

    async def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterator[bytes],
        content_type: str,
        user_metadata: Mapping[str, str],
    ) -> StoredObject:
        """Write `chunks` to `key` unless it exists (ExistingObject then)."""
        ...

    async def put_bytes(
        self, bucket: str, key: str, data: bytes, *, if_absent: bool, if_match: str = ""
    ) -> StoredObject:
        """Write a small object; with `if_absent`, only if it does not exist
        (AlreadyExists); with `if_match`, only if its ETag still is that
        (PreconditionFailed when it changed, NotFound when it is gone)."""
        ...

    async def get_bytes(self, bucket: str, key: str) -> bytes:
        """Read a small object whole (NotFound when missing)."""
        ...

    async def get_bytes_versioned(self, bucket: str, key: str) -> tuple[bytes, str]:
        """Read a small object whole with its ETag, for a later `if_match` write."""
        ...

    def get_stream(self, bucket: str, key: str, offset: int = 0, length: int = 0) -> AsyncIterator[bytes]:
        """Stream an object or a byte range of it."""
        ...

    async def stat(self, bucket: str, key: str) -> StoredObject:
        """Describe an object without reading it."""
        ...

    async def list(
        self, bucket: str, prefix: str, *, delimiter: str = "", start_after: str = "", limit: int = 1000
    ) -> Listing:
        """One page of keys (and common prefixes) under `prefix`, in key order."""
        ...

    async def delete(self, bucket: str, key: str) -> None:
        """Remove an object (a no-op when it is gone)."""
        ...

    async def delete_many(self, bucket: str, keys: Sequence[str]) -> None:
        """Remove up to 1000 objects in one request (those gone are no-ops)."""
        ...


#: Every S3 error code the services expect, mapped to what the caller sees.
#: Transient conditions are retryable (UNAVAILABLE); a request the store
#: finds too large or malformed is the caller's (INVALID_ARGUMENT, never a
#: 500); credentials, policies and buckets that do not work are deployment
#: faults (INTERNAL, logged as such); any other code is INTERNAL.
_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchObject", "NoSuchVersion"})
_EXISTS = frozenset({"PreconditionFailed"})
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        # MinIO without write (read) quorum: two of four nodes are away.
        "SlowDownWrite",
        "SlowDownRead",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "XMinioServerNotInitialized",
        "XMinioReadQuorum",
        "XMinioWriteQuorum",
        # A body that did not arrive as sent (its checksum failed): sending
        # it again is the cure.
        "XAmzContentChecksumMismatch",
        "BadDigest",
        "XMinioStorageFull",
        "OperationAborted",
    }
)
_TOO_LARGE = frozenset({"EntityTooLarge", "MaxMessageLengthExceeded"})
_CALLER = frozenset(
    {"MetadataTooLarge", "EntityTooSmall", "InvalidPart", "InvalidArgument", "KeyTooLongError"}
)
_DEPLOYMENT = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "NoSuchBucket",
        "AllAccessDisabled",
        "XMinioAdminKMSNotConfigured",
        "KMS.KMSNotConfigured",
    }
)


def translate(exc: Exception, what: str) -> PantheonError:
    """A caller-safe error for a failed store call; details go to the log."""
    if isinstance(exc, S3Error):
        code = exc.code or ""
        if code in _NOT_FOUND:
            return NotFound(f"{what}: not found")
        if code in _EXISTS:
            return AlreadyExists(f"{what}: already exists")
        if code in _TRANSIENT_CODES:
            log.warning("object store busy or degraded during %s: %s", what, code)
            return Unavailable("object store is unavailable, retry later")
        if code in _TOO_LARGE:
            return InvalidArgument("the object store refused the object as too large", reason="too_large")
        if code in _CALLER:
            log.warning("object store refused %s as invalid: %s", what, code)
            return InvalidArgument(
                "the object store refused the request as invalid", reason="storage_rejected"
            )
        if code in _DEPLOYMENT:
            log.error(
                "deployment fault: the object store refused %s with %s (check keys, policy, buckets)",
                what,
                code,
            )
            return Internal("object store refused the request")
        log.error("object store refused %s with an unexpected code: %s", what, code)
        return Internal("object store refused the request")
    if isinstance(exc, ServerError | InvalidResponseError):
        return Unavailable("object store is unavailable, retry later")
    log.warning("object store unreachable during %s: %s", what, type(exc).__name__)
    return Unavailable("object store is unavailable, retry later")
