"""The gateway's malloc thresholds (gateway/memory.py): set on glibc, left
alone when the operator set them."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from gateway.memory import operator_set


def test_the_thresholds_are_set_on_glibc_and_only_there() -> None:
    # In a process of its own: the test runner's malloc stays as it was.
    done = subprocess.run(
        [sys.executable, "-c", "from gateway.memory import tune_malloc; print(tune_malloc())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == str(platform.libc_ver()[0] == "glibc")


@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_MMAP_THRESHOLD_": "1"},
        {"MALLOC_TRIM_THRESHOLD_": "1"},
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=1"},
    ],
)
def test_the_operators_thresholds_win(env: dict[str, str]) -> None:
    assert operator_set(env)


def test_other_settings_do_not_count_as_the_operators_thresholds() -> None:
    assert not operator_set({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "MALLOC_ARENA_MAX": "2"})
