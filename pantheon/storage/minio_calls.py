"""Every call into minio-py's private request layer, and nothing else.

The object store's S3 adapter (s3.py) uses minio-py's public API for reads,
stats, listings and deletes. Two things it needs are not in that API:

- conditional writes: `If-None-Match: *` (create only) and `If-Match:
  <etag>` (compare-and-swap) on PutObject, and `If-None-Match: *` on
  CompleteMultipartUpload, so that of two writers of one key exactly one
  wins and the other is told (412);
- a multipart upload fed part by part from our own asynchronous stream, so
  an upload of any size holds at most two parts in memory.

Each function below is one S3 request through a private minio-py method,
with a comment saying why the public API does not do it. They are written
against the minio version pinned in pyproject.toml; tests/unit/
test_minio_calls.py pins the private methods' signatures and the exact
requests each function sends, so an upgrade that changes them fails there,
loudly, instead of in production. All are blocking: call them in the
store's thread pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from minio import Minio
from minio.datatypes import Part
from minio.error import ServerError
from minio.helpers import DictType, ObjectWriteResult


def put_object(
    client: Minio, bucket: str, key: str, data: bytes, headers: Mapping[str, str]
) -> ObjectWriteResult:
    """PutObject of `data` with exactly `headers` (Content-Type, SSE, user
    metadata as `X-Amz-Meta-*`, and any `If-None-Match`/`If-Match`)."""
    # Why private: the public put_object() runs its `metadata` through
    # minio.helpers.normalize_headers, which renames every header that is
    # not x-amz-* or a Content-* header to `X-Amz-Meta-<name>`. If-None-Match
    # and If-Match would be stored as user metadata instead of being sent as
    # preconditions, and the write would silently overwrite. _put_object
    # sends the headers as given.
    return client._put_object(bucket, key, data, _copy(headers))


def create_multipart_upload(client: Minio, bucket: str, key: str, headers: Mapping[str, str]) -> str:
    """CreateMultipartUpload with `headers` (Content-Type, SSE, user metadata); the upload id."""
    # Why private: minio-py has no public multipart API. Its put_object()
    # runs a whole multipart upload by itself, reading a blocking file-like
    # object in its own threads, and completes it without a condition (see
    # complete_multipart_upload_if_absent). We drive the upload step by step
    # from the incoming gRPC stream instead: part n uploads while part n+1
    # arrives, and the completion is conditional.
    return client._create_multipart_upload(bucket, key, _copy(headers))


def upload_part(client: Minio, bucket: str, key: str, upload_id: str, number: int, data: bytes) -> str:
    """UploadPart `number` (from 1) of an upload; the part's ETag."""
    # Why private: as for create_multipart_upload, UploadPart is public in
    # minio-py only inside put_object(). No per-part headers: SSE-S3 and the
    # metadata were given once, on CreateMultipartUpload (only SSE-C would
    # need them on every part).
    etag: str = client._upload_part(bucket, key, data, None, upload_id, number)
    return etag


def complete_multipart_upload_if_absent(
    client: Minio, bucket: str, key: str, upload_id: str, parts: Sequence[Part]
) -> ObjectWriteResult:
    """CompleteMultipartUpload with `If-None-Match: *`: the key is written
    only if no one else wrote it first (S3Error PreconditionFailed if so)."""
    # Why private (_execute): minio-py's _complete_multipart_upload() takes
    # no headers, so it cannot send If-None-Match, and without it a
    # concurrent writer of the same key would be overwritten silently. This
    # is the same request (the same XML body; the request layer adds
    # Content-MD5) with that header added.
    body = "".join(
        f'<Part><PartNumber>{p.part_number}</PartNumber><ETag>"{p.etag}"</ETag></Part>' for p in parts
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
