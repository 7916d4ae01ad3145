"""Small records in the index bucket that make ids and idempotency keys work.

Layout of the index bucket (`pantheon-index`):

    ids/<id>                             StatObjectResponse of a visible object
    pending/<id>                         PendingObject: an object stored (or being
                                         stored) whose announcement is unconfirmed
    idempotency/<source>/<sha256(key)>   IdempotencyRecord of an ingest call
    spans/end/<position>                 a record batch, in the last hour of its span
    spans/cover/<position>               ... in each earlier hour (spans of up to 744 hours)
    spans/long/v1/<data_type>/<source>/<end ns, 21 digits>/<key after the source>
                                         a batch spanning more than 744 hours

`ids/` answers "where is object <id>" in one GET, since object keys embed
metadata an id alone does not give. It is also what makes an object visible:
Get, Stat and Search answer only objects bound there, and the binding is
written only after the object's events are acknowledged (CommitObject).
`pending/` holds, from before the first byte is stored until that commit,
what the reconciler needs to announce an object whose call died: its
metadata, where it goes, and the call's announcement. `idempotency/` entries are created with
a conditional write, so exactly one of concurrent callers claims a key.
The `spans/` entries of record batches are named in pantheon.storage.spans.

After that, an idempotency record changes only by compare-and-swap: read it
with its ETag, decide, write with `If-Match: <etag>`; a write that lost a
race re-reads and decides again, so every change is decided on the record
it replaces. The rules, on the record as read:

- A claim is a lease held by `holder` (the candidate id of the call that won
  or took it over; `id`, the object id, never changes). The holder renews it
  by claiming again with its own candidate id, which moves `claimed_at`.
- A claim released, or not renewed for the caller's `take_over_after`, of
  the same request (digest) is taken over: `holder` becomes the new caller,
  who resumes under `id` (the object is written at most once, the events
  keep their ids).
- Complete and release name the holder. Any other id, a former holder that
  finishes late included, is FAILED_PRECONDITION `key_held` and changes
  nothing, so the new holder's state stands. A completed record is final:
  never released, renewed, taken over or completed again (completing it
  again as its holder returns the first completion).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.errors import Aborted, AlreadyExists, FailedPrecondition, NotFound
from pantheon.storage.buckets import INDEX_BUCKET
from pantheon.storage.directory import SourceDirectory, data_root, span_root
from pantheon.storage.object_store import ObjectStore, PreconditionFailed
from pantheon.storage.spans import (
    SPAN_COVER,
    SPAN_END,
    SPAN_LONG,
    batch_span,
    hour_of,
    position,
    span_entries,
)
from pantheon.storage.sweeper import Sweeper

#: Span entries written at once.
_SPAN_WRITES = 32
#: Compare-and-swap attempts of one idempotency record update before ABORTED.
_CAS_ATTEMPTS = 16

#: Markers of objects whose announcement is not confirmed yet.
PENDING_PREFIX = "pending/"


def _pending_key(object_id: str) -> str:
    return f"{PENDING_PREFIX}{object_id}"


def _id_key(object_id: str) -> str:
    return f"ids/{object_id}"


def _idempotency_key(source: str, key: str) -> str:
    # Hashed: keys may hold characters that are awkward in object names.
    return f"idempotency/{source}/{hashlib.sha256(key.encode()).hexdigest()}"


def holder_of(record: pb.IdempotencyRecord) -> str:
    """The candidate id of the call holding a key (`id` in records older than takeovers)."""
    return record.holder or record.id


def _renewed(held: pb.IdempotencyRecord, holder: str) -> pb.IdempotencyRecord | None:
    """`held` with its lease renewed for `holder`; None when `holder` no longer holds it."""
    if holder_of(held) != holder or held.released or held.HasField("completed_at"):
        return None
    renewed = pb.IdempotencyRecord()
    renewed.CopyFrom(held)
    renewed.holder = holder
    renewed.claimed_at.FromDatetime(datetime.now(UTC))
    return renewed


#: Decides an update from the record as read: the record to write, or None to leave it.
Decide = Callable[[pb.IdempotencyRecord], pb.IdempotencyRecord | None]


class Index:
    """Reads and writes index records through an ObjectStore."""

    def __init__(self, store: ObjectStore, sources: SourceDirectory | None = None) -> None:
        self._store = store
        self._sweeper = Sweeper(store, INDEX_BUCKET)
        #: The sources search lists, kept briefly; told at once of what is bound here.
        self.sources = sources or SourceDirectory(store)

    async def put_object_info(self, info: pb.StatObjectResponse) -> None:
        """Bind an id to its object, once: `ids/<id>` is create-only.

        Writing the same binding again (a retry that indexes what a crashed
        call stored) is a no-op; binding the id to another object is
        ALREADY_EXISTS, and the first binding stays. A record batch's span
        entries are written first (rewriting them is harmless), so a batch
        that can be found by id can be found by every hour it covers.
        """
        meta = info.metadata
        # Before the id is bound: whatever search may answer here, it lists here.
        self.sources.note(info.object.bucket, data_root(meta.data_type), meta.source)
        entries = span_entries(info)
        await self._put_spans(entries, info.object.key)
        for kind in (SPAN_END, SPAN_COVER, SPAN_LONG):
            if any(e.startswith(kind) for e in entries):
                self.sources.note(INDEX_BUCKET, span_root(kind, meta.data_type), meta.source)
        try:
            await self._store.put_bytes(
                INDEX_BUCKET, _id_key(info.metadata.id), info.SerializeToString(), if_absent=True
            )
        except AlreadyExists:
            bound = await self.object_info(info.metadata.id)
            if (bound.object.bucket, bound.object.key) != (info.object.bucket, info.object.key):
                raise AlreadyExists(
                    f"object id {info.metadata.id} is bound to another object", reason="object_exists"
                ) from None

    async def _put_spans(self, entries: list[str], key: str) -> None:
        if not entries:
            return
        slots = asyncio.Semaphore(_SPAN_WRITES)

        async def put(name: str) -> None:
            async with slots:
                await self._store.put_bytes(INDEX_BUCKET, name, key.encode(), if_absent=False)

        for outcome in await asyncio.gather(*(put(name) for name in entries), return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    async def has_spans(self, info: pb.StatObjectResponse) -> bool:
        """Whether a batch's span entries were written (not for batches indexed before they were)."""
        span = batch_span(info.metadata)
        if span is None:
            return False
        try:
            await self._store.get_bytes(
                INDEX_BUCKET, SPAN_END + position(info.object.key, hour_of(span[1] - 1))
            )
        except NotFound:
            return False
        return True

    async def put_pending(self, pending: pb.PendingObject) -> None:
        """Write an object's pending marker. A later attempt at the same id
        rewrites it, unless the marker names another object or announces it
        otherwise (FAILED_PRECONDITION `id_in_use`): its reconciler would
        otherwise look for the wrong bytes, or announce, and record as the
        call's answer, a decision that is not the stored object's. (A call
        that resumes an earlier attempt rebuilds that attempt's announcement
        exactly; one that differs comes from a former holder of the key.)"""
        pending.written_at.FromDatetime(datetime.now(UTC))
        name, data = _pending_key(pending.metadata.id), pending.SerializeToString()
        try:
            await self._store.put_bytes(INDEX_BUCKET, name, data, if_absent=True)
            return
        except AlreadyExists:
            pass
        try:
            earlier = await self.pending(pending.metadata.id)
        except NotFound:
            earlier = pending  # removed meanwhile: write it again
        if (earlier.bucket, earlier.key, earlier.announcement) != (
            pending.bucket,
            pending.key,
            pending.announcement,
        ):
            raise FailedPrecondition("the id is being stored as another object", reason="id_in_use")
        await self._store.put_bytes(INDEX_BUCKET, name, data, if_absent=False)

    async def pending(self, object_id: str) -> pb.PendingObject:
        try:
            data = await self._store.get_bytes(INDEX_BUCKET, _pending_key(object_id))
        except NotFound:
            raise NotFound(f"no pending object with id {object_id}", reason="not_pending") from None
        return pb.PendingObject.FromString(data)

    async def drop_pending(self, object_id: str) -> None:
        await self._store.delete(INDEX_BUCKET, _pending_key(object_id))

    def drop_pending_soon(self, object_id: str) -> None:
        """Remove a committed object's marker a moment later, with others (sweeper.py)."""
        self._sweeper.remove(_pending_key(object_id))

    async def sweep(self) -> None:
        """Remove the markers queued by `drop_pending_soon` now."""
        await self._sweeper.flush()

    async def pending_markers(
        self, written_before: datetime, start_after: str, limit: int
    ) -> tuple[list[pb.PendingMarker], str]:
        """Markers written before `written_before`, after id `start_after`, and
        the id to resume from ("" when the listing is done)."""
        markers: list[pb.PendingMarker] = []
        after = _pending_key(start_after) if start_after else ""
        while len(markers) < limit:
            page = await self._store.list(INDEX_BUCKET, PENDING_PREFIX, start_after=after, limit=limit)
            for key, written in zip(page.keys, page.modified, strict=True):
                after = key
                if written < written_before:
                    marker = pb.PendingMarker(id=key[len(PENDING_PREFIX) :])
                    marker.written_at.FromDatetime(written)
                    markers.append(marker)
                    if len(markers) == limit:
                        return markers, marker.id
            if not page.truncated or not page.keys:
                return markers, ""
        return markers, ""

    async def object_info(self, object_id: str) -> pb.StatObjectResponse:
        try:
            data = await self._store.get_bytes(INDEX_BUCKET, _id_key(object_id))
        except NotFound:
            raise NotFound(f"no object with id {object_id}", reason="object_not_found") from None
        return pb.StatObjectResponse.FromString(data)

    async def claim(self, request: pb.ClaimIdempotencyKeyRequest) -> pb.ClaimIdempotencyKeyResponse:
        """Create the key's record, renew the caller's lease, or take a stale one over.

        `claimed` is true when the caller holds the key afterwards.
        """
        record = pb.IdempotencyRecord(
            id=request.candidate_id, request_digest=request.request_digest, holder=request.candidate_id
        )
        record.claimed_at.FromDatetime(datetime.now(UTC))
        name = _idempotency_key(request.source, request.idempotency_key)
        try:
            await self._store.put_bytes(INDEX_BUCKET, name, record.SerializeToString(), if_absent=True)
            return pb.ClaimIdempotencyKeyResponse(claimed=True, record=record)
        except AlreadyExists:
            pass
        take_over = request.take_over_after.ToTimedelta() if request.HasField("take_over_after") else None

        def decide(held: pb.IdempotencyRecord) -> pb.IdempotencyRecord | None:
            if holder_of(held) == request.candidate_id:
                return _renewed(held, request.candidate_id)
            if (
                take_over is None
                or take_over <= timedelta(0)
                or held.HasField("completed_at")
                or held.request_digest != request.request_digest
            ):
                return None
            age = datetime.now(UTC) - held.claimed_at.ToDatetime(tzinfo=UTC)
            if not held.released and age < take_over:
                return None
            taken = pb.IdempotencyRecord()
            taken.CopyFrom(held)
            taken.holder = request.candidate_id
            taken.released = False
            taken.claimed_at.FromDatetime(datetime.now(UTC))
            return taken

        held, written = await self._update(request.source, request.idempotency_key, decide)
        return pb.ClaimIdempotencyKeyResponse(claimed=written, record=held)

    async def renew(self, source: str, key: str, holder: str) -> pb.IdempotencyRecord:
        """Renew `holder`'s lease on a key (FAILED_PRECONDITION `key_held` when
        it was taken over, released or completed)."""

        def decide(held: pb.IdempotencyRecord) -> pb.IdempotencyRecord | None:
            renewed = _renewed(held, holder)
            if renewed is None:
                raise FailedPrecondition("idempotency key is no longer held by this id", reason="key_held")
            return renewed

        record, _ = await self._update(source, key, decide)
        return record

    async def record(self, source: str, key: str) -> pb.IdempotencyRecord:
        try:
            data = await self._store.get_bytes(INDEX_BUCKET, _idempotency_key(source, key))
        except NotFound:
            raise NotFound("idempotency key was never used", reason="key_not_found") from None
        return pb.IdempotencyRecord.FromString(data)

    async def _update(self, source: str, key: str, decide: Decide) -> tuple[pb.IdempotencyRecord, bool]:
        """Compare-and-swap a key's record: `decide` gets the record as read and
        returns the one to write, or None to leave it (or raises). A write that
        lost a race re-reads and decides again. Returns the record as it now
        is, and whether this call wrote it."""
        name = _idempotency_key(source, key)
        for _ in range(_CAS_ATTEMPTS):
            try:
                data, etag = await self._store.get_bytes_versioned(INDEX_BUCKET, name)
                held = pb.IdempotencyRecord.FromString(data)
                new = decide(held)
                if new is None:
                    return held, False
                await self._store.put_bytes(
                    INDEX_BUCKET, name, new.SerializeToString(), if_absent=False, if_match=etag
                )
                return new, True
            except NotFound:
                raise NotFound("idempotency key was never used", reason="key_not_found") from None
            except PreconditionFailed:
                continue
        raise Aborted("idempotency key is contended, retry later", reason="in_progress")

    async def complete(self, request: pb.CompleteIdempotencyKeyRequest) -> pb.IdempotencyRecord:
        """Record the result of the key's holder (a repeat changes nothing); the completed record."""

        def decide(held: pb.IdempotencyRecord) -> pb.IdempotencyRecord | None:
            if holder_of(held) != request.id:
                raise FailedPrecondition("idempotency key is held by another call", reason="key_held")
            if held.HasField("completed_at"):
                return None
            done = pb.IdempotencyRecord()
            done.CopyFrom(held)
            done.result.CopyFrom(request.result)
            done.released = False
            done.completed_at.FromDatetime(datetime.now(UTC))
            return done

        record, _ = await self._update(request.source, request.idempotency_key, decide)
        return record

    async def release(self, request: pb.ReleaseIdempotencyKeyRequest) -> None:
        def decide(held: pb.IdempotencyRecord) -> pb.IdempotencyRecord | None:
            if holder_of(held) != request.id or held.HasField("completed_at"):
                raise FailedPrecondition("idempotency key is not held by this id", reason="key_held")
            if held.released:
                return None
            released = pb.IdempotencyRecord()
            released.CopyFrom(held)
            released.released = True
            return released

        await self._update(request.source, request.idempotency_key, decide)
