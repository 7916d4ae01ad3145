"""Idempotency keys of ingest calls: claim, renew, complete, release.

A keyed call claims its key in the index before anything is stored, renews
the claim while it runs (a holder that stops renewing is taken over), gives
the key up if it fails and records its result when it succeeds; the
reconciler records the result of a call that died after its commit. Kept apart
from the pipeline (pantheon.ingest.pipeline), which runs every ingest call
around these steps. `Content` and `same_content` compare a replay's or a
resumed call's content with what the key first stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from pantheon_api.storage.v1 import storage_service_pb2 as spb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as spb_grpc

from pantheon import context as ctx
from pantheon.errors import (
    Aborted,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    PantheonError,
    Unavailable,
    reason_of,
)
from pantheon.metadata.ulid import new_ulid
from pantheon.storage.index import holder_of

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

#: The claim this call holds (its candidate id is the holder's id): renewed
#: while the call runs, named when it completes or releases the key.
_lease: ContextVar[spb.ClaimIdempotencyKeyRequest | None] = ContextVar("lease", default=None)


def holder(object_id: str) -> str:
    """The id this call holds its key under (`object_id` if it holds none)."""
    lease = _lease.get()
    return lease.candidate_id if lease is not None else object_id


def storage_error(exc: grpc.aio.AioRpcError, what: str) -> PantheonError:
    """A caller-safe error for a failed storage call, by status code only."""
    code = exc.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable("storage is unavailable, retry later")
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        # Storage's reason (such as `too_large`) tells the caller what to fix.
        return InvalidArgument(f"{what} was refused by storage", reason=reason_of(exc) or "storage_rejected")
    log.error("storage %s failed: %s", what, code.name)
    return Internal(f"{what} failed")


def digest(*messages: Message, extra: bytes = b"") -> str:
    """The request digest a claim records, to refuse a key reused for another request."""
    h = hashlib.sha256(extra)
    for m in messages:
        h.update(m.SerializeToString(deterministic=True))
    return h.hexdigest()


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _unpack(packed: any_pb2.Any, cls: type[M]) -> M:
    found = cls()
    if not packed.Unpack(found):
        raise FailedPrecondition(
            "idempotency key was used for a different kind of call", reason="idempotency_key_reused"
        )
    return found


class Claims:
    """The idempotency-key calls of an ingest servicer, on a storage stub."""

    def __init__(
        self, storage: spb_grpc.StorageServiceAsyncStub, *, deadline_s: float, stale_claim: timedelta
    ) -> None:
        self._storage = storage
        self._deadline_s = deadline_s
        self._stale_claim = stale_claim

    async def claim(
        self, source: str, key: str, digest: str, cls: type[M], candidate: str
    ) -> tuple[str, M | None]:
        """The id to store under (`candidate`, unless the call resumes an
        earlier attempt's), or the first call's result to replay."""
        if not key:
            return candidate, None
        request = spb.ClaimIdempotencyKeyRequest(
            source=source, idempotency_key=key, candidate_id=candidate, request_digest=digest
        )
        # Storage takes over a claim its holder released or stopped renewing.
        request.take_over_after.FromTimedelta(self._stale_claim)
        try:
            claim = await self._storage.ClaimIdempotencyKey(
                request, timeout=self._deadline_s, metadata=ctx.outgoing_metadata()
            )
        except grpc.aio.AioRpcError as exc:
            raise storage_error(exc, "claiming the idempotency key") from exc
        record = claim.record
        if claim.claimed:
            if record.id != request.candidate_id:
                # The holder failed or died; the object is written at most
                # once and the events keep their ids, and the former holder
                # can no longer complete or release the key.
                log.info("took over the idempotency key of a failed call (id %s)", record.id)
            request.ClearField("take_over_after")
            _lease.set(request)
            return record.id, None
        if record.request_digest != digest:
            raise FailedPrecondition(
                "idempotency key was already used for a different request", reason="idempotency_key_reused"
            )
        if record.HasField("result"):
            return record.id, _unpack(record.result, cls)
        raise Aborted("a call with this idempotency key is in progress, retry later", reason="in_progress")

    async def renew(self, lease: spb.ClaimIdempotencyKeyRequest) -> None:
        """Renew the claim `lease` holds every third of the stale-claim age, until cancelled."""
        every = max(self._stale_claim.total_seconds() / 3, 0.05)
        while True:
            await asyncio.sleep(every)
            try:
                renewed = await self._storage.ClaimIdempotencyKey(
                    lease, timeout=every, metadata=ctx.outgoing_metadata()
                )
            except grpc.aio.AioRpcError as exc:
                log.warning("could not renew idempotency key: %s", exc.code().name)
                continue
            if not renewed.claimed:
                # Taken over after missed renewals: this call's result will
                # not be recorded (the new holder's stands).
                log.warning("idempotency key was taken over (id %s)", renewed.record.id)
                return

    @asynccontextmanager
    async def holding(self, source: str, key: str, object_id: str) -> AsyncIterator[None]:
        """Renew the claim while the call runs; give the key up if the call
        fails, so a retry need not wait."""
        lease = _lease.get() if key else None
        renewing = asyncio.create_task(self.renew(lease)) if lease is not None else None
        try:
            yield
        except BaseException:
            if renewing is not None:
                renewing.cancel()
            if key:
                await self._release(source, key, holder(object_id))
            raise
        finally:
            if renewing is not None:
                renewing.cancel()

    async def _release(self, source: str, key: str, holder_id: str) -> None:
        """Give the key up, so a retry need not wait for the claim to go stale (best effort)."""
        try:
            await self._storage.ReleaseIdempotencyKey(
                spb.ReleaseIdempotencyKeyRequest(source=source, idempotency_key=key, id=holder_id),
                timeout=5.0,
                metadata=ctx.outgoing_metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("could not release idempotency key: %s", exc.code().name)

    async def complete(self, source: str, key: str, object_id: str, result: Message) -> None:
        if not key:
            return
        try:
            await self._record(source, key, holder(object_id), _pack(result))
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
                # A retry (or the reconciler) took the key over after this call stopped renewing it.
                raise Aborted(
                    "the idempotency key was taken over after this call stopped renewing it, "
                    "retry to get its result",
                    reason="in_progress",
                ) from exc
            raise storage_error(exc, "recording the result") from exc

    async def settle(
        self, source: str, key: str, object_id: str, result: Callable[[], Awaitable[Message]]
    ) -> bool:
        """Record the `result` of `object_id`'s call under `key`, for a call
        that made its object visible but died or failed before recording it
        (the reconciler's part); False while a live call holds the key (that
        call records its own) or when the key cannot be found.

        The key is taken over as a retry would take it, once its holder
        released it or stopped renewing it, and released again if recording
        fails. A key already completed is completed again by its holder's id,
        which changes nothing but removes the object's marker.
        """
        try:
            found = await self._storage.GetIdempotencyKey(
                spb.GetIdempotencyKeyRequest(source=source, idempotency_key=key),
                timeout=self._deadline_s,
                metadata=ctx.outgoing_metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:
                raise
            found = spb.GetIdempotencyKeyResponse()
        record = found.record
        if record.id != object_id:
            # Only a damaged index gets here: the marker stays, counted as waiting.
            log.warning("the idempotency key of object %s names %r", object_id, record.id)
            return False
        if record.HasField("result"):
            await self._record(source, key, holder_of(record), record.result)
            return True
        request = spb.ClaimIdempotencyKeyRequest(
            source=source, idempotency_key=key, candidate_id=new_ulid(), request_digest=record.request_digest
        )
        request.take_over_after.FromTimedelta(self._stale_claim)
        claim = await self._storage.ClaimIdempotencyKey(
            request, timeout=self._deadline_s, metadata=ctx.outgoing_metadata()
        )
        if not claim.claimed:
            return False  # held by a live call, or completed meanwhile: the next pass sees
        try:
            await self._record(source, key, request.candidate_id, _pack(await result()))
        except BaseException:
            await asyncio.shield(self._release(source, key, request.candidate_id))
            raise
        return True

    async def _record(self, source: str, key: str, holder_id: str, result: any_pb2.Any) -> None:
        """Complete the key held by `holder_id` with `result` (which also removes its object's marker)."""
        request = spb.CompleteIdempotencyKeyRequest(
            source=source, idempotency_key=key, id=holder_id, result=result
        )
        await self._storage.CompleteIdempotencyKey(
            request, timeout=self._deadline_s, metadata=ctx.outgoing_metadata()
        )


def same_content(sent_sha256: str, stored_sha256: str) -> None:
    """Refuse a call whose content is not what its key first stored."""
    if sent_sha256 != stored_sha256:
        raise FailedPrecondition(
            "idempotency key was already used for different content", reason="idempotency_key_reused"
        )


class Content:
    """An upload's content, sent to storage once, or compared by `same_as`.

    The idempotency claim covers the request's header, not its content. A
    call that resumes an earlier attempt sends its content to storage, which
    reports the SHA-256 of what it received (`sent_sha256`), so it is hashed
    once, there. A replay sends nothing: `same_as` reads it and hashes it here.
    """

    def __init__(self, content: AsyncIterator[bytes]) -> None:
        self._content = content
        self._sent = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._sent = True
        return self._content

    async def same_as(self, sha256: str) -> None:
        """Read the content; refuse it if its digest is not `sha256`."""
        if self._sent:
            raise RuntimeError("content already sent: compare storage's sent_sha256 instead")
        sha = hashlib.sha256()
        async for piece in self._content:
            sha.update(piece)
        same_content(sha.hexdigest(), sha256)
