"""Every table in README.md has as many cells in each row as in its header
(a row pasted into the wrong table shows up here)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _cells(row: str) -> int:
    # Pipes inside code spans and escaped pipes are not cell separators.
    row = re.sub(r"`[^`]*`", "code", row.replace("\\|", ""))
    return row.strip().strip("|").count("|") + 1


def _tables(text: str) -> list[list[tuple[int, str]]]:
    tables: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("|"):
            current.append((number, line))
            continue
        if current:
            tables.append(current)
            current = []
    return tables + ([current] if current else [])


def test_every_readme_table_row_has_its_headers_cells() -> None:
    tables = _tables(README.read_text())
    assert len(tables) > 10
    ragged = [
        f"line {number}: {_cells(row)} cells, header {_cells(table[0][1])}"
        for table in tables
        for number, row in table
        if _cells(row) != _cells(table[0][1])
    ]
    assert ragged == []
