"""What a failed object-store call becomes for the caller (pantheon/storage/object_store.translate)."""

from __future__ import annotations

import pytest
import urllib3
from minio.error import S3Error

from pantheon.errors import Internal, NotFound, Unavailable
from pantheon.storage.object_store import translate


def s3_error(code: str, status: int) -> S3Error:
    response = urllib3.HTTPResponse(status=status)
    return S3Error(response, code, "message", "/bucket/key", "request-id", "host-id", bucket_name="bucket")


@pytest.mark.parametrize(
    "code",
    # MinIO answers these with 503 while two of four nodes are away (no write or read quorum).
    [
        "SlowDownWrite",
        "SlowDownRead",
        "XMinioWriteQuorum",
        "XMinioReadQuorum",
        "SlowDown",
        "ServiceUnavailable",
    ],
)
def test_a_degraded_cluster_is_unavailable_so_callers_retry(code: str) -> None:
    assert isinstance(translate(s3_error(code, 503), "write x"), Unavailable)


def test_an_unknown_code_is_internal_and_a_missing_key_not_found() -> None:
    assert isinstance(translate(s3_error("SomethingNew", 500), "write x"), Internal)
    assert isinstance(translate(s3_error("NoSuchKey", 404), "read x"), NotFound)


@pytest.mark.parametrize("code", ["XAmzContentChecksumMismatch", "BadDigest"])
def test_a_body_damaged_on_its_way_is_unavailable_so_callers_send_it_again(code: str) -> None:
    assert isinstance(translate(s3_error(code, 400), "write x"), Unavailable)
