"""glibc's malloc, set for the gateway's traffic: bodies streamed through in
1 MiB pieces.

With glibc's defaults each freed piece at the top of the heap is handed back
to the kernel and the next one faults its pages in again: in a large upload
more than half of the gateway's CPU was system time, and the gateway spent
5-6 ms of CPU per MiB. Keeping pieces below `MMAP_THRESHOLD` on the heap and
up to `TRIM_THRESHOLD` of free heap before trimming halves that (about 3 ms
per MiB; scripts/bench's REST object scenario), for no rise in peak RSS.
Thresholds the operator gives glibc (MALLOC_MMAP_THRESHOLD_,
MALLOC_TRIM_THRESHOLD_, or the same in GLIBC_TUNABLES) win: then nothing is
changed here.
"""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Mapping

#: mallopt(3) parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Allocations at least this large get their own mapping.
MMAP_THRESHOLD = 4 * 2**20
#: Free memory at the top of the heap kept for the next pieces.
TRIM_THRESHOLD = 16 * 2**20

#: The operator's own thresholds, which win.
_OPERATOR_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_OPERATOR_TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold")


def operator_set(env: Mapping[str, str]) -> bool:
    """Whether the operator set either threshold for glibc."""
    tunables = env.get("GLIBC_TUNABLES", "")
    return any(name in env for name in _OPERATOR_VARIABLES) or any(t in tunables for t in _OPERATOR_TUNABLES)


def tune_malloc() -> bool:
    """Apply the thresholds; False when not on glibc, or when mallopt refused them."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    # Each returns 1 on success; setting either fixes both (no dynamic threshold).
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
