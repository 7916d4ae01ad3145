"""How a search page lists: its LIST budget, its prefixes in page order, listing ahead.

A page makes at most LISTS_PER_PAGE LIST calls (Lister: OutOfBudget when it
needs one more), LISTS_IN_FLIGHT at a time. Its (source, hour) prefixes come
in page order (steps: hours newest first, then sources in the order of their
keys), and while it reads one, the first LIST calls of the next ones (up to
PREFIXES_AHEAD) are already under way (in_page_order); what they find waits
its turn. How search uses them: pantheon.storage.search.
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

from pantheon.metadata.naming import hour_prefixes, source_prefix
from pantheon.storage.object_store import Listing, ObjectStore

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

#: What the listing streams yield: a key and whether it may match (False: a
#: key its name rules out, or the start of a prefix; either is a place a
#: page may end and the next one resume).
Listed = tuple[str, bool]
_Item = TypeVar("_Item", str, Listed)


class OutOfBudget(Exception):
    """A LIST is needed after the page spent its budget: the page ends here."""


class Lister:
    """The LIST calls of one page: counted against its budget, LISTS_IN_FLIGHT at a time.

    Until the page has yielded something (`progress`) a LIST is made even
    past the budget, so every page moves on; after that, a LIST the budget
    does not cover raises OutOfBudget, in the page's own reading or in a
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
            raise OutOfBudget
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
class Step:
    """One hour prefix of one source, in page order, and how to list it."""

    prefix: str
    #: Whether the page enters it from its start (else it resumes inside it).
    announce: bool
    start_after: str
    source: str
    newest: bool


async def merged(streams: Sequence[AsyncGenerator[_Item, None]]) -> AsyncIterator[_Item]:
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


def steps(
    data_type: str,
    sources: list[str],
    after: datetime,
    before: datetime,
    last_key: str,
) -> Iterator[Step]:
    """The (source, hour) prefixes still to list, in page order: hours newest first,
    then sources in the order of their keys (`"<source>/"`). Made as they are
    needed: a page that reads three prefixes pays for three, not for every
    source and hour of the window."""
    if not sources:
        return
    root = source_prefix(data_type)
    # "yyyy/mm/dd/hh/", newest first: the same for every source.
    hours = [
        p[len(root) + len(sources[0]) + 1 :] for p in hour_prefixes(data_type, sources[0], after, before)
    ]
    resume_hour = last_key[len(root) :].partition("/")[2][: len(hours[0])] if hours else ""
    ordered = sorted(sources, key=lambda source: source + "/")  # the order of the keys
    for n, hour in enumerate(hours):
        if last_key and hour > resume_hour:
            continue  # served before the page that ended at `last_key`
        for source in ordered:
            prefix = f"{root}{source}/{hour}"
            if last_key.startswith(prefix):
                yield Step(prefix, False, last_key, source, n == 0)
            elif not (last_key and before_resume(prefix, last_key, data_type)):
                # Resuming at the prefix itself lists all of it (its keys sort after it).
                yield Step(prefix, True, "", source, n == 0)


def before_resume(prefix: str, last_key: str, data_type: str) -> bool:
    """Whether `prefix` was fully served before the page that ended at `last_key`."""
    root = len(source_prefix(data_type))
    p_source, _, p_hour = prefix[root:].partition("/")
    k_source, _, k_rest = last_key[root:].partition("/")
    k_hour = k_rest[: len(p_hour)]
    # Earlier in page order: a newer hour, or the same hour and a smaller
    # source, compared as "<source>/" as in the keys themselves.
    return p_hour > k_hour or (p_hour == k_hour and p_source + "/" < k_source + "/")


async def in_page_order(
    to_list: Iterator[Step], keys_of: Callable[[Step], AsyncGenerator[Listed, None]]
) -> AsyncGenerator[Listed, None]:
    """What `keys_of` yields for each step of `to_list`, in page order; and each
    prefix as it is entered (not a candidate: a place to resume).

    The prefixes after the one being read are listed ahead (up to
    PREFIXES_AHEAD, one more after each prefix read), so their first LIST
    calls overlap; what they yield still comes in page order."""
    # The steps made and not read yet: the one being read (number i) and those after it.
    steps: collections.deque[Step] = collections.deque()
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
                    primed[j] = _Primed(keys_of(later))
            current = primed.pop(i)
            try:
                async for item in current.items():
                    yield item
            finally:
                await current.close()
    finally:
        for ahead in primed.values():
            await ahead.close()
