"""Every call into minio-py's private request layer, and nothing else.

The object store's S3 adapter (s3.py) uses minio-py's public API for reads,
stats, listings and deletes. Two things it needs are not in that API:

- conditional writes: `If-None-Match: *` (create only) and `If-Match:
  <etag>` (compare-and-swap) on PutObject, and `If-None-Match: *` on
  CompleteMultipartUpload, so that of two writers of one key exactly one
  wins and the other is told (412);
- a multipart upload fed part by part from our own asynchronous stream, so
  an upload of any size holds about three parts in memory.

Each function below is one S3 request through a private minio-py method,
with a comment saying why the public API does not do it. `Client` is
minio-py's client with one private method overridden, so that a body we
send with a CRC32 checksum is not also hashed with MD5. They are written
against the minio version pinned in pyproject.toml; tests/unit/
test_minio_calls.py pins the private methods' signatures and the exact
requests each function sends, so an upgrade that changes them fails there,
loudly, instead of in production. All are blocking: call them in the
store's thread pool.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from minio import Minio
from minio.credentials import Credentials
from minio.error import ServerError
from minio.helpers import DictType, ObjectWriteResult

#: S3's CRC32 checksum of a request body (base64 of the big-endian value);
#: the store verifies it and refuses a body that does not match.
CHECKSUM = "x-amz-checksum-crc32"


#: Declared on CreateMultipartUpload: every part then carries its checksum,
#: and the completion lists them (S3 refuses a part's checksum otherwise).
CHECKSUM_ALGORITHM = {"x-amz-checksum-algorithm": "CRC32"}


def crc32(data: bytes) -> str:
    """S3's CRC32 of `data`: base64 of the big-endian value."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def checksum(data: bytes) -> dict[str, str]:
    """The `CHECKSUM` header of `data`."""
    return {CHECKSUM: crc32(data)}


@dataclass(frozen=True)
class UploadedPart:
    """A part of a multipart upload, as its completion names it."""

    number: int
    etag: str
    crc32: str


class Client(Minio):
    """minio-py's client, sending a checksummed body without an MD5 of it."""

    def _build_headers(
        self,
        host: str,
        headers: DictType | None = None,
        body: bytes | None = None,
        creds: Credentials | None = None,
    ) -> tuple[DictType, datetime]:
        # Why private: over HTTPS minio-py adds Content-MD5 to every request
        # with a body, hashing the whole body, unless Content-MD5 is already
        # given; no option turns it off. On this kind of CPU MD5 runs at less
        # than half the speed of the SHA-256 we keep anyway and an eighth of
        # CRC32's: it was half of the S3 threads' CPU in a large upload. A
        # body sent with `CHECKSUM` is verified by the store with that
        # instead, so Content-MD5 is marked present for minio-py and taken
        # out again before the request is signed.
        if headers is None or CHECKSUM not in headers or "Content-MD5" in headers:
            return super()._build_headers(host, headers, body, creds)
        headers["Content-MD5"] = "-"
        try:
            built, date = super()._build_headers(host, headers, body, creds)
        finally:
            headers.pop("Content-MD5", None)
        return built, date


def put_object(
    client: Minio, bucket: str, key: str, data: bytes, headers: Mapping[str, str]
) -> ObjectWriteResult:
    """PutObject of `data` with exactly `headers` (Content-Type, SSE, user
    metadata as `X-Amz-Meta-*`, and any `If-None-Match`/`If-Match`), and
    the body's `checksum`."""
    # Why private: the public put_object() runs its `metadata` through
    # minio.helpers.normalize_headers, which renames every header that is
    # not x-amz-* or a Content-* header to `X-Amz-Meta-<name>`. If-None-Match
    # and If-Match would be stored as user metadata instead of being sent as
    # preconditions, and the write would silently overwrite. _put_object
    # sends the headers as given.
    return client._put_object(bucket, key, data, _copy({**headers, **checksum(data)}))


def create_multipart_upload(client: Minio, bucket: str, key: str, headers: Mapping[str, str]) -> str:
    """CreateMultipartUpload with `headers` (Content-Type, SSE, user metadata)
    and `CHECKSUM_ALGORITHM`; the upload id."""
    # Why private: minio-py has no public multipart API. Its put_object()
    # runs a whole multipart upload by itself, reading a blocking file-like
    # object in its own threads, and completes it without a condition (see
    # complete_multipart_upload_if_absent). We drive the upload step by step
    # from the incoming gRPC stream instead: part n uploads while part n+1
    # arrives, and the completion is conditional.
    return client._create_multipart_upload(bucket, key, _copy({**headers, **CHECKSUM_ALGORITHM}))


def upload_part(
    client: Minio, bucket: str, key: str, upload_id: str, number: int, data: bytes
) -> UploadedPart:
    """UploadPart `number` (from 1) of an upload, with the part's `checksum`."""
    # Why private: as for create_multipart_upload, UploadPart is public in
    # minio-py only inside put_object(). No other per-part headers: SSE-S3
    # and the metadata were given once, on CreateMultipartUpload (only SSE-C
    # would need them on every part).
    crc = crc32(data)
    etag: str = client._upload_part(bucket, key, data, _copy({CHECKSUM: crc}), upload_id, number)
    return UploadedPart(number, etag, crc)


def complete_multipart_upload_if_absent(
    client: Minio, bucket: str, key: str, upload_id: str, parts: Sequence[UploadedPart]
) -> ObjectWriteResult:
    """CompleteMultipartUpload with `If-None-Match: *`: the key is written
    only if no one else wrote it first (S3Error PreconditionFailed if so)."""
    # Why private (_execute): minio-py's _complete_multipart_upload() takes
    # no headers, so it cannot send If-None-Match, and without it a
    # concurrent writer of the same key would be overwritten silently. This
    # is the same request (the same XML body; the request layer adds
    # Content-MD5) with that header added.
    body = "".join(
        f'<Part><PartNumber>{p.number}</PartNumber><ETag>"{p.etag}"</ETag>'
        f"<ChecksumCRC32>{p.crc32}</ChecksumCRC32></Part>"
        for p in parts
    )
    data = f"<CompleteMultipartUpload>{body}</CompleteMultipartUpload>".encode()
    response = client._execute(
        "POST",
        bucket,
        key,
        body=data,
        headers={"Content-Type": "application/xml", "If-None-Match": "*"},
        query_params={"uploadId": upload_id},
    )
    # S3 may report a failed completion inside a 200 response; minio-py's
    # completion does not look for that either.
    if b"<Error>" in response.data[:512]:
        raise ServerError("complete multipart upload failed", response.status)
    return ObjectWriteResult(
        bucket,
        key,
        response.headers.get("x-amz-version-id"),
        response.headers.get("etag", "").strip('"'),
        response.headers,
    )


def abort_multipart_upload(client: Minio, bucket: str, key: str, upload_id: str) -> None:
    """AbortMultipartUpload: drop the parts of an upload that will not complete."""
    # Why private: minio-py has no public AbortMultipartUpload; put_object()
    # aborts only the uploads it runs itself. Ours is aborted when the
    # stream, a part or the completion fails, so the store does not keep its
    # parts until its own stale-upload cleanup.
    client._abort_multipart_upload(bucket, key, upload_id)


def _copy(headers: Mapping[str, str]) -> DictType:
    """A fresh dict per call, in the type minio-py's request layer expects:
    it adds Host, User-Agent, x-amz-date and Content-MD5 to the dict it is
    given (and _create_multipart_upload a default Content-Type), in place."""
    return dict(headers)
