"""Every cap on untrusted input: at the cap accepted, one over refused with the cap named."""

from __future__ import annotations

import json
import struct

import pytest

from pantheon.ingest import caps
from pantheon.ingest.formats.base import InvalidContent, Normaliser
from pantheon.ingest.formats.csv_text import CsvNormaliser
from pantheon.ingest.normalise import open_normaliser
from tests.samples import jpeg_segment, png_chunk

CHUNK = 65536


def run(media_type: str, data: bytes) -> tuple[Normaliser, bytes]:
    normaliser = open_normaliser(media_type, data[:CHUNK])
    out = b"".join(normaliser.feed(data[i : i + CHUNK]) for i in range(0, len(data), CHUNK))
    return normaliser, out + normaliser.finish()


def refused(media_type: str, data: bytes, cap: caps.Cap) -> InvalidContent:
    with pytest.raises(InvalidContent) as caught:
        run(media_type, data)
    error = caught.value
    assert error.reason == cap.reason
    assert f"{cap.name} = {cap.value} {cap.unit}" in error.message
    return error


def test_the_cap_table_is_complete_and_consistent() -> None:
    names = {cap.name for cap in caps.CAPS}
    reasons = {cap.reason for cap in caps.CAPS}
    assert len(names) == len(reasons) == len(caps.CAPS)
    for cap in caps.CAPS:
        assert getattr(caps, cap.name.upper()) == cap.value
        error = cap.refuse("The thing")
        assert (error.reason, error.message) == (
            cap.reason,
            f"The thing exceeds the cap {cap.name} = {cap.value} {cap.unit}.",
        )


# -- CSV ----------------------------------------------------------------------


def csv_with_row_bytes(size: int) -> bytes:
    """A 20-column CSV whose one data row is `size` bytes long (its line break excluded)."""
    columns = 20
    header = ",".join(f"c{i}" for i in range(columns)).encode() + b"\n"
    cell = (size - (columns - 1)) // columns
    cells = [b"x" * cell] * (columns - 1)
    cells.append(b"x" * (size - (columns - 1) - cell * (columns - 1)))
    row = b",".join(cells)
    assert len(row) == size
    return header + row + b"\n"


@pytest.mark.parametrize("quoted", [False, True])
def test_csv_record_bytes(quoted: bool) -> None:
    limit = caps.MAX_CSV_RECORD_BYTES

    def quote(data: bytes) -> bytes:
        if not quoted:
            return data
        # The same length with quotes: the first cell "x...x" loses two x's for its quotes.
        head, rest = data.split(b"\n", 1)
        first, tail = rest.split(b",", 1)
        return head + b"\n" + b'"' + first[2:] + b'",' + tail

    assert run("text/csv", quote(csv_with_row_bytes(limit)))[0].record_count == 1
    error = refused("text/csv", quote(csv_with_row_bytes(limit + 1)), caps.CSV_RECORD)
    assert "line 2" in error.message


def multiline_record(size: int, columns: int = 20) -> bytes:
    """A record of `columns` quoted cells full of line breaks, `size` bytes long in all."""
    inner = size - 3 * columns + 1  # each cell's two quotes, and the commas between cells
    lengths = [inner // columns] * columns
    lengths[-1] += inner - sum(lengths)
    line = b"y" * 99 + b"\n"
    cells = [b'"' + (line * (n // 100 + 1))[:n] + b'"' for n in lengths]
    record = b",".join(cells)
    assert len(record) == size
    return record


def test_a_quoted_record_over_many_lines_counts_its_line_breaks() -> None:
    limit = caps.MAX_CSV_RECORD_BYTES
    header = ",".join(f"c{i}" for i in range(20)).encode() + b"\n"
    assert run("text/csv", header + multiline_record(limit) + b"\n")[0].record_count == 1
    refused("text/csv", header + multiline_record(limit + 1) + b"\n", caps.CSV_RECORD)


@pytest.mark.parametrize("quoted", [False, True])
def test_csv_cell_chars(quoted: bool) -> None:
    limit = caps.MAX_CSV_CELL_CHARS

    def table(cell: str) -> bytes:
        shown = f'"{cell}"' if quoted else cell
        return f"a,b\n1,{shown}\n".encode()

    # Characters, not bytes: two-byte characters fill the cap in twice the bytes.
    normaliser, _ = run("text/csv", table("é" * limit))
    assert normaliser.record_count == 1
    error = refused("text/csv", table("é" * (limit + 1)), caps.CSV_CELL)
    assert "line 2" in error.message


def test_csv_cell_chars_in_the_header_row_are_the_name_cap() -> None:
    refused("text/csv", b"a" * (caps.MAX_CSV_CELL_CHARS + 1) + b"\n1\n", caps.CSV_NAME)


def test_csv_columns() -> None:
    def table(columns: int) -> bytes:
        return (",".join(f"c{i}" for i in range(columns)) + "\n" + ",".join("1" * columns) + "\n").encode()

    normaliser, _ = run("text/csv", table(caps.MAX_CSV_COLUMNS))
    assert isinstance(normaliser, CsvNormaliser)
    assert len(normaliser.columns) == caps.MAX_CSV_COLUMNS
    refused("text/csv", table(caps.MAX_CSV_COLUMNS + 1), caps.CSV_COLUMNS)


def test_csv_thirty_thousand_columns_are_refused_by_the_cap() -> None:
    refused("text/csv", b",".join(b"c%d" % i for i in range(30_000)) + b"\n", caps.CSV_COLUMNS)


def test_csv_name_chars() -> None:
    limit = caps.MAX_CSV_NAME_CHARS
    assert run("text/csv", b"a" * limit + b"\n1\n")[0].record_count == 1
    error = refused("text/csv", b"a" * (limit + 1) + b"\n1\n", caps.CSV_NAME)
    assert "column 1" in error.message


# -- NDJSON -------------------------------------------------------------------


def ndjson_line(size: int) -> bytes:
    line = b'{"a":"' + b"x" * (size - 8) + b'"}'
    assert len(line) == size
    return line


@pytest.mark.parametrize("ending", [b"\n", b""])
def test_ndjson_line_bytes(ending: bytes) -> None:
    limit = caps.MAX_NDJSON_LINE_BYTES
    assert run("application/x-ndjson", b"{}\n" + ndjson_line(limit) + ending)[0].record_count == 2
    error = refused("application/x-ndjson", b"{}\n" + ndjson_line(limit + 1) + ending, caps.NDJSON_LINE)
    assert "Line 2 " in error.message


# -- JSON ---------------------------------------------------------------------


def test_json_document_bytes() -> None:
    limit = caps.MAX_JSON_DOCUMENT_BYTES
    at_cap = b"[" + b" " * (limit - 2) + b"]"
    normaliser, out = run("application/json", at_cap)
    assert (out, normaliser.record_count) == (b"[]\n", 0)
    refused("application/json", at_cap + b" ", caps.JSON_DOCUMENT)


def nested(depth: int, innermost: bytes = b"1") -> bytes:
    # Alternate arrays and objects: both count.
    opening = b"".join(b"[" if level % 2 else b'{"k":' for level in range(depth))
    closing = b"".join(b"]" if level % 2 else b"}" for level in reversed(range(depth)))
    return opening + innermost + closing


@pytest.mark.parametrize(
    ("media_type", "wrap"),
    [
        ("application/json", lambda doc: doc),
        ("application/x-ndjson", lambda doc: b'{"ok":1}\n' + doc + b"\n"),
        ("application/geo+json", None),
    ],
    ids=["json", "ndjson", "geojson"],
)
def test_json_depth(media_type: str, wrap: object) -> None:
    limit = caps.MAX_JSON_DEPTH
    if wrap is None:  # GeoJSON: the depth sits in a feature's properties
        prefix, suffix = b'{"type":"Feature","geometry":null,"properties":', b"}"
        at_cap, over = prefix + nested(limit - 1) + suffix, prefix + nested(limit) + suffix
    else:
        assert callable(wrap)
        at_cap, over = wrap(nested(limit)), wrap(nested(limit + 1))
    run(media_type, at_cap)
    refused(media_type, over, caps.JSON_DEPTH)


@pytest.mark.parametrize("depth", [1_000, 100_000, 1_000_000])
def test_very_deep_json_is_refused_by_the_cap_not_by_recursion(depth: int) -> None:
    refused("application/json", b"[" * depth + b"]" * depth, caps.JSON_DEPTH)
    refused("application/json", b"[" * depth, caps.JSON_DEPTH)  # unbalanced too
    if 2 * depth < caps.MAX_NDJSON_LINE_BYTES:
        refused("application/x-ndjson", b'{"a":' + b"[" * depth + b"]" * depth + b"}\n", caps.JSON_DEPTH)


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    text = "[" * 10_000 + '\\"' + "{" * 10_000
    doc = json.dumps({"deep": [[text]], "escaped": "\\\\" + "[" * 100}).encode()
    _, out = run("application/json", doc)
    assert json.loads(out) == json.loads(doc)


def test_json_object_keys() -> None:
    limit = caps.MAX_JSON_OBJECT_KEYS
    doc = json.dumps({f"k{i}": i for i in range(limit)}).encode()
    assert (
        run("application/json", doc)[1]
        == json.dumps(dict(sorted((f"k{i}", i) for i in range(limit))), separators=(",", ":")).encode()
        + b"\n"
    )
    refused(
        "application/json", json.dumps({f"k{i}": i for i in range(limit + 1)}).encode(), caps.JSON_OBJECT_KEYS
    )


@pytest.mark.parametrize("escaped", [False, True])
def test_json_key_chars(escaped: bool) -> None:
    limit = caps.MAX_JSON_KEY_CHARS

    def doc(length: int) -> bytes:
        # `\n` escapes are two bytes for one character; the key must be counted decoded.
        key = "\\n" * length if escaped else "k" * length
        return b'{"' + key.encode() + b'": 1, "pad": "' + b"x" * 2000 + b'"}'

    run("application/json", doc(limit))
    run("application/x-ndjson", doc(limit))
    refused("application/json", doc(limit + 1), caps.JSON_KEY)
    refused("application/x-ndjson", doc(limit + 1), caps.JSON_KEY)


def test_a_long_string_value_is_no_long_key() -> None:
    doc = json.dumps({"k": "v" * 100_000, "n": "1" * 100_000}).encode()
    assert json.loads(run("application/json", doc)[1]) == json.loads(doc)


@pytest.mark.parametrize(
    "number",
    ["{digits}", "-{digits}", "0.{digits}", "1.5e{digits}", "{digits}.5"],
)
def test_json_number_digits(number: str) -> None:
    limit = caps.MAX_JSON_NUMBER_DIGITS
    at_cap = number.format(digits="1" * (limit - 1) + "0").encode()
    over = number.format(digits="1" * limit + "0").encode()
    if b"e1" in at_cap:  # an exponent of a hundred digits overflows: refused for that, not the cap
        with pytest.raises(InvalidContent) as caught:
            run("application/json", b"[" + at_cap + b"]")
        assert caught.value.reason == "invalid_json"
    else:
        run("application/json", b"[" + at_cap + b"]")
    refused("application/json", b"[" + over + b"]", caps.JSON_NUMBER)
    refused("application/x-ndjson", b'{"n":' + over + b"}\n", caps.JSON_NUMBER)


@pytest.mark.parametrize("digits", [4_301, 100_000, 1_000_000])
def test_huge_json_integers_are_refused_by_the_cap(digits: int) -> None:
    refused("application/json", b"1" + b"0" * digits, caps.JSON_NUMBER)
    refused("application/json", b'{"n": -1' + b"0" * digits + b"}", caps.JSON_NUMBER)


# -- GeoJSON ------------------------------------------------------------------


def test_geojson_positions() -> None:
    limit = caps.MAX_GEOJSON_POSITIONS

    def doc(positions: int) -> bytes:
        return b'{"type":"MultiPoint","coordinates":[' + b",".join([b"[0,0]"] * positions) + b"]}"

    assert run("application/geo+json", doc(limit))[0].record_count == 1
    refused("application/geo+json", doc(limit + 1), caps.GEOJSON_POSITIONS)


def test_geojson_positions_count_across_features() -> None:
    half = caps.MAX_GEOJSON_POSITIONS // 2 + 1
    line = {"type": "LineString", "coordinates": [[0, 0]] * half}
    feature = {"type": "Feature", "properties": None, "geometry": line}
    doc = json.dumps({"type": "FeatureCollection", "features": [feature, feature]}).encode()
    refused("application/geo+json", doc, caps.GEOJSON_POSITIONS)


# -- images -------------------------------------------------------------------


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    # The walker checks structure, not pixels: one IDAT chunk is enough.
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"x") + png_chunk(b"IEND", b"")
    )


def jpeg(width: int, height: int) -> bytes:
    frame = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    return (
        b"\xff\xd8"
        + jpeg_segment(0xC0, frame)
        + jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + b"\x3f"
        + b"\xff\xd9"
    )


@pytest.mark.parametrize(("media_type", "make"), [("image/png", png), ("image/jpeg", jpeg)])
def test_image_pixels(media_type: str, make: object) -> None:
    assert callable(make)
    side = 2**14  # 16384 x 16384 is the cap exactly
    assert side * side == caps.MAX_IMAGE_PIXELS
    run(media_type, make(side, side))
    refused(media_type, make(side, side + 1), caps.IMAGE_PIXELS)
    if media_type == "image/png":
        refused(media_type, make(2**31 - 1, 2**31 - 1), caps.IMAGE_PIXELS)
    else:
        refused(media_type, make(65535, 65535), caps.IMAGE_PIXELS)


def test_png_dimensions_past_the_spec_are_corrupt() -> None:
    with pytest.raises(InvalidContent) as caught:
        run("image/png", png(2**31, 1))
    assert caught.value.reason == "corrupt_image"


def test_a_jpeg_frame_header_too_short_for_its_dimensions_is_corrupt() -> None:
    data = b"\xff\xd8" + jpeg_segment(0xC0, b"\x08\x00") + b"\xff\xd9"
    with pytest.raises(InvalidContent) as caught:
        run("image/jpeg", data)
    assert caught.value.reason == "corrupt_image"


def test_a_jpeg_frame_header_split_across_chunks_is_still_read() -> None:
    data = jpeg(2**14, 2**14 + 1)
    normaliser = open_normaliser("image/jpeg", data)
    with pytest.raises(InvalidContent) as caught:
        for byte in range(len(data)):
            normaliser.feed(data[byte : byte + 1])
        normaliser.finish()
    assert caught.value.reason == caps.IMAGE_PIXELS.reason
