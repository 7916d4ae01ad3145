"""HTTP range and conditional requests on stored objects (RFC 9110 sections 13 and 14).

One byte range per request is served (`bytes=a-b`, `bytes=a-`, `bytes=-n`);
a header the gateway does not serve (several ranges, another unit, bad
syntax) is ignored and the whole object is sent, as RFC 9110 allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^bytes=([0-9]{0,19})-([0-9]{0,19})$")


class RangeNotSatisfiable(Exception):
    """The range starts past the end of the object (answer 416)."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes `start` to `end`, both included."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range to serve of an object of `size` bytes, or None for the whole object."""
    if not header:
        return None
    match = _SPEC.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        raise RangeNotSatisfiable
    end = int(last) if last else size - 1
    return ByteRange(start, min(end, size - 1))


def _tags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]


def none_match(header: str | None, etag: str) -> bool:
    """Whether `If-None-Match` matches `etag` (weak comparison): answer 304."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return etag in _tags(header)


def range_applies(if_range: str | None, etag: str) -> bool:
    """Whether a Range header may be served given `If-Range` (strong comparison; dates never match)."""
    if not if_range:
        return True
    return if_range.strip() == etag
