"""CSV (RFC 4180) with a required header, streamed one record at a time."""

from __future__ import annotations

import csv
import io
import re

from pantheon_api.metadata.v1 import metadata_pb2

from pantheon.ingest.formats.base import (
    MAX_LINE_BYTES,
    Format,
    InvalidContent,
    LineSplitter,
    empty_body,
)
from pantheon.metadata.naming import EXTENSIONS, MEDIA_TYPES

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .-]{0,63}")
# ASCII classes on purpose: str.isdigit and \d accept digits from other scripts.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOLEAN = frozenset({"true", "false"})
_SHOWN_NAME_CHARS = 32

INTEGER, NUMBER, BOOLEAN, STRING = "integer", "number", "boolean", "string"


def _widen(kind: str | None, cell: str) -> str:
    """The narrowest column type fitting both the cells so far (`kind`) and `cell`."""
    if kind in (None, INTEGER) and _INTEGER.fullmatch(cell):
        return INTEGER
    if kind in (None, INTEGER, NUMBER) and _NUMBER.fullmatch(cell):
        return NUMBER
    if kind in (None, BOOLEAN) and cell.lower() in _BOOLEAN:
        return BOOLEAN
    return STRING


class CsvNormaliser:
    """CSV whose records are reassembled from physical lines until quotes balance.

    In RFC 4180 a quote inside a quoted field is doubled, so a record ends at a
    newline exactly when the quotes seen so far are even: only the current
    record is ever held.
    """

    def __init__(self) -> None:
        self.format: Format = metadata_pb2.FORMAT_CSV
        self.media_type = MEDIA_TYPES[self.format]
        self.extension = EXTENSIONS[self.format]
        self.record_count = 0
        self.columns: list[tuple[str, str]] = []
        self._lines = LineSplitter("invalid_csv")
        self._record: list[str] = []
        self._record_bytes = 0
        self._record_line = 0
        self._quote_open = False
        self._header: list[str] | None = None
        # Per column: its type so far, None until a non-empty cell is seen.
        self._types: list[str | None] = []
        # Columns not yet widened to string: the only ones whose cells need a look.
        self._open_columns: list[int] = []
        self._out = io.StringIO()
        self._writer = csv.writer(self._out, lineterminator="\n")
        # csv.writer quotes a field for the "\n" of the terminator but not for a
        # lone "\r", which the reader then refuses; such rows are fully quoted.
        self._quoting_writer = csv.writer(self._out, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def feed(self, chunk: bytes) -> bytes:
        for number, raw in self._lines.feed(chunk):
            self._physical_line(number, raw)
        return self._drain()

    def finish(self) -> bytes:
        last = self._lines.finish()
        if last is not None:
            self._physical_line(*last)
        if self._quote_open:
            raise InvalidContent(
                "invalid_csv",
                f"The record starting on line {self._record_line} has an unterminated quoted field.",
            )
        if self._header is None:
            raise empty_body()
        if self.record_count == 0:
            raise InvalidContent("empty_body", "The CSV has a header but no rows.")
        self.columns = [(name, kind or STRING) for name, kind in zip(self._header, self._types, strict=True)]
        return self._drain()

    def _drain(self) -> bytes:
        text = self._out.getvalue()
        self._out.seek(0)
        self._out.truncate()
        return text.encode("utf-8")

    def _infer_types(self, fields: list[str]) -> None:
        widened = False
        for index in self._open_columns:
            cell = fields[index]
            if cell:
                kind = _widen(self._types[index], cell)
                self._types[index] = kind
                widened = widened or kind == STRING
        if widened:
            self._open_columns = [i for i in self._open_columns if self._types[i] != STRING]

    def _physical_line(self, number: int, raw: bytes) -> None:
        if not self._record:
            if not raw.rstrip(b"\r"):
                return  # blank lines between records carry nothing
            self._record_line = number
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidContent(
                "invalid_csv", f"Line {number} is not valid UTF-8 (byte {exc.start})."
            ) from None
        if not self._record and '"' not in text:
            # Most rows hold no quotes: for those, splitting on commas is exactly
            # what csv.reader does, and the line is already its canonical form.
            # Long lines go the slow way so the reader's field size limit applies
            # whether a field is quoted or not.
            line = text[:-1] if text.endswith("\r") else text
            if "\r" not in line and len(line) <= csv.field_size_limit():
                self._row(line.split(","), line)
                return
        self._record_bytes += len(raw) + 1
        if self._record_bytes > MAX_LINE_BYTES:
            raise InvalidContent(
                "invalid_csv",
                f"The record starting on line {self._record_line} is longer than {MAX_LINE_BYTES} bytes.",
            )
        self._record.append(text + "\n")
        if text.count('"') % 2:
            self._quote_open = not self._quote_open
        if not self._quote_open:
            record, self._record, self._record_bytes = self._record, [], 0
            self._row(self._parse(record))

    def _parse(self, record: list[str]) -> list[str]:
        try:
            rows = list(csv.reader(record, strict=True))
        except csv.Error:
            rows = []
        if len(rows) != 1:
            raise InvalidContent(
                "invalid_csv", f"The record starting on line {self._record_line} is not valid CSV."
            )
        return rows[0]

    def _row(self, fields: list[str], canonical: str | None = None) -> None:
        if self._header is None:
            _check_header(fields, self._record_line)
            self._header = fields
            self._types = [None] * len(fields)
            self._open_columns = list(range(len(fields)))
        elif len(fields) != len(self._header):
            raise InvalidContent(
                "invalid_csv",
                f"Row {self.record_count + 1} (line {self._record_line}) has {len(fields)} "
                f"fields; the header has {len(self._header)}.",
            )
        else:
            self.record_count += 1
            self._infer_types(fields)
        if canonical is not None:
            self._out.write(canonical + "\n")
        elif "\r" in "".join(fields) and any("\r" in f and "\n" not in f for f in fields):
            self._quoting_writer.writerow(fields)
        else:
            self._writer.writerow(fields)


def _check_header(names: list[str], line: int) -> None:
    if all(_NUMBER.fullmatch(name) or not name for name in names):
        raise InvalidContent("invalid_csv", f"The CSV is missing its header: line {line} looks like data.")
    seen: set[str] = set()
    for index, name in enumerate(names, start=1):
        shown = name if len(name) <= _SHOWN_NAME_CHARS else name[:_SHOWN_NAME_CHARS] + "…"
        if not _NAME.fullmatch(name):
            raise InvalidContent(
                "invalid_csv",
                f"Header column {index} ({shown!r}) is not a valid name: start with a letter "
                "or underscore, then up to 63 letters, digits, spaces, '_', '.' or '-'.",
            )
        if name in seen:
            raise InvalidContent("invalid_csv", f"Header column {index} ({shown!r}) is repeated.")
        seen.add(name)
