"""Per-hour manifests (pantheon.storage.manifests): a search reads an hour's
index entries in one GET once a search has read them, and answers exactly
what it answers without them.

- A second search of the same hours reads manifests, not `ids/<id>` one by one.
- Every page size pages to the same answer with manifests as without.
- A manifest never makes anything visible: an object stored but not yet
  committed is in no manifest and in no answer; once committed it is found
  (from `ids/`), even in an hour whose manifest was written before.
- One manifest serves both buckets of a domain, and a caller without the
  restricted grant still sees no restricted object.
- Answers from manifests are byte for byte those from `ids/`.
- A manifest that is unreadable, cannot be read or cannot be written
  changes no answer; shutting down with a failing store drops what waits.
- What a page reads is bounded: at most MAX_ENTRIES and MAX_BYTES per
  manifest, and no more manifests once it has read PAGE_BYTES of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.errors import Unavailable
from pantheon.metadata.ulid import new_ulid
from pantheon.policy import INTERNAL_GRANT, Grant, Rule, current_grant
from pantheon.storage import manifests
from pantheon.storage.buckets import INDEX_BUCKET
from pantheon.storage.object_store import StoredObject
from pantheon.storage.page_tokens import KEY_BYTES, PageTokens
from pantheon.storage.service import StorageServicer
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

WINDOW = (T0, T0 + timedelta(hours=4))
RESTRICTED = md.CLASSIFICATION_RESTRICTED


class CountingReads(SmallPages):
    """Counts GETs by the first segment of their key, and can refuse manifest reads and writes."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[str, int] = {}
        self.refuse_manifests = False
        self.refuse_manifest_reads = False

    async def get_bytes(self, bucket: str, key: str) -> bytes:
        kind = key.split("/", 1)[0]
        self.reads[kind] = self.reads.get(kind, 0) + 1
        if self.refuse_manifest_reads and kind == "manifests":
            raise Unavailable("read timed out")
        return await super().get_bytes(bucket, key)

    async def put_bytes(
        self, bucket: str, key: str, data: bytes, *, if_absent: bool, if_match: str = ""
    ) -> StoredObject:
        if self.refuse_manifests and key.startswith(manifests.MANIFEST_PREFIX):
            raise Unavailable("the store is away")
        return await super().put_bytes(bucket, key, data, if_absent=if_absent, if_match=if_match)


def _servicer() -> tuple[StorageServicer, CountingReads]:
    store = CountingReads()
    return StorageServicer(store, PageTokens(b"k" * KEY_BYTES)), store


def _manifest_names(store: CountingReads) -> list[str]:
    return sorted(
        k for b, k in store.objects if b == INDEX_BUCKET and k.startswith(manifests.MANIFEST_PREFIX)
    )


async def _fill(servicer: StorageServicer, per_hour: int = 10) -> set[str]:
    """`per_hour` objects in each of hours 0, 1 and 3 of two sources, and a batch across them."""
    stored = set()
    for source in ("ab", "zz"):
        for hour in (0, 1, 3):
            for i in range(per_hour):
                where = LINZ if i % 3 == 0 else VIENNA
                at = T0 + timedelta(hours=hour, minutes=i)
                stored.add(await _object(servicer, source, at, where))
    readings = [(T0 + timedelta(minutes=30), VIENNA), (T0 + timedelta(hours=3, minutes=30), LINZ)]
    stored.add(await _batch(servicer, "ab", readings))
    return stored


async def _searched(servicer: StorageServicer, **filters: object) -> list[str]:
    ids = (await _search(servicer, *WINDOW, **filters)).ids  # type: ignore[arg-type]
    await servicer.close()  # the manifests this search keeps are written
    return ids


async def test_a_second_search_reads_manifests_instead_of_each_entry() -> None:
    servicer, store = _servicer()
    stored = await _fill(servicer)
    first = await _searched(servicer)
    assert set(first) == stored
    assert store.reads["ids"] >= len(stored)
    # One manifest per (source, hour) with enough entries read.
    assert _manifest_names(store) == [
        f"{manifests.MANIFEST_PREFIX}v1/{DATA_TYPE}/{source}/2026/03/10/{hour}"
        for source in ("ab", "zz")
        for hour in (12, 13, 15)
    ]
    store.reads.clear()
    assert await _searched(servicer) == first
    # The batch's entry is in the manifests too; nothing is read one by one.
    assert store.reads.get("ids", 0) == 0
    assert store.reads["manifests"] == 6


async def test_every_page_size_answers_the_same_with_manifests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifests, "MIN_NEW", 1)
    servicer, store = _servicer()
    stored = await _fill(servicer, per_hour=4)
    for box in (None, _box(LINZ)):
        whole = await _searched(servicer, bbox=box)
        assert len(whole) == len(set(whole))
        if box is None:
            assert set(whole) == stored
        for size in (1, 2, 3, 5, 8, 13):
            assert (await _search(servicer, *WINDOW, size, bbox=box)).ids == whole, (size, box)
            await servicer.close()
    assert _manifest_names(store)


async def _uncommitted(servicer: StorageServicer, source: str, minute: int) -> str:
    """An object stored (its marker and bytes) whose call has not committed it yet."""
    meta = md.Metadata(
        id=new_ulid(),
        data_type=DATA_TYPE,
        source=source,
        format=md.FORMAT_JSON,
        classification=md.CLASSIFICATION_INTERNAL,
        location=md.GeoPoint(latitude=VIENNA[0], longitude=VIENNA[1]),
    )
    meta.observed_at.FromDatetime(T0 + timedelta(minutes=minute))

    async def requests() -> AsyncIterator[pb.PutObjectRequest]:
        yield pb.PutObjectRequest(header=pb.PutObjectHeader(metadata=meta))
        yield pb.PutObjectRequest(chunk=b'{"t":1}\n')

    token = current_grant.set(INTERNAL_GRANT)
    try:
        await servicer.PutObject(requests(), None)  # type: ignore[arg-type]
    finally:
        current_grant.reset(token)
    return meta.id


async def _commit(servicer: StorageServicer, object_id: str) -> None:
    token = current_grant.set(INTERNAL_GRANT)
    try:
        pending = await servicer._index.pending(object_id)
        stored = servicer.store
        data = await stored.get_bytes(pending.bucket, pending.key)
        meta = pb.StatObjectResponse(metadata=pending.metadata)
        meta.metadata.size_bytes = len(data)
        meta.object.bucket, meta.object.key = pending.bucket, pending.key
        await servicer.CommitObject(pb.CommitObjectRequest(object=meta), None)  # type: ignore[arg-type]
    finally:
        current_grant.reset(token)


async def test_a_manifest_makes_nothing_visible_and_hides_nothing_committed_later() -> None:
    servicer, store = _servicer()
    stored = await _fill(servicer)
    waiting = await _uncommitted(servicer, "ab", 59)
    first = await _searched(servicer)
    assert set(first) == stored  # not the uncommitted one
    assert await _searched(servicer) == first  # manifests written: still not
    assert all(
        waiting.encode() not in data
        for (b, k), data in store.objects.items()
        if k.startswith(manifests.MANIFEST_PREFIX)
    )
    # Committed after its hour's manifest was written: found, from ids/.
    await _commit(servicer, waiting)
    store.reads.clear()
    assert set(await _searched(servicer)) == stored | {waiting}
    assert store.reads["ids"] == 1
    # ... and kept for the next search only once enough of its hour are read there.
    assert waiting.encode() not in store.objects[(INDEX_BUCKET, _manifest_names(store)[0])]


async def test_one_manifest_serves_both_buckets_and_hides_restricted_objects_from_others() -> None:
    servicer, store = _servicer()
    public = {await _object(servicer, "ab", T0 + timedelta(minutes=m)) for m in range(10)}
    restricted = {
        await _object(
            servicer, "ab", T0 + timedelta(minutes=m, seconds=30), level=md.CLASSIFICATION_RESTRICTED
        )
        for m in range(10)
    }
    assert set(await _searched(servicer)) == public | restricted  # READER holds the restricted grant
    assert len(_manifest_names(store)) == 1
    public_reader = Grant(Rule("viz", read_types=("*",)))
    store.reads.clear()
    assert set(await _searched(servicer, grant=public_reader)) == public
    assert store.reads.get("ids", 0) == 0


async def test_an_unreadable_or_unwritable_manifest_changes_no_answer() -> None:
    servicer, store = _servicer()
    stored = await _fill(servicer)
    store.refuse_manifests = True
    first = await _searched(servicer)
    assert set(first) == stored and not _manifest_names(store)
    store.refuse_manifests = False
    assert await _searched(servicer) == first
    names = _manifest_names(store)
    for name in names:
        store.objects[(INDEX_BUCKET, name)] = b"\xff not a manifest"
    store.reads.clear()
    assert await _searched(servicer) == first
    assert store.reads["ids"] >= len(stored)
    # Written again, whole.
    for name in names:
        assert pb.HourManifest.FromString(store.objects[(INDEX_BUCKET, name)]).objects


async def test_a_manifest_holds_at_most_max_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifests, "MAX_ENTRIES", 12)
    servicer, store = _servicer()
    stored = {await _object(servicer, "ab", T0 + timedelta(minutes=m)) for m in range(20)}
    first = await _searched(servicer)
    assert set(first) == stored
    (name,) = _manifest_names(store)
    kept = pb.HourManifest.FromString(store.objects[(INDEX_BUCKET, name)]).objects
    assert len(kept) == 12
    assert [e.object.key for e in kept] == sorted(e.object.key for e in kept)
    store.reads.clear()
    assert await _searched(servicer) == first
    assert store.reads["ids"] == 8  # the rest of the hour, read one by one


async def test_a_page_stops_reading_manifests_at_its_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    servicer, store = _servicer()
    stored = await _fill(servicer)
    first = await _searched(servicer)
    assert len(_manifest_names(store)) == 6
    monkeypatch.setattr(manifests, "PAGE_BYTES", 1)
    monkeypatch.setattr(manifests, "LOADS_AT_ONCE", 2)
    store.reads.clear()
    assert await _searched(servicer) == first
    # One wave of two manifests, then the page's other keys one by one
    # (and nothing written for them: the page read no manifest of theirs).
    assert store.reads["manifests"] == 2
    assert 20 <= len(stored) - store.reads["ids"] <= 22


async def _answers(servicer: StorageServicer, size: int) -> list[bytes]:
    """Every object a search answers, whole and encoded, paged at `size`."""
    request = pb.SearchObjectsRequest(data_type=DATA_TYPE, page_size=size)
    request.observed_after.FromDatetime(WINDOW[0])
    request.observed_before.FromDatetime(WINDOW[1])
    token = current_grant.set(READER)
    found: list[bytes] = []
    try:
        while True:
            page = await servicer.SearchObjects(request, None)  # type: ignore[arg-type]
            found += [o.SerializeToString(deterministic=True) for o in page.objects]
            if not page.next_page_token:
                await servicer.close()
                return found
            request = pb.SearchObjectsRequest(
                data_type=DATA_TYPE, page_size=size, page_token=page.next_page_token
            )
    finally:
        current_grant.reset(token)


async def test_answers_from_manifests_are_byte_for_byte_those_from_ids() -> None:
    servicer, store = _servicer()
    await _fill(servicer)
    from_ids = await _answers(servicer, 1000)
    assert _manifest_names(store)
    store.reads.clear()
    assert await _answers(servicer, 1000) == from_ids
    assert store.reads.get("ids", 0) == 0
    # Small pages: some hours' keys too few to read their manifest (MIN_KEYS).
    assert await _answers(servicer, 7) == from_ids


async def test_a_manifest_that_cannot_be_read_changes_no_answer() -> None:
    servicer, store = _servicer()
    await _fill(servicer)
    first = await _searched(servicer)
    store.refuse_manifest_reads = True
    store.reads.clear()
    assert await _searched(servicer) == first
    assert store.reads["ids"] >= len(first)
    # After the first wave failed, the page read no more manifests.
    assert store.reads["manifests"] == manifests.LOADS_AT_ONCE


async def test_shutting_down_with_a_failing_store_drops_what_waits() -> None:
    store = CountingReads()
    written = manifests.Manifests(store)
    entries = {f"{i:026d}": pb.StatObjectResponse() for i in range(manifests.MIN_NEW)}
    for hour in range(100):
        written.keep(f"v1/{DATA_TYPE}/ab/2026/03/10/{hour:03d}", 0, entries)
    store.fail = Unavailable("the store is away")
    await written.close()
    # The first failure dropped the rest: one GET, not a hundred.
    assert store.reads == {"manifests": 1}
    assert written._bytes_waiting == 0 and not written._waiting


async def test_closing_again_after_shutdown_gave_up_returns_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    stalled = asyncio.Event()

    class Stalled(CountingReads):
        async def get_bytes(self, bucket: str, key: str) -> bytes:
            await stalled.wait()
            return await super().get_bytes(bucket, key)

    written = manifests.Manifests(Stalled())
    entries = {f"{i:026d}": pb.StatObjectResponse() for i in range(manifests.MIN_NEW)}
    written.keep(f"v1/{DATA_TYPE}/ab/2026/03/10/00", 0, entries)
    monkeypatch.setattr(manifests, "CLOSE_S", 0)
    await written.close()  # gives up at once: the writer is cancelled, the queue dropped
    monkeypatch.setattr(manifests, "CLOSE_S", 5.0)
    await written.close()
    assert not written._waiting and written._bytes_waiting == 0
    # And a later page's entries are written again, by a new writer.
    stalled.set()
    written.keep(f"v1/{DATA_TYPE}/ab/2026/03/10/01", 0, entries)
    assert written._writer is not None
    await asyncio.wait({written._writer})
    assert written._store.reads == {"manifests": 1}  # type: ignore[attr-defined]
    assert (
        INDEX_BUCKET,
        f"{manifests.MANIFEST_PREFIX}v1/{DATA_TYPE}/ab/2026/03/10/01",
    ) in written._store.objects  # type: ignore[attr-defined]


async def test_a_manifest_holds_at_most_max_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    servicer, store = _servicer()
    await _fill(servicer)
    await _searched(servicer)
    sizes = []
    for name in _manifest_names(store):
        sizes.append(len(store.objects[(INDEX_BUCKET, name)]))
    monkeypatch.setattr(manifests, "MAX_BYTES", min(sizes) // 2)
    store.objects = {k: v for k, v in store.objects.items() if not k[1].startswith(manifests.MANIFEST_PREFIX)}
    first = await _searched(servicer)
    for name in _manifest_names(store):
        data = store.objects[(INDEX_BUCKET, name)]
        assert 0 < len(data) <= manifests.MAX_BYTES
        assert 0 < len(pb.HourManifest.FromString(data).objects) < 10
    assert await _searched(servicer) == first


async def test_a_manifest_full_by_its_bytes_is_not_read_again_to_add_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    servicer, store = _servicer()
    stored = await _fill(servicer, per_hour=20)
    first = await _searched(servicer)
    whole = min(len(store.objects[(INDEX_BUCKET, name)]) for name in _manifest_names(store))
    monkeypatch.setattr(manifests, "MAX_BYTES", whole // 2)
    store.objects = {k: v for k, v in store.objects.items() if not k[1].startswith(manifests.MANIFEST_PREFIX)}
    assert await _searched(servicer) == first  # writes half-full ones
    assert await _searched(servicer) == first  # a merge may find one full
    # What the pages alone read (a page boundary may split an hour: two reads).
    with monkeypatch.context() as no_writer:
        no_writer.setattr(manifests.Manifests, "keep", lambda *_: None)
        store.reads.clear()
        assert await _searched(servicer) == first
        pages_alone = store.reads["manifests"]
    for _ in range(2):
        store.reads.clear()
        assert await _searched(servicer) == first
        # The writer reads none of them again.
        assert store.reads["manifests"] == pages_alone
        assert store.reads["ids"] < len(stored)


async def test_an_oversized_manifest_is_ignored_and_written_again_within_bounds() -> None:
    # Not one this code writes (another build's, or planted): larger than
    # MAX_BYTES, and its entries differ from ids/, so using it would show.
    servicer, store = _servicer()
    await _fill(servicer)
    from_ids = await _answers(servicer, 1000)
    name = _manifest_names(store)[0]
    planted = pb.HourManifest.FromString(store.objects[(INDEX_BUCKET, name)])
    for entry in planted.objects:
        entry.object.etag = "planted"
    planted.objects[0].metadata.labels["pad"] = "x" * manifests.MAX_BYTES
    store.objects[(INDEX_BUCKET, name)] = planted.SerializeToString()
    assert await _answers(servicer, 1000) == from_ids
    data = store.objects[(INDEX_BUCKET, name)]
    assert 0 < len(data) <= manifests.MAX_BYTES
    assert all(e.object.etag != "planted" for e in pb.HourManifest.FromString(data).objects)
