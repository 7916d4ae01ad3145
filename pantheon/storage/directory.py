"""Which sources a data type has, per bucket and per kind of span entry, cached briefly.

Search needs, on every page, the sources of a data type in each bucket it
searches (`v1/<data_type>/` listed with delimiter `/`), and which of them
have span entries of each kind in the index (`spans/end/v1/<data_type>/`,
`spans/cover/...`, `spans/long/...`: only sources that store record batches
have any). Knowing that, a page lists only the (source, bucket) prefixes
that can hold something, instead of every bucket and every kind of span
entry under every hour: most of those are empty.

The answers are kept FRESH_S seconds. This process's own index writes add to
them at once (Index.put_object_info notes an object's source before it binds
the id, so whatever is visible here is in the directory here); another
replica learns of a source's first object, or its first record batch, when
its entry expires: within FRESH_S seconds. Sources are never removed (stored
objects are immutable), so an entry can only lack a name, never hold a stale
one; a search naming one source that an entry lacks re-reads that entry once
instead of waiting for it to expire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from pantheon.metadata.naming import SCHEME
from pantheon.storage.object_store import ObjectStore

#: Seconds a listing of sources is trusted before it is read again.
FRESH_S = 5.0


def data_root(data_type: str) -> str:
    """``v1/<data_type>/``: its children are the sources of `data_type`."""
    return f"{SCHEME}/{data_type}/"


def span_root(kind: str, data_type: str) -> str:
    """``spans/<kind>/v1/<data_type>/`` (`kind` as spans.SPAN_END, ...): its children are sources."""
    return f"{kind}{SCHEME}/{data_type}/"


class SourceDirectory:
    """The children one level under a root (sources), per (bucket, root), for FRESH_S seconds."""

    def __init__(
        self, store: ObjectStore, fresh_s: float = FRESH_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._fresh_s = fresh_s
        self._clock = clock
        #: (bucket, root) -> (when it was listed, the children then, plus those noted since).
        self._entries: dict[tuple[str, str], tuple[float, set[str]]] = {}
        #: (bucket, root) -> child -> when it was noted (so a listing that started
        #: before a note and ended after it does not lose the note).
        self._noted: dict[tuple[str, str], dict[str, float]] = {}

    def note(self, bucket: str, root: str, child: str) -> None:
        """`child` exists under `root` in `bucket` (this process just wrote there)."""
        now = self._clock()
        self._noted.setdefault((bucket, root), {})[child] = now
        entry = self._entries.get((bucket, root))
        if entry is not None:
            entry[1].add(child)

    async def children(
        self, bucket: str, root: str, *, spend: Callable[[], None], refresh: bool = False
    ) -> frozenset[str]:
        """The children of `root` in `bucket`, from the cache while it is fresh.

        `spend` is called once per LIST made (the page's listing budget).
        """
        now = self._clock()
        entry = self._entries.get((bucket, root))
        if entry is not None and not refresh and now - entry[0] < self._fresh_s:
            return frozenset(entry[1])
        found = set(await self._list(bucket, root, spend))
        noted = self._noted.get((bucket, root), {})
        found |= {child for child, at in noted.items() if at >= now}
        # Notes older than a listing that started after them are in it: forget them.
        for child in [c for c, at in noted.items() if at < now]:
            del noted[child]
        self._entries[(bucket, root)] = (now, found)
        return frozenset(found)

    async def many(
        self, wanted: Iterable[tuple[str, str]], *, spend: Callable[[], None], refresh: bool = False
    ) -> dict[tuple[str, str], frozenset[str]]:
        """`children` of several (bucket, root) pairs, listed concurrently."""
        pairs = list(dict.fromkeys(wanted))
        found = await asyncio.gather(*(self.children(b, r, spend=spend, refresh=refresh) for b, r in pairs))
        return dict(zip(pairs, found, strict=True))

    async def _list(self, bucket: str, root: str, spend: Callable[[], None]) -> list[str]:
        found: list[str] = []
        start_after = ""
        while True:
            spend()
            page = await self._store.list(bucket, root, delimiter="/", start_after=start_after)
            found += [p[len(root) :].rstrip("/") for p in page.prefixes]
            if not page.truncated or not page.prefixes:
                return found
            start_after = page.prefixes[-1]
