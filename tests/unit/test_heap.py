"""The servers' heap settings (pantheon/envconfig/heap.py): malloc, set on
glibc except what the operator set; and the garbage collector."""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import subprocess
import sys
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from pantheon.envconfig import heap


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_startup_objects_leave_the_collectors_sight_and_new_ones_do_not(collector: None) -> None:
    assert gc.get_freeze_count() == 0
    _, older, oldest = gc.get_threshold()
    heap.tune_collector()
    frozen = gc.get_freeze_count()
    assert frozen > 1000  # the interpreter's and the imports' objects
    assert gc.get_threshold() == (heap.YOUNG_OBJECTS, older, oldest)  # the older generations as they were
    cycle: list[object] = []
    cycle.append(cycle)  # garbage made while serving...
    del cycle
    assert gc.collect() >= 1  # ...is still collected
    assert (
        gc.get_freeze_count() <= frozen
    )  # and not frozen (frozen objects may die, earlier tests' among them)


def test_malloc_is_tuned_on_glibc_and_only_there() -> None:
    # In a process of its own: the test runner's malloc stays as it was.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pantheon.envconfig import heap; print(heap.tune_malloc({}, thresholds=True))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == str(platform.libc_ver()[0] == "glibc")


_ARENAS = """
import ctypes, os, sys, tempfile, threading
from pantheon.envconfig import heap
heap.tune_malloc(os.environ, thresholds=False)
ready, done = threading.Barrier(9), threading.Event()
def work():
    kept = [bytearray(200) for _ in range(5000)]  # each thread's own allocations
    ready.wait()
    done.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
ready.wait()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile("r") as out:
    f = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(f))
    libc.fclose(ctypes.c_void_p(f))
    print(out.read().count("<heap nr="))
done.set()
"""


def test_eight_threads_share_two_malloc_arenas_unless_the_operator_says_otherwise() -> None:
    def arenas(env: dict[str, str]) -> int:
        done = subprocess.run(
            [sys.executable, "-c", _ARENAS],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **env},
        )
        return int(done.stdout)

    assert arenas({}) <= heap.ARENAS
    assert arenas({"MALLOC_ARENA_MAX": "8"}) > heap.ARENAS  # the count does see arenas


class _Mallopt:
    """Records mallopt(3) calls instead of making them."""

    def __init__(self, answer: int = 1) -> None:
        self.calls: dict[int, int] = {}
        self.answer = answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls[param] = value
        return self.answer


@pytest.fixture
def mallopt(monkeypatch: pytest.MonkeyPatch) -> _Mallopt:
    fake = _Mallopt()
    monkeypatch.setattr(heap.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(heap.ctypes, "CDLL", lambda _: fake)
    return fake


ALL = {
    heap.M_ARENA_MAX: heap.ARENAS,
    heap.M_MMAP_THRESHOLD: heap.MMAP_THRESHOLD,
    heap.M_TRIM_THRESHOLD: heap.TRIM_THRESHOLD,
}


@pytest.mark.parametrize(
    ("env", "kept"),
    [
        ({}, set()),
        ({"MALLOC_ARENA_MAX": "4"}, {heap.M_ARENA_MAX}),
        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}, {heap.M_ARENA_MAX}),
        # Either threshold keeps both: setting one fixes the other in glibc.
        ({"MALLOC_MMAP_THRESHOLD_": "1"}, {heap.M_MMAP_THRESHOLD, heap.M_TRIM_THRESHOLD}),
        ({"MALLOC_TRIM_THRESHOLD_": "1"}, {heap.M_MMAP_THRESHOLD, heap.M_TRIM_THRESHOLD}),
        (
            {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=1"},
            set(ALL),
        ),
    ],
)
def test_what_the_operator_set_is_left_as_set(mallopt: _Mallopt, env: dict[str, str], kept: set[int]) -> None:
    assert heap.tune_malloc(env, thresholds=True)
    assert mallopt.calls == {p: v for p, v in ALL.items() if p not in kept}


def test_the_services_keep_glibcs_own_thresholds(mallopt: _Mallopt) -> None:
    assert heap.tune_malloc({}, thresholds=False)
    assert mallopt.calls == {heap.M_ARENA_MAX: heap.ARENAS}


def test_a_refused_setting_is_reported(mallopt: _Mallopt, caplog: Any) -> None:
    mallopt.answer = 0
    assert not heap.tune_malloc({}, thresholds=True)
    assert "malloc left at the platform's defaults" in caplog.text


def test_nothing_is_changed_off_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap.platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(heap.ctypes, "CDLL", lambda _: pytest.fail("mallopt called off glibc"))
    assert not heap.tune_malloc({}, thresholds=True)


class _Held:
    """Stands in for what a failed call held, in a cycle only the collector frees."""

    def __init__(self) -> None:
        self.me = self
        self.buffer = bytes(2**20)


async def test_after_a_failure_its_cycles_are_collected_soon_and_failures_share_a_collection(
    collector: None,
) -> None:
    gc.set_threshold(10**9)  # no collection would otherwise come
    held = _Held()
    gone = weakref.ref(held)
    del held
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        for _ in range(50):
            heap.collect_after_failure()
        for _ in range(200):  # until it ran: up to 20 s, never a bound on speed
            if gone() is None:
                break
            await asyncio.sleep(0.1)
        assert gone() is None
        assert collections == [2]  # one full collection for the fifty failures
    finally:
        gc.callbacks.remove(count)
