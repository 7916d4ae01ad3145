"""Search answers completely: every match once, in one order, at every page size.

The storage servicer over an in-memory store (small list pages, so every
listing crosses page boundaries), searched as a reader would:

- sources whose names share a prefix (`ab`, `ab-c`, `ab-c-d`: `ab-c/` sorts
  before `ab/`) page in the order the keys are listed in;
- a record batch is found by any window and box that meet its records'
  span and bounding box, not only its first record's hour and place, and
  only once however many hours it covers;
- sub-second bounds are compared with the exact `observed_at`;
- paging at every page size from 1 to the total returns what one big page
  returns, each object once, in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from pantheon_api.ingest.v1 import ingest_service_pb2 as ipb
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.ingest import records
from pantheon.metadata import geohash
from pantheon.metadata.naming import parse_key
from pantheon.metadata.ulid import new_ulid
from pantheon.policy import Grant, Rule, current_grant
from pantheon.storage.buckets import INDEX_BUCKET
from pantheon.storage.index import Index
from pantheon.storage.listing import LISTS_PER_PAGE, before_resume
from pantheon.storage.object_store import Listing, StoredObject
from pantheon.storage.page_tokens import KEY_BYTES, PageTokens
from pantheon.storage.service import StorageServicer
from pantheon.storage.spans import (
    HOUR_NS,
    SPAN_COVER,
    SPAN_END,
    SPAN_HOURS_MAX,
    SPAN_LONG,
    hour_of,
    ns,
    position,
    span_entries,
)
from tests.unit.fakes import MemoryObjectStore, store_visible

DATA_TYPE = "sensor.temperature"
T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)  # on the hour
VIENNA = (48.2, 16.37)
LINZ = (48.31, 14.29)
GRAZ = (47.07, 15.44)
READER = Grant(Rule("reader", read_types=("*",), read_restricted=True))


class SmallPages(MemoryObjectStore):
    """Lists two keys a page, so every listing and merge crosses page boundaries."""

    async def list(
        self, bucket: str, prefix: str, *, delimiter: str = "", start_after: str = "", limit: int = 1000
    ) -> Listing:
        return await super().list(bucket, prefix, delimiter=delimiter, start_after=start_after, limit=2)


def _servicer(search_lists: int = LISTS_PER_PAGE) -> StorageServicer:
    return StorageServicer(SmallPages(), PageTokens(b"k" * KEY_BYTES), search_lists)


def _objects(servicer: StorageServicer) -> dict[tuple[str, str], bytes]:
    return cast(SmallPages, servicer.store).objects


def _span_names(servicer: StorageServicer) -> list[str]:
    return sorted(k for b, k in _objects(servicer) if b == INDEX_BUCKET and k.startswith("spans/"))


async def _store(
    servicer: StorageServicer, meta: md.Metadata, body: bytes = b'{"t":1}\n'
) -> pb.PutObjectResponse:
    return await store_visible(servicer, meta, body)


async def _object(
    servicer: StorageServicer,
    source: str,
    at: datetime,
    where: tuple[float, float] = VIENNA,
    level: md.Classification.ValueType = md.CLASSIFICATION_INTERNAL,
) -> str:
    meta = md.Metadata(
        id=new_ulid(),
        data_type=DATA_TYPE,
        source=source,
        format=md.FORMAT_JSON,
        classification=level,
        location=md.GeoPoint(latitude=where[0], longitude=where[1]),
    )
    meta.observed_at.FromDatetime(at)
    return (await _store(servicer, meta)).metadata.id


async def _batch(
    servicer: StorageServicer,
    source: str,
    readings: Iterable[tuple[datetime, tuple[float, float]]],
    level: md.Classification.ValueType = md.CLASSIFICATION_INTERNAL,
) -> str:
    """A record batch with the metadata ingestion gives it (first record's place, earliest time)."""
    request = ipb.IngestRecordsRequest(data_type=DATA_TYPE, source=source, classification=level)
    for i, (at, (lat, lon)) in enumerate(readings):
        record = request.records.add(entity_id=f"e{i}", location=md.GeoPoint(latitude=lat, longitude=lon))
        record.observed_at.FromDatetime(at)
    accepted, rejected = records.triage(request.records)
    assert not rejected
    batch_id = new_ulid()
    items = records.identify(batch_id, accepted)
    meta = records.batch_metadata(request, batch_id, items)
    return (await _store(servicer, meta, records.encode_ndjson(items))).metadata.id


def _box(*points: tuple[float, float], margin: float = 0.01) -> md.BoundingBox:
    lats, lons = [p[0] for p in points], [p[1] for p in points]
    return md.BoundingBox(
        min_latitude=min(lats) - margin,
        max_latitude=max(lats) + margin,
        min_longitude=min(lons) - margin,
        max_longitude=max(lons) + margin,
    )


@dataclass
class Answer:
    ids: list[str]


async def _search(
    servicer: StorageServicer,
    after: datetime,
    before: datetime,
    page_size: int = 1000,
    *,
    source: str = "",
    bbox: md.BoundingBox | None = None,
    grant: Grant = READER,
) -> Answer:
    request = pb.SearchObjectsRequest(data_type=DATA_TYPE, source=source, page_size=page_size)
    request.observed_after.FromDatetime(after)
    request.observed_before.FromDatetime(before)
    if bbox is not None:
        request.bbox.CopyFrom(bbox)
    token = current_grant.set(grant)
    try:
        answer = Answer([])
        while True:
            page = await servicer.SearchObjects(request, None)  # type: ignore[arg-type]
            assert len(page.objects) <= page_size
            answer.ids += [o.metadata.id for o in page.objects]
            if not page.next_page_token:
                return answer
            # A continuation leaves the window out: the token holds it.
            request = pb.SearchObjectsRequest(
                data_type=DATA_TYPE, source=source, page_size=page_size, page_token=page.next_page_token
            )
            if bbox is not None:
                request.bbox.CopyFrom(bbox)
    finally:
        current_grant.reset(token)


async def _every_page_size(
    servicer: StorageServicer,
    after: datetime,
    before: datetime,
    expected: set[str],
    **filters: object,
) -> list[str]:
    """The one-page answer, after checking that every page size pages to it."""
    whole = (await _search(servicer, after, before, **filters)).ids  # type: ignore[arg-type]
    assert len(whole) == len(set(whole)), "an object was returned twice"
    assert set(whole) == expected
    for size in range(1, len(whole) + 1):
        paged = await _search(servicer, after, before, size, **filters)  # type: ignore[arg-type]
        assert paged.ids == whole, f"page size {size}"
    return whole


# -- sources whose names share a prefix ---------------------------------------------------------


async def test_the_reported_case_sources_ab_and_ab_c_at_page_size_two() -> None:
    servicer = _servicer()
    stored = {
        await _object(servicer, source, T0 + timedelta(minutes=minute))
        for source in ("ab", "ab-c")
        for minute in (1, 2, 3)
    }
    answer = await _search(servicer, T0, T0 + timedelta(hours=1), 2)
    assert sorted(answer.ids) == sorted(stored)
    assert len(answer.ids) == 6  # 3 of the 6 before the paging order was fixed


async def test_prefix_sharing_sources_page_in_key_order_at_every_page_size() -> None:
    servicer = _servicer()
    stored: dict[str, str] = {}
    for hour in (0, 1, 2):
        for source in ("ab", "ab-c", "ab-c-d", "abc"):
            for minute, level in ((5, md.CLASSIFICATION_PUBLIC), (6, md.CLASSIFICATION_RESTRICTED)):
                at = T0 + timedelta(hours=hour, minutes=minute)
                stored[await _object(servicer, source, at, level=level)] = source
    whole = await _every_page_size(servicer, T0, T0 + timedelta(hours=3), set(stored))
    # Newest hour first; within an hour by key, so "ab-c-d/" < "ab-c/" < "ab/" < "abc/".
    by_hour = [[stored[i] for i in whole[h * 8 : h * 8 + 8]] for h in range(3)]
    assert all(sources[::2] == ["ab-c-d", "ab-c", "ab", "abc"] for sources in by_hour)


def test_a_prefix_is_before_the_resume_key_in_the_order_of_the_keys() -> None:
    hour = "2026/03/10/12/"
    ab, ab_c = f"v1/{DATA_TYPE}/ab/{hour}", f"v1/{DATA_TYPE}/ab-c/{hour}"
    in_ab = f"{ab}u2edk/20260310T120100Z_{new_ulid()}.json"
    in_ab_c = f"{ab_c}u2edk/20260310T120100Z_{new_ulid()}.json"
    assert before_resume(ab_c, in_ab, DATA_TYPE)  # "ab-c/" is listed first
    assert not before_resume(ab, in_ab_c, DATA_TYPE)
    older = f"v1/{DATA_TYPE}/ab/2026/03/10/11/"
    assert before_resume(ab_c, f"{older}u2edk/20260310T110100Z_{new_ulid()}.json", DATA_TYPE)


# -- record batches by their whole span and box --------------------------------------------------


async def test_a_multi_hour_batch_is_found_from_every_hour_it_covers_once() -> None:
    servicer = _servicer()
    batch = await _batch(
        servicer,
        "city",
        [
            (T0 + timedelta(minutes=10), VIENNA),
            (T0 + timedelta(hours=1, minutes=20), VIENNA),
            (T0 + timedelta(hours=3, minutes=5), LINZ),
        ],
    )
    # Every hour of the span, the hour without a record in it included.
    for hour in range(4):
        start = T0 + timedelta(hours=hour)
        assert (await _search(servicer, start, start + timedelta(hours=1))).ids == [batch], hour
    # Windows that start inside the first hour after its first record, or end
    # inside the last hour before its last record, and every longer window.
    assert (await _search(servicer, T0 + timedelta(minutes=30), T0 + timedelta(minutes=31))).ids == [batch]
    assert (await _search(servicer, T0 + timedelta(hours=3), T0 + timedelta(hours=3, minutes=1))).ids == [
        batch
    ]
    for first in range(-2, 4):
        for last in range(first + 1, 7):
            window = (T0 + timedelta(hours=first), T0 + timedelta(hours=last))
            if last <= 0:
                continue
            assert (await _search(servicer, *window)).ids == [batch], (first, last)
    # Nothing before its first record or after its last.
    assert (await _search(servicer, T0 - timedelta(hours=2), T0 + timedelta(minutes=10))).ids == []
    late = T0 + timedelta(hours=3, minutes=5, microseconds=1)
    assert (await _search(servicer, late, late + timedelta(hours=5))).ids == []


async def test_a_batch_is_found_by_a_box_around_a_later_record_only() -> None:
    servicer = _servicer()
    batch = await _batch(
        servicer,
        "city",
        [(T0 + timedelta(minutes=10), VIENNA), (T0 + timedelta(hours=2, minutes=40), LINZ)],
    )
    for hours in ((0, 1), (0, 3), (2, 3), (1, 2)):
        window = (T0 + timedelta(hours=hours[0]), T0 + timedelta(hours=hours[1]))
        assert (await _search(servicer, *window, bbox=_box(LINZ))).ids == [batch], hours
        assert (await _search(servicer, *window, bbox=_box(VIENNA))).ids == [batch], hours
    # Graz lies outside the batch's box (south of both records).
    assert (await _search(servicer, T0, T0 + timedelta(hours=3), bbox=_box(GRAZ))).ids == []


async def test_a_batch_spanning_more_than_the_longest_window_is_found_anywhere_in_it() -> None:
    servicer = _servicer()
    days = SPAN_HOURS_MAX // 24 + 9  # 40 days: over the cap of hourly entries
    batch = await _batch(
        servicer,
        "archive",
        [(T0 + timedelta(minutes=1), VIENNA), (T0 + timedelta(days=days, minutes=30), LINZ)],
    )
    assert [e.split("/")[1] for e in _span_names(servicer)] == ["end", "long"]
    for offset in (timedelta(0), timedelta(days=1), timedelta(days=20, hours=7), timedelta(days=days)):
        start = T0 + offset
        assert (await _search(servicer, start, start + timedelta(hours=1))).ids == [batch], offset
        assert (await _search(servicer, start, start + timedelta(days=31))).ids == [batch], offset
    after = T0 + timedelta(days=days, hours=1)
    assert (await _search(servicer, after, after + timedelta(days=3))).ids == []


async def test_a_batch_indexed_before_span_entries_is_still_found_at_its_own_key() -> None:
    servicer = _servicer()
    batch = await _batch(
        servicer, "city", [(T0 + timedelta(minutes=10), VIENNA), (T0 + timedelta(hours=2), VIENNA)]
    )
    for name in _span_names(servicer):
        del _objects(servicer)[(INDEX_BUCKET, name)]
    assert (await _search(servicer, T0, T0 + timedelta(hours=3))).ids == [batch]
    assert (await _search(servicer, T0, T0 + timedelta(hours=1))).ids == [batch]


async def test_a_span_entry_that_does_not_fit_the_bound_object_is_ignored() -> None:
    servicer = _servicer()
    batch = await _batch(
        servicer, "city", [(T0 + timedelta(minutes=10), VIENNA), (T0 + timedelta(hours=1), VIENNA)]
    )
    plain = await _object(servicer, "city", T0 + timedelta(minutes=20))
    # Entries naming these ids elsewhere (a lost binding race), as put_object_info
    # would have written them for another object under the same id.
    for object_id in (batch, plain):
        stray = f"v1/{DATA_TYPE}/city/2026/03/10/14/u2edk/20260310T140000Z_{object_id}.ndjson"
        await servicer.store.put_bytes(INDEX_BUCKET, SPAN_END + stray, b"", if_absent=False)
        await servicer.store.put_bytes(INDEX_BUCKET, SPAN_COVER + stray, b"", if_absent=False)
    assert sorted((await _search(servicer, T0, T0 + timedelta(hours=5))).ids) == sorted([batch, plain])


def test_span_entries_name_positions_in_every_hour_of_the_span() -> None:
    meta = md.Metadata(
        id=new_ulid(), data_type=DATA_TYPE, source="city", format=md.FORMAT_NDJSON, record_count=3
    )
    meta.location.latitude, meta.location.longitude = VIENNA
    meta.observed_at.FromDatetime(T0 + timedelta(minutes=10, seconds=5, milliseconds=250))
    meta.validity.start.CopyFrom(meta.observed_at)
    meta.validity.end.FromDatetime(T0 + timedelta(hours=2, minutes=1))
    key = f"v1/{DATA_TYPE}/city/2026/03/10/12/u2edk/20260310T121005Z_{meta.id}.ndjson"
    info = pb.StatObjectResponse(object=md.ObjectRef(bucket="pantheon-sensor", key=key), metadata=meta)
    first = ns(T0)
    assert position(key, first) == key  # in its first hour, its own key
    assert position(key, first + 2 * HOUR_NS) == key.replace("/12/", "/14/").replace("T121005Z", "T140000Z")
    assert span_entries(info) == [
        SPAN_END + position(key, first + 2 * HOUR_NS),
        SPAN_COVER + key,
        SPAN_COVER + position(key, first + HOUR_NS),
    ]
    assert all(parse_key(position(key, first + h * HOUR_NS)).id == meta.id for h in range(3))
    # An object that is not a batch has none, whatever its validity says.
    forecast = pb.StatObjectResponse()
    forecast.CopyFrom(info)
    forecast.metadata.record_count = 0
    assert span_entries(forecast) == []
    # A span of exactly the cap keeps hourly entries; one hour more is a long entry.
    info.metadata.validity.end.FromNanoseconds(hour_of(ns(T0)) + SPAN_HOURS_MAX * HOUR_NS)
    assert len(span_entries(info)) == SPAN_HOURS_MAX
    info.metadata.validity.end.FromNanoseconds(hour_of(ns(T0)) + SPAN_HOURS_MAX * HOUR_NS + 1)
    assert [e.split("/")[1] for e in span_entries(info)] == ["end", SPAN_LONG.split("/")[1]]


async def test_span_entries_are_written_before_the_id_is_bound() -> None:
    store = MemoryObjectStore()
    index = Index(store)
    meta = md.Metadata(
        id=new_ulid(), data_type=DATA_TYPE, source="city", format=md.FORMAT_NDJSON, record_count=2
    )
    meta.observed_at.FromDatetime(T0)
    meta.validity.end.FromDatetime(T0 + timedelta(hours=1, minutes=1))
    key = f"v1/{DATA_TYPE}/city/2026/03/10/12/u2edk/20260310T120000Z_{meta.id}.ndjson"
    info = pb.StatObjectResponse(object=md.ObjectRef(bucket="pantheon-sensor", key=key), metadata=meta)
    written: list[str] = []
    put = store.put_bytes

    async def recording(bucket: str, name: str, data: bytes, *, if_absent: bool) -> StoredObject:
        written.append(name)
        return await put(bucket, name, data, if_absent=if_absent)

    store.put_bytes = recording  # type: ignore[method-assign,assignment]
    await index.put_object_info(info)
    await index.put_object_info(info)  # a retry: the same entries again, the binding kept
    assert written[2] == f"ids/{meta.id}" and written[-1] == f"ids/{meta.id}"
    assert sorted(written[:2]) == sorted(span_entries(info))
    assert await index.has_spans(info)


# -- exact time bounds ---------------------------------------------------------------------------


async def test_sub_second_bounds_are_compared_with_the_exact_observation_time() -> None:
    servicer = _servicer()
    at = T0 + timedelta(minutes=7, milliseconds=500)
    plain = await _object(servicer, "city", at)
    batch = await _batch(servicer, "fleet", [(at, VIENNA), (at + timedelta(milliseconds=200), VIENNA)])
    ms = timedelta(milliseconds=1)

    async def found(after: datetime, before: datetime) -> list[str]:
        return sorted((await _search(servicer, after, before)).ids)

    assert await found(at - 200 * ms, at + ms) == sorted([plain, batch])  # after .3 s: in
    assert await found(at - 200 * ms, at) == []  # before is exclusive
    assert await found(at + ms, at + 300 * ms) == [batch]  # the batch's later record
    assert await found(at + 200 * ms, at + 201 * ms) == [batch]  # its last record exactly
    assert await found(at + 201 * ms, at + 999 * ms) == []
    assert await found(at, at + timedelta(microseconds=1)) == sorted([plain, batch])


# -- paging over everything at once --------------------------------------------------------------


async def test_every_page_size_returns_every_object_once_in_the_order_of_one_page() -> None:
    servicer = _servicer()
    public, restricted = md.CLASSIFICATION_PUBLIC, md.CLASSIFICATION_RESTRICTED
    # id -> (source, RESTRICTED, near Linz)
    stored: dict[str, tuple[str, bool, bool]] = {}
    for source in ("ab", "ab-c", "ab-c-d"):
        for hour in (0, 1, 2, 3):
            level = restricted if hour % 2 else public
            at = T0 + timedelta(hours=hour, minutes=13)
            stored[await _object(servicer, source, at, level=level)] = (source, level == restricted, False)
        # Batches within one hour, over several hours, and past the window's end.
        for level, readings, near_linz in (
            (public, [(timedelta(minutes=20), VIENNA), (timedelta(minutes=25), LINZ)], True),
            (
                restricted,
                [(timedelta(hours=1, minutes=2), LINZ), (timedelta(hours=3, minutes=50), VIENNA)],
                True,
            ),
            (public, [(timedelta(hours=2, minutes=2), VIENNA), (timedelta(hours=6), VIENNA)], False),
        ):
            batch = await _batch(servicer, source, [(T0 + d, where) for d, where in readings], level)
            stored[batch] = (source, level == restricted, near_linz)
    window = (T0, T0 + timedelta(hours=4))
    whole = await _every_page_size(servicer, *window, set(stored))
    assert len(whole) == 3 * 7
    # One source, a box, and a grant without RESTRICTED data page the same way.
    ab_c = {i for i, (source, _, _) in stored.items() if source == "ab-c"}
    assert await _every_page_size(servicer, *window, ab_c, source="ab-c") == [i for i in whole if i in ab_c]
    linz = {i for i, (_, _, near) in stored.items() if near}
    assert await _every_page_size(servicer, *window, linz, bbox=_box(LINZ)) == [i for i in whole if i in linz]
    shown = {i for i, (_, secret, _) in stored.items() if not secret}
    public_grant = Grant(Rule("reader", read_types=("*",), read_restricted=False))
    assert await _every_page_size(servicer, *window, shown, grant=public_grant) == [
        i for i in whole if i in shown
    ]


@pytest.mark.parametrize("page_size", [1, 2, 5])
async def test_pages_stay_stable_while_new_data_arrives(page_size: int) -> None:
    servicer = _servicer()
    first = [await _object(servicer, "ab", T0 + timedelta(minutes=m)) for m in (1, 2, 3, 4, 5, 6)]
    request = pb.SearchObjectsRequest(data_type=DATA_TYPE, page_size=page_size)
    request.observed_after.FromDatetime(T0)
    request.observed_before.FromDatetime(T0 + timedelta(hours=1))
    token = current_grant.set(READER)
    try:
        page = await servicer.SearchObjects(request, None)  # type: ignore[arg-type]
        seen = [o.metadata.id for o in page.objects]
        # Arrivals before and after the resume point, and a batch spanning it.
        await _object(servicer, "ab", T0 + timedelta(seconds=30))
        late = await _object(servicer, "ab", T0 + timedelta(minutes=50))
        while page.next_page_token:
            request = pb.SearchObjectsRequest(
                data_type=DATA_TYPE, page_size=page_size, page_token=page.next_page_token
            )
            page = await servicer.SearchObjects(request, None)  # type: ignore[arg-type]
            seen += [o.metadata.id for o in page.objects]
    finally:
        current_grant.reset(token)
    assert len(seen) == len(set(seen))
    assert set(first) <= set(seen) and late in seen


# -- bounded listing work per page -----------------------------------------------------------------


def _cells(box: md.BoundingBox) -> list[str]:
    cells = geohash.cells_covering(
        box.min_latitude, box.min_longitude, box.max_latitude, box.max_longitude, 5
    )
    assert cells is not None
    return cells


class CountedPages(SmallPages):
    """SmallPages that counts LIST calls."""

    lists = 0
    prefixes: tuple[str, ...] = ()

    async def list(
        self, bucket: str, prefix: str, *, delimiter: str = "", start_after: str = "", limit: int = 1000
    ) -> Listing:
        self.lists += 1
        if bucket != INDEX_BUCKET:
            self.prefixes = (*self.prefixes, prefix)
        return await super().list(bucket, prefix, delimiter=delimiter, start_after=start_after, limit=limit)


async def test_a_small_box_lists_only_its_cells_under_each_hour() -> None:
    store = CountedPages()
    servicer = StorageServicer(store, PageTokens(b"k" * KEY_BYTES))
    near = [await _object(servicer, "ab", T0 + timedelta(minutes=m), where=LINZ) for m in (1, 2)]
    await _object(servicer, "ab", T0 + timedelta(minutes=3), where=VIENNA)
    store.prefixes = ()
    found = await _search(servicer, T0, T0 + timedelta(hours=1), source="ab", bbox=_box(LINZ))
    assert set(found.ids) == set(near)
    listed = [p for p in store.prefixes if p.count("/") == 8]  # <hour>/<cell>/
    assert listed and {p.split("/")[7] for p in listed} <= set(_cells(_box(LINZ)))
    assert not [p for p in store.prefixes if p.count("/") == 7]  # never the whole hour


@pytest.mark.parametrize("lists", [1, 2, 5, 13])
async def test_a_page_ends_after_its_listing_budget_and_following_tokens_finds_everything_once(
    lists: int,
) -> None:
    store = CountedPages()
    servicer = StorageServicer(store, PageTokens(b"k" * KEY_BYTES))
    stored = []
    for source in ("ab", "ab-c", "quiet"):
        for hour in range(0, 12, 3):  # hours without data in between: empty prefixes
            stored.append(await _object(servicer, source, T0 + timedelta(hours=hour, minutes=7)))
            stored.append(await _object(servicer, source, T0 + timedelta(hours=hour, minutes=9), where=LINZ))
        stored.append(
            await _batch(
                servicer, source, [(T0 + timedelta(hours=1), VIENNA), (T0 + timedelta(hours=5), LINZ)]
            )
        )
    window = (T0, T0 + timedelta(hours=24))
    whole = (await _search(servicer, *window)).ids
    assert set(whole) == set(stored)
    bounded = StorageServicer(store, PageTokens(b"k" * KEY_BYTES), lists)
    for bbox in (None, _box(LINZ)):
        expected = whole if bbox is None else (await _search(servicer, *window, bbox=bbox)).ids
        request = pb.SearchObjectsRequest(data_type=DATA_TYPE, page_size=1000)
        request.observed_after.FromDatetime(window[0])
        request.observed_before.FromDatetime(window[1])
        if bbox is not None:
            request.bbox.CopyFrom(bbox)
        found: list[str] = []
        pages = empty = 0
        token = current_grant.set(READER)
        try:
            while True:
                store.lists = 0
                page = await bounded.SearchObjects(request, None)  # type: ignore[arg-type]
                pages += 1
                empty += not page.objects
                # The budget, plus what one step may start before the page can end: the
                # sources (one LIST per bucket), one look-ahead LIST per merged stream
                # of one prefix (two buckets and three kinds of span entries), and with
                # a box the box's empty cells of the hour in each bucket.
                cells = 0 if bbox is None else len(_cells(bbox))
                assert store.lists <= lists + 2 + 5 + 2 * cells, store.lists
                found += [o.metadata.id for o in page.objects]
                if not page.next_page_token:
                    break
                request = pb.SearchObjectsRequest(
                    data_type=DATA_TYPE, page_size=1000, page_token=page.next_page_token
                )
                if bbox is not None:
                    request.bbox.CopyFrom(bbox)
        finally:
            current_grant.reset(token)
        assert found == expected
        # Pages ended before the window was listed, and some found nothing yet but still moved on.
        assert pages > 1 and empty >= 1
