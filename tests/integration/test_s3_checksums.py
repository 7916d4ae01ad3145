"""The storage service's S3 writes carry a CRC32 of their body, and the real
MinIO verifies it: a body that does not match its checksum (corrupted on its
way) is refused and nothing is stored, for a single PUT and for a part of a
multipart upload; a multipart upload declares the algorithm and its
completion lists every part's checksum, as S3 requires.
pantheon/storage/minio_calls.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from minio import Minio
from minio.error import S3Error

from pantheon.config import S3Settings
from pantheon.errors import Unavailable
from pantheon.metadata.ulid import new_ulid
from pantheon.storage import minio_calls
from pantheon.storage.s3 import S3ObjectStore

pytestmark = pytest.mark.timeout(120)

BUCKET = "pantheon-sensor"
MiB = 2**20


_crc32 = minio_calls.crc32


def _corrupted(data: bytes) -> str:
    """The checksum of other bytes than those sent: what a flipped bit looks like to the store."""
    return _crc32(data + b"\x00")


def _stored(client: Minio, key: str) -> bool:
    try:
        client.stat_object(BUCKET, key)
    except S3Error as exc:
        assert exc.code == "NoSuchKey", exc
        return False
    return True


async def test_small_and_multipart_writes_are_checksummed_and_stored(
    stack_env: dict[str, str], minio_client: Minio
) -> None:
    store = S3ObjectStore(S3Settings.from_env(stack_env))
    small, large = f"test/checksums/{new_ulid()}", f"test/checksums/{new_ulid()}"
    await store.put_bytes(BUCKET, small, b"a small body", if_absent=True)
    body = bytes(range(256)) * (11 * MiB // 256)  # three parts of 5 MiB

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), MiB):
            yield body[start : start + MiB]

    await store.put_stream(BUCKET, large, chunks(), "application/octet-stream", {})
    assert minio_client.get_object(BUCKET, small).data == b"a small body"
    assert minio_client.get_object(BUCKET, large).data == body


async def test_a_body_that_does_not_match_its_checksum_is_refused_and_not_stored(
    stack_env: dict[str, str], minio_client: Minio, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = S3ObjectStore(S3Settings.from_env(stack_env))
    monkeypatch.setattr(minio_calls, "crc32", _corrupted)
    small, large = f"test/checksums/{new_ulid()}", f"test/checksums/{new_ulid()}"
    # Refused by the store (XAmzContentChecksumMismatch): retryable, as a body damaged on its way is.
    with pytest.raises(Unavailable):
        await store.put_bytes(BUCKET, small, b"a small body", if_absent=True)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(11):
            yield b"p" * MiB

    with pytest.raises(Unavailable):
        await store.put_stream(BUCKET, large, chunks(), "application/octet-stream", {})
    assert not _stored(minio_client, small) and not _stored(minio_client, large)
