"""The one rule set that types a text cell: CSV objects, CSV record documents, anywhere.

`typed(cell)` gives a cell's value and `kind_of(cell)` its kind; `widen` joins
kinds, which is how a CSV column's type is inferred from its cells. The rules,
first match wins, on the cell exactly as written (no trimming, ASCII only):

- **boolean**: `true` or `false` in any letter case -> `True` / `False`.
- **integer**: an optional sign, then `0` or a digit 1-9 followed by digits,
  whose value fits a signed 64-bit integer -> `int` (`"-20"`, `"+3"`, `"0"`).
  Leading zeros make a cell text: `"007"`, `"0042"` and `"-01"` are codes
  (station ids, postcodes), and typing them would lose their digits. A digit
  string beyond the 64-bit range is text too: it is an identifier (an ICCID,
  an account number), not a quantity, and no consumer could hold it exactly.
- **number**: an optional sign, a decimal with the same integer part (no
  leading zeros) and an optional fraction (`"2.5"`, `"12."`, `".5"`), then an
  optional exponent (`"1e3"`, `"-1E-2"`) -> `float`, the nearest binary64.
  A value that overflows to infinity (`"1e999"`) is text, never `inf`; one
  that underflows rounds to 0.0 as any decimal-to-binary conversion does.
  `"NaN"`, `"Infinity"`, `"1_000"`, `" 1"`, `"0x1F"` and non-ASCII digits
  (`"٣"`) are text: Python's `float()` and `int()` accept some of these, so
  the syntax is checked before converting.
- **string**: anything else, the empty cell included -> the cell unchanged.
  What an empty cell means (null, absent) is the caller's decision; CSV
  column inference skips it.

Column kinds widen integer -> number (a column of `1` and `2.5` is a number
column); any other mix, such as integer and boolean, is a string column.

Every check is linear in the cell: the patterns have no ambiguous repetition
(adjacent repeats are separated by a required `.` or `e`) and use possessive
quantifiers, so a failed match never backtracks; the integer conversion only
ever sees at most 19 digits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Final, Literal, TypeAlias

Kind: TypeAlias = Literal["integer", "number", "boolean", "string"]
INTEGER: Final = "integer"
NUMBER: Final = "number"
BOOLEAN: Final = "boolean"
STRING: Final = "string"

# ASCII classes on purpose: str.isdigit and \d accept digits from other scripts.
_INTEGER = re.compile(r"[+-]?+(?:0|[1-9][0-9]*+)")
_NUMBER = re.compile(r"[+-]?+(?:(?:0|[1-9][0-9]*+)(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?+[0-9]++)?+")
_INT64_DIGITS = 19
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _fits_int64(cell: str) -> bool:
    # Up to 18 digits always fit; 19 may; more never do (and are not converted).
    digits = len(cell) - (cell[0] in "+-")
    return digits <= 18 or (digits == _INT64_DIGITS and _INT64_MIN <= int(cell) <= _INT64_MAX)


def _boolean(cell: str) -> bool | None:
    if len(cell) in (4, 5) and cell.isascii():
        lowered = cell.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    return None


def kind_of(cell: str) -> Kind:
    """The kind of the cell's value: "integer", "number", "boolean" or "string"."""
    # The order is the cheapest first for numeric columns, which are the most
    # common; the three syntaxes are disjoint, so it does not change a result.
    if _INTEGER.fullmatch(cell):
        return INTEGER if _fits_int64(cell) else STRING
    if _NUMBER.fullmatch(cell):
        return NUMBER if math.isfinite(float(cell)) else STRING
    return STRING if _boolean(cell) is None else BOOLEAN


def typed(cell: str) -> bool | int | float | str:
    """The cell's value under the module's rules: bool, int, float or the cell itself."""
    if _INTEGER.fullmatch(cell):
        return int(cell) if _fits_int64(cell) else cell
    if _NUMBER.fullmatch(cell):
        number = float(cell)
        return number if math.isfinite(number) else cell
    flag = _boolean(cell)
    return cell if flag is None else flag


def widen(column: Kind | None, cell: Kind) -> Kind:
    """The narrowest kind holding both a column's kind so far (None: no cell yet) and a cell's."""
    if column is None or column == cell:
        return cell
    if {column, cell} == {INTEGER, NUMBER}:
        return NUMBER
    return STRING


def column_kind(cells: Iterable[str]) -> Kind:
    """The kind of a column of cells; empty cells are skipped, and no cell at all is a string."""
    kind: Kind | None = None
    for cell in cells:
        if cell:
            kind = widen(kind, kind_of(cell))
            if kind == STRING:
                break
    return kind or STRING
