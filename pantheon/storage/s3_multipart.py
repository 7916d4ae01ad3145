"""Multipart uploads to S3, fed part by part from a stream.

S3ObjectStore.put_stream (s3.py) regroups an upload's chunks into parts
(`parts`); an object of one part is one conditional PUT there, anything
larger is uploaded here (`upload`), two parts in flight at most while the
next one streams in: an upload of any size holds about three parts in
memory. The calls minio-py's public API lacks go through
minio_calls.py; each runs in the store's pool through the `run` it is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from minio import Minio

from pantheon.errors import PantheonError
from pantheon.storage import minio_calls
from pantheon.storage.minio_calls import UploadedPart
from pantheon.storage.object_store import StoredObject, translate

log = logging.getLogger(__name__)

T = TypeVar("T")


class Run(Protocol):
    """S3ObjectStore._run: a blocking call, awaited in the store's pool."""

    def __call__(
        self, call: Callable[..., T], *args: Any, operation: str = ..., bucket: str = ...
    ) -> Awaitable[T]: ...


async def upload(
    run: Run,
    client: Minio,
    bucket: str,
    key: str,
    headers: dict[str, str],
    blocks: AsyncIterator[bytes],
    digest: Any,
) -> StoredObject:
    """Upload `blocks` (two at least) as the parts of one multipart upload,
    completed only if `key` does not exist yet; aborted on any failure."""
    what = f"upload {bucket}/{key}"
    try:
        upload_id = await run(
            minio_calls.create_multipart_upload,
            client,
            bucket,
            key,
            headers,
            operation="CreateMultipartUpload",
            bucket=bucket,
        )
    except Exception as exc:
        raise translate(exc, what) from exc
    uploaded: list[UploadedPart] = []
    started: list[asyncio.Task[UploadedPart]] = []
    size = 0
    try:
        # Part n starts as soon as it is read, while part n-1 may still be
        # uploading; part n+1 is read once part n-1 is done. So two parts are
        # in flight and one streams in: never a part read and waiting.
        previous: asyncio.Task[UploadedPart] | None = None
        async for block in blocks:
            size += len(block)
            task = asyncio.ensure_future(
                run(
                    minio_calls.upload_part,
                    client,
                    bucket,
                    key,
                    upload_id,
                    len(started) + 1,
                    block,
                    operation="UploadPart",
                    bucket=bucket,
                )
            )
            started.append(task)
            del block  # the task holds it until its part is sent
            if previous is not None:
                uploaded.append(await previous)
            previous = task
        if previous is not None:
            uploaded.append(await previous)
        result = await run(
            _complete,
            client,
            bucket,
            key,
            upload_id,
            uploaded,
            operation="CompleteMultipartUpload",
            bucket=bucket,
        )
    except BaseException as exc:
        await asyncio.shield(_abort(run, client, bucket, key, upload_id, started))
        if isinstance(exc, PantheonError | asyncio.CancelledError):
            raise
        if isinstance(exc, Exception):
            raise translate(exc, what) from exc
        raise
    return with_digest(result, sha256=digest.hexdigest(), size=size)


def _complete(
    client: Minio, bucket: str, key: str, upload_id: str, parts: list[UploadedPart]
) -> StoredObject:
    # Conditional (If-None-Match: *), so a concurrent writer of the key loses.
    result = minio_calls.complete_multipart_upload_if_absent(client, bucket, key, upload_id, parts)
    return StoredObject(
        bucket=bucket,
        key=key,
        size=0,
        etag=result.etag or "",
        version_id=result.version_id or "",
        encryption=result.http_headers.get("x-amz-server-side-encryption", ""),
    )


async def _abort(
    run: Run, client: Minio, bucket: str, key: str, upload_id: str, started: list[asyncio.Task[UploadedPart]]
) -> None:
    # Wait for the parts still uploading when another failed (a thread cannot
    # be stopped), then abort: no part lands after the upload is gone. Their
    # own outcomes no longer matter.
    for task in started:
        task.cancel()
    await asyncio.gather(*started, return_exceptions=True)
    try:
        await run(
            minio_calls.abort_multipart_upload,
            client,
            bucket,
            key,
            upload_id,
            operation="AbortMultipartUpload",
            bucket=bucket,
        )
    except Exception as exc:  # the store cleans up stale uploads itself
        log.warning("could not abort upload of %s/%s: %s", bucket, key, type(exc).__name__)


async def parts(chunks: AsyncIterator[bytes], size: int, digest: Any) -> AsyncIterator[bytes]:
    """Regroup incoming chunks into parts of `size` bytes, hashing as they pass.

    A part's chunks are let go once joined, before the part is handed on,
    so they are not held while it uploads.
    """
    pending: list[bytes] = []
    held = 0
    async for chunk in chunks:
        digest.update(chunk)
        pending.append(chunk)
        held += len(chunk)
        while held >= size:
            # One copy per part: join, then keep only the overhang for the next.
            joined = b"".join(pending)  # (a single chunk is not copied)
            overhang = joined[size:]
            part = joined[:size]  # the same object when there is no overhang
            pending, held = [overhang] if overhang else [], held - size
            del joined
            yield part
            del part
    if held:
        yield b"".join(pending)


def with_digest(result: StoredObject, *, sha256: str, size: int) -> StoredObject:
    return StoredObject(
        bucket=result.bucket,
        key=result.key,
        size=size,
        etag=result.etag,
        version_id=result.version_id,
        encryption=result.encryption,
        sha256=sha256,
        content_type=result.content_type,
        user_metadata=result.user_metadata,
    )
