"""The storage contract served in-process, for ingestion in the same server.

`LocalStorageStub` offers the StorageService client stub's calls, with the
same request and response messages, but calls the servicer directly:
no TLS loopback hop and no re-serialisation of every chunk, which on small
machines halves the CPU cost of large uploads. Requests are validated as the
interceptor would, and errors reach the caller as `grpc.aio.AioRpcError`
with the status code a remote call would have, so callers cannot tell the
two apart. The calls run with the internal grant: the caller was authorized
where its call entered this process, as a remote storage service trusts the
ingestion identity.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon import tracing
from pantheon.errors import STATUS_DETAILS_KEY, PantheonError
from pantheon.interceptors import check, check_streamed
from pantheon.policy import INTERNAL_GRANT, current_grant
from pantheon.storage.service import StorageServicer

R = TypeVar("R")

_SERVICE = pb.DESCRIPTOR.services_by_name["StorageService"].full_name

_END = object()


def _as_rpc_error(exc: PantheonError) -> grpc.aio.AioRpcError:
    # The rich status rides in the trailers, as it does over the network.
    trailers = grpc.aio.Metadata((STATUS_DETAILS_KEY, exc.to_status().SerializeToString()))
    return grpc.aio.AioRpcError(exc.code, grpc.aio.Metadata(), trailers, details=exc.message)


async def _call(work: Awaitable[R], timeout: float | None) -> R:
    try:
        return await asyncio.wait_for(work, timeout)
    except PantheonError as exc:
        raise _as_rpc_error(exc) from exc
    except TimeoutError:
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details="deadline exceeded",
        ) from None


def _internal(work: Awaitable[R], timeout: float | None, method: str) -> asyncio.Task[R]:
    """`work` as a task of its own that runs with the internal grant, in a
    span named as the remote call's SERVER span would be."""
    span = tracing.start_rpc_span(f"/{_SERVICE}/{method}", SpanKind.INTERNAL)
    context = contextvars.copy_context()
    context.run(current_grant.set, INTERNAL_GRANT)
    context.run(otel_context.attach, trace.set_span_in_context(span))
    task = asyncio.create_task(_call(work, timeout), context=context)
    task.add_done_callback(lambda done: tracing.end_rpc_span(span, _code_of(done)))
    return task


def _code_of(task: asyncio.Task[Any]) -> grpc.StatusCode:
    if task.cancelled():
        return grpc.StatusCode.CANCELLED
    error = task.exception()
    if error is None:
        return grpc.StatusCode.OK
    return error.code() if isinstance(error, grpc.aio.AioRpcError) else grpc.StatusCode.UNKNOWN


class _PutObjectCall:
    """A client-streaming call: write() requests, done_writing(), await the response."""

    def __init__(self, servicer: StorageServicer, timeout: float | None) -> None:
        # One slot: the writer waits while storage works, like flow control.
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        # Storage never reads the servicer context, so there is none.
        upload = servicer.PutObject(self._requests(), None)  # type: ignore[arg-type]
        self._task = _internal(upload, timeout, "PutObject")

    async def _requests(self) -> AsyncIterator[pb.PutObjectRequest]:
        while (item := await self._queue.get()) is not _END:
            check_streamed(item)
            yield item

    async def write(self, request: pb.PutObjectRequest) -> None:
        put = asyncio.ensure_future(self._queue.put(request))
        done, _ = await asyncio.wait({put, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            await self._task  # storage failed early: raise its error here

    async def done_writing(self) -> None:
        await self.write(_END)  # type: ignore[arg-type]

    def cancel(self) -> bool:
        return self._task.cancel()

    def __await__(self) -> Generator[Any, None, pb.PutObjectResponse]:
        return self._task.__await__()


def _unary(method: Callable[[Any, Any], Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    async def call(request: Message, *, timeout: float | None = None, metadata: Any = None) -> R:
        try:
            check(request)
        except PantheonError as exc:
            raise _as_rpc_error(exc) from exc
        return await _internal(method(request, None), timeout, method.__name__)

    return call


class LocalStorageStub:
    """StorageService calls answered by a servicer in this process."""

    def __init__(self, servicer: StorageServicer) -> None:
        self._servicer = servicer
        self.StatObject = _unary(servicer.StatObject)
        self.ClaimIdempotencyKey = _unary(servicer.ClaimIdempotencyKey)
        self.CompleteIdempotencyKey = _unary(servicer.CompleteIdempotencyKey)
        self.ReleaseIdempotencyKey = _unary(servicer.ReleaseIdempotencyKey)
        self.GetIdempotencyKey = _unary(servicer.GetIdempotencyKey)
        self.CommitObject = _unary(servicer.CommitObject)
        self.ListPendingObjects = _unary(servicer.ListPendingObjects)
        self.GetPendingObject = _unary(servicer.GetPendingObject)
        self.DiscardPendingObject = _unary(servicer.DiscardPendingObject)

    def PutObject(self, *, timeout: float | None = None, metadata: Any = None) -> _PutObjectCall:
        return _PutObjectCall(self._servicer, timeout)
