"""Committed objects' markers are removed in batches, and a failed removal only leaves clutter."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pantheon.errors import Unavailable
from pantheon.storage.buckets import INDEX_BUCKET
from pantheon.storage.page_tokens import PageTokens
from pantheon.storage.service import StorageServicer
from pantheon.storage.sweeper import BATCH, Sweeper
from tests.unit.fakes import MemoryObjectStore


class CountingDeletes(MemoryObjectStore):
    def __init__(self) -> None:
        super().__init__()
        self.deletes: list[int] = []

    async def delete_many(self, bucket: str, keys: Sequence[str]) -> None:
        self.deletes.append(len(keys))
        await super().delete_many(bucket, keys)


def _fill(store: MemoryObjectStore, count: int) -> list[str]:
    keys = [f"pending/{i:026d}" for i in range(count)]
    for key in keys:
        store.objects[(INDEX_BUCKET, key)] = b"marker"
    return keys


async def test_queued_keys_go_in_requests_of_at_most_a_batch() -> None:
    store = CountingDeletes()
    keys = _fill(store, 2 * BATCH + 5)
    sweeper = Sweeper(store, INDEX_BUCKET, every_s=3600)  # only the flush below removes
    for key in keys:
        sweeper.remove(key)
    assert len(store.objects) == len(keys)  # nothing removed on the caller's path
    await sweeper.flush()
    assert store.deletes == [BATCH, BATCH, 5]
    assert store.objects == {}


async def test_a_sweep_follows_the_first_key_on_its_own() -> None:
    store = CountingDeletes()
    keys = _fill(store, 3)
    sweeper = Sweeper(store, INDEX_BUCKET, every_s=0)
    for key in keys:
        sweeper.remove(key)
    for _ in range(100):
        if not store.objects:
            break
        await asyncio.sleep(0.01)
    assert store.objects == {}
    assert store.deletes == [3]  # one request for the keys queued together


async def test_a_failed_removal_is_logged_and_leaves_the_markers(caplog: pytest.LogCaptureFixture) -> None:
    store = CountingDeletes()
    keys = _fill(store, 2)
    store.fail = Unavailable("object store is unavailable, retry later")
    sweeper = Sweeper(store, INDEX_BUCKET, every_s=3600)
    for key in keys:
        sweeper.remove(key)
    await sweeper.flush()  # does not raise: the reconciler removes them later
    assert len(store.objects) == 2
    assert "could not remove 2 pending markers" in caplog.text
    store.fail = None
    await sweeper.flush()
    assert len(store.objects) == 2  # forgotten, not retried: the reconciler's job now


async def test_closing_the_storage_service_removes_the_markers_it_queued() -> None:
    store = CountingDeletes()
    servicer = StorageServicer(store, PageTokens(b"k" * 32))
    _fill(store, 1)
    servicer._index.drop_pending_soon(f"{0:026d}")  # as CommitObject does
    assert (INDEX_BUCKET, f"pending/{0:026d}") in store.objects
    await servicer.close()
    assert store.objects == {}
