"""Per-hour manifests: the index entries of one hour of one source, in one object.

    manifests/v1/<data_type>/<source>/<yyyy>/<mm>/<dd>/<hh>   HourManifest

Search decides on each key it admits from the key's index entry, and reading
`ids/<id>` one GET per result made a page of 100 results 100 GETs and a full
scan of 100,000 objects 100,000 GETs. A manifest holds the entries searches
have read for the keys of one hour (both buckets of a domain, and the
positions of record batches in that hour), so the next search of that hour
reads them in one GET.

A manifest is a cache, never the truth, which is what keeps it simple:

- `ids/<id>` entries are written once and never changed (Index.put_object_info),
  so an entry copied into a manifest stays exact for good;
- the listing still decides which keys exist, and a key whose id is not in
  its hour's manifest is read from `ids/<id>` as before (an object that
  became visible since, or an hour not read whole yet);
- only entries read from `ids/` go in, that is objects already visible (so
  announced): a manifest can make nothing visible, or visible early.

Any manifest, partial or missing, therefore gives the same answers, and
losing one costs only speed. Writers need no coordination either: two
replicas merging into one manifest at once each write a valid one, and the
entries the loser added are merely read from `ids/` again next time.
Manifests are written off the search's path, a moment after the page that
read the entries, and only when a page read at least MIN_NEW of an hour's
entries from `ids/` (a sparse hour costs a handful of GETs anyway).

What a page holds is bounded: a manifest holds at most MAX_ENTRIES entries
in MAX_BYTES, a page reads one only for an hour where it decides on MIN_KEYS
keys or more, and stops reading them once it has read PAGE_BYTES (or one
read failed); it keeps PAGE_KEEP_BYTES of entries for the writer, which
holds MAX_WAITING_BYTES (more are not kept: a cache may skip a write).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import Counter
from collections.abc import Iterable

from google.protobuf.message import DecodeError
from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.errors import NotFound, PantheonError
from pantheon.storage.buckets import INDEX_BUCKET
from pantheon.storage.index import Index
from pantheon.storage.object_store import ObjectStore

log = logging.getLogger(__name__)

MANIFEST_PREFIX = "manifests/"
#: What one manifest holds at most: entries are 1-16 KiB (labels, lineage),
#: so both bounds keep one GET cheap and its decoding short; a denser
#: hour's other keys are read from `ids/`. A larger manifest (another
#: build's) is ignored.
MAX_ENTRIES = 512
MAX_BYTES = 512 * 2**10
#: Entries of an hour a page must read from `ids/` before they are written.
MIN_NEW = 8
#: Keys of an hour a page must decide on to read its manifest: for a few
#: keys, their own small entries cost less than the hour's manifest.
MIN_KEYS = 4
#: Manifest bytes one page reads (it reads them LOADS_AT_ONCE at a time,
#: hours with the most keys first, while under this, and none after a read
#: failed); its other keys are read from `ids/`. A page holds at most
#: PAGE_BYTES + LOADS_AT_ONCE * MAX_BYTES of them.
PAGE_BYTES = 4 * 2**20
LOADS_AT_ONCE = 4
#: Entry bytes one page keeps for the writer, and the writer holds in all;
#: beyond them entries are not kept (a cache may skip a write).
PAGE_KEEP_BYTES = 2**20
MAX_WAITING_BYTES = 4 * 2**20
#: How long shutting down may spend writing what waits (plus the store
#: call in flight then, which a thread cannot abandon).
CLOSE_S = 5.0
#: Hours known to have a full manifest, remembered at most.
FULL_KEPT = 4096
#: Failed manifest reads are logged at most this often.
LOG_EVERY_S = 60.0

Entries = dict[str, pb.StatObjectResponse]


def manifest_hour(key: str) -> str:
    """``v1/<data_type>/<source>/<yyyy>/<mm>/<dd>/<hh>`` of a v1 key or batch position."""
    return key.rsplit("/", 2)[0]


def _cost(entry: pb.StatObjectResponse) -> int:
    """An entry's bytes in a manifest (its tag and length at most 4)."""
    return entry.ByteSize() + 4


def _encoded(entries: Entries) -> tuple[bytes, int]:
    """The manifest of `entries` (the first in key order, within MAX_ENTRIES
    and MAX_BYTES), and how many it holds."""
    manifest = pb.HourManifest()
    size = 0
    for entry in sorted(entries.values(), key=lambda e: e.object.key)[:MAX_ENTRIES]:
        size += _cost(entry)
        if size > MAX_BYTES:
            break
        manifest.objects.append(entry)
    return manifest.SerializeToString(), len(manifest.objects)


class Manifests:
    """Reads manifests, and merges entries into them in the background."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        #: Entries read from `ids/`, by hour, not yet merged into its manifest.
        self._waiting: dict[str, Entries] = {}
        self._bytes_waiting = 0
        #: The writer draining `_waiting` (a reference keeps it alive).
        self._writer: asyncio.Task[None] | None = None
        self._logged_at = -LOG_EVERY_S
        #: Hours whose manifest a merge found full (forgotten past FULL_KEPT).
        self._full: set[str] = set()

    async def read(self, hour: str) -> tuple[Entries, int] | None:
        """The entries of `hour`'s manifest, by object id, and its size in
        bytes (none when it has none or it is unusable); None when it could
        not be read (the search then reads `ids/`, which decides whether it fails)."""
        try:
            return await self._fetch(hour)
        except PantheonError as exc:
            if time.monotonic() - self._logged_at >= LOG_EVERY_S:
                self._logged_at = time.monotonic()
                log.warning("manifest of %s not read (searches read ids/ instead): %s", hour, exc)
            return None

    async def _fetch(self, hour: str) -> tuple[Entries, int]:
        try:
            data = await self._store.get_bytes(INDEX_BUCKET, MANIFEST_PREFIX + hour)
        except NotFound:
            return {}, 0
        if len(data) > MAX_BYTES:
            log.warning("manifest of %s is larger than %d bytes; ignored", hour, MAX_BYTES)
            return {}, len(data)
        try:
            manifest = pb.HourManifest.FromString(data)
        except DecodeError:
            log.warning("manifest of %s is unreadable; it will be written again", hour)
            return {}, len(data)
        return {entry.metadata.id: entry for entry in manifest.objects}, len(data)

    def keep(self, hour: str, known: int, read: Entries) -> None:
        """Merge `read` (entries of `hour` read from `ids/`) into its manifest
        soon, when there are enough of them and it has room; `known` is how
        many it held."""
        if len(read) < MIN_NEW or known >= MAX_ENTRIES or hour in self._full:
            return
        waiting = self._waiting.setdefault(hour, {})
        new = {object_id: entry for object_id, entry in read.items() if object_id not in waiting}
        cost = sum(map(_cost, new.values()))
        if self._bytes_waiting + cost > MAX_WAITING_BYTES:
            if not waiting:
                del self._waiting[hour]
            return  # the writer is behind: a cache may skip a write
        self._bytes_waiting += cost
        waiting.update(new)
        if self._writer is None:
            # In a context of its own: it serves many searches, not the first one's trace.
            loop = asyncio.get_running_loop()
            self._writer = loop.create_task(self._drain(), context=contextvars.Context())

    async def _drain(self) -> None:
        try:
            await self.flush()
        except Exception:
            log.exception("writing manifests failed; searches read ids/ instead")
            self._drop()
        finally:
            self._writer = None

    def _drop(self) -> None:
        self._waiting.clear()
        self._bytes_waiting = 0

    async def flush(self) -> None:
        """Write what is waiting now; all of it is dropped at the first
        failure (the store is failing: a cache may skip its writes)."""
        while self._waiting:
            hour = next(iter(self._waiting))
            read = self._waiting.pop(hour)
            self._bytes_waiting -= sum(map(_cost, read.values()))
            try:
                await self._merge(hour, read)
            except PantheonError as exc:
                log.warning("could not write manifests (searches read ids/ instead): %s", exc)
                self._drop()

    async def close(self) -> None:
        """Write what is waiting, for about CLOSE_S; then drop the rest."""
        try:
            async with asyncio.timeout(CLOSE_S):
                await self.flush()
                if self._writer is not None:
                    await asyncio.wait({self._writer})
        except TimeoutError:
            log.warning("manifests not written at shutdown (searches read ids/ instead)")
        finally:
            self._drop()
            writer = self._writer
            if writer is not None:
                writer.cancel()
                await asyncio.wait({writer})
                self._writer = None  # a writer cancelled before it ran never clears it

    async def _merge(self, hour: str, read: Entries) -> None:
        # Read again (a failure skips the write): another page or replica may have written it since.
        entries, _ = await self._fetch(hour)
        held = len(entries)
        if held >= MAX_ENTRIES or read.keys() <= entries.keys():
            return
        entries.update(read)
        manifest, count = _encoded(entries)
        if count <= held:  # as full as its bytes allow: not read again to add nothing
            if len(self._full) >= FULL_KEPT:
                self._full.clear()
            self._full.add(hour)
            return
        await self._store.put_bytes(INDEX_BUCKET, MANIFEST_PREFIX + hour, manifest, if_absent=False)


class PageEntries:
    """The index entries one search page decides on: from their hour's
    manifest where it holds them, else from `ids/<id>`; what it read from
    `ids/` goes to the manifests when the page is done (`keep`)."""

    def __init__(self, index: Index, manifests: Manifests) -> None:
        self._index = index
        self._manifests = manifests
        #: The manifests the page read, by hour.
        self._known: dict[str, Entries] = {}
        #: Entries it read from `ids/` for those hours, up to what a manifest
        #: holds and PAGE_KEEP_BYTES in all.
        self._read: dict[str, Entries] = {}
        self._kept_bytes = 0
        self._bytes = 0

    async def load(self, keys: Iterable[str]) -> None:
        """Read the manifests of the hours of `keys` worth reading (MIN_KEYS),
        a few at a time, hours with the most keys first, while the page's
        budget (PAGE_BYTES) lasts."""
        counts = Counter(map(manifest_hour, keys))
        hours = [h for h, n in counts.most_common() if n >= MIN_KEYS and h not in self._known]
        for start in range(0, len(hours), LOADS_AT_ONCE):
            if self._bytes >= PAGE_BYTES:
                return
            wave = hours[start : start + LOADS_AT_ONCE]
            loaded = await asyncio.gather(*map(self._manifests.read, wave))
            for hour, manifest in zip(wave, loaded, strict=True):
                if manifest is None:
                    self._bytes = PAGE_BYTES  # the store is failing: read no more of them
                    continue
                self._known[hour], size = manifest
                self._bytes += size

    async def object_info(self, key: str, object_id: str) -> pb.StatObjectResponse:
        """The entry of `object_id`, listed as `key`; NOT_FOUND when it is not visible.

        Whichever hour's manifest holds an id's entry holds the one `ids/<id>` has.
        """
        hour = manifest_hour(key)
        known = self._known.get(hour)
        found = None if known is None else known.get(object_id)
        if found is not None:
            return found
        found = await self._index.object_info(object_id)
        if known is not None and self._kept_bytes < PAGE_KEEP_BYTES:
            read = self._read.setdefault(hour, {})
            if len(known) + len(read) < MAX_ENTRIES:
                read[object_id] = found
                self._kept_bytes += _cost(found)
        return found

    async def has_spans(self, info: pb.StatObjectResponse) -> bool:
        return await self._index.has_spans(info)

    def keep(self) -> None:
        """Hand what the page read from `ids/` to the manifests (for the hours
        whose manifest it read: the others it leaves to a page with budget)."""
        for hour, read in self._read.items():
            self._manifests.keep(hour, len(self._known[hour]), read)
        self._read = {}
        self._kept_bytes = 0
