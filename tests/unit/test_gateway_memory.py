"""The gateway's malloc thresholds (gateway/memory.py): set on glibc, left
alone when the operator configured malloc."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from gateway.memory import tune_malloc

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


@glibc
def test_the_thresholds_are_set_on_glibc() -> None:
    # In a process of its own: the test runner's malloc stays as it was.
    done = subprocess.run(
        [sys.executable, "-c", "from gateway.memory import tune_malloc; print(tune_malloc({}))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "True"


@pytest.mark.parametrize("name", ["GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"])
def test_the_operators_malloc_settings_win(name: str) -> None:
    assert tune_malloc({name: "1"}) is False
