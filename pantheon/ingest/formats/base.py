"""What every normaliser shares: the error, the protocol and a bounded line splitter."""

from __future__ import annotations

import codecs
from typing import Protocol, TypeAlias

from pantheon_api.metadata.v1 import metadata_pb2

from pantheon.errors import InvalidArgument

Format: TypeAlias = metadata_pb2.Format.ValueType

# One line (NDJSON) or one record (CSV) is all a streaming normaliser holds, so
# this bounds its memory whatever the object size.
MAX_LINE_BYTES = 2**20

_BOM = codecs.BOM_UTF8


class InvalidContent(InvalidArgument):
    """The uploaded bytes are not what they claim to be, or are broken.

    `reason` is a stable snake_case code for machines; `message` is a short
    sentence for people that never quotes exception text or bulk content.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)

    def __reduce__(self) -> tuple[type[InvalidContent], tuple[str, str]]:
        # The default reduce would replay only `args` (the message).
        return (type(self), (self.reason, self.message))


class Normaliser(Protocol):
    """Checks one uploaded object chunk by chunk and yields its canonical bytes.

    Feed every chunk in order, then call `finish` once. After an
    `InvalidContent` the normaliser is spent and must be discarded.
    """

    format: Format
    media_type: str
    extension: str
    record_count: int

    def feed(self, chunk: bytes) -> bytes:
        """Consume input; return the canonical output that is ready now (maybe b"")."""
        ...

    def finish(self) -> bytes:
        """Check the input is complete and return the rest of the output."""
        ...


def empty_body() -> InvalidContent:
    return InvalidContent("empty_body", "The request body is empty.")


class LineSplitter:
    """Cuts a byte stream into physical lines, holding at most one partial line.

    Lines are split on b"\\n" before decoding: the byte never occurs inside a
    multi-byte UTF-8 sequence, so a character split across chunks always ends
    up whole in one line. A leading UTF-8 BOM is dropped.
    """

    def __init__(self, reason: str, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._reason = reason
        self._max = max_line_bytes
        self._pending = bytearray()
        self._bom_checked = False
        self.line_number = 0

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        """Return the (line number, line without b"\\n") pairs completed by `chunk`."""
        self._pending += chunk
        if not self._bom_checked:
            if len(self._pending) < len(_BOM) and _BOM.startswith(self._pending):
                return []  # too short yet to tell a BOM from content
            self._strip_bom()
        end = self._pending.rfind(b"\n")
        lines: list[tuple[int, bytes]] = []
        if end >= 0:
            for raw in bytes(self._pending[:end]).split(b"\n"):
                self.line_number += 1
                self._check_length(len(raw), self.line_number)
                lines.append((self.line_number, raw))
            del self._pending[: end + 1]
        self._check_length(len(self._pending), self.line_number + 1)
        return lines

    def finish(self) -> tuple[int, bytes] | None:
        """Return the last line if the input did not end with a newline."""
        if not self._bom_checked:
            self._strip_bom()
        if not self._pending:
            return None
        self.line_number += 1
        raw = bytes(self._pending)
        self._pending.clear()
        return self.line_number, raw

    def _strip_bom(self) -> None:
        if self._pending.startswith(_BOM):
            del self._pending[: len(_BOM)]
        self._bom_checked = True

    def _check_length(self, size: int, line_number: int) -> None:
        if size > self._max:
            raise InvalidContent(self._reason, f"Line {line_number} is longer than {self._max} bytes.")
