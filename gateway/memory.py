"""glibc's malloc, set for the gateway's traffic: bodies streamed through in
1 MiB pieces.

With glibc's defaults each freed piece at the top of the heap is handed back
to the kernel and the next one faults its pages in again: in a large upload
more than half of the gateway's CPU was system time, and the gateway spent
5-6 ms of CPU per MiB. Keeping pieces below `MMAP_THRESHOLD` on the heap and
up to `TRIM_THRESHOLD` of free heap before trimming halves that (about 3 ms
per MiB; scripts/bench's REST object scenario), for no rise in peak RSS.
Settings the operator gives glibc (MALLOC_*_ environment variables or
GLIBC_TUNABLES) win: then nothing is changed here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

#: mallopt(3) parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Allocations at least this large get their own mapping.
MMAP_THRESHOLD = 4 * 2**20
#: Free memory at the top of the heap kept for the next pieces.
TRIM_THRESHOLD = 16 * 2**20

_OPERATOR_SETTINGS = ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def tune_malloc(env: dict[str, str] | None = None) -> bool:
    """Apply the thresholds; False when not on glibc or the operator set malloc up."""
    env = dict(os.environ) if env is None else env
    if platform.libc_ver()[0] != "glibc" or any(name in env for name in _OPERATOR_SETTINGS):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    # Each returns 1 on success; setting either fixes both (no dynamic threshold).
    mapped = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    return bool(mapped and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
