"""Pathological input through every normaliser: a canonical result or a documented refusal.

Hypothesis builds inputs from the pieces attackers and broken sensors use
(long digit runs, many separators, deep brackets, huge numbers, NUL bytes,
BOMs, invalid UTF-8, ragged rows, lone CRs, stray quotes) and feeds them in
random chunkings. Whatever comes in, a normaliser either returns output
that is canonical (normalising it again changes nothing) or raises
`InvalidContent` with a documented reason; never another exception, and the
same outcome for every chunking. Nothing here measures time: that the
parsers are linear is what lets these inputs finish at all.
"""

from __future__ import annotations

import csv
import importlib
import io
import itertools
import json
import pkgutil
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pantheon.ingest import caps
from pantheon.ingest.formats.base import InvalidContent
from pantheon.ingest.formats.csv_text import CsvNormaliser
from pantheon.ingest.normalise import open_normaliser
from tests.samples import make_bigtiff, make_jpeg, make_png, make_tiff

#: Every reason a normaliser may give, each documented (caps.CAPS and formats/).
DOCUMENTED_REASONS = frozenset({cap.reason for cap in caps.CAPS}) | {
    "invalid_csv",
    "invalid_json",
    "invalid_ndjson",
    "invalid_geojson",
    "empty_body",
    "format_mismatch",
    "corrupt_image",
    "unsupported_media_type",
}
TEXT_TYPES = ["text/csv", "application/json", "application/x-ndjson", "application/geo+json"]

Outcome = tuple[str, bytes]  # ("ok", output) or ("refused", reason)


def outcome(media_type: str, chunks: list[bytes]) -> Outcome:
    """The output, or the documented reason; any other exception fails the test."""
    try:
        normaliser = open_normaliser(media_type, chunks[0] if chunks else b"")
        out = b"".join(normaliser.feed(chunk) for chunk in chunks) + normaliser.finish()
    except InvalidContent as error:
        assert error.reason in DOCUMENTED_REASONS, error.reason
        assert error.message and len(error.message) < 300
        return "refused", error.reason.encode()
    return "ok", out


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    # The first chunk is the head the format is sniffed from: the service's is a
    # whole message (64 KiB or more), ample for any magic number.
    first = 16
    cuts = sorted(draw(st.sets(st.integers(first, max(len(data) - 1, first)), max_size=8)))
    bounds = [0, *(c for c in cuts if c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


PIECES = [
    b",", b'"', b'""', b"\n", b"\r", b"\r\n", b"\x00", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\xed\xa0\x80",
    b"1", b"007", b"1e999", b"-", b".", b"e", b"E", b"+", b"[", b"]", b"{", b"}", b":", b"\\", b'\\"',
    b"\\u", b"\\ud800", b"NaN", b"Infinity", b"true", b"null", b" ", b"\t", b"a", b"_", "é".encode(),
    "🌍".encode(), b'"type"', b'"coordinates"', b'"Point"', b'"FeatureCollection"', b'"features"',
]  # fmt: skip
piece = st.sampled_from(PIECES) | st.binary(min_size=1, max_size=6)
run_of = st.tuples(piece, st.integers(1, 3000)).map(lambda pair: pair[0] * pair[1])
bodies = st.lists(piece | run_of, min_size=1, max_size=25).map(b"".join)


@given(media_type=st.sampled_from(TEXT_TYPES), body=bodies, data=st.data())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_any_bytes_get_a_canonical_result_or_a_documented_refusal(
    media_type: str, body: bytes, data: st.DataObject
) -> None:
    whole = outcome(media_type, [body])
    assert outcome(media_type, data.draw(chunkings(body))) == whole
    kind, out = whole
    if kind == "ok":
        assert outcome(media_type, [out]) == whole  # canonical: a second pass changes nothing
        assert out.decode("utf-8")


# -- CSV, structured ----------------------------------------------------------

hostile_cells = st.sampled_from(
    [
        "",
        "1" * 40_000 + "x",  # the regex bait of issue 11
        "1" * 20_000 + "." + "1" * 20_000 + "e",
        "9" * 400,
        "1e999",
        "-0",
        "007",
        "NaN",
        "x\x00y",
        "a\rb",
        'q"uote',
        "multi\nline",
        "\ufeffbom",
        "é" * 100,
        "x" * caps.MAX_CSV_CELL_CHARS,
        "x" * (caps.MAX_CSV_CELL_CHARS + 1),
    ]
) | st.text(max_size=6)


short_cells = st.sampled_from(["", "1", "007", "1e999", "x\x00", "a\rb", '"', "\n", "é"]) | st.text(
    max_size=3
)


@st.composite
def hostile_tables(draw: st.DrawFn) -> list[list[str]]:
    width = draw(st.sampled_from([1, 2, 5, 40, caps.MAX_CSV_COLUMNS, caps.MAX_CSV_COLUMNS + 1]))
    header = [f"c{i}" for i in range(width)]
    # Wide tables get short cells: 2000 columns of 64 Ki characters is no test input.
    cell = hostile_cells if width <= 40 else short_cells
    rows = draw(st.lists(st.lists(cell, min_size=1, max_size=4), min_size=1, max_size=4))
    # Pad or keep ragged: a row shorter or longer than the header is a refusal.
    ragged = draw(st.booleans())
    return [header] + [row if ragged else (row * width)[:width] for row in rows]


def write_csv(table: list[list[str]], terminator: str, bom: bool) -> bytes:
    """RFC 4180, quoting every field that needs it (csv.writer leaves a lone CR bare)."""

    def field(cell: str) -> str:
        return '"' + cell.replace('"', '""') + '"' if set(cell) & set(',"\r\n') else cell

    # A lone empty cell is quoted so the row is not a blank line.
    lines = [",".join(map(field, row)) if row != [""] else '""' for row in table]
    text = "".join(line + terminator for line in lines)
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass")


def expected_refusal(table: list[list[str]]) -> str | None:
    """The reason the first problem in `table` must be refused with, if any."""
    header, *rows = table
    if len(header) > caps.MAX_CSV_COLUMNS:
        return caps.CSV_COLUMNS.reason
    for row in rows:
        if len(write_csv([row], "\n", bom=False)) - 1 > caps.MAX_CSV_RECORD_BYTES:
            return caps.CSV_RECORD.reason
        if len(row) != len(header):
            return "invalid_csv"
        if any(len(cell) > caps.MAX_CSV_CELL_CHARS for cell in row):
            return caps.CSV_CELL.reason
    return None


@given(
    table=hostile_tables(),
    terminator=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    data=st.data(),
)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_hostile_csv_tables(table: list[list[str]], terminator: str, bom: bool, data: st.DataObject) -> None:
    body = write_csv(table, terminator, bom)
    whole = outcome("text/csv", [body])
    assert outcome("text/csv", data.draw(chunkings(body))) == whole
    expected = expected_refusal(table)
    if expected is not None:
        assert whole == ("refused", expected.encode())
    else:
        kind, out = whole
        assert kind == "ok"
        assert list(csv.reader(io.StringIO(out.decode(), newline=""))) == table


def test_the_regex_bait_cell_types_its_column_as_text() -> None:
    body = b"id,reading\n1," + b"1" * 40_000 + b"x\n2,7\n"
    normaliser = open_normaliser("text/csv", body)
    out = normaliser.feed(body) + normaliser.finish()
    assert out == body
    assert isinstance(normaliser, CsvNormaliser)
    assert normaliser.columns == [("id", "integer"), ("reading", "string")]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"a,b\n1,2\n3\n", "invalid_csv"),  # ragged
        (b"a,b\r1,2\r", "invalid_csv"),  # lone CR as the only line break
        (b"a,b\n1,\x00\n", None),  # NUL is a character like any other
        (b"\xef\xbb\xbfa,b\n1,2\n", None),
        (b"a,b\n1,\xff\n", "invalid_csv"),
        (b'a,b\n"1,2\n', "invalid_csv"),
        (b"a,b\n" + b'"' * 1001 + b"\n", "invalid_csv"),
        (b",".join([b"a"] * 3) + b"\n1,2,3\n", "invalid_csv"),  # repeated name
    ],
)
def test_hostile_csv_examples(body: bytes, reason: str | None) -> None:
    kind, result = outcome("text/csv", [body])
    assert (kind, result if reason else None) == (("refused", reason.encode()) if reason else ("ok", None))


# -- JSON, structured ---------------------------------------------------------


@given(
    depth=st.integers(0, 3 * caps.MAX_JSON_DEPTH),
    media_type=st.sampled_from(["application/json", "application/x-ndjson"]),
    kinds=st.lists(st.sampled_from("[{"), min_size=1),
)
@settings(max_examples=100)
def test_json_nesting_is_accepted_to_the_cap_and_refused_past_it(
    depth: int, media_type: str, kinds: list[str]
) -> None:
    opening, closing = "", ""
    for level in range(depth):
        kind = kinds[level % len(kinds)]
        opening += "[" if kind == "[" else '{"k":'
        closing = ("]" if kind == "[" else "}") + closing
    doc = '{"d":' + opening + "0" + closing + "}"
    kind, result = outcome(media_type, [doc.encode()])
    if depth + 1 > caps.MAX_JSON_DEPTH:
        assert (kind, result) == ("refused", b"json_too_deep")
    else:
        assert kind == "ok"
        assert json.loads(result) == json.loads(doc)


@given(
    digits=st.integers(1, 3 * caps.MAX_JSON_DEPTH + caps.MAX_JSON_NUMBER_DIGITS),
    sign=st.sampled_from(["", "-"]),
    fraction=st.sampled_from(["", ".5"]),
    in_string=st.booleans(),
)
@settings(max_examples=100)
def test_json_numbers_are_accepted_to_the_cap_and_refused_past_it(
    digits: int, sign: str, fraction: str, in_string: bool
) -> None:
    number = sign + "1" + "0" * (digits - 1) + fraction
    doc = json.dumps({"n": number}) if in_string else '{"n":' + number + "}"
    kind, result = outcome("application/json", [doc.encode()])
    if digits > caps.MAX_JSON_NUMBER_DIGITS and not in_string:
        assert (kind, result) == ("refused", b"json_number_too_long")
    else:
        assert kind == "ok"
        assert json.loads(result) == json.loads(doc)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"a": NaN}', "invalid_json"),
        (b"[Infinity]", "invalid_json"),
        (b"[1e999]", "invalid_json"),
        (b"[-1e400]", "invalid_json"),
        (b'{"a": "\x00"}', "invalid_json"),  # a raw control character in a string
        (b'{"a": "\\u0000"}', None),
        (b"\xef\xbb\xbf[1]", None),
        (b"\xef\xbb\xbf\xef\xbb\xbf[1]", "invalid_json"),
        (b'["\xff"]', "invalid_json"),
        (b'["\\ud800"]', "invalid_json"),
        (b'"' + b"\\" * 100_001 + b'"', "invalid_json"),
        (b'["' + b'\\"' * 100_000, "invalid_json"),  # an unterminated string of escaped quotes
        (b"[" + b'"[",' * 50_000 + b"1]", None),
        (b"1" + b"0" * 1_000_000, "json_number_too_long"),
        (b"[" * 30_000 + b'"' + b"]" * 30_000, "json_too_deep"),
    ],
    ids=lambda v: str(v)[:24],
)
def test_hostile_json_examples(body: bytes, reason: str | None) -> None:
    kind, result = outcome("application/json", [body])
    if reason is None:
        assert kind == "ok"
    else:
        assert (kind, result) == ("refused", reason.encode())


def test_ndjson_with_hostile_lines() -> None:
    lines = [b'{"a":1}', b"", b"\r", b'{"a":' + b"[" * 70 + b"]" * 70 + b"}", b'{"b":2}']
    assert outcome("application/x-ndjson", [b"\n".join(lines)]) == ("refused", b"json_too_deep")
    assert outcome("application/x-ndjson", [b"\n".join(lines[:3] + lines[4:])]) == (
        "ok",
        b'{"a":1}\n{"b":2}\n',
    )


# -- images -------------------------------------------------------------------

IMAGES = [
    ("image/png", make_png()),
    ("image/jpeg", make_jpeg()),
    ("image/tiff", make_tiff()),
    ("image/tiff", make_bigtiff()),
]


@given(
    image=st.sampled_from(IMAGES),
    edits=st.lists(st.tuples(st.integers(0, 400), st.binary(min_size=1, max_size=8)), max_size=4),
    cut=st.integers(0, 400),
    data=st.data(),
)
@settings(max_examples=300)
def test_damaged_images_are_passed_through_or_refused(
    image: tuple[str, bytes], edits: list[tuple[int, bytes]], cut: int, data: st.DataObject
) -> None:
    media_type, original = image
    damaged = bytearray(original)
    for at, replacement in edits:
        at = at % max(len(damaged), 1)
        damaged[at : at + len(replacement)] = replacement
    body = bytes(damaged[: max(cut, 1)] if cut < len(damaged) else damaged)
    whole = outcome(media_type, [body])
    assert outcome(media_type, data.draw(chunkings(body))) == whole
    if whole[0] == "ok":
        assert whole[1] == body  # images are stored unchanged


@pytest.mark.parametrize(
    ("media_type", "body"),
    [
        # A PNG chunk claiming 2 GiB - 1 bytes, then the stream ends.
        ("image/png", b"\x89PNG\r\n\x1a\n" + b"\x7f\xff\xff\xffIDAT" + b"\x00" * 100),
        # A TIFF whose first IFD names itself as the next: a loop for readers.
        ("image/tiff", b"II*\x00\x08\x00\x00\x00\x01\x00" + b"\x00" * 12 + b"\x08\x00\x00\x00"),
        ("image/tiff", b"II*\x00\x08\x00\x00\x00\x01\x00" + b"\x00" * 12 + b"\xff\x00\x00\x00"),
        ("image/tiff", b"II*\x00\xff\xff\xff\x7f"),
        # JPEG segments whose lengths run past the end.
        ("image/jpeg", b"\xff\xd8\xff\xe0\xff\xff" + b"\x00" * 64),
        ("image/jpeg", b"\xff\xd8" + b"\xff" * 100_000),
        ("image/jpeg", b"\xff\xd8\xff\xe0\x00\x02" + b"\x00" * 100_000),
    ],
    ids=["png-lying-length", "tiff-ifd-loop", "tiff-next-ifd-past-end", "tiff-ifd-past-end",
         "jpeg-segment-past-end", "jpeg-fill", "jpeg-stray"],
)  # fmt: skip
def test_hostile_image_structures_are_corrupt(media_type: str, body: bytes) -> None:
    assert outcome(media_type, [body]) == ("refused", b"corrupt_image")


# -- every regular expression on untrusted input ------------------------------

# Each pattern the normalisers apply to input, with pathological input for it
# and the result it must give. A new pattern fails the inventory test until
# it is reviewed for linear time and added here.
REGEX_BAIT: dict[str, list[tuple[object, bool]]] = {
    # cells: possessive, no ambiguous repetition
    r"[+-]?+(?:0|[1-9][0-9]*+)": [("1" * 200_000 + "x", False), ("-" + "1" * 200_000, True)],
    r"[+-]?+(?:(?:0|[1-9][0-9]*+)(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?+[0-9]++)?+": [
        ("1" * 100_000 + "." + "1" * 100_000 + "x", False),
        ("1" * 100_000 + "e" + "1" * 100_000 + "e", False),
        ("." + "1" * 200_000, True),
    ],
    # json_text: one escape pair
    r"b'\\\\.'": [(b"\\" * 200_001, True)],
    # jpeg: one byte class
    r"b'[^\\xff]'": [(b"\xff" * 200_000, False)],
    # csv_text: bounded repetition, run only on names within the cap
    rf"[A-Za-z_][A-Za-z0-9_ .-]{{0,{caps.MAX_CSV_NAME_CHARS - 1}}}": [("a" * 200_000, False)],
    # normalise: bounded repetitions either side of a "/" neither class holds
    r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}": [
        ("a" * 100_000 + "/" + "b" * 100_000, False),
        ("a/" * 100_000, False),
    ],
}


def _patterns() -> dict[str, re.Pattern[str] | re.Pattern[bytes]]:
    from pantheon.ingest import cells, formats, normalise

    # Every format module, so a new one's patterns are in the inventory too.
    parsers = [
        importlib.import_module(f"{formats.__name__}.{m.name}")
        for m in pkgutil.iter_modules(formats.__path__)
    ]
    found: dict[str, re.Pattern[str] | re.Pattern[bytes]] = {}
    for module in (cells, normalise, caps, *parsers):
        for value in vars(module).values():
            if isinstance(value, re.Pattern):
                key = value.pattern if isinstance(value.pattern, str) else repr(value.pattern)
                found[key] = value
    return found


def test_every_regex_on_input_is_in_the_inventory() -> None:
    assert set(_patterns()) == set(REGEX_BAIT)


@pytest.mark.parametrize(
    ("pattern", "bait", "matches"),
    [(pattern, bait, matches) for pattern, cases in REGEX_BAIT.items() for bait, matches in cases],
    ids=lambda v: str(v)[:16],
)
def test_every_regex_answers_its_bait(pattern: str, bait: str | bytes, matches: bool) -> None:
    compiled = _patterns()[pattern]
    # The str patterns are used with fullmatch, the one-token bytes patterns with search/sub.
    if isinstance(bait, bytes):
        assert isinstance(compiled.pattern, bytes)
        found = re.compile(compiled.pattern, compiled.flags).search(bait) is not None
    else:
        assert isinstance(compiled.pattern, str)
        found = re.compile(compiled.pattern, compiled.flags).fullmatch(bait) is not None
    assert found is matches


def test_a_hostile_media_type_is_refused_without_being_echoed() -> None:
    with pytest.raises(InvalidContent) as caught:
        open_normaliser("a" * 100_000 + "/" + "b" * 100_000, b"x")
    assert caught.value.reason == "unsupported_media_type"
    assert "aaaa" not in caught.value.message
