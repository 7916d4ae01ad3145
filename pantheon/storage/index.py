"""Small records in the index bucket that make ids and idempotency keys work.

Layout of the index bucket (`pantheon-index`):

    ids/<id>                             StatObjectResponse of a stored object
    idempotency/<source>/<sha256(key)>   IdempotencyRecord of an ingest call

`ids/` answers "where is object <id>" in one GET, since object keys embed
metadata an id alone does not give. `idempotency/` entries are created with
a conditional write, so exactly one of concurrent callers claims a key.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.errors import AlreadyExists, FailedPrecondition, NotFound
from pantheon.storage.buckets import INDEX_BUCKET
from pantheon.storage.object_store import ObjectStore


def _id_key(object_id: str) -> str:
    return f"ids/{object_id}"


def _idempotency_key(source: str, key: str) -> str:
    # Hashed: keys may hold characters that are awkward in object names.
    return f"idempotency/{source}/{hashlib.sha256(key.encode()).hexdigest()}"


class Index:
    """Reads and writes index records through an ObjectStore."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    async def put_object_info(self, info: pb.StatObjectResponse) -> None:
        """Bind an id to its object, once: `ids/<id>` is create-only.

        Writing the same binding again (a retry that indexes what a crashed
        call stored) is a no-op; binding the id to another object is
        ALREADY_EXISTS, and the first binding stays.
        """
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

    async def has_object(self, object_id: str) -> bool:
        try:
            await self.object_info(object_id)
        except NotFound:
            return False
        return True

    async def object_info(self, object_id: str) -> pb.StatObjectResponse:
        try:
            data = await self._store.get_bytes(INDEX_BUCKET, _id_key(object_id))
        except NotFound:
            raise NotFound(f"no object with id {object_id}", reason="object_not_found") from None
        return pb.StatObjectResponse.FromString(data)

    async def claim(self, request: pb.ClaimIdempotencyKeyRequest) -> pb.ClaimIdempotencyKeyResponse:
        record = pb.IdempotencyRecord(id=request.candidate_id, request_digest=request.request_digest)
        record.claimed_at.FromDatetime(datetime.now(UTC))
        name = _idempotency_key(request.source, request.idempotency_key)
        try:
            await self._store.put_bytes(INDEX_BUCKET, name, record.SerializeToString(), if_absent=True)
            return pb.ClaimIdempotencyKeyResponse(claimed=True, record=record)
        except AlreadyExists:
            held = await self.record(request.source, request.idempotency_key)
            return pb.ClaimIdempotencyKeyResponse(claimed=False, record=held)

    async def record(self, source: str, key: str) -> pb.IdempotencyRecord:
        try:
            data = await self._store.get_bytes(INDEX_BUCKET, _idempotency_key(source, key))
        except NotFound:
            raise NotFound("idempotency key was never used", reason="key_not_found") from None
        return pb.IdempotencyRecord.FromString(data)

    async def complete(self, request: pb.CompleteIdempotencyKeyRequest) -> datetime:
        held = await self.record(request.source, request.idempotency_key)
        if held.id != request.id:
            raise FailedPrecondition("idempotency key is held by another call", reason="key_held")
        if held.HasField("completed_at"):
            return held.completed_at.ToDatetime(tzinfo=UTC)
        held.result.CopyFrom(request.result)
        held.completed_at.FromDatetime(datetime.now(UTC))
        name = _idempotency_key(request.source, request.idempotency_key)
        await self._store.put_bytes(INDEX_BUCKET, name, held.SerializeToString(), if_absent=False)
        return held.completed_at.ToDatetime(tzinfo=UTC)

    async def release(self, request: pb.ReleaseIdempotencyKeyRequest) -> None:
        held = await self.record(request.source, request.idempotency_key)
        if held.id != request.id or held.HasField("completed_at"):
            raise FailedPrecondition("idempotency key is not held by this id", reason="key_held")
        if held.released:
            return
        held.released = True
        name = _idempotency_key(request.source, request.idempotency_key)
        await self._store.put_bytes(INDEX_BUCKET, name, held.SerializeToString(), if_absent=False)
