"""Fixtures for the cross-language tests: they run real Go and TypeScript
programs against the real stack, so everything here is `integration`."""

from __future__ import annotations

from pathlib import Path

import pytest

# The shared stack fixtures (imported by name, so pytest registers them here).
from tests.integration.conftest import kafka_config, stack_env

__all__ = ["kafka_config", "stack_env"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)
