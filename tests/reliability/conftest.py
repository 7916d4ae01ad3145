"""A private stack for the fault tests (own state dir and ports): they kill and stop its processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.stack import PrivateStack


@pytest.fixture(scope="session")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    stack = PrivateStack.create(tmp_path_factory.mktemp("reliability-stack"))
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
