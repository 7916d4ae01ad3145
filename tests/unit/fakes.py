"""In-memory collaborators for unit tests: an object store and a publisher.

Integration tests never use these; they run against the real stack.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb

from pantheon.errors import AlreadyExists, NotFound, PantheonError
from pantheon.events.producer import Event
from pantheon.policy import INTERNAL_GRANT, current_grant
from pantheon.storage.object_store import ExistingObject, Listing, PreconditionFailed, StoredObject
from pantheon.storage.service import StorageServicer


@dataclass
class MemoryObjectStore:
    """ObjectStore in a dict; `fail` makes every call raise it."""

    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    fail: PantheonError | None = None
    aborted_uploads: int = 0
    #: When each object was last written (tests move it back to age markers).
    written: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    async def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterator[bytes],
        content_type: str,
        user_metadata: Mapping[str, str],
    ) -> StoredObject:
        self._check()
        parts = []
        try:
            async for chunk in chunks:
                parts.append(chunk)
        except BaseException:
            self.aborted_uploads += 1
            raise
        data = b"".join(parts)
        try:
            return await self.put_bytes(bucket, key, data, if_absent=True)
        except AlreadyExists as exc:
            raise ExistingObject(exc.message, sent_sha256=hashlib.sha256(data).hexdigest()) from exc

    async def put_bytes(
        self, bucket: str, key: str, data: bytes, *, if_absent: bool, if_match: str = ""
    ) -> StoredObject:
        # As S3: a create-only write finding the object is 412 (AlreadyExists
        # here); an If-Match write is 404 when the object is gone and 412
        # (PreconditionFailed) when its ETag changed.
        self._check()
        if if_absent and (bucket, key) in self.objects:
            raise AlreadyExists("exists")
        if if_match:
            if (bucket, key) not in self.objects:
                raise NotFound("missing")
            if self._etag(bucket, key) != if_match.strip('"'):
                raise PreconditionFailed("changed since read")
        self.objects[(bucket, key)] = data
        self.written[(bucket, key)] = datetime.now(UTC)
        return self._info(bucket, key)

    def _etag(self, bucket: str, key: str) -> str:
        # S3's ETag of a single PUT: the MD5 of its bytes.
        return hashlib.md5(self.objects[(bucket, key)], usedforsecurity=False).hexdigest()

    def _info(self, bucket: str, key: str) -> StoredObject:
        data = self.objects[(bucket, key)]
        return StoredObject(
            bucket, key, len(data), self._etag(bucket, key), "", "AES256", hashlib.sha256(data).hexdigest()
        )

    async def get_bytes(self, bucket: str, key: str) -> bytes:
        self._check()
        if (bucket, key) not in self.objects:
            raise NotFound("missing")
        return self.objects[(bucket, key)]

    async def get_bytes_versioned(self, bucket: str, key: str) -> tuple[bytes, str]:
        data = await self.get_bytes(bucket, key)
        return data, self._etag(bucket, key)

    async def get_stream(
        self, bucket: str, key: str, offset: int = 0, length: int = 0
    ) -> AsyncIterator[bytes]:
        data = await self.get_bytes(bucket, key)
        yield data[offset : offset + length if length else None]

    async def stat(self, bucket: str, key: str) -> StoredObject:
        await self.get_bytes(bucket, key)
        return self._info(bucket, key)

    async def list(
        self, bucket: str, prefix: str, *, delimiter: str = "", start_after: str = "", limit: int = 1000
    ) -> Listing:
        self._check()
        keys = sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix) and k > start_after)
        if delimiter:
            prefixes = sorted({prefix + k[len(prefix) :].split(delimiter)[0] + delimiter for k in keys})
            return Listing([], prefixes, truncated=False)
        page = keys[:limit]
        return Listing(
            page, [], truncated=len(keys) > limit, modified=[self.written[(bucket, k)] for k in page]
        )

    async def delete(self, bucket: str, key: str) -> None:
        self._check()
        self.objects.pop((bucket, key), None)

    async def delete_many(self, bucket: str, keys: Sequence[str]) -> None:
        self._check()
        for key in keys:
            self.objects.pop((bucket, key), None)

    def stored(self, bucket_prefix: str = "pantheon-") -> list[str]:
        """Keys of data objects (the index bucket left out)."""
        return sorted(k for b, k in self.objects if b.startswith(bucket_prefix) and b != "pantheon-index")


@dataclass
class RecordingPublisher:
    """EventPublisher that keeps what it is given; `fail` makes publish raise it."""

    events: list[Event] = field(default_factory=list)
    up: bool = True
    fail: Exception | None = None

    def ready(self) -> bool:
        return self.up

    async def probe(self) -> bool:
        return self.up

    async def publish(self, events: Sequence[Event]) -> None:
        if self.fail is not None:
            raise self.fail
        self.events.extend(events)


async def store_visible(servicer: StorageServicer, meta: md.Metadata, body: bytes) -> spb.PutObjectResponse:
    """Store an object through the storage servicer and commit it, as
    ingestion does once its events are acknowledged (under the internal
    grant, as ingestion calls its local storage)."""

    async def requests() -> AsyncIterator[spb.PutObjectRequest]:
        yield spb.PutObjectRequest(header=spb.PutObjectHeader(metadata=meta))
        yield spb.PutObjectRequest(chunk=body)

    token = current_grant.set(INTERNAL_GRANT)
    try:
        stored: spb.PutObjectResponse = await servicer.PutObject(requests(), None)  # type: ignore[arg-type]
        info = spb.StatObjectResponse(
            object=stored.object, metadata=stored.metadata, encryption=stored.encryption
        )
        await servicer.CommitObject(spb.CommitObjectRequest(object=info), None)  # type: ignore[arg-type]
        return stored
    finally:
        current_grant.reset(token)
