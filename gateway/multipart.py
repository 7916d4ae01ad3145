"""A streaming reader of `multipart/form-data` uploads: a `metadata` part, then a `file` part.

Built on python-multipart's push parser, so the file part is never held
whole: each piece of the body yields events with the file bytes it
carried. The metadata part must come first, because the services need the
metadata before the first content byte; a file part before it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.problems import FieldError, Problem, request_invalid

METADATA_PART = "metadata"
FILE_PART = "file"


@dataclass(frozen=True)
class MetadataPart:
    """The complete `metadata` part (JSON)."""

    content: bytes


@dataclass(frozen=True)
class FileStart:
    """The `file` part begins; `media_type` is its Content-Type."""

    media_type: str


@dataclass(frozen=True)
class FileData:
    content: bytes


@dataclass(frozen=True)
class FileEnd:
    pass


Event = MetadataPart | FileStart | FileData | FileEnd


def _malformed(detail: str, field: str = "body", reason: str = "invalid_multipart") -> Problem:
    return request_invalid([FieldError(field=field, reason=reason, description=detail)], detail)


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a multipart Content-Type."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 70:
        raise _malformed("The multipart Content-Type has no valid boundary.", "Content-Type")
    return boundary


class MultipartReader:
    """Feed body pieces; get events. Holds at most one piece and the metadata part."""

    def __init__(self, boundary: bytes, max_metadata_bytes: int) -> None:
        self._max_metadata = max_metadata_bytes
        self._events: list[Event] = []
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._part: str | None = None
        self._metadata = bytearray()
        self._file_data = bytearray()
        self._seen_metadata = False
        self._seen_file = False
        self._ended = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    def feed(self, piece: bytes) -> list[Event]:
        try:
            self._parser.write(piece)
        except MultipartParseError:
            raise _malformed("The multipart body is malformed.") from None
        self._flush_file_data()
        events, self._events = self._events, []
        return events

    def finish(self) -> None:
        """Check the body ended properly with both parts."""
        if not self._ended:
            raise _malformed("The multipart body ends before its closing boundary.")
        if not self._seen_file:
            raise _malformed("The multipart body has no `file` part.", FILE_PART, "missing")

    # -- parser callbacks -------------------------------------------------------

    def _on_part_begin(self) -> None:
        self._headers = {}
        self._part = None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        name = self._header_name.decode("latin-1").strip().lower()
        self._headers[name] = self._header_value.decode("latin-1").strip()
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        name = options.get(b"name", b"").decode("latin-1")
        if name == METADATA_PART:
            if self._seen_metadata:
                raise _malformed("The multipart body has two `metadata` parts.", METADATA_PART, "repeated")
            self._seen_metadata = True
        elif name == FILE_PART:
            if self._seen_file:
                raise _malformed("The multipart body has two `file` parts.", FILE_PART, "repeated")
            if not self._seen_metadata:
                raise _malformed("The `metadata` part must come before the `file` part.", FILE_PART, "order")
            self._seen_file = True
            media_type = self._headers.get("content-type", "application/octet-stream")
            self._events.append(FileStart(media_type))
        else:
            raise _malformed(
                "Only the parts `metadata` and `file` are accepted.", name or "part", "unexpected"
            )
        self._part = name

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == FILE_PART:
            self._file_data += data[start:end]
        elif self._part == METADATA_PART:
            self._metadata += data[start:end]
            if len(self._metadata) > self._max_metadata:
                raise Problem(
                    413,
                    "metadata_too_large",
                    f"The `metadata` part is larger than {self._max_metadata} bytes.",
                )

    def _on_part_end(self) -> None:
        if self._part == FILE_PART:
            self._flush_file_data()
            self._events.append(FileEnd())
        elif self._part == METADATA_PART:
            self._events.append(MetadataPart(bytes(self._metadata)))
            self._metadata.clear()
        self._part = None

    def _on_end(self) -> None:
        self._ended = True

    def _flush_file_data(self) -> None:
        if self._file_data:
            self._events.append(FileData(bytes(self._file_data)))
            self._file_data.clear()
