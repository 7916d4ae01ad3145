"""The servers' garbage-collector setting (pantheon/envconfig/heap.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pantheon.envconfig import heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_startup_objects_leave_the_collectors_sight_and_new_ones_do_not(unfrozen: None) -> None:
    assert gc.get_freeze_count() == 0
    heap.freeze_startup_objects()
    frozen = gc.get_freeze_count()
    assert frozen > 1000  # the interpreter's and the imports' objects
    cycle: list[object] = []
    cycle.append(cycle)  # garbage made while serving...
    del cycle
    assert gc.collect() >= 1  # ...is still collected
    assert gc.get_freeze_count() == frozen
