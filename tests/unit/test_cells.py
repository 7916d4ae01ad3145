"""The one cell-typing rule set: values, kinds, widening, and linear-time checks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pantheon.ingest.cells import (
    BOOLEAN,
    INTEGER,
    NUMBER,
    STRING,
    Kind,
    column_kind,
    kind_of,
    typed,
    widen,
)


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("0", 0),
        ("-0", 0),
        ("+3", 3),
        ("-20", -20),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
        ("2.5", 2.5),
        ("12.", 12.0),
        (".5", 0.5),
        ("-.5", -0.5),
        ("0.50", 0.5),
        ("1e3", 1000.0),
        ("-1E-2", -0.01),
        ("1e-999", 0.0),  # underflow rounds, as any decimal-to-binary conversion does
        ("true", True),
        ("FALSE", False),
        ("True", True),
    ],
)
def test_typed_cells(cell: str, value: object) -> None:
    assert typed(cell) == value
    assert type(typed(cell)) is type(value)


@pytest.mark.parametrize(
    "cell",
    [
        "",
        "007",  # a code: leading zeros keep a cell text
        "-01",
        "00.5",
        "9223372036854775808",  # one past int64: an identifier, not a quantity
        "12345678901234567890123",
        "1e999",  # overflows to infinity: text, never inf
        "-1E400",
        "NaN",
        "nan",
        "Infinity",
        "inf",
        "1_000",
        " 1",
        "1 ",
        "0x1F",
        "٣",  # a digit, but not an ASCII one
        "\uff11",  # fullwidth digit one
        "1.2.3",
        "e5",
        ".",
        "+",
        "-",
        "1e",
        "tru",
        "yes",
        "\uff54\uff52\uff55\uff45",  # fullwidth "true"
    ],
)
def test_text_cells_stay_text(cell: str) -> None:
    assert typed(cell) == cell
    assert kind_of(cell) == STRING


@pytest.mark.parametrize(
    ("cells", "kind"),
    [
        (["1", "-20"], INTEGER),
        (["1", "2.5"], NUMBER),
        (["2.5", "7"], NUMBER),
        (["true", "False"], BOOLEAN),
        (["1", "true"], STRING),
        (["true", "1"], STRING),
        (["1", "007"], STRING),
        (["1.5", "1e999"], STRING),
        (["", "1", ""], INTEGER),
        (["", ""], STRING),
        ([], STRING),
    ],
)
def test_column_kinds_widen(cells: list[str], kind: str) -> None:
    assert column_kind(cells) == kind


def test_widen_is_a_join() -> None:
    kinds: list[Kind] = [INTEGER, NUMBER, BOOLEAN, STRING]
    for a in kinds:
        assert widen(None, a) == a
        assert widen(a, a) == a
        assert widen(a, STRING) == STRING
        for b in kinds:
            assert widen(a, b) == widen(b, a)
    assert widen(INTEGER, NUMBER) == NUMBER
    assert widen(BOOLEAN, INTEGER) == STRING


# Inputs that made the old `[0-9]+\.?[0-9]*` pattern backtrack quadratically
# (20 KB took 15 s): each must still get its plain answer.
PATHOLOGICAL = [
    ("1" * 100_000 + "x", STRING),
    ("0." + "1" * 100_000, NUMBER),
    ("1" * 100_000 + ".", STRING),  # overflows
    ("1" * 50_000 + "." + "1" * 50_000 + "x", STRING),
    ("1" * 50_000 + "." + "1" * 50_000 + "e", STRING),
    ("1" * 50_000 + "e" + "1" * 50_000 + "x", STRING),
    ("1" * 50_000 + "e" + "1" * 50_000, STRING),  # overflows
    ("." + "1" * 100_000 + "x", STRING),
    ("+" + "1" * 100_000, STRING),  # too many digits for an integer
    ("0" * 100_000, STRING),
    ("1." * 50_000, STRING),
    ("1e" * 50_000, STRING),
    ("-" * 100_000, STRING),
]


@pytest.mark.parametrize(("cell", "kind"), PATHOLOGICAL, ids=lambda v: str(v)[:12])
def test_pathological_cells_get_their_plain_kind(cell: str, kind: str) -> None:
    assert kind_of(cell) == kind
    assert (typed(cell) == cell) is (kind == STRING)


@given(st.integers(-(2**63), 2**63 - 1))
def test_every_int64_round_trips(value: int) -> None:
    assert typed(str(value)) == value
    assert kind_of(str(value)) == INTEGER


@given(st.integers(2**63, 10**60) | st.integers(-(10**60), -(2**63) - 1))
def test_integers_beyond_int64_are_text(value: int) -> None:
    assert typed(str(value)) == str(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_float_round_trips(value: float) -> None:
    cell = repr(value)
    assert typed(cell) == value
    assert kind_of(cell) == NUMBER  # repr always writes a "." or an exponent


@given(st.text(max_size=40))
@settings(max_examples=500)
def test_typed_and_kind_of_agree_and_never_fail(cell: str) -> None:
    value = typed(cell)
    kind = kind_of(cell)
    expected = {bool: BOOLEAN, int: INTEGER, float: NUMBER, str: STRING}[type(value)]
    assert kind == expected
    if isinstance(value, float):
        assert math.isfinite(value)
    if kind == STRING:
        assert value == cell
