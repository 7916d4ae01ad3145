"""Search answered from object-name prefixes.

A search names a data type and a time range (at most 31 days), so it maps to
a bounded set of `v1/<data_type>/<source>/<yyyy>/<mm>/<dd>/<hh>/` prefixes:
hours newest first, and within an hour keys in name order (so sources in
the order of `<source>/`: `ab-c/` before `ab/`). Keys are parsed and
filtered on what they embed (time, geohash cell) before any metadata is
read; only candidates cost an index read, which decides with the exact
metadata (`observed_at` to the nanosecond, the location): both in
pantheon.storage.matching. The page token (sealed, see page_tokens.py)
holds the last key listed, the window and a digest of the filter, so a
page resumes exactly where the previous one stopped even as new data
arrives.

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
That machinery, the page order of prefixes and the budget below are in
pantheon.storage.listing.

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
import contextlib
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import datetime

from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.metadata import geohash
from pantheon.metadata.naming import parse_key
from pantheon.storage.buckets import INDEX_BUCKET
from pantheon.storage.directory import data_root, span_root
from pantheon.storage.index import Index
from pantheon.storage.listing import (
    CELLS_PER_HOUR,
    LISTS_PER_PAGE,
    Listed,
    Lister,
    OutOfBudget,
    Step,
    in_page_order,
    merged,
    steps,
)
from pantheon.storage.manifests import Manifests, PageEntries
from pantheon.storage.matching import Window, cell_overlaps, key_time, match
from pantheon.storage.object_store import ObjectStore
from pantheon.storage.page_tokens import PageTokens
from pantheon.storage.spans import (
    HOUR_NS,
    SPAN_COVER,
    SPAN_END,
    SPAN_LONG,
    long_prefix,
    ns,
    parse_long_entry,
    position,
)

DEFAULT_PAGE_SIZE = 100
_SECOND_NS = 10**9
_SPAN_KINDS = (SPAN_END, SPAN_COVER, SPAN_LONG)


class Searcher:
    """Runs SearchObjects against an object store and the index."""

    def __init__(
        self,
        store: ObjectStore,
        index: Index,
        manifests: Manifests,
        buckets: Sequence[str],
        visible: Callable[[md.Metadata], bool],
        tokens: PageTokens,
        lists_per_page: int = LISTS_PER_PAGE,
    ) -> None:
        self._tokens = tokens
        self._lists = Lister(store, lists_per_page)
        self._cells: list[str] | None = None
        self._index = index
        self._entries = PageEntries(index, manifests)
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

    async def _candidate_keys(
        self, req: pb.SearchObjectsRequest, after: datetime, before: datetime, last_key: str
    ) -> AsyncGenerator[Listed, None]:
        """Keys and batch positions after `last_key`, in page order, candidates each once;
        and each prefix as it is entered (not a candidate: a place to resume), the
        prefixes after the one being read listed ahead (listing.in_page_order)."""
        window = Window(ns(after), ns(before))
        sources = await self._find_sources(req)
        to_list = steps(req.data_type, sources, after, before, last_key)
        listed_in_order = in_page_order(to_list, lambda step: self._prefix_keys(step, req, window))
        async with contextlib.aclosing(listed_in_order) as listed:
            async for item in listed:
                yield item

    async def _prefix_keys(
        self, step: Step, req: pb.SearchObjectsRequest, window: Window
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
        async for key, candidate in merged(streams):
            if candidate and key == previous:
                continue  # a batch's own key and its position in its first hour
            if candidate:
                previous = key
            yield key, candidate

    async def _keys_in(
        self, bucket: str, prefix: str, start_after: str, req: pb.SearchObjectsRequest, window: Window
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
            at = key_time(parsed)
            in_window = window.after - _SECOND_NS < at < window.before
            yield key, in_window and (not req.HasField("bbox") or cell_overlaps(req.bbox, parsed.geohash5))

    async def _positions(
        self, kind: str, prefix: str, start_after: str, window: Window
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
                at = key_time(parse_key(key))
            except ValueError:
                yield key, False
                continue
            yield key, at < window.before

    async def _long_positions(
        self, prefix: str, start_after: str, window: Window
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
                at = key_time(parse_key(key))
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
        async for key in merged(cells):
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
        try:
            return await self._page(req)
        finally:
            self._entries.keep()  # what the page read from ids/, for the next one

    async def _page(self, req: pb.SearchObjectsRequest) -> pb.SearchObjectsResponse:
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
        window = Window(ns(after), ns(before))
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
        except OutOfBudget:
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
        window: Window,
        keys: list[str],
        response: pb.SearchObjectsResponse,
    ) -> None:
        """Decide on `keys` concurrently, from their index entries; add those that match."""
        await self._entries.load(keys)
        decided = await asyncio.gather(*(match(self._entries, self._visible, req, window, k) for k in keys))
        for found in decided:
            if found is not None:
                response.objects.append(found)
