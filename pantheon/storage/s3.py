"""The S3 adapter of the object store (pantheon.storage.object_store).

The adapter speaks the S3 API through minio-py, so it works against MinIO and
any S3-compatible store. minio-py is blocking; calls run in the store's own
bounded thread pool (`S3Settings.threads`, as many as its HTTP connections),
so the asyncio gRPC server keeps serving, and a slow or hung store ties up
only that pool: the default executor stays free for everything else (calls
beyond the pool's size wait in its queue). Two things minio-py's public API
lacks, conditional writes (`If-None-Match: *` to create, `If-Match: <etag>`
to compare-and-swap) and multipart uploads fed part by part from a stream
(so an upload of any size holds about three parts in memory), go through
its private request layer: only in minio_calls.py, which says why for each
call and whose tests pin them. Multipart uploads are in s3_multipart.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlparse

import urllib3
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError
from opentelemetry.trace import SpanKind
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from pantheon import tracing
from pantheon.config import S3Settings
from pantheon.errors import AlreadyExists, Internal
from pantheon.storage import minio_calls, s3_multipart
from pantheon.storage.object_store import ExistingObject, Listing, PreconditionFailed, StoredObject, translate
from pantheon.storage.quorum import WriteQuorum, cluster_health
from pantheon.streams import prepend

#: SSE-S3 on every write, even where a bucket lacks default encryption.
_SSE = {"X-Amz-Server-Side-Encryption": "AES256"}
_META = "X-Amz-Meta-"

_TRANSIENT = (urllib3.exceptions.HTTPError, ServerError, InvalidResponseError, OSError)

T = TypeVar("T")


def _call_once(held: list[tuple[Callable[..., T], tuple[Any, ...]]]) -> T:
    """The call in `held`, taken out first: its arguments are freed as it
    returns, while the pool's thread keeps its work item until the event
    loop has heard the result."""
    call, args = held.pop()
    return call(*args)


class S3ObjectStore:
    """ObjectStore on the S3 API (MinIO or any S3-compatible store)."""

    def __init__(self, settings: S3Settings, quorum: WriteQuorum | None = None) -> None:
        url = urlparse(settings.endpoint)
        threads = max(1, settings.threads)
        # Every blocking call runs here; one HTTP connection per thread.
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3")
        context = ssl.create_default_context(cafile=settings.ca_file)
        http = urllib3.PoolManager(
            ssl_context=context,
            maxsize=threads,
            # Fail fast when the store is down: short connect timeout, and only
            # connection attempts are retried here (a repeated PUT must never
            # be confused with a conflicting one). A 503 comes back as the
            # store's error (SlowDownWrite: no write quorum), never slept on:
            # MinIO's Retry-After is for the caller, who gets UNAVAILABLE.
            timeout=urllib3.Timeout(connect=2.0, read=settings.read_timeout_s),
            retries=urllib3.Retry(
                total=1, connect=1, read=0, status=0, other=0, redirect=0, respect_retry_after_header=False
            ),
        )
        self._client = minio_calls.Client(
            url.netloc,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=True,
            region=settings.region,
            http_client=http,
        )
        self._part_size = max(settings.part_size, 5 * 2**20)
        # Writes go by the cluster's last word on its write quorum (quorum.py),
        # asked on a thread and connection of its own: a hung probe delays no call.
        self._quorum = quorum or WriteQuorum(_probe(settings.endpoint, context))

    async def _run(self, call: Callable[..., T], *args: Any, operation: str = "", bucket: str = "") -> T:
        """`call(*args)` in the store's pool (with the caller's context, as
        `asyncio.to_thread` does), awaited without blocking the loop; traced as
        the S3 `operation` on `bucket` when it is one (a call such as reading
        the next piece of a body is not).

        A thread cannot be stopped: when the caller is cancelled, this still
        waits for the call to finish before the cancellation goes on, so that
        whoever handles it knows the store is no longer being written (a PUT
        cancelled mid-flight may yet land).

        The arguments are handed over, not kept: the thread lets them go as
        the call returns (an upload's part is freed once sent, not after the
        next one is read in).
        """
        loop = asyncio.get_running_loop()
        held = [(call, args)]
        del args
        with _s3_span(operation, bucket):
            context = contextvars.copy_context()
            running = loop.run_in_executor(self._executor, functools.partial(context.run, _call_once, held))
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                # Until the thread is done, whatever further cancellations come.
                while not running.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait({running})
                if not running.cancelled():
                    running.exception()  # seen: the caller is gone, and its outcome with it
                raise

    # -- writes -------------------------------------------------------------

    async def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterator[bytes],
        content_type: str,
        user_metadata: Mapping[str, str],
    ) -> StoredObject:
        self._quorum.require()
        headers = {"Content-Type": content_type, **_SSE}
        headers.update({_META + k: v for k, v in user_metadata.items()})
        digest = hashlib.sha256()
        parts = s3_multipart.parts(chunks, self._part_size, digest)
        first = await anext(parts, None)
        if first is None:
            raise Internal("refusing to store an empty object")
        second = await anext(parts, None)
        try:
            if second is None:
                # Small object: one conditional PUT.
                result = await self._put(bucket, key, first, headers, if_absent=True)
                return s3_multipart.with_digest(result, sha256=digest.hexdigest(), size=len(first))
            # Handed over, not kept: each part is let go once it is sent.
            blocks = prepend(first, prepend(second, parts))
            del first, second
            return await s3_multipart.upload(self._run, self._client, bucket, key, headers, blocks, digest)
        except AlreadyExists as exc:
            # Create-only writes are decided at the last part: all was read.
            async for _ in parts:
                pass
            raise ExistingObject(exc.message, sent_sha256=digest.hexdigest()) from exc

    async def put_bytes(
        self, bucket: str, key: str, data: bytes, *, if_absent: bool, if_match: str = ""
    ) -> StoredObject:
        self._quorum.require()
        headers = {"Content-Type": "application/octet-stream", **_SSE}
        return await self._put(bucket, key, data, headers, if_absent=if_absent, if_match=if_match)

    async def _put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        headers: dict[str, str],
        *,
        if_absent: bool,
        if_match: str = "",
    ) -> StoredObject:
        if if_absent:
            headers = {**headers, "If-None-Match": "*"}
        if if_match:
            headers = {**headers, "If-Match": '"' + if_match.strip('"') + '"'}
        try:
            result = await self._run(
                minio_calls.put_object,
                self._client,
                bucket,
                key,
                data,
                headers,
                operation="PutObject",
                bucket=bucket,
            )
        except Exception as exc:
            # 412 to an If-Match write: the object changed since it was read.
            # 409 ConditionalRequestConflict: a concurrent conditional write.
            if (
                if_match
                and isinstance(exc, S3Error)
                and exc.code in ("PreconditionFailed", "ConditionalRequestConflict")
            ):
                raise PreconditionFailed(f"write {bucket}/{key}: changed since read") from exc
            raise translate(exc, f"write {bucket}/{key}") from exc
        return StoredObject(
            bucket=bucket,
            key=key,
            size=len(data),
            etag=result.etag or "",
            version_id=result.version_id or "",
            encryption=result.http_headers.get("x-amz-server-side-encryption", ""),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    # -- reads (idempotent: transient failures are retried, bounded) --------

    async def _read(self, what: str, operation: str, bucket: str, call: Any, *args: Any) -> Any:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_TRANSIENT),
                stop=stop_after_attempt(3),
                wait=wait_exponential(multiplier=0.1, max=1.0),
                reraise=True,
            ):
                with attempt:
                    return await self._run(call, *args, operation=operation, bucket=bucket)
        except Exception as exc:
            raise translate(exc, what) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_bytes(self, bucket: str, key: str) -> bytes:
        def read() -> bytes:
            response = self._client.get_object(bucket, key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        data: bytes = await self._read(f"read {bucket}/{key}", "GetObject", bucket, read)
        return data

    async def get_bytes_versioned(self, bucket: str, key: str) -> tuple[bytes, str]:
        def read() -> tuple[bytes, str]:
            response = self._client.get_object(bucket, key)
            try:
                return bytes(response.read()), (response.headers.get("etag") or "").strip('"')
            finally:
                response.close()
                response.release_conn()

        found: tuple[bytes, str] = await self._read(f"read {bucket}/{key}", "GetObject", bucket, read)
        return found

    async def get_stream(
        self, bucket: str, key: str, offset: int = 0, length: int = 0
    ) -> AsyncIterator[bytes]:
        response = await self._read(
            f"read {bucket}/{key}", "GetObject", bucket, self._client.get_object, bucket, key, offset, length
        )
        try:
            pieces: Iterator[bytes] = response.stream(256 * 1024)
            while True:
                try:
                    piece = await self._run(next, pieces, None)
                except Exception as exc:
                    raise translate(exc, f"read {bucket}/{key}") from exc
                if piece is None:
                    return
                yield piece
        finally:
            response.close()
            response.release_conn()

    async def stat(self, bucket: str, key: str) -> StoredObject:
        info = await self._read(
            f"stat {bucket}/{key}", "HeadObject", bucket, self._client.stat_object, bucket, key
        )
        meta = {
            k[len(_META) :].lower(): v
            for k, v in (info.metadata or {}).items()
            if k.lower().startswith(_META.lower())
        }
        return StoredObject(
            bucket=bucket,
            key=key,
            size=info.size or 0,
            etag=info.etag or "",
            version_id=info.version_id or "",
            encryption=(info.metadata or {}).get("x-amz-server-side-encryption", ""),
            content_type=info.content_type or "",
            user_metadata=meta,
        )

    async def list(
        self, bucket: str, prefix: str, *, delimiter: str = "", start_after: str = "", limit: int = 1000
    ) -> Listing:
        def page() -> Listing:
            keys: list[str] = []
            prefixes: list[str] = []
            modified: list[datetime] = []
            found = self._client.list_objects(
                bucket, prefix=prefix, recursive=not delimiter, start_after=start_after or None
            )
            for item in found:
                if item.is_dir:
                    prefixes.append(item.object_name or "")
                else:
                    keys.append(item.object_name or "")
                    modified.append(item.last_modified or datetime.now(UTC))
                if len(keys) + len(prefixes) >= limit:
                    return Listing(keys, prefixes, truncated=True, modified=modified)
            return Listing(keys, prefixes, truncated=False, modified=modified)

        listing: Listing = await self._read(f"list {bucket}/{prefix}", "ListObjectsV2", bucket, page)
        return listing

    async def delete(self, bucket: str, key: str) -> None:
        self._quorum.require()
        # Idempotent (S3 answers a missing key with 204), so retried like a read.
        await self._read(
            f"delete {bucket}/{key}", "DeleteObject", bucket, self._client.remove_object, bucket, key
        )

    async def delete_many(self, bucket: str, keys: Sequence[str]) -> None:
        self._quorum.require()

        def delete() -> None:
            # The answer lists only the keys that failed (a missing key is not one).
            for error in self._client.remove_objects(bucket, [DeleteObject(key) for key in keys]):
                no_response: Any = None  # the request as a whole was answered
                raise S3Error(no_response, error.code, error.message, error.name, None, None, bucket)

        # Idempotent, so retried like a read.
        await self._read(f"delete {len(keys)} objects from {bucket}", "DeleteObjects", bucket, delete)


def _s3_span(operation: str, bucket: str) -> AbstractContextManager[Any]:
    """A CLIENT span `S3.<operation>` with its bucket; none without an operation."""
    if not operation:
        return nullcontext()
    attributes = {
        "rpc.system": "aws-api",
        "rpc.service": "S3",
        "rpc.method": operation,
        "aws.s3.bucket": bucket,
    }
    return tracing.tracer.start_as_current_span(
        f"S3.{operation}", kind=SpanKind.CLIENT, attributes=attributes
    )


def _probe(endpoint: str, context: ssl.SSLContext) -> Callable[[], Awaitable[int | None]]:
    """The cluster health question, asked on a thread of its own."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-quorum")
    http = urllib3.PoolManager(ssl_context=context, maxsize=1)

    async def ask() -> int | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, cluster_health, http, endpoint)

    return ask
