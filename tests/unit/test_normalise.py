"""Upload normalisation: format detection, rejection of broken content, canonical text."""

from __future__ import annotations

import csv
import io
import itertools
import json
import pickle
import struct

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.errors import InvalidArgument
from pantheon.ingest.normalise import (
    MAX_JSON_BYTES,
    CsvNormaliser,
    InvalidContent,
    Normaliser,
    open_normaliser,
)
from tests.samples import jpeg_segment, make_bigtiff, make_jpeg, make_png, make_tiff, png_chunk

# 1 byte splits every multi-byte character and marker; 7 is coprime with all the
# field sizes the image walkers collect; None sends the object whole.
CHUNK_SIZES = [1, 7, None]


def chunked(data: bytes, size: int | None) -> list[bytes]:
    step = size or max(len(data), 1)
    return [data[i : i + step] for i in range(0, len(data), step)]


def run_chunks(media_type: str, chunks: list[bytes]) -> tuple[Normaliser, bytes]:
    normaliser = open_normaliser(media_type, chunks[0] if chunks else b"")
    out = b"".join(normaliser.feed(chunk) for chunk in chunks)
    return normaliser, out + normaliser.finish()


def run(media_type: str, data: bytes, size: int | None = None) -> tuple[Normaliser, bytes]:
    return run_chunks(media_type, chunked(data, size))


def reject(media_type: str, data: bytes, size: int | None = None) -> InvalidContent:
    with pytest.raises(InvalidContent) as caught:
        run(media_type, data, size)
    return caught.value


PNG, JPEG, TIFF = make_png(), make_jpeg(), make_tiff()
IMAGES = [
    ("image/png", PNG, md.FORMAT_PNG, "png"),
    ("image/jpeg", JPEG, md.FORMAT_JPEG, "jpg"),
    ("image/tiff", TIFF, md.FORMAT_TIFF, "tif"),
]

# --- media type selection ----------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "data", "fmt"),
    [
        ("application/json", b"{}", md.FORMAT_JSON),
        ("Application/JSON; charset=UTF-8", b"{}", md.FORMAT_JSON),
        ("application/geo+json", b'{"type":"Point","coordinates":[0,0]}', md.FORMAT_GEOJSON),
        ("application/x-ndjson", b"{}\n", md.FORMAT_NDJSON),
        ("application/ndjson", b"{}\n", md.FORMAT_NDJSON),
        ("application/jsonl", b"{}\n", md.FORMAT_NDJSON),
        ("application/x-jsonlines", b"{}\n", md.FORMAT_NDJSON),
        ("text/csv; header=present", b"a\n1\n", md.FORMAT_CSV),
        ("application/octet-stream", PNG, md.FORMAT_PNG),
        ("", JPEG, md.FORMAT_JPEG),
        ("application/octet-stream", make_tiff(">"), md.FORMAT_TIFF),
    ],
)
def test_declared_type_and_bytes_pick_the_format(media_type: str, data: bytes, fmt: int) -> None:
    normaliser, _ = run(media_type, data)
    assert normaliser.format == fmt


@pytest.mark.parametrize(
    "media_type", ["text/plain", "application/xml", "image/gif", "multipart/form-data", "x"]
)
def test_unsupported_media_types_are_rejected(media_type: str) -> None:
    error = reject(media_type, b'{"a": 1}')
    assert error.reason == "unsupported_media_type"


def test_unsupported_media_type_message_does_not_echo_odd_input() -> None:
    error = reject("text/<script>alert(1)</script>", b"x")
    assert error.reason == "unsupported_media_type"
    assert "script" not in error.message


def test_untyped_content_that_is_not_an_image_is_unsupported() -> None:
    assert reject("application/octet-stream", b'{"a": 1}').reason == "unsupported_media_type"
    assert reject("", b"a,b\n1,2\n").reason == "unsupported_media_type"


# --- images --------------------------------------------------------------------------


@pytest.mark.parametrize(("media_type", "data", "fmt", "extension"), IMAGES)
@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_images_pass_through_unchanged(
    media_type: str, data: bytes, fmt: int, extension: str, size: int | None
) -> None:
    normaliser, out = run(media_type, data, size)
    assert out == data
    assert (normaliser.format, normaliser.media_type) == (fmt, media_type)
    assert (normaliser.extension, normaliser.record_count) == (extension, 0)


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize("data", [make_tiff(">"), make_tiff("<", ifd_at_end=True), make_bigtiff()], ids=str)
def test_tiff_variants_are_accepted(data: bytes, size: int | None) -> None:
    assert run("image/tiff", data, size)[1] == data


@pytest.mark.parametrize(
    ("media_type", "data"),
    [
        ("image/jpeg", PNG),
        ("image/png", JPEG),
        ("image/tiff", PNG),
        ("image/png", b"hello, world"),
        ("image/jpeg", b'{"a": 1}'),
    ],
)
@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_bytes_that_contradict_the_declared_image_type_are_a_mismatch(
    media_type: str, data: bytes, size: int | None
) -> None:
    assert reject(media_type, data, size).reason == "format_mismatch"


@pytest.mark.parametrize(
    ("media_type", "data"),
    [("text/csv", PNG), ("application/json", JPEG), ("application/x-ndjson", TIFF)],
)
def test_an_image_declared_as_text_is_a_mismatch(media_type: str, data: bytes) -> None:
    # Real heads are whole chunks (64 KiB or more), ample for any magic number.
    assert reject(media_type, data).reason == "format_mismatch"


@pytest.mark.parametrize(
    ("media_type", "data"),
    [
        ("image/png", b"\x89PNX\r\n\x1a\n" + PNG[8:]),
        ("image/jpeg", b"\xff\xd9\xff\xe0"),
        ("image/tiff", b"II*\x01\x08\x00"),
        ("image/tiff", b"MI\x00*\x00\x08"),
    ],
)
def test_a_mismatch_found_after_a_short_head_is_still_a_mismatch(media_type: str, data: bytes) -> None:
    # A one-byte head could start the declared format; the walker finds out later.
    assert reject(media_type, data, size=1).reason == "format_mismatch"


@pytest.mark.parametrize(("media_type", "data", "fmt", "extension"), IMAGES)
def test_truncated_images_are_corrupt(media_type: str, data: bytes, fmt: int, extension: str) -> None:
    # Any cut into the header or structure is caught; the TIFF pixel byte sits
    # past its IFD and is not examined.
    last = len(data) - 1 if fmt != md.FORMAT_TIFF else len(data) - 1 - 1
    for cut in range(4, last + 1):
        with pytest.raises(InvalidContent) as caught:
            run(media_type, data[:cut], 7)
        assert caught.value.reason == "corrupt_image", cut


def test_png_with_a_flipped_crc_byte_is_corrupt() -> None:
    broken = bytearray(PNG)
    broken[8 + 8 + 13] ^= 0x01  # first byte of the IHDR CRC
    error = reject("image/png", bytes(broken))
    assert error.reason == "corrupt_image"
    assert "CRC" in error.message


def test_png_with_a_flipped_data_byte_is_corrupt() -> None:
    broken = bytearray(PNG)
    broken[PNG.index(b"IDAT") + 6] ^= 0x40
    assert reject("image/png", bytes(broken), 1).reason == "corrupt_image"


@pytest.mark.parametrize(
    "data",
    [
        PNG + b"\x00",
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IDAT", b"x") + png_chunk(b"IEND", b""),
        PNG.replace(png_chunk(b"IDAT", PNG[PNG.index(b"IDAT") + 4 : -16]), b""),
    ],
    ids=["trailing-garbage", "no-ihdr", "no-idat"],
)
def test_structurally_broken_pngs_are_corrupt(data: bytes) -> None:
    assert reject("image/png", data).reason == "corrupt_image"


@pytest.mark.parametrize(
    "data",
    [
        JPEG + b"\x00",
        JPEG[:-2],
        # An end-of-image marker inside a metadata segment does not end the image.
        make_jpeg(app1=b"Exif\x00\x00\xff\xd9")[: JPEG.index(b"\xff\xdb") + 12],
        b"\xff\xd8" + jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x3f\xff\xd9",
        b"\xff\xd8\xff\xe0\x00\x01\xff\xd9",
    ],
    ids=["after-eoi", "no-eoi", "eoi-inside-segment", "scan-before-frame", "bad-length"],
)
def test_structurally_broken_jpegs_are_corrupt(data: bytes) -> None:
    assert reject("image/jpeg", data).reason == "corrupt_image"


def test_jpeg_with_stray_bytes_between_segments_is_accepted_like_libjpeg_does() -> None:
    at = JPEG.index(b"\xff\xdb")
    data = JPEG[:at] + b"\x00\x12" + JPEG[at:]
    assert run("image/jpeg", data, 1)[1] == data


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_jpeg_scan_with_stuffed_bytes_and_restart_markers_is_accepted(size: int | None) -> None:
    data = make_jpeg(scan=b"\x12\xff\x00\x34\xff\xd0\x56\xff\xff\xd1\x3f", app1=b"x\xff\xd9y")
    assert run("image/jpeg", data, size)[1] == data


@pytest.mark.parametrize(
    "data",
    [
        TIFF[:4] + struct.pack("<I", 4) + TIFF[8:],
        TIFF[:4] + struct.pack("<I", len(TIFF) + 10) + TIFF[8:],
        TIFF[:8] + b"\x00\x00" + TIFF[10:],
        TIFF[:8] + b"\xff\x00" + TIFF[10:],
        b"II+\x00" + struct.pack("<HHQ", 4, 0, 16) + make_bigtiff()[16:],
    ],
    ids=["ifd-in-header", "ifd-past-end", "no-entries", "entries-past-end", "bad-bigtiff"],
)
def test_structurally_broken_tiffs_are_corrupt(data: bytes) -> None:
    assert reject("image/tiff", data, 3).reason == "corrupt_image"


# --- empty bodies -------------------------------------------------------------------

ALL_DECLARED = [
    "application/json",
    "application/geo+json",
    "application/x-ndjson",
    "text/csv",
    "image/png",
    "image/jpeg",
    "image/tiff",
    "application/octet-stream",
    "",
]


@pytest.mark.parametrize("media_type", ALL_DECLARED)
def test_an_empty_body_is_rejected_for_every_format(media_type: str) -> None:
    assert reject(media_type, b"").reason == "empty_body"


@pytest.mark.parametrize(
    ("media_type", "data"),
    [
        ("application/json", b" \r\n\t"),
        ("application/geo+json", b"\xef\xbb\xbf\n"),
        ("application/x-ndjson", b"\n\r\n  \n"),
        ("text/csv", b"\n\r\n"),
        ("text/csv", b"a,b\n"),
    ],
)
def test_a_body_without_records_is_empty(media_type: str, data: bytes) -> None:
    assert reject(media_type, data).reason == "empty_body"


@pytest.mark.parametrize(("media_type", "data", "fmt", "extension"), IMAGES)
def test_an_image_normaliser_never_fed_reports_an_empty_body(
    media_type: str, data: bytes, fmt: int, extension: str
) -> None:
    normaliser = open_normaliser(media_type, data)
    with pytest.raises(InvalidContent) as caught:
        normaliser.finish()
    assert caught.value.reason == "empty_body"


# --- JSON ---------------------------------------------------------------------------

DOC = '\ufeff{ "z": [1, 2.5, -0.0, 1e3, true, null], "a": {"é": "東京 🌍", "b": "\\u00e9"} }\n'


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_json_is_rewritten_canonically(size: int | None) -> None:
    normaliser, out = run("application/json", DOC.encode(), size)
    assert out == '{"a":{"b":"é","é":"東京 🌍"},"z":[1,2.5,-0.0,1000.0,true,null]}\n'.encode()
    assert (normaliser.media_type, normaliser.extension) == ("application/json", "json")
    assert normaliser.record_count == 1


def test_a_top_level_json_array_counts_its_items() -> None:
    normaliser, out = run("application/json", b'[{"b": 1, "a": 2}, 3, "x"]')
    assert out == b'[{"a":2,"b":1},3,"x"]\n'
    assert normaliser.record_count == 3


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b"[1e400]",
        b'{"a": 1, "b": 2, "a": 3}',
        b'{"a": 1,}',
        b"{'a': 1}",
        b'{"a": 1} {"b": 2}',
        b'{"a": "\xff"}',
        b'["\\ud800"]',
    ],
    ids=["nan", "infinity", "overflow", "dup-key", "trailing-comma", "quotes", "two-docs",
         "bad-utf8", "lone-surrogate"],
)  # fmt: skip
def test_invalid_json_is_rejected(data: bytes) -> None:
    assert reject("application/json", data, 7).reason == "invalid_json"


@pytest.mark.parametrize(
    ("data", "reason", "cap"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "json_too_deep", "max_json_depth = 64"),
        (b"1" * 5000, "json_number_too_long", "max_json_number_digits = 100"),
    ],
)
def test_json_over_a_cap_names_the_cap(data: bytes, reason: str, cap: str) -> None:
    error = reject("application/json", data, 7)
    assert (error.reason, cap in error.message) == (reason, True)


def test_json_errors_name_the_position_and_not_the_content() -> None:
    error = reject("application/json", b'{\n  "secret-token-123": tru\n}')
    assert error.reason == "invalid_json"
    assert "line 2" in error.message
    assert "secret" not in error.message


def test_duplicate_key_message_names_a_short_key() -> None:
    error = reject("application/json", b'{"k' + b"x" * 500 + b'": 1, "k' + b"x" * 500 + b'": 2}')
    assert "duplicate key" in error.message
    assert len(error.message) < 120


def test_json_over_the_size_cap_is_too_large() -> None:
    assert MAX_JSON_BYTES == 16 * 2**20
    normaliser = open_normaliser("application/json", b" ")
    block = b" " * (4 * 2**20)
    for _ in range(MAX_JSON_BYTES // len(block)):
        normaliser.feed(block)
    with pytest.raises(InvalidContent) as caught:
        normaliser.feed(b"1")
    assert caught.value.reason == "json_too_large"
    assert "max_json_document_bytes = 16777216 bytes" in caught.value.message


# --- GeoJSON ------------------------------------------------------------------------


def feature(geometry: object) -> dict[str, object]:
    return {"type": "Feature", "properties": {"name": "gauge"}, "geometry": geometry}


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_geojson_feature_collection_counts_features(size: int | None) -> None:
    doc = {
        "type": "FeatureCollection",
        "features": [
            feature({"type": "Point", "coordinates": [16.37, 48.21, 171.0]}),
            feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}),
            feature(None),
        ],
    }
    normaliser, out = run("application/geo+json", json.dumps(doc).encode(), size)
    assert json.loads(out) == doc
    assert (normaliser.format, normaliser.extension) == (md.FORMAT_GEOJSON, "geojson")
    assert normaliser.record_count == 3


@pytest.mark.parametrize(
    "doc",
    [
        {"type": "Feature", "properties": None, "geometry": None},
        {"type": "MultiPolygon", "coordinates": [[[[-180, -90], [180, 90], [0, 0]]]]},
        {
            "type": "GeometryCollection",
            "geometries": [
                {"type": "LineString", "coordinates": [[1, 2], [3, 4]]},
                {"type": "GeometryCollection", "geometries": []},
            ],
        },
    ],
)
def test_other_geojson_objects_count_as_one_record(doc: dict[str, object]) -> None:
    assert run("application/geo+json", json.dumps(doc).encode())[0].record_count == 1


@pytest.mark.parametrize(
    "doc",
    [
        {"type": "Topology"},
        {"features": []},
        {"type": "FeatureCollection"},
        {"type": "FeatureCollection", "features": [{"type": "Point", "coordinates": [0, 0]}]},
        {"type": "Point", "coordinates": [181, 0]},
        {"type": "Point", "coordinates": [0, -90.5]},
        {"type": "Point", "coordinates": [0]},
        {"type": "Point", "coordinates": [True, 0]},
        {"type": "LineString", "coordinates": [0, 0]},
        {"type": "Polygon", "coordinates": [[[0, 0], [200, 0], [0, 0]]]},
        {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [0, 91]}]},
        feature({"type": "Circle"}),
        {"type": "Feature", "properties": [1], "geometry": None},
        [1, 2],
    ],
)
def test_invalid_geojson_is_rejected(doc: object) -> None:
    assert reject("application/geo+json", json.dumps(doc).encode()).reason == "invalid_geojson"


def test_geojson_that_is_not_json_is_invalid_json() -> None:
    assert reject("application/geo+json", b'{"type": "Point",').reason == "invalid_json"


# --- NDJSON -------------------------------------------------------------------------

NDJSON = '\ufeff{"b": 1, "a": "é"}\r\n\n{"x": [1, 2]}\n  \n{"k": "🌍"}'


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_ndjson_is_rewritten_line_by_line(size: int | None) -> None:
    normaliser, out = run("application/x-ndjson", NDJSON.encode(), size)
    assert out == '{"a":"é","b":1}\n{"x":[1,2]}\n{"k":"🌍"}\n'.encode()
    assert normaliser.record_count == 3
    assert (normaliser.media_type, normaliser.extension) == ("application/x-ndjson", "ndjson")


def test_ndjson_output_streams_before_the_end() -> None:
    normaliser = open_normaliser("application/x-ndjson", b"{")
    assert normaliser.feed(b'{"a": 1}\n{"b"') == b'{"a":1}\n'
    assert normaliser.feed(b": 2}") == b""
    assert normaliser.finish() == b'{"b":2}\n'


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b'{"a": 1}\n\n{"a": }\n{"b": 2}\n', 3),
        (b'{"a": 1}\n[1, 2]\n', 2),
        (b'{"a": 1}\n"text"', 2),
        (b'{"a": NaN}\n', 1),
        (b'{"a": 1, "a": 2}\n', 1),
        (b'{"a": 1}\n{"a": "\xc3"}\n', 2),
    ],
)
@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_a_bad_ndjson_line_is_named(data: bytes, line: int, size: int | None) -> None:
    error = reject("application/x-ndjson", data, size)
    assert error.reason == "invalid_ndjson"
    assert f"Line {line} " in error.message


def test_an_ndjson_line_over_one_mebibyte_is_rejected_without_waiting_for_its_end() -> None:
    normaliser = open_normaliser("application/x-ndjson", b"{")
    normaliser.feed(b'{"a": 1}\n')
    with pytest.raises(InvalidContent) as caught:
        normaliser.feed(b'{"a": "' + b"x" * 2**20)
    assert caught.value.reason == "line_too_long"
    assert "Line 2 " in caught.value.message


# --- CSV ----------------------------------------------------------------------------

CSV_TEXT = (
    "\ufeffid,temp,ok,note,empty\r\n"
    '1,20.5,true,"hello, world",\r\n'
    "\r\n"
    '-2,3,FALSE,"multi\r\nline ""quoted""",\r\n'
    "+3,1e-3,false,東京,\r\n"
)


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_csv_is_rewritten_with_typed_columns(size: int | None) -> None:
    normaliser, out = run("text/csv", CSV_TEXT.encode(), size)
    assert out.decode() == (
        "id,temp,ok,note,empty\n"
        '1,20.5,true,"hello, world",\n'
        '-2,3,FALSE,"multi\r\nline ""quoted""",\n'
        "+3,1e-3,false,東京,\n"
    )
    assert normaliser.record_count == 3
    assert (normaliser.media_type, normaliser.extension) == ("text/csv", "csv")
    assert isinstance(normaliser, CsvNormaliser)
    assert normaliser.columns == [
        ("id", "integer"),
        ("temp", "number"),
        ("ok", "boolean"),
        ("note", "string"),
        ("empty", "string"),
    ]


def test_empty_cells_do_not_change_a_column_type() -> None:
    normaliser, _ = run("text/csv", b"n,b\n,\n7,\n,true\n")
    assert isinstance(normaliser, CsvNormaliser)
    assert normaliser.columns == [("n", "integer"), ("b", "boolean")]


@pytest.mark.parametrize(
    ("cells", "kind"),
    [
        (["1", "-20", "+3"], "integer"),
        (["1", "2.5"], "number"),
        (["2.5", "7"], "number"),
        ([".5", "1e3", "-1E-2"], "number"),
        (["true", "False", "TRUE"], "boolean"),
        (["1", "true"], "string"),
        (["true", "1"], "string"),
        (["1.5", "x"], "string"),
        (["٣"], "string"),  # a digit, but not an ASCII one
        (["nan"], "string"),
        (["1_000"], "string"),
        ([" 1"], "string"),
        (["007"], "string"),  # a code: leading zeros keep a cell text (pantheon.ingest.cells)
        (["1", "007"], "string"),
        (["1.5", "1e999"], "string"),  # overflows to infinity: text
        (["9223372036854775807"], "integer"),
        (["9223372036854775808"], "string"),  # past int64: an identifier
    ],
)
def test_csv_column_types_widen_to_fit_every_cell(cells: list[str], kind: str) -> None:
    normaliser, _ = run("text/csv", ("v\n" + "\n".join(cells) + "\n").encode())
    assert isinstance(normaliser, CsvNormaliser)
    assert normaliser.columns == [("v", kind)]


def test_csv_field_with_a_carriage_return_survives_a_second_pass() -> None:
    _, first = run("text/csv", b'a,b\n"x\ry",z\n')
    _, second = run("text/csv", first)
    assert first == second == b'a,b\n"x\ry","z"\n'


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"a,b,c\n1,2,3\n4,5\n", ["Row 2", "line 3"]),
        (b"a,b\n1,2,3\n", ["Row 1", "line 2"]),
        (b"1,2,3\n4,5,6\n", ["missing", "header"]),
        (b"a,a\n1,2\n", ["repeated"]),
        (b"a,,c\n1,2,3\n", ["column 2"]),
        (b"id,2nd\n1,2\n", ["column 2"]),
        (b'a,b\n1,"unterminated\n2,3\n', ["line 2", "unterminated"]),
        (b'a,b\n"x"y,2\n', ["line 2"]),
        (b"a,b\n1,\xff\n", ["Line 2", "UTF-8"]),
    ],
)
@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_invalid_csv_is_rejected_with_a_location(data: bytes, words: list[str], size: int | None) -> None:
    error = reject("text/csv", data, size)
    assert error.reason == "invalid_csv"
    for word in words:
        assert word in error.message


@pytest.mark.parametrize("size", [2**16 + 1, 2**17 + 1])  # over the cap; over csv's own field limit
def test_an_oversized_csv_field_is_rejected_quoted_or_not(size: int) -> None:
    big = b"x" * size
    assert reject("text/csv", b"a,b\n1," + big + b"\n").reason == "cell_too_long"
    assert reject("text/csv", b'a,b\n1,"' + big + b'"\n').reason == "cell_too_long"


def test_a_csv_header_name_longer_than_64_characters_is_rejected() -> None:
    assert reject("text/csv", b"a" * 65 + b"\n1\n").reason == "column_name_too_long"
    assert run("text/csv", b"a" * 64 + b"\n1\n")[0].record_count == 1


def test_csv_output_streams_row_by_row() -> None:
    normaliser = open_normaliser("text/csv", b"a")
    assert normaliser.feed(b'a,b\n1,"x\n') == b"a,b\n"
    assert normaliser.feed(b'y"\n2,') == b'1,"x\ny"\n'
    assert normaliser.finish() == b"2,\n"


# --- the error type -------------------------------------------------------------------


def test_invalid_content_carries_reason_and_message() -> None:
    error = InvalidContent("invalid_csv", "Row 3 is ragged.")
    assert isinstance(error, InvalidArgument)
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.reason, error.message, str(error)) == ("invalid_csv", *["Row 3 is ragged."] * 2)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.message) == (error.reason, error.message)


# --- properties ---------------------------------------------------------------------


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.sets(st.integers(1, max(len(data) - 1, 1)), max_size=12)))
    bounds = [0, *(c for c in cuts if c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_ .-]{0,10}", fullmatch=True)
cells = st.text(st.characters(codec="utf-8"), max_size=8) | st.sampled_from(
    ["", "1", "-2.5", "true", '"', ",", "\r\n", "\r", "\n", " "]
)


@st.composite
def tables(draw: st.DrawFn) -> list[list[str]]:
    header = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    rows = draw(st.lists(st.lists(cells, min_size=len(header), max_size=len(header)), min_size=1))
    return [header, *rows]


def write_csv(table: list[list[str]], terminator: str) -> bytes:
    """RFC 4180 written independently of the csv module, as another producer would."""

    def field(cell: str) -> str:
        return '"' + cell.replace('"', '""') + '"' if set(cell) & set(',"\r\n') else cell

    # A lone empty cell is quoted so the row is not a blank line.
    lines = [",".join(map(field, row)) if row != [""] else '""' for row in table]
    return "".join(line + terminator for line in lines).encode()


@given(table=tables(), terminator=st.sampled_from(["\n", "\r\n"]), data=st.data())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_csv_tables_round_trip_and_chunking_never_changes_output(
    table: list[list[str]], terminator: str, data: st.DataObject
) -> None:
    original = write_csv(table, terminator)
    normaliser, canonical = run("text/csv", original)
    assert list(csv.reader(io.StringIO(canonical.decode(), newline=""))) == table
    assert normaliser.record_count == len(table) - 1
    assert run("text/csv", canonical)[1] == canonical
    assert run_chunks("text/csv", data.draw(chunkings(original)))[1] == canonical


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(value=json_values, indent=st.sampled_from([None, 2]), data=st.data())
@settings(max_examples=150)
def test_json_canonical_form_is_stable_and_chunking_never_changes_it(
    value: object, indent: int | None, data: st.DataObject
) -> None:
    original = json.dumps(value, indent=indent, ensure_ascii=indent is None).encode()
    _, canonical = run("application/json", original)
    assert json.loads(canonical) == value
    assert run("application/json", canonical)[1] == canonical
    assert run_chunks("application/json", data.draw(chunkings(original)))[1] == canonical


@given(
    records=st.lists(st.dictionaries(st.text(), json_values, max_size=3), min_size=1, max_size=5),
    data=st.data(),
)
@settings(max_examples=100)
def test_ndjson_chunking_never_changes_output(records: list[dict[str, object]], data: st.DataObject) -> None:
    original = "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()
    normaliser, canonical = run("application/x-ndjson", original)
    assert [json.loads(line) for line in canonical.splitlines()] == records
    assert normaliser.record_count == len(records)
    assert run_chunks("application/x-ndjson", data.draw(chunkings(original)))[1] == canonical


@given(data=st.data())
@settings(max_examples=100)
def test_any_chunking_of_an_image_passes_it_through(data: st.DataObject) -> None:
    media_type, image, _, _ = data.draw(st.sampled_from(IMAGES))
    assert run_chunks(media_type, data.draw(chunkings(image)))[1] == image


@given(position=st.integers(0, len(PNG) - 1), flip=st.integers(1, 255), size=st.integers(1, 64))
@settings(max_examples=200)
def test_any_single_byte_change_to_a_png_is_caught(position: int, flip: int, size: int) -> None:
    broken = bytearray(PNG)
    broken[position] ^= flip
    with pytest.raises(InvalidContent) as caught:
        run("image/png", bytes(broken), size)
    assert caught.value.reason in {"corrupt_image", "format_mismatch"}
