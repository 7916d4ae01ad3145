"""Normaliser work off the event loop, in bounded worker pools.

The ingestion service runs on one asyncio event loop. A normaliser's `feed`
and `finish` are CPU work: linear in their input thanks to the caps
(`pantheon.ingest.caps`), but run inline they would stall every other caller
(health checks, reads, other uploads) for as long as they take. This module
runs them elsewhere and says so with a 503 when it cannot:

    out = await workers.feed(normaliser, chunk)     # for every chunk, in order
    out = await workers.finish(normaliser)          # once, at the end

Where the work runs, by what it costs:

- **Inline**, on the loop, while an upload's input so far is at most
  `INLINE_MAX_BYTES`: a hop to a thread (tens of microseconds, plus waiting
  for the GIL) would cost more than the work, and small ingests are the fast
  path. Counting an upload's whole input, not one chunk, bounds the inline
  work per upload (a few milliseconds at worst), however it is chunked.
  Buffering a JSON document in `feed` is a copy, always inline.
- **Threads** (`THREAD_WORKERS`): chunk-by-chunk work, that is CSV and NDJSON
  records, image walkers, and whole JSON documents up to
  `THREAD_MAX_DOCUMENT_BYTES`. Per-record Python code gives the GIL up at
  every switch interval, and the image walkers spend their time in zlib and
  `bytes.find`, so the loop keeps running while they work.
- **Processes** (`PROCESS_WORKERS`): whole JSON and GeoJSON documents above
  that size. `json`'s decoder and encoder are each one C call that holds the
  GIL for the whole document (a second or more near the 16 MiB cap), which
  would stall the loop from a thread as surely as inline. The document's
  bytes go to a worker process, which returns the canonical bytes and the
  record count. Workers are spawned, not forked: the service has gRPC
  threads, and forking a process with threads is unsafe. As with any
  spawned pool, the program's main module must be safe to import (the
  `if __name__ == "__main__":` idiom; `python -m pantheon` is). A worker is
  replaced after `PROCESS_MAX_TASKS_PER_CHILD` tasks, so memory it kept
  from large ones is given back now and then.

Admission: each pool holds at most its workers plus a queue
(`THREAD_QUEUE`, `PROCESS_QUEUE`) of tasks. One more is refused at once
with `Unavailable` (reason `busy`: gRPC UNAVAILABLE with a RetryInfo, HTTP
503 with Retry-After), never queued without bound. A slot is freed when the
work ends, not when the coroutine awaiting it is cancelled, so cancelled
calls cannot pile work up behind the limit. A worker process that dies (an
out-of-memory kill, say) fails its calls with `Unavailable` (reason
`worker_lost`), and the next call gets a fresh pool.

Calls for one normaliser must not overlap (the service awaits each before
the next, as the normaliser's state requires); different uploads run in
parallel up to the pool sizes. `run_in_thread` and `run_in_process` offer the
same bounded pools to other CPU work, such as parsing a record document.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from pantheon.errors import Unavailable
from pantheon.ingest.formats.base import Normaliser
from pantheon.ingest.formats.json_text import JsonNormaliser

T = TypeVar("T")

#: Upload input (bytes so far) whose normalisation runs on the event loop.
INLINE_MAX_BYTES = 4096
#: Threads for chunk-by-chunk normalisation: the host has few cores, and more
#: threads would only contend for the GIL with the event loop.
THREAD_WORKERS = 2
#: Thread tasks that may wait for a thread; one more is refused as busy.
THREAD_QUEUE = 64
#: Whole JSON documents up to this size parse in a thread (a few milliseconds
#: of held GIL at most); larger ones go to a worker process.
THREAD_MAX_DOCUMENT_BYTES = 256 * 1024
#: Worker processes for whole documents: half the cores, one to four. Each may
#: need about 30 times the document size in memory at the 16 MiB cap.
PROCESS_WORKERS = max(1, min(4, (os.cpu_count() or 2) // 2))
#: Documents that may wait for a worker process; one more is refused as busy.
PROCESS_QUEUE = 8
#: Tasks a worker process runs before it is replaced. Each large record
#: batch or record document is one task, and a replacement costs the call
#: waiting for it about half a second (a new process imports everything):
#: at 100, batches stalled on one every 40 to 100. What a worker keeps from
#: a 13 MiB document once it is done is about 10 MiB (measured).
PROCESS_MAX_TASKS_PER_CHILD = 1000
#: Retry-After of a refusal for lack of workers, in seconds.
BUSY_RETRY_AFTER_S = 1


def _ready() -> None:
    """A no-op run in a worker process to start it."""


def _start_worker() -> None:
    """A worker process's start: import what its tasks run, then set its
    collector as the servers set theirs (pantheon/envconfig/heap.py)."""
    from pantheon.envconfig import heap
    from pantheon.ingest import record_document, records  # noqa: F401  (imported to be frozen)

    heap.tune_collector()


class Lane:
    """One executor, created on first use, holding at most `limit` tasks (running or waiting)."""

    def __init__(self, name: str, make: Callable[[], Executor], limit: int) -> None:
        self.name = name
        self.limit = limit
        self._make = make
        self._executor: Executor | None = None
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        """Tasks admitted and not yet ended."""
        return self._held

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in this lane; raise `Unavailable` (busy) when it is full."""
        with self._lock:
            if self._held >= self.limit:
                raise Unavailable(
                    f"the {self.name} pool is busy, retry later",
                    reason="busy",
                    retry_after_s=BUSY_RETRY_AFTER_S,
                )
            self._held += 1
            executor = self._executor = self._executor or self._make()
        try:
            future: Future[T] = executor.submit(fn, *args)
        except BrokenProcessPool:
            self._release()
            raise self._lost(executor) from None
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._released)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            raise self._lost(executor) from None

    def warm(self) -> None:
        """Start the executor (and, for processes, a worker) before the first task needs it."""
        with self._lock:
            executor = self._executor = self._executor or self._make()
        if isinstance(executor, ProcessPoolExecutor):
            executor.submit(_ready)

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def _released(self, _future: Future[Any]) -> None:
        self._release()

    def _release(self) -> None:
        with self._lock:
            self._held -= 1

    def _lost(self, executor: Executor) -> Unavailable:
        with self._lock:
            if self._executor is executor:
                self._executor = None
        executor.shutdown(wait=False, cancel_futures=True)
        return Unavailable(f"a {self.name} worker stopped, retry later", reason="worker_lost")


class NormaliserPool:
    """Runs normaliser calls inline, in threads or in processes, within bounded pools."""

    def __init__(
        self,
        *,
        thread_workers: int = THREAD_WORKERS,
        thread_queue: int = THREAD_QUEUE,
        process_workers: int = PROCESS_WORKERS,
        process_queue: int = PROCESS_QUEUE,
        inline_max_bytes: int = INLINE_MAX_BYTES,
        thread_max_document_bytes: int = THREAD_MAX_DOCUMENT_BYTES,
        process_max_tasks_per_child: int | None = PROCESS_MAX_TASKS_PER_CHILD,
    ) -> None:
        self.inline_max_bytes = inline_max_bytes
        self.thread_max_document_bytes = thread_max_document_bytes
        self.threads = Lane(
            "normaliser thread",
            lambda: ThreadPoolExecutor(thread_workers, thread_name_prefix="normalise"),
            thread_workers + thread_queue,
        )
        self.processes = Lane(
            "document parser",
            lambda: ProcessPoolExecutor(
                process_workers,
                mp_context=multiprocessing.get_context("spawn"),
                max_tasks_per_child=process_max_tasks_per_child,
                initializer=_start_worker,
            ),
            process_workers + process_queue,
        )
        # Input seen so far per upload, which decides what may run inline.
        self._seen: weakref.WeakKeyDictionary[Normaliser, int] = weakref.WeakKeyDictionary()

    async def feed(self, normaliser: Normaliser, chunk: bytes) -> bytes:
        """`normaliser.feed(chunk)`, off the loop unless the upload is small so far."""
        seen = self._seen.get(normaliser, 0) + len(chunk)
        self._seen[normaliser] = seen
        if seen <= self.inline_max_bytes or isinstance(normaliser, JsonNormaliser):
            return normaliser.feed(chunk)
        return await self.threads.run(normaliser.feed, chunk)

    async def finish(self, normaliser: Normaliser) -> bytes:
        """`normaliser.finish()`; a large JSON document is parsed in a worker process."""
        seen = self._seen.pop(normaliser, 0)
        if seen <= self.inline_max_bytes:
            return normaliser.finish()
        if isinstance(normaliser, JsonNormaliser):
            size = normaliser.held
            job, data = normaliser.detach()
            lane = self.threads if size <= self.thread_max_document_bytes else self.processes
            return normaliser.adopt(await lane.run(job, data))
        return await self.threads.run(normaliser.finish)

    async def run_in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Other CPU work that gives the GIL up often, in the bounded thread pool."""
        return await self.threads.run(fn, *args)

    async def run_in_process(self, fn: Callable[..., T], *args: Any) -> T:
        """Other CPU work that holds the GIL long, in the bounded process pool.

        `fn` must be a module-level function, and its arguments and result picklable.
        """
        return await self.processes.run(fn, *args)

    def warm(self) -> None:
        """Start the pools now, so the first large document does not wait for a process."""
        self.threads.warm()
        self.processes.warm()

    def close(self) -> None:
        """Stop the pools; calls still running are cancelled or left to end on their own."""
        self.threads.close()
        self.processes.close()


_default: NormaliserPool | None = None
_default_lock = threading.Lock()


def pool() -> NormaliserPool:
    """The process-wide pool, created with the module's defaults on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = NormaliserPool()
        return _default


def configure(**sizes: Any) -> NormaliserPool:
    """Replace the process-wide pool with one of other sizes (`NormaliserPool` keywords)."""
    global _default
    with _default_lock:
        old, _default = _default, NormaliserPool(**sizes)
    if old is not None:
        old.close()
    return _default


def shutdown() -> None:
    """Stop the process-wide pool (at server stop)."""
    global _default
    with _default_lock:
        old, _default = _default, None
    if old is not None:
        old.close()


async def feed(normaliser: Normaliser, chunk: bytes) -> bytes:
    """`normaliser.feed(chunk)` in the process-wide pool; see the module docstring."""
    return await pool().feed(normaliser, chunk)


async def finish(normaliser: Normaliser) -> bytes:
    """`normaliser.finish()` in the process-wide pool; see the module docstring."""
    return await pool().finish(normaliser)
