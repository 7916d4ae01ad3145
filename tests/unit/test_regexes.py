"""Every regular expression in pantheon/ and gateway/ answers a hostile
100 KB input: none backtracks without bound. The test asserts on the
answer; a pattern that backtracked would not finish within the suite's
per-test timeout (pyproject: timeout = 300)."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import gateway
import pantheon

SIZE = 100_000
#: Near-misses that make ambiguous patterns try every split: long runs of the
#: characters patterns repeat, then one that none accepts at the end.
HOSTILE = (
    "a" * SIZE + "!",
    "0" * SIZE + "x",
    "1." * (SIZE // 2) + "!",
    "a." * (SIZE // 2) + "!",
    "-" * SIZE + "!",
    "a-" * (SIZE // 2) + "\x00",
    " " * SIZE + "\x00",
    "\\" * SIZE + "\x00",
)


def _patterns() -> list[tuple[str, re.Pattern[str] | re.Pattern[bytes]]]:
    """Every module-level compiled pattern, by the module that holds it."""
    found: dict[str, re.Pattern[str] | re.Pattern[bytes]] = {}
    for package in (pantheon, gateway):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            for name, value in vars(importlib.import_module(info.name)).items():
                if isinstance(value, re.Pattern):
                    found[f"{info.name}.{name}"] = value
    return sorted(found.items())


PATTERNS = _patterns()


def test_the_patterns_are_found() -> None:
    names = {name for name, _ in PATTERNS}
    assert "pantheon.ingest.cells._NUMBER" in names and "pantheon.policy._TYPE" in names
    assert "gateway.auth._PATTERN" in names and len(PATTERNS) >= 15


@pytest.mark.parametrize(("name", "pattern"), PATTERNS, ids=[name for name, _ in PATTERNS])
def test_a_hostile_100_kb_input_is_answered(name: str, pattern: re.Pattern[str] | re.Pattern[bytes]) -> None:
    for text in HOSTILE:
        subject = text.encode("latin-1") if isinstance(pattern.pattern, bytes) else text
        assert pattern.fullmatch(subject) is None, name  # type: ignore[arg-type]
        pattern.match(subject)  # type: ignore[arg-type]
        # Some are used to search (jpeg.py's fill bytes): every start position is tried.
        pattern.search(subject)  # type: ignore[arg-type]
