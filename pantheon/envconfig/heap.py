"""The heap of a long-running server (the services and the gateway): glibc's
malloc set for bodies streamed through in 1 MiB pieces, and the garbage
collector's full passes kept short.

**malloc** (`tune_malloc`, first thing at start):

- Two arenas (`ARENAS`) instead of up to eight per core: uploads pass
  through many threads (gRPC's, the S3 pool's), and each arena keeps its own
  peak.
- In the gateway (`thresholds=True`), pieces below `MMAP_THRESHOLD` stay
  on the heap, and up to `TRIM_THRESHOLD` of free heap is kept before it is
  handed back. With glibc's defaults each freed piece at the top of the heap
  went back to the kernel and the next one faulted its pages in again: in a
  large upload more than half of the gateway's CPU was system time (5-6 ms
  of CPU per MiB; 3 with these thresholds). The services keep glibc's own
  thresholds, which rise to the size of what they free: their S3 parts
  (5 MiB or more) would be mapped and faulted in afresh under a fixed 4 MiB
  threshold, measured at a tenth more of their CPU per upload for 2-3 MiB
  less peak RSS.

Settings the operator gives glibc win (`MALLOC_ARENA_MAX`,
`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, or the same in
`GLIBC_TUNABLES`): each is then left as set. Off glibc nothing is changed.

**Garbage collector** (`tune_collector`, once started, in the servers and
in the services' worker processes):

- A full (generation 2) collection walks every tracked object, and a server
  holds tens of thousands from its imports and start (protobuf descriptors,
  gRPC, FastAPI and pydantic models): in the services one such pass stopped
  the event loop for about 40 ms, and every call in flight waited for it.
  Those objects live as long as the process, so they are moved out of the
  collector's sight (`gc.freeze`); a full pass then walks only what serving
  created, about 1 ms.
- The youngest generation is collected after `YOUNG_OBJECTS` net new
  objects instead of Python's 700. A batch of records keeps thousands of
  objects alive for its whole call (records, events, their metadata), and
  every young collection walked them again, then promoted them to be walked
  once more by the older generations: with 700, the services spent 180-200
  ms of every 5 s of 1000-record batches collecting (hundreds of passes),
  with `YOUNG_OBJECTS` about one pass in the same run. Almost all of this
  garbage is freed by reference counting the moment it is dropped.
- What only the collector frees is garbage in reference cycles, and a failed
  call leaves some: its error's traceback holds the call's frames, and they
  whatever the call held (an upload's chunks and parts, several MiB). So
  that failures cannot pile those up while 20,000 new objects come, a
  failed call asks for a collection soon after (`collect_after_failure`):
  at most one every `FAILURE_COLLECTION_S`, whatever the number of failures.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import platform
from collections.abc import Mapping

log = logging.getLogger(__name__)

#: mallopt(3) parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

#: malloc arenas shared by all threads.
ARENAS = 2
#: Allocations at least this large get their own mapping.
MMAP_THRESHOLD = 4 * 2**20
#: Free memory at the top of the heap kept for the next pieces.
TRIM_THRESHOLD = 16 * 2**20

#: The operator's settings, by environment variable and GLIBC_TUNABLES name.
#: The two thresholds go together: setting either fixes both (glibc then
#: stops adjusting the mmap threshold by itself).
_ARENA_SETTING = (("MALLOC_ARENA_MAX",), ("glibc.malloc.arena_max",))
_THRESHOLD_SETTINGS = (
    ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"),
    ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold"),
)


def operator_set(env: Mapping[str, str], setting: tuple[tuple[str, ...], tuple[str, ...]]) -> bool:
    """Whether the operator set `setting` (its variables, its tunables) for glibc."""
    variables, tunables = setting
    given = env.get("GLIBC_TUNABLES", "")
    return any(name in env for name in variables) or any(t in given for t in tunables)


def tune_malloc(env: Mapping[str, str], *, thresholds: bool) -> bool:
    """Apply `ARENAS`, and the thresholds if asked, except what the operator
    set; False (and a warning) when not on glibc, or when mallopt refused."""
    wanted = [] if operator_set(env, _ARENA_SETTING) else [(M_ARENA_MAX, ARENAS)]
    if thresholds and not operator_set(env, _THRESHOLD_SETTINGS):
        wanted += [(M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)]
    try:
        mallopt = ctypes.CDLL(None).mallopt if platform.libc_ver()[0] == "glibc" else None
    except (OSError, AttributeError):  # the process's own C library has none
        mallopt = None
    # Each mallopt returns 1 on success; every one is tried.
    done = mallopt is not None and all([mallopt(param, value) for param, value in wanted])
    if not done:
        log.warning("malloc left at the platform's defaults (not glibc, or mallopt refused)")
    return done


#: Net new objects between two collections of the youngest generation.
YOUNG_OBJECTS = 20_000
#: Delay of the collection a failed call asks for; failures within it share one.
FAILURE_COLLECTION_S = 0.1

#: The loop a collection is due on (None: none is).
_due_on: asyncio.AbstractEventLoop | None = None


def tune_collector() -> None:
    """Collect the garbage of starting up, exempt what is left from later
    passes, and collect the youngest generation less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, older, oldest)


def collect_after_failure() -> None:
    """Collect soon (once the failed call has unwound), unless already due
    on this loop (one that was closed meanwhile never runs its collection)."""
    global _due_on
    loop = asyncio.get_running_loop()
    if _due_on is not loop:
        _due_on = loop
        loop.call_later(FAILURE_COLLECTION_S, _collect)


def _collect() -> None:
    global _due_on
    _due_on = None
    gc.collect()
