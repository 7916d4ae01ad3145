"""Removal of committed objects' pending markers, in batches, off the callers' path.

Once an object is visible its pending marker is only clutter, so removing it
is not urgent and need not cost one DELETE per object: the sweeper gathers
the markers committed within `EVERY_S` and removes them with one
multi-object delete (up to `BATCH` keys each). A marker left behind (the
delete failed, or the process stopped first) is harmless: the reconciler
finds its object visible and removes it (pantheon.ingest.reconciler).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging

from pantheon.errors import PantheonError
from pantheon.storage.object_store import ObjectStore

log = logging.getLogger(__name__)

#: How long a committed marker waits to be removed with others.
EVERY_S = 0.2
#: Keys per multi-object delete (S3's limit).
BATCH = 1000


class Sweeper:
    """Deletes keys of one bucket in batches, a moment after they are queued."""

    def __init__(self, store: ObjectStore, bucket: str, every_s: float = EVERY_S) -> None:
        self._store = store
        self._bucket = bucket
        self._every_s = every_s
        self._queued: list[str] = []
        #: The sweep that will take what is queued (a reference keeps it alive).
        self._sweep: asyncio.Task[None] | None = None

    def remove(self, key: str) -> None:
        """Queue `key` for removal: it is gone within about `every_s`."""
        self._queued.append(key)
        if self._sweep is None:
            # In a context of its own: the sweep serves many calls, so it is
            # not part of the first one's trace or request id.
            self._sweep = asyncio.get_running_loop().create_task(self._later(), context=contextvars.Context())

    async def _later(self) -> None:
        await asyncio.sleep(self._every_s)
        self._sweep = None  # keys queued from here on start the next sweep
        await self.flush()

    async def flush(self) -> None:
        """Remove everything queued now."""
        taken, self._queued = self._queued, []
        for start in range(0, len(taken), BATCH):
            keys = taken[start : start + BATCH]
            try:
                await self._store.delete_many(self._bucket, keys)
            except PantheonError as exc:
                log.warning("could not remove %d pending markers (the reconciler will): %s", len(keys), exc)
