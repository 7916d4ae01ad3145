"""What every normaliser shares: the error, the protocol and a bounded line splitter."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from typing import Protocol, TypeAlias

from pantheon_api.metadata.v1 import metadata_pb2

from pantheon.errors import InvalidArgument

Format: TypeAlias = metadata_pb2.Format.ValueType

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

    @property
    def held(self) -> int:
        """Bytes kept from earlier chunks that the next `feed` or `finish` may process."""
        ...

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
    up whole in one line. A leading UTF-8 BOM is dropped. A line longer than
    `max_line_bytes` raises `too_long(line_number)` as soon as it is seen, not
    when it ends. Each chunk is searched once: a long line arriving in many
    small chunks costs time linear in its length.
    """

    def __init__(self, max_line_bytes: int, too_long: Callable[[int], InvalidContent]) -> None:
        self._max = max_line_bytes
        self._too_long = too_long
        self._pending = bytearray()
        self._bom_checked = False
        self.line_number = 0

    @property
    def held(self) -> int:
        """Bytes of the partial line held so far."""
        return len(self._pending)

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes]]:
        """Yield the (line number, line without b"\\n") pairs completed by `chunk`.

        A generator, so that a partial line over the cap is refused only after
        the lines before it were handled: whatever the chunking, the first
        problem in the input is the one reported. Iterate it to the end.
        """
        # Whatever is pending holds no newline (complete lines were cut off),
        # except for the BOM bytes that may be stripped below.
        search_from = max(len(self._pending) - len(_BOM), 0)
        self._pending += chunk
        if not self._bom_checked:
            if len(self._pending) < len(_BOM) and _BOM.startswith(self._pending):
                return  # too short yet to tell a BOM from content
            self._strip_bom()
        end = self._pending.rfind(b"\n", min(search_from, len(self._pending)))
        if end >= 0:
            complete = bytes(self._pending[:end])
            del self._pending[: end + 1]
            for raw in complete.split(b"\n"):
                self.line_number += 1
                self._check_length(len(raw), self.line_number)
                yield self.line_number, raw
        self._check_length(len(self._pending), self.line_number + 1)

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
            raise self._too_long(line_number)
