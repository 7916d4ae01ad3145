"""How search lists: concurrently but in page order, only where something can be, and
with a source directory whose freshness rule is the documented one.

- Prefixes listed concurrently (LIST answers coming back in any order) page
  exactly as prefixes listed one after another: the same objects in the
  same order at every page size, and with every listing budget.
- A page lists only the buckets that hold a source and the kinds of span
  entries it has; the sources themselves come from the directory, not a
  LIST per page.
- A source stored through this process is searchable at once; one stored
  by another replica within FRESH_S seconds (at once when the search names
  it).
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest
from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.policy import current_grant
from pantheon.storage import listing as search_listing
from pantheon.storage.buckets import INDEX_BUCKET
from pantheon.storage.directory import FRESH_S, SourceDirectory, data_root
from pantheon.storage.object_store import Listing
from pantheon.storage.page_tokens import KEY_BYTES, PageTokens
from pantheon.storage.service import StorageServicer
from tests.unit.fakes import MemoryObjectStore
from tests.unit.test_search_completeness import (
    DATA_TYPE,
    LINZ,
    READER,
    T0,
    VIENNA,
    SmallPages,
    _batch,
    _box,
    _object,
    _search,
)


class Shuffled(SmallPages):
    """SmallPages whose LIST answers come back in a seeded random order; counts the
    listings of keys in flight (not the directory's listings of sources)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls: list[tuple[str, str]] = []

    async def list(
        self, bucket: str, prefix: str, *, delimiter: str = "", start_after: str = "", limit: int = 1000
    ) -> Listing:
        self.calls.append((bucket, prefix))
        counted = not delimiter
        self.in_flight += counted
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(self.rng.randrange(6)):
                await asyncio.sleep(0)  # let other listings overtake this one
            return await super().list(
                bucket, prefix, delimiter=delimiter, start_after=start_after, limit=limit
            )
        finally:
            self.in_flight -= counted


async def _fill(servicer: StorageServicer) -> set[str]:
    stored = set()
    for source in ("ab", "ab-c", "quiet", "zz"):
        for hour in (0, 1, 3, 7):
            for minute in (5, 6, 40):
                where = LINZ if minute == 6 else VIENNA
                stored.add(await _object(servicer, source, T0 + timedelta(hours=hour, minutes=minute), where))
        stored.add(
            await _batch(
                servicer, source, [(T0 + timedelta(hours=1), VIENNA), (T0 + timedelta(hours=6), LINZ)]
            )
        )
    return stored


async def _paged(servicer: StorageServicer, page_size: int, **filters: object) -> list[str]:
    return (await _search(servicer, T0, T0 + timedelta(hours=8), page_size, **filters)).ids  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_concurrent_listing_pages_exactly_as_listing_one_prefix_after_another(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Shuffled(seed)
    stored = await _fill(StorageServicer(store, PageTokens(b"k" * KEY_BYTES)))
    # The reference: one LIST at a time, nothing listed ahead.
    monkeypatch.setattr(search_listing, "LISTS_IN_FLIGHT", 1)
    monkeypatch.setattr(search_listing, "PREFIXES_AHEAD", 0)
    one_by_one = StorageServicer(store, PageTokens(b"k" * KEY_BYTES))
    expected = [(box, await _paged(one_by_one, 1000, bbox=box)) for box in (None, _box(LINZ))]
    assert set(expected[0][1]) == stored
    assert store.most_in_flight == 1
    monkeypatch.undo()
    for lists in (1, 3, 7, search_listing.LISTS_PER_PAGE):
        concurrent = StorageServicer(store, PageTokens(b"k" * KEY_BYTES), lists)
        for box, whole in expected:
            for page_size in (1, 2, 3, 7, 1000):
                assert await _paged(concurrent, page_size, bbox=box) == whole, (lists, page_size, box)
    # It did list concurrently, and never more than the bound at once.
    assert 1 < store.most_in_flight <= search_listing.LISTS_IN_FLIGHT


class Recorded(MemoryObjectStore):
    """Records every LIST as (bucket, prefix, delimiter)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, str]] = []

    async def list(
        self, bucket: str, prefix: str, *, delimiter: str = "", start_after: str = "", limit: int = 1000
    ) -> Listing:
        self.calls.append((bucket, prefix, delimiter))
        return await super().list(bucket, prefix, delimiter=delimiter, start_after=start_after, limit=limit)


async def test_a_page_lists_only_the_buckets_and_span_entries_that_hold_something() -> None:
    store = Recorded()
    servicer = StorageServicer(store, PageTokens(b"k" * KEY_BYTES))
    objects = [await _object(servicer, "ab", T0 + timedelta(hours=h, minutes=1)) for h in (0, 2)]
    assert set((await _search(servicer, T0, T0 + timedelta(hours=3))).ids) == set(objects)
    store.calls.clear()
    assert set((await _search(servicer, T0, T0 + timedelta(hours=3))).ids) == set(objects)
    # Sources from the directory (no delimiter LIST); one LIST per hour, in the public
    # bucket only: no restricted bucket, no span entries (the source stores no batches).
    assert {(b, d) for b, _, d in store.calls} == {("pantheon-sensor", "")}
    assert sorted(p for _, p, _ in store.calls) == sorted(
        f"v1/{DATA_TYPE}/ab/2026/03/10/{h:02d}/" for h in (12, 13, 14)
    )
    # A batch from this process: its span entries are listed at once.
    batch = await _batch(
        servicer, "ab", [(T0 + timedelta(minutes=5), VIENNA), (T0 + timedelta(hours=2), LINZ)]
    )
    store.calls.clear()
    assert set((await _search(servicer, T0, T0 + timedelta(hours=3))).ids) == {*objects, batch}
    assert {p.split("/")[1] for b, p, _ in store.calls if b == INDEX_BUCKET} == {"end", "cover"}


async def test_a_source_new_to_another_replica_is_found_within_the_freshness_window() -> None:
    store = MemoryObjectStore()
    writer = StorageServicer(store, PageTokens(b"k" * KEY_BYTES))
    reader = StorageServicer(store, PageTokens(b"k" * KEY_BYTES))
    now = [0.0]
    reader._index.sources = SourceDirectory(store, clock=lambda: now[0])  # another replica's directory
    first = await _object(writer, "ab", T0 + timedelta(minutes=1))
    window = (T0, T0 + timedelta(hours=1))
    assert (await _search(reader, *window)).ids == [first]
    new = await _object(writer, "zz", T0 + timedelta(minutes=2))
    # The writer's own directory knows at once.
    assert set((await _search(writer, *window)).ids) == {first, new}
    # Another replica: at once when the search names the source, else once its entry expires.
    assert (await _search(reader, *window, source="zz")).ids == [new]
    newer = await _object(writer, "zzz", T0 + timedelta(minutes=3))
    assert set((await _search(reader, *window)).ids) == {first, new}
    now[0] += FRESH_S
    assert set((await _search(reader, *window)).ids) == {first, new, newer}


async def test_the_directory_keeps_a_source_noted_while_it_was_being_listed() -> None:
    listing = asyncio.Event()
    release = asyncio.Event()

    class Slow(MemoryObjectStore):
        async def list(
            self, bucket: str, prefix: str, *, delimiter: str = "", start_after: str = "", limit: int = 1000
        ) -> Listing:
            found = await super().list(
                bucket, prefix, delimiter=delimiter, start_after=start_after, limit=limit
            )
            listing.set()
            await release.wait()
            return found

    store = Slow()
    await store.put_bytes("pantheon-sensor", f"{data_root(DATA_TYPE)}ab/x", b"", if_absent=True)
    now = [0.0]
    directory = SourceDirectory(store, clock=lambda: now[0])
    spent: list[int] = []
    pending = asyncio.create_task(
        directory.children("pantheon-sensor", data_root(DATA_TYPE), spend=lambda: spent.append(1))
    )
    await listing.wait()
    now[0] += 1
    directory.note("pantheon-sensor", data_root(DATA_TYPE), "new")  # written after the LIST answered
    release.set()
    assert await pending == {"ab", "new"}
    assert spent == [1]
    # Fresh: no LIST; expired: listed again, and the note is not forgotten before then.
    assert await directory.children(
        "pantheon-sensor", data_root(DATA_TYPE), spend=lambda: spent.append(1)
    ) == {
        "ab",
        "new",
    }
    assert spent == [1]
    now[0] += FRESH_S
    await directory.children("pantheon-sensor", data_root(DATA_TYPE), spend=lambda: spent.append(1))
    assert spent == [1, 1]


async def test_a_page_that_ends_early_leaves_no_listing_running() -> None:
    store = Shuffled(7)
    servicer = StorageServicer(store, PageTokens(b"k" * KEY_BYTES))
    await _fill(servicer)
    request = pb.SearchObjectsRequest(data_type=DATA_TYPE, page_size=1)
    request.observed_after.FromDatetime(T0)
    request.observed_before.FromDatetime(T0 + timedelta(hours=8))
    token = current_grant.set(READER)
    try:
        page = await servicer.SearchObjects(request, None)  # type: ignore[arg-type]
    finally:
        current_grant.reset(token)
    assert len(page.objects) == 1 and page.next_page_token
    assert store.in_flight == 0
