"""Search answered from object-name prefixes.

A search names a data type and a time range (at most 31 days), so it maps to
a bounded set of `v1/<data_type>/<source>/<yyyy>/<mm>/<dd>/<hh>/` prefixes:
hours newest first, sources in name order within an hour. Keys are parsed
and filtered on what they embed (time, geohash cell) before any metadata is
read; only candidates cost an index read. The page token (sealed, see
page_tokens.py) holds the last key listed, the window and a digest of the
filter, so a page resumes exactly where the previous one stopped even as new
data arrives.

A caller holding the restricted grant searches two buckets, the domain's and
its restricted twin (pantheon.storage.buckets): sources are listed in both,
and the keys under each prefix are merged in key order, so pages and tokens
are the same as over one bucket (keys embed a ULID, so no key is in both).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import datetime

from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.errors import NotFound
from pantheon.metadata import geohash
from pantheon.metadata.naming import hour_prefixes, parse_key, source_prefix
from pantheon.storage.index import Index
from pantheon.storage.object_store import ObjectStore
from pantheon.storage.page_tokens import PageTokens

DEFAULT_PAGE_SIZE = 100


def _inside(box: md.BoundingBox, lat: float, lon: float) -> bool:
    return box.min_latitude <= lat <= box.max_latitude and box.min_longitude <= lon <= box.max_longitude


def _cell_overlaps(box: md.BoundingBox, cell: str) -> bool:
    s, w, n, e = geohash.decode_bbox(cell)
    return not (
        n < box.min_latitude or s > box.max_latitude or e < box.min_longitude or w > box.max_longitude
    )


async def _merged(streams: Sequence[AsyncGenerator[str, None]]) -> AsyncIterator[str]:
    """The keys of several streams sorted by key, as one sorted stream (an async heapq.merge)."""
    try:
        heads = await asyncio.gather(*(anext(s, None) for s in streams), return_exceptions=True)
        for head in heads:
            if isinstance(head, BaseException):
                raise head
        heap = [(key, i) for i, key in enumerate(heads) if isinstance(key, str)]
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
    ) -> None:
        self._tokens = tokens
        self._store = store
        self._index = index
        # The domain's bucket, and its restricted twin only when the caller
        # may read RESTRICTED data (the servicer decides).
        self._buckets = tuple(buckets)
        # What the caller may see: objects it may not read are skipped, as if
        # they were not there (RESTRICTED data without the grant).
        self._visible = visible

    async def _sources(self, req: pb.SearchObjectsRequest) -> list[str]:
        if req.source:
            return [req.source]
        prefix = source_prefix(req.data_type)
        listed = await asyncio.gather(*(self._sources_in(b, prefix) for b in self._buckets))
        return sorted({source for found in listed for source in found})

    async def _sources_in(self, bucket: str, prefix: str) -> list[str]:
        found: list[str] = []
        start_after = ""
        while True:
            page = await self._store.list(bucket, prefix, delimiter="/", start_after=start_after)
            found += [p[len(prefix) :].rstrip("/") for p in page.prefixes]
            if not page.truncated or not page.prefixes:
                return found
            start_after = page.prefixes[-1]

    async def _candidate_keys(
        self, req: pb.SearchObjectsRequest, after: datetime, before: datetime, last_key: str
    ) -> AsyncIterator[str]:
        """Keys matching time and cell, in page order, after `last_key`."""
        sources = await self._sources(req)
        root = len(source_prefix(req.data_type))
        by_hour: dict[str, list[str]] = {}
        for source in sources:
            for prefix in hour_prefixes(req.data_type, source, after, before):
                by_hour.setdefault(prefix[root + len(source) + 1 :], []).append(prefix)
        for hour in sorted(by_hour, reverse=True):  # "yyyy/mm/dd/hh/" sorts by time
            for prefix in sorted(by_hour[hour]):
                start_after = ""
                if last_key.startswith(prefix):
                    start_after = last_key
                elif last_key and self._before_resume(prefix, last_key, req.data_type):
                    continue
                async for key in self._keys_under(prefix, start_after):
                    try:
                        parsed = parse_key(key)
                    except ValueError:
                        continue  # not written by Pantheon
                    if not after <= parsed.observed_at < before:
                        continue
                    if req.HasField("bbox") and not _cell_overlaps(req.bbox, parsed.geohash5):
                        continue
                    yield key

    @staticmethod
    def _before_resume(prefix: str, last_key: str, data_type: str) -> bool:
        """Whether `prefix` was fully served before the page that ended at `last_key`."""
        root = len(source_prefix(data_type))
        p_source, _, p_hour = prefix[root:].partition("/")
        k_source, _, k_rest = last_key[root:].partition("/")
        k_hour = k_rest[: len(p_hour)]
        # Earlier in page order: a newer hour, or the same hour and a smaller source.
        return p_hour > k_hour or (p_hour == k_hour and p_source < k_source)

    async def _keys_under(self, prefix: str, start_after: str) -> AsyncIterator[str]:
        """Keys under `prefix` after `start_after` in every searched bucket, in key order."""
        streams: AsyncIterator[str]
        if len(self._buckets) == 1:
            streams = self._keys_in(self._buckets[0], prefix, start_after)
        else:
            streams = _merged([self._keys_in(b, prefix, start_after) for b in self._buckets])
        async for key in streams:
            yield key

    async def _keys_in(self, bucket: str, prefix: str, start_after: str) -> AsyncGenerator[str, None]:
        while True:
            page = await self._store.list(bucket, prefix, start_after=start_after)
            for key in page.keys:
                yield key
            if not page.truncated or not page.keys:
                return
            start_after = page.keys[-1]

    async def search(self, req: pb.SearchObjectsRequest) -> pb.SearchObjectsResponse:
        after, before, last_key = self._tokens.window_and_resume(req)
        size = req.page_size or DEFAULT_PAGE_SIZE
        response = pb.SearchObjectsResponse()
        batch: list[str] = []
        last_returned = ""
        async for key in self._candidate_keys(req, after, before, last_key):
            batch.append(key)
            if len(batch) < size - len(response.objects):
                continue
            last_returned = await self._admit(req, batch, response) or last_returned
            batch = []
            if len(response.objects) >= size:
                response.next_page_token = self._tokens.seal(req, after, before, last_returned)
                return response
        if batch:
            await self._admit(req, batch, response)
        return response

    async def _admit(
        self, req: pb.SearchObjectsRequest, keys: list[str], response: pb.SearchObjectsResponse
    ) -> str:
        """Read the index entries of `keys` concurrently; add those that match."""

        async def info(key: str) -> pb.StatObjectResponse | None:
            try:
                return await self._index.object_info(parse_key(key).id)
            except NotFound:
                return None  # stored but not yet indexed: not visible yet

        for found in await asyncio.gather(*(info(k) for k in keys)):
            if found is None or found.object.key not in keys or not self._visible(found.metadata):
                continue  # unindexed, a stray object under a bound id, or not the caller's to see
            loc = found.metadata.location
            if req.HasField("bbox") and not _inside(req.bbox, loc.latitude, loc.longitude):
                continue
            response.objects.append(found)
        return keys[-1] if keys else ""
