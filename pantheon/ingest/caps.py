"""Caps on untrusted text: every limit an uploaded object or record document is held to.

One module, so the README, the OpenAPI description and the code cannot drift:
each cap is a named constant with its reason, and `CAPS` lists them all for
documentation and tests. An input over a cap raises `InvalidContent` whose
`reason` is the cap's reason code and whose message names the cap and its
value, e.g. "Row 3 (line 4), column 2 exceeds the cap max_csv_cell_chars =
65536 characters.". Nothing over a cap is stored or published.

The caps bound the work a single upload can cost: every parser that reads
these inputs is linear in its input (no backtracking regular expression, no
quadratic duplicate check), and the caps keep even the linear constant small
enough that one request cannot hold a worker for long.
"""

from __future__ import annotations

from dataclasses import dataclass

from pantheon.ingest.formats.base import InvalidContent

# -- CSV (objects, and the CSV record documents of /v1/records) -------------

#: Longest CSV record (one or more physical lines, quoted newlines included),
#: in bytes. It is all a streaming CSV normaliser holds at once.
MAX_CSV_RECORD_BYTES = 2**20
#: Longest CSV cell, in characters (after unquoting).
MAX_CSV_CELL_CHARS = 2**16
#: Most columns in one CSV: SQLite's default SQLITE_MAX_COLUMN, a width any
#: database or dataframe loads.
MAX_CSV_COLUMNS = 2_000
#: Longest CSV column name, in characters.
MAX_CSV_NAME_CHARS = 64
#: Most cells (rows x columns) in one CSV record document: each cell becomes
#: a typed payload value, in memory and in its record's event; 10000 records
#: of 100 values each fit.
MAX_RECORD_DOCUMENT_CELLS = 1_000_000

# -- NDJSON -----------------------------------------------------------------

#: Longest NDJSON line, in bytes: one line is all the normaliser holds.
MAX_NDJSON_LINE_BYTES = 2**20

# -- JSON and GeoJSON (documents, NDJSON lines and record documents) ----------

#: Largest JSON or GeoJSON document, in bytes. A document is parsed whole
#: (about 30 bytes of memory per byte of input in the worst case, and a second
#: or two of CPU), so it is capped; bigger data streams as NDJSON or CSV.
MAX_JSON_DOCUMENT_BYTES = 16 * 2**20
#: Deepest nesting of arrays and objects. GeoJSON needs 7 at most; checked by
#: a linear pre-scan, never by waiting for a RecursionError.
MAX_JSON_DEPTH = 64
#: Most members in one JSON object.
MAX_JSON_OBJECT_KEYS = 10_000
#: Longest JSON object key, in characters.
MAX_JSON_KEY_CHARS = 1_024
#: Most digits in a row in one JSON number (integer, fraction or exponent
#: part). Converting a long digit string to an integer costs time quadratic in
#: its length; 100 digits is three times a 128-bit integer.
MAX_JSON_NUMBER_DIGITS = 100

# -- GeoJSON ----------------------------------------------------------------

#: Most positions (coordinate tuples) in one GeoJSON document.
MAX_GEOJSON_POSITIONS = 1_000_000

# -- Images -------------------------------------------------------------------

#: Most pixels (width x height) a PNG or JPEG may declare. Images are stored
#: unchanged, but a reader that decodes a 2^31 x 2^31 PNG of a few kilobytes
#: would need exabytes; 2^28 is 16384 x 16384. TIFF/GeoTIFF rasters, which
#: are tiled and read in windows, are not held to it.
MAX_IMAGE_PIXELS = 2**28


@dataclass(frozen=True)
class Cap:
    """One cap as callers see it: its public name, value, unit and reason code."""

    name: str
    value: int
    unit: str
    reason: str
    applies_to: str

    def describe(self, subject: str) -> str:
        """`subject` (e.g. "Line 3") is over this cap, said without a final stop."""
        return f"{subject} exceeds the cap {self.name} = {self.value} {self.unit}"

    def refuse(self, subject: str) -> InvalidContent:
        """The error for `subject` (a sentence start, e.g. "Line 3") being over this cap."""
        return InvalidContent(self.reason, self.describe(subject) + ".")


CSV_RECORD = Cap("max_csv_record_bytes", MAX_CSV_RECORD_BYTES, "bytes", "record_too_long", "one CSV record")
CSV_CELL = Cap("max_csv_cell_chars", MAX_CSV_CELL_CHARS, "characters", "cell_too_long", "one CSV cell")
CSV_COLUMNS = Cap("max_csv_columns", MAX_CSV_COLUMNS, "columns", "too_many_columns", "the CSV header")
CSV_NAME = Cap(
    "max_csv_name_chars", MAX_CSV_NAME_CHARS, "characters", "column_name_too_long", "one CSV column name"
)
RECORD_DOCUMENT_CELLS = Cap(
    "max_record_document_cells", MAX_RECORD_DOCUMENT_CELLS, "cells", "too_many_cells", "a CSV record document"
)
NDJSON_LINE = Cap("max_ndjson_line_bytes", MAX_NDJSON_LINE_BYTES, "bytes", "line_too_long", "one NDJSON line")
JSON_DOCUMENT = Cap(
    "max_json_document_bytes",
    MAX_JSON_DOCUMENT_BYTES,
    "bytes",
    "json_too_large",
    "a JSON or GeoJSON document",
)
JSON_DEPTH = Cap("max_json_depth", MAX_JSON_DEPTH, "levels", "json_too_deep", "any JSON text")
JSON_OBJECT_KEYS = Cap(
    "max_json_object_keys", MAX_JSON_OBJECT_KEYS, "keys", "json_too_many_keys", "one JSON object"
)
JSON_KEY = Cap("max_json_key_chars", MAX_JSON_KEY_CHARS, "characters", "json_key_too_long", "one JSON key")
JSON_NUMBER = Cap(
    "max_json_number_digits", MAX_JSON_NUMBER_DIGITS, "digits", "json_number_too_long", "one JSON number"
)
GEOJSON_POSITIONS = Cap(
    "max_geojson_positions", MAX_GEOJSON_POSITIONS, "positions", "too_many_positions", "a GeoJSON document"
)
IMAGE_PIXELS = Cap("max_image_pixels", MAX_IMAGE_PIXELS, "pixels", "image_too_large", "a PNG or JPEG image")

#: Every cap, in documentation order.
CAPS: tuple[Cap, ...] = (
    CSV_RECORD,
    CSV_CELL,
    CSV_COLUMNS,
    CSV_NAME,
    RECORD_DOCUMENT_CELLS,
    NDJSON_LINE,
    JSON_DOCUMENT,
    JSON_DEPTH,
    JSON_OBJECT_KEYS,
    JSON_KEY,
    JSON_NUMBER,
    GEOJSON_POSITIONS,
    IMAGE_PIXELS,
)
