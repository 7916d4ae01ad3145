"""Search answered from object-name prefixes.

A search names a data type and a time range (at most 31 days), so it maps to
a bounded set of `v1/<data_type>/<source>/<yyyy>/<mm>/<dd>/<hh>/` prefixes:
hours newest first, and within an hour keys in name order (so sources in
the order of `<source>/`: `ab-c/` before `ab/`). Keys are parsed and
filtered on what they embed (time, geohash cell) before any metadata is
read; only candidates cost an index read, which decides with the exact
metadata (`observed_at` to the nanosecond, the location). The page token
(sealed, see page_tokens.py) holds the last key listed, the window and a
digest of the filter, so a page resumes exactly where the previous one
stopped even as new data arrives.

A caller holding the restricted grant searches two buckets, the domain's and
its restricted twin (pantheon.storage.buckets): sources are listed in both,
and the keys under each prefix are merged in key order, so pages and tokens
are the same as over one bucket (keys embed a ULID, so no key is in both).

Only what can hold something is listed: the sources of the data type come
from pantheon.storage.directory (per bucket, cached for a few seconds), and
a (source, hour) prefix is listed only in the buckets that hold the source,
and in the kinds of span entries the source has (most sources store no
record batches). A search with a small box lists only the geohash cells the
box overlaps under each hour (keys are `<hour>/<cell>/<name>`), all cells at
once.

Prefixes are listed concurrently but read in page order: while a page
reads one prefix, the first LIST calls of the next ones (up to
PREFIXES_AHEAD, growing by one per prefix read) are already under way, at
most LISTS_IN_FLIGHT at a time. What they find waits until its turn, so the
order and the page tokens are those of listing one prefix after another.

A page's listing work is bounded: it makes at most LISTS_PER_PAGE LIST calls
(those started ahead included). When it needs one more it ends, with
whatever it found so far (perhaps nothing) and a page token that resumes
after the last key it read, or at the prefix it was entering; a client that
follows tokens always makes progress, however sparse the matches in a dense
window (a page always reads something before the budget binds).

A record batch is found by any search whose window and box overlap its
records: its span (earliest to latest record) and its bounding box, not the
first record its key names. The index holds its position in every hour it
covers (pantheon.storage.spans, `spans/`), and each batch is answered once,
in the newest hour where its span and the window meet: the last hour of its
span (`spans/end/`), or the window's newest hour when the span runs past it
(`spans/cover/` and `spans/long/`, listed only for that hour). Positions are
v1 keys of the hour, merged with the keys listed there, so the order and the
page tokens stay those of plain keys.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.errors import NotFound
from pantheon.metadata import geohash
from pantheon.metadata.naming import ParsedKey, hour_prefixes, parse_key, source_prefix
from pantheon.storage.buckets import INDEX_BUCKET
from pantheon.storage.directory import data_root, span_root
from pantheon.storage.index import Index
from pantheon.storage.object_store import Listing, ObjectStore
from pantheon.storage.page_tokens import PageTokens
from pantheon.storage.spans import (
    HOUR_NS,
    SPAN_COVER,
    SPAN_END,
    SPAN_LONG,
    batch_span,
    hour_of,
    long_prefix,
    ns,
    parse_long_entry,
    position,
)

DEFAULT_PAGE_SIZE = 100
#: LIST calls a page may make before it ends with a continuation token.
LISTS_PER_PAGE = 64
#: LIST calls one page has in flight at once, at most.
LISTS_IN_FLIGHT = 8
#: Prefixes a page lists ahead of the one it is reading, at most (one more
#: after each prefix it has read, so a dense hour does not pay for many).
PREFIXES_AHEAD = 8
#: A box that overlaps at most this many geohash cells (of the five
#: characters in a key's name) lists those cells under each hour, not the
#: whole hour; past it the whole hour is one listing, cheaper than many.
CELLS_PER_HOUR = 8
_SECOND_NS = 10**9
_SPAN_KINDS = (SPAN_END, SPAN_COVER, SPAN_LONG)

#: What the listing streams yield: a key and whether it may match (False: a
#: key its name rules out, or the start of a prefix; either is a place a
#: page may end and the next one resume).
Listed = tuple[str, bool]
_Item = TypeVar("_Item", str, Listed)


class _OutOfBudget(Exception):
    """A LIST is needed after the page spent its budget: the page ends here."""


class _Lister:
    """The LIST calls of one page: counted against its budget, LISTS_IN_FLIGHT at a time.

    Until the page has yielded something (`progress`) a LIST is made even
    past the budget, so every page moves on; after that, a LIST the budget
    does not cover raises _OutOfBudget, in the page's own reading or in a
    listing started ahead of it (which raises only when the page reaches it).
    """

    def __init__(self, store: ObjectStore, lists: int) -> None:
        self._store = store
        self.left = lists
        self.progress = False
        self._slots = asyncio.Semaphore(LISTS_IN_FLIGHT)

    def spend(self) -> None:
        self.left -= 1

    async def list(self, bucket: str, prefix: str, start_after: str) -> Listing:
        if self.left <= 0 and self.progress:
            raise _OutOfBudget
        self.spend()
        async with self._slots:
            return await self._store.list(bucket, prefix, start_after=start_after)


class _Primed:
    """A stream whose first item is being fetched before its turn comes."""

    def __init__(self, stream: AsyncGenerator[Listed, None]) -> None:
        self._stream = stream
        self._head = asyncio.create_task(self._first())

    async def _first(self) -> Listed | None:
        return await anext(self._stream, None)

    async def items(self) -> AsyncIterator[Listed]:
        head = await self._head
        if head is None:
            return
        yield head
        async for item in self._stream:
            yield item

    async def close(self) -> None:
        if not self._head.done():
            self._head.cancel()
        with contextlib.suppress(BaseException):
            await self._head  # its outcome is no one's now (a failure included)
        await self._stream.aclose()


@dataclass(frozen=True)
class _Step:
    """One hour prefix of one source, in page order, and how to list it."""

    prefix: str
    #: Whether the page enters it from its start (else it resumes inside it).
    announce: bool
    start_after: str
    source: str
    newest: bool


@dataclass(frozen=True)
class _Window:
    """The search window [after, before) in nanoseconds."""

    after: int
    before: int

    @property
    def newest_hour(self) -> int:
        return hour_of(self.before - 1)


def _key_time(parsed: ParsedKey) -> int:
    return ns(parsed.observed_at)  # whole seconds: the exact time is up to a second later


def _inside(box: md.BoundingBox, lat: float, lon: float) -> bool:
    return box.min_latitude <= lat <= box.max_latitude and box.min_longitude <= lon <= box.max_longitude


def _boxes_meet(box: md.BoundingBox, other: md.BoundingBox) -> bool:
    return not (
        other.max_latitude < box.min_latitude
        or other.min_latitude > box.max_latitude
        or other.max_longitude < box.min_longitude
        or other.min_longitude > box.max_longitude
    )


def _cell_overlaps(box: md.BoundingBox, cell: str) -> bool:
    s, w, n, e = geohash.decode_bbox(cell)
    return not (
        n < box.min_latitude or s > box.max_latitude or e < box.min_longitude or w > box.max_longitude
    )


async def _merged(streams: Sequence[AsyncGenerator[_Item, None]]) -> AsyncIterator[_Item]:
    """The items of several sorted streams as one sorted stream (an async heapq.merge).

    The first item of every stream is asked for at once, so their first
    LIST calls run concurrently."""
    try:
        heads = await asyncio.gather(*(anext(s, None) for s in streams), return_exceptions=True)
        for head in heads:
            if isinstance(head, BaseException):
                raise head
        heap = [
            (key, i) for i, key in enumerate(heads) if key is not None and not isinstance(key, BaseException)
        ]
        heapq.heapify(heap)
        while heap:
            key, i = heap[0]
            yield key
            following = await anext(streams[i], None)
            if following is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (following, i))
    finally:
        for stream in streams:
            await stream.aclose()


class Searcher:
    """Runs SearchObjects against an object store and the index."""

    def __init__(
        self,
        store: ObjectStore,
        index: Index,
        buckets: Sequence[str],
        visible: Callable[[md.Metadata], bool],
        tokens: PageTokens,
        lists_per_page: int = LISTS_PER_PAGE,
    ) -> None:
        self._tokens = tokens
        self._lists = _Lister(store, lists_per_page)
        self._cells: list[str] | None = None
        self._index = index
        # The domain's bucket, and its restricted twin only when the caller
        # may read RESTRICTED data (the servicer decides).
        self._buckets = tuple(buckets)
        # What the caller may see: objects it may not read are skipped, as if
        # they were not there (RESTRICTED data without the grant).
        self._visible = visible
        #: Which buckets hold each source, and which sources have span entries of each kind.
        self._in_buckets: dict[str, list[str]] = {}
        self._with_spans: dict[str, frozenset[str]] = {}

    async def _find_sources(self, req: pb.SearchObjectsRequest) -> list[str]:
        """The sources to list, each with the buckets that hold it and the span entries it has
        (pantheon.storage.directory: cached for a few seconds)."""
        roots = [(b, data_root(req.data_type)) for b in self._buckets]
        roots += [(INDEX_BUCKET, span_root(kind, req.data_type)) for kind in _SPAN_KINDS]
        found = await self._index.sources.many(roots, spend=self._lists.spend)
        if req.source and not any(req.source in found[(b, data_root(req.data_type))] for b in self._buckets):
            # Perhaps a source too new for the cache: ask again rather than miss it.
            found = await self._index.sources.many(roots, spend=self._lists.spend, refresh=True)
        for bucket in self._buckets:
            for source in found[(bucket, data_root(req.data_type))]:
                if not req.source or source == req.source:
                    self._in_buckets.setdefault(source, []).append(bucket)
        self._with_spans = {
            kind: found[(INDEX_BUCKET, span_root(kind, req.data_type))] for kind in _SPAN_KINDS
        }
        return sorted(self._in_buckets)

    def _steps(
        self,
        req: pb.SearchObjectsRequest,
        sources: list[str],
        after: datetime,
        before: datetime,
        last_key: str,
    ) -> Iterator[_Step]:
        """The (source, hour) prefixes still to list, in page order: hours newest first,
        then sources in the order of their keys (`"<source>/"`). Made as they are
        needed: a page that reads three prefixes pays for three, not for every
        source and hour of the window."""
        if not sources:
            return
        root = source_prefix(req.data_type)
        # "yyyy/mm/dd/hh/", newest first: the same for every source.
        hours = [
            p[len(root) + len(sources[0]) + 1 :]
            for p in hour_prefixes(req.data_type, sources[0], after, before)
        ]
        resume_hour = last_key[len(root) :].partition("/")[2][: len(hours[0])] if hours else ""
        ordered = sorted(sources, key=lambda source: source + "/")  # the order of the keys
        for n, hour in enumerate(hours):
            if last_key and hour > resume_hour:
                continue  # served before the page that ended at `last_key`
            for source in ordered:
                prefix = f"{root}{source}/{hour}"
                if last_key.startswith(prefix):
                    yield _Step(prefix, False, last_key, source, n == 0)
                elif not (last_key and self._before_resume(prefix, last_key, req.data_type)):
                    # Resuming at the prefix itself lists all of it (its keys sort after it).
                    yield _Step(prefix, True, "", source, n == 0)

    async def _candidate_keys(
        self, req: pb.SearchObjectsRequest, after: datetime, before: datetime, last_key: str
    ) -> AsyncGenerator[Listed, None]:
        """Keys and batch positions after `last_key`, in page order, candidates each once;
        and each prefix as it is entered (not a candidate: a place to resume).

        The prefixes after the one being read are listed ahead (up to
        PREFIXES_AHEAD, one more after each prefix read), so their first LIST
        calls overlap; what they yield still comes in page order."""
        window = _Window(ns(after), ns(before))
        sources = await self._find_sources(req)
        to_list = self._steps(req, sources, after, before, last_key)
        # The steps made and not read yet: the one being read (number i) and those after it.
        steps: collections.deque[_Step] = collections.deque()
        primed: dict[int, _Primed] = {}
        try:
            for i in itertools.count():
                while len(steps) < 1 + min(PREFIXES_AHEAD, i + 1) and (made := next(to_list, None)):
                    steps.append(made)
                if not steps:
                    return
                step = steps.popleft()
                if step.announce:
                    yield step.prefix, False
                for j, later in enumerate((step, *steps), start=i):
                    if j not in primed:
                        primed[j] = _Primed(self._prefix_keys(later, req, window))
                current = primed.pop(i)
                try:
                    async for item in current.items():
                        yield item
                finally:
                    await current.close()
        finally:
            for ahead in primed.values():
                await ahead.close()

    async def _prefix_keys(
        self, step: _Step, req: pb.SearchObjectsRequest, window: _Window
    ) -> AsyncGenerator[Listed, None]:
        """The keys and batch positions under one (source, hour) prefix, in key order,
        each candidate once: only the buckets that hold the source, and only the kinds
        of span entries it has."""
        prefix, start_after = step.prefix, step.start_after
        streams = [self._keys_in(b, prefix, start_after, req, window) for b in self._in_buckets[step.source]]
        if step.source in self._with_spans[SPAN_END]:
            streams.append(self._positions(SPAN_END, prefix, start_after, window))
        if step.newest and step.source in self._with_spans[SPAN_COVER]:
            streams.append(self._positions(SPAN_COVER, prefix, start_after, window))
        if step.newest and step.source in self._with_spans[SPAN_LONG]:
            streams.append(self._long_positions(prefix, start_after, window))
        previous = ""
        async for key, candidate in _merged(streams):
            if candidate and key == previous:
                continue  # a batch's own key and its position in its first hour
            if candidate:
                previous = key
            yield key, candidate

    @staticmethod
    def _before_resume(prefix: str, last_key: str, data_type: str) -> bool:
        """Whether `prefix` was fully served before the page that ended at `last_key`."""
        root = len(source_prefix(data_type))
        p_source, _, p_hour = prefix[root:].partition("/")
        k_source, _, k_rest = last_key[root:].partition("/")
        k_hour = k_rest[: len(p_hour)]
        # Earlier in page order: a newer hour, or the same hour and a smaller
        # source, compared as "<source>/" as in the keys themselves.
        return p_hour > k_hour or (p_hour == k_hour and p_source + "/" < k_source + "/")

    async def _keys_in(
        self, bucket: str, prefix: str, start_after: str, req: pb.SearchObjectsRequest, window: _Window
    ) -> AsyncGenerator[Listed, None]:
        """Object keys under `prefix` in `bucket`, in key order, and whether their name allows a match."""
        listing = self._listed if self._cells is None else self._listed_in_cells
        async for key in listing(bucket, prefix, start_after):
            try:
                parsed = parse_key(key)
            except ValueError:
                yield key, False  # not written by Pantheon
                continue
            # Conservative: the key holds whole seconds. A batch whose key
            # fails here is found by its span entries.
            at = _key_time(parsed)
            in_window = window.after - _SECOND_NS < at < window.before
            yield key, in_window and (not req.HasField("bbox") or _cell_overlaps(req.bbox, parsed.geohash5))

    async def _positions(
        self, kind: str, prefix: str, start_after: str, window: _Window
    ) -> AsyncGenerator[Listed, None]:
        """Positions of batches under `prefix` from the `kind` span entries, in key order.

        Only the start is known from a name (nothing of the bounding box), so
        only a batch starting after the window is left out before its index
        entry is read.
        """
        start = kind + start_after if start_after else ""
        async for name in self._listed(INDEX_BUCKET, kind + prefix, start):
            key = name[len(kind) :]
            try:
                at = _key_time(parse_key(key))
            except ValueError:
                yield key, False
                continue
            yield key, at < window.before

    async def _long_positions(
        self, prefix: str, start_after: str, window: _Window
    ) -> AsyncGenerator[Listed, None]:
        """Positions in the window's newest hour of batches spanning past it and over
        744 hours (few), in key order."""
        _, data_type, source, _ = prefix.split("/", 3)
        entries = long_prefix(data_type, source)
        hour_end = window.newest_hour + HOUR_NS
        found: list[str] = []
        async for name in self._listed(INDEX_BUCKET, entries, f"{entries}{hour_end:021d}"):
            try:
                end, key = parse_long_entry(name, entries)
                at = _key_time(parse_key(key))
            except ValueError:
                continue
            if end > hour_end and at < window.before:
                here = position(key, window.newest_hour)
                if here > start_after:
                    found.append(here)
        for key in sorted(found):
            yield key, True

    async def _listed_in_cells(self, bucket: str, prefix: str, start_after: str) -> AsyncGenerator[str, None]:
        """The keys under `prefix` in the box's cells only (`<hour>/<cell>/`), in key order
        (the cells' listings run concurrently; a cell's keys all sort before the next cell's)."""
        assert self._cells is not None
        cells = []
        for cell in self._cells:
            under = f"{prefix}{cell}/"
            if start_after.startswith(under):
                cells.append(self._listed(bucket, under, start_after))
            elif start_after <= under:  # else the page before listed past this cell
                cells.append(self._listed(bucket, under, ""))
        async for key in _merged(cells):
            yield key

    async def _listed(self, bucket: str, prefix: str, start_after: str) -> AsyncGenerator[str, None]:
        while True:
            page = await self._lists.list(bucket, prefix, start_after)
            for key in page.keys:
                yield key
            if not page.truncated or not page.keys:
                return
            start_after = page.keys[-1]

    async def search(self, req: pb.SearchObjectsRequest) -> pb.SearchObjectsResponse:
        after, before, last_key = self._tokens.window_and_resume(req)
        if req.HasField("bbox"):
            box = req.bbox
            self._cells = geohash.cells_covering(
                box.min_latitude,
                box.min_longitude,
                box.max_latitude,
                box.max_longitude,
                5,
                limit=CELLS_PER_HOUR,
            )
        window = _Window(ns(after), ns(before))
        size = req.page_size or DEFAULT_PAGE_SIZE
        response = pb.SearchObjectsResponse()
        batch: list[str] = []
        key = last_key
        try:
            async with contextlib.aclosing(self._candidate_keys(req, after, before, last_key)) as listed:
                async for key, candidate in listed:
                    self._lists.progress = True
                    if candidate:
                        batch.append(key)
                        if len(batch) >= size - len(response.objects):
                            await self._admit(req, window, batch, response)
                            if len(response.objects) >= size:
                                response.next_page_token = self._tokens.seal(req, after, before, key)
                                return response
                            batch = []
        except _OutOfBudget:
            # Listing work is bounded: end here, found or not; the next page
            # resumes after `key` (a key listed, or a prefix entered), which
            # is set: the budget binds only once the page has yielded something.
            await self._admit(req, window, batch, response)
            response.next_page_token = self._tokens.seal(req, after, before, key)
            return response
        await self._admit(req, window, batch, response)
        return response

    async def _admit(
        self,
        req: pb.SearchObjectsRequest,
        window: _Window,
        keys: list[str],
        response: pb.SearchObjectsResponse,
    ) -> None:
        """Decide on `keys` concurrently, from their index entries; add those that match."""
        for found in await asyncio.gather(*(self._match(req, window, k) for k in keys)):
            if found is not None:
                response.objects.append(found)

    async def _match(
        self, req: pb.SearchObjectsRequest, window: _Window, key: str
    ) -> pb.StatObjectResponse | None:
        """The object at `key` (an object's key or a batch's position) if it matches, else None."""
        parsed = parse_key(key)
        try:
            found = await self._index.object_info(parsed.id)
        except NotFound:
            return None  # stored but not yet indexed: not visible yet
        meta = found.metadata
        if not self._visible(meta):
            return None  # not the caller's to see
        span = batch_span(meta)
        if span is None:
            if key != found.object.key:
                return None  # a stray object under a bound id
            if not window.after <= meta.observed_at.ToNanoseconds() < window.before:
                return None
            loc = meta.location
            if req.HasField("bbox") and not _inside(req.bbox, loc.latitude, loc.longitude):
                return None
            return found
        # A record batch: its records' span and bounding box.
        hour = hour_of(_key_time(parsed))
        start, end = span
        if key != position(found.object.key, hour) or not (start < window.before and end > window.after):
            return None
        if req.HasField("bbox"):
            box = meta.bbox
            if not meta.HasField("bbox"):
                point = meta.location
                box = md.BoundingBox(
                    min_latitude=point.latitude,
                    max_latitude=point.latitude,
                    min_longitude=point.longitude,
                    max_longitude=point.longitude,
                )
            if not _boxes_meet(req.bbox, box):
                return None
        # Answered in the newest hour where span and window meet, from its
        # span entries; elsewhere only by its own key if it was indexed
        # before there were any.
        newest = hour_of(min(end, window.before) - 1)
        if hour != newest and (key != found.object.key or await self._index.has_spans(found)):
            return None
        return found
