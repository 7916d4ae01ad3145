"""The storage service's S3 writes carry a CRC32 of their body, and the real
MinIO verifies it: a body that does not match its checksum (damaged on its
way) is refused and nothing is stored, for a single PUT and for a part of a
multipart upload; a multipart upload declares the algorithm and its
completion lists every part's checksum, as S3 requires.
pantheon/storage/minio_calls.py (the error each refusal becomes:
tests/unit/test_store_errors.py)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest
import urllib3
from minio import Minio
from minio.error import S3Error

from pantheon.config import S3Settings
from pantheon.metadata.ulid import new_ulid
from pantheon.storage import minio_calls
from pantheon.storage.s3 import S3ObjectStore

pytestmark = pytest.mark.timeout(120)

BUCKET = "pantheon-sensor"
MiB = 2**20
SSE = {"X-Amz-Server-Side-Encryption": "AES256"}
#: What a store reports for a body whose checksum does not match it.
MISMATCH = {"XAmzContentChecksumMismatch", "BadDigest"}


def _stored(client: Minio, key: str) -> bool:
    try:
        client.stat_object(BUCKET, key)
    except S3Error as exc:
        assert exc.code == "NoSuchKey", exc
        return False
    return True


def _services_client(env: dict[str, str]) -> minio_calls.Client:
    """The client the storage service writes with, on its own key."""
    settings = S3Settings.from_env(env)
    return minio_calls.Client(
        settings.endpoint.removeprefix("https://"),
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        secure=True,
        http_client=urllib3.PoolManager(
            ssl_context=ssl.create_default_context(cafile=env["PANTHEON_CA_FILE"])
        ),
    )


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


def test_a_put_whose_body_does_not_match_its_checksum_is_refused_and_not_stored(
    stack_env: dict[str, str], minio_client: Minio
) -> None:
    client, key = _services_client(stack_env), f"test/checksums/{new_ulid()}"
    sent, checksummed = b"a small body", b"a small bodY"  # one bit apart
    with pytest.raises(S3Error) as caught:
        client._put_object(BUCKET, key, sent, {**SSE, minio_calls.CHECKSUM: minio_calls.crc32(checksummed)})
    assert caught.value.code in MISMATCH
    assert not _stored(minio_client, key)


def test_a_part_whose_body_does_not_match_its_checksum_is_refused_and_not_stored(
    stack_env: dict[str, str], minio_client: Minio
) -> None:
    client, key = _services_client(stack_env), f"test/checksums/{new_ulid()}"
    upload = minio_calls.create_multipart_upload(client, BUCKET, key, SSE)
    part = b"p" * (5 * MiB)
    with pytest.raises(S3Error) as caught:
        client._upload_part(BUCKET, key, part, {minio_calls.CHECKSUM: minio_calls.crc32(part[1:])}, upload, 1)
    assert caught.value.code in MISMATCH
    # A completion that does not list the parts' checksums is refused too (the upload declared them).
    good = minio_calls.upload_part(client, BUCKET, key, upload, 1, part)
    with pytest.raises(S3Error) as incomplete:
        minio_calls.complete_multipart_upload_if_absent(
            client, BUCKET, key, upload, [minio_calls.UploadedPart(good.number, good.etag, "AAAAAA==")]
        )
    assert incomplete.value.code == "InvalidPart"
    minio_calls.abort_multipart_upload(client, BUCKET, key, upload)
    assert not _stored(minio_client, key)
