"""CSV (RFC 4180) with a required header, streamed one record at a time.

Cells are typed by the one rule set in `pantheon.ingest.cells` to infer each
column's type; the canonical output keeps every cell's text as written. The
caps of `pantheon.ingest.caps` apply: record bytes, cell characters, columns
and column-name characters, each refused with its own reason.
"""

from __future__ import annotations

import csv
import io
import re

from pantheon_api.metadata.v1 import metadata_pb2

from pantheon.ingest import caps
from pantheon.ingest.cells import BOOLEAN, INTEGER, NUMBER, STRING, Kind, kind_of, widen
from pantheon.ingest.formats.base import Format, InvalidContent, LineSplitter, empty_body
from pantheon.metadata.naming import EXTENSIONS, MEDIA_TYPES

__all__ = ["BOOLEAN", "INTEGER", "NUMBER", "STRING", "CsvNormaliser"]

# One bounded repetition: linear, and only run on names within the length cap.
_NAME = re.compile(rf"[A-Za-z_][A-Za-z0-9_ .-]{{0,{caps.MAX_CSV_NAME_CHARS - 1}}}")
_SHOWN_NAME_CHARS = 32
# csv.reader's message when a field passes csv.field_size_limit() (CPython's
# Modules/_csv.c); that limit is above the cell cap, so such a field is too long.
_FIELD_LIMIT_MESSAGE = "field larger than field limit"


def _record_too_long(line: int) -> InvalidContent:
    return caps.CSV_RECORD.refuse(f"The record starting on line {line}")


class CsvNormaliser:
    """CSV whose records are reassembled from physical lines until quotes balance.

    In RFC 4180 a quote inside a quoted field is doubled, so a record ends at a
    newline exactly when the quotes seen so far are even: only the current
    record is ever held, and it is capped at `caps.MAX_CSV_RECORD_BYTES`.
    """

    def __init__(self) -> None:
        self.format: Format = metadata_pb2.FORMAT_CSV
        self.media_type = MEDIA_TYPES[self.format]
        self.extension = EXTENSIONS[self.format]
        self.record_count = 0
        self.columns: list[tuple[str, Kind]] = []
        self._lines = LineSplitter(caps.MAX_CSV_RECORD_BYTES, self._line_too_long)
        self._record: list[str] = []
        self._record_bytes = 0
        self._record_line = 0
        self._quote_open = False
        self._header: list[str] | None = None
        # Per column: its type so far, None until a non-empty cell is seen.
        self._types: list[Kind | None] = []
        # Columns not yet widened to string: the only ones whose cells need a look.
        self._open_columns: list[int] = []
        self._out = io.StringIO()
        self._writer = csv.writer(self._out, lineterminator="\n")
        # csv.writer quotes a field for the "\n" of the terminator but not for a
        # lone "\r", which the reader then refuses; such rows are fully quoted.
        self._quoting_writer = csv.writer(self._out, lineterminator="\n", quoting=csv.QUOTE_ALL)

    @property
    def held(self) -> int:
        return self._lines.held + self._record_bytes

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

    def _line_too_long(self, line: int) -> InvalidContent:
        return _record_too_long(self._record_line if self._record else line)

    def _drain(self) -> bytes:
        text = self._out.getvalue()
        self._out.seek(0)
        self._out.truncate()
        return text.encode("utf-8")

    def _infer_types(self, fields: list[str]) -> None:
        widened = False
        types = self._types
        for index in self._open_columns:
            cell = fields[index]
            if cell:
                kind = kind_of(cell)
                if kind != types[index]:
                    kind = widen(types[index], kind)
                    types[index] = kind
                    widened = widened or kind == STRING
        if widened:
            self._open_columns = [i for i in self._open_columns if types[i] != STRING]

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
            line = text[:-1] if text.endswith("\r") else text
            if "\r" not in line:
                self._row(line.split(","), len(line), line)
                return
        # A record's bytes are its lines and the line breaks between them (as
        # for an unquoted line, its final line break does not count).
        self._record_bytes += len(raw) + (1 if self._record else 0)
        if self._record_bytes > caps.MAX_CSV_RECORD_BYTES:
            raise _record_too_long(self._record_line)
        self._record.append(text + "\n")
        if text.count('"') % 2:
            self._quote_open = not self._quote_open
        if not self._quote_open:
            record, size = self._record, self._record_bytes
            self._record, self._record_bytes = [], 0
            self._row(self._parse(record), size)

    def _parse(self, record: list[str]) -> list[str]:
        try:
            rows = list(csv.reader(record, strict=True))
        except csv.Error as exc:
            if _FIELD_LIMIT_MESSAGE in str(exc):
                raise caps.CSV_CELL.refuse(
                    f"A cell of the record starting on line {self._record_line}"
                ) from None
            rows = []
        if len(rows) != 1:
            raise InvalidContent(
                "invalid_csv", f"The record starting on line {self._record_line} is not valid CSV."
            )
        return rows[0]

    def _row(self, fields: list[str], size: int, canonical: str | None = None) -> None:
        """One record's fields; `size` bounds its length, so short rows skip the cell check."""
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
            if size > caps.MAX_CSV_CELL_CHARS and max(map(len, fields)) > caps.MAX_CSV_CELL_CHARS:
                column = next(i for i, f in enumerate(fields, start=1) if len(f) > caps.MAX_CSV_CELL_CHARS)
                raise caps.CSV_CELL.refuse(
                    f"Column {column} of row {self.record_count + 1} (line {self._record_line})"
                )
            self.record_count += 1
            self._infer_types(fields)
        if canonical is not None:
            self._out.write(canonical + "\n")
        elif "\r" in "".join(fields) and any("\r" in f and "\n" not in f for f in fields):
            self._quoting_writer.writerow(fields)
        else:
            self._writer.writerow(fields)


def _looks_numeric(name: str) -> bool:
    return kind_of(name) in (INTEGER, NUMBER) or (name.isascii() and name.isdigit())


def _check_header(names: list[str], line: int) -> None:
    if len(names) > caps.MAX_CSV_COLUMNS:
        raise caps.CSV_COLUMNS.refuse(f"The header on line {line} ({len(names)} columns)")
    if all(not name or _looks_numeric(name) for name in names):
        raise InvalidContent("invalid_csv", f"The CSV is missing its header: line {line} looks like data.")
    seen: set[str] = set()
    for index, name in enumerate(names, start=1):
        shown = name if len(name) <= _SHOWN_NAME_CHARS else name[:_SHOWN_NAME_CHARS] + "…"
        if len(name) > caps.MAX_CSV_NAME_CHARS:
            raise caps.CSV_NAME.refuse(f"Header column {index} ({shown!r})")
        if not _NAME.fullmatch(name):
            raise InvalidContent(
                "invalid_csv",
                f"Header column {index} ({shown!r}) is not a valid name: start with a letter "
                f"or underscore, then up to {caps.MAX_CSV_NAME_CHARS - 1} letters, digits, "
                "spaces, '_', '.' or '-'.",
            )
        if name in seen:
            raise InvalidContent("invalid_csv", f"Header column {index} ({shown!r}) is repeated.")
        seen.add(name)
