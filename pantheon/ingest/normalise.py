"""Pick the normaliser for an upload from its declared media type and first bytes.

The declared type chooses the family; for images the bytes decide and must
agree with it. Text formats are rewritten into one canonical form; images pass
through unchanged after structural checks. See `formats/` for each family,
`caps` for the limits every format is held to (each refused with its own
reason), `cells` for how CSV cells are typed, and `workers` for running a
normaliser off the event loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pantheon.ingest.formats.base import Format, InvalidContent, Normaliser, empty_body
from pantheon.ingest.formats.csv_text import CsvNormaliser
from pantheon.ingest.formats.image_stream import IMAGE_NAMES, JPEG, PNG, TIFF
from pantheon.ingest.formats.images import could_be, image_normaliser, sniff_image
from pantheon.ingest.formats.json_text import (
    MAX_JSON_BYTES,
    GeoJsonNormaliser,
    JsonNormaliser,
    NdjsonNormaliser,
)
from pantheon.metadata.naming import MEDIA_TYPES

__all__ = [
    "MAX_JSON_BYTES",
    "CsvNormaliser",
    "InvalidContent",
    "Normaliser",
    "open_normaliser",
]

_TEXT_TYPES: dict[str, Callable[[], Normaliser]] = {
    "application/json": JsonNormaliser,
    "application/geo+json": GeoJsonNormaliser,
    "application/x-ndjson": NdjsonNormaliser,
    "application/ndjson": NdjsonNormaliser,
    "application/jsonl": NdjsonNormaliser,
    "application/x-jsonlines": NdjsonNormaliser,
    "text/csv": CsvNormaliser,
}
_IMAGE_TYPES: dict[str, Format] = {MEDIA_TYPES[f]: f for f in (PNG, JPEG, TIFF)}
_UNTYPED = frozenset({"", "application/octet-stream"})
# Echo the declared type back only when it is short and plainly a media type.
_SHOWABLE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")


def open_normaliser(declared_media_type: str, head: bytes) -> Normaliser:
    """Pick the normaliser from the declared media type and the first bytes.

    `head` is only inspected, not consumed: it must hold at least the first
    chunk (an empty head means an empty body), and every chunk, the first
    included, is then passed to `feed`. Raises `InvalidContent` with reason
    `unsupported_media_type`, `format_mismatch` or `empty_body`.
    """
    media_type = declared_media_type.split(";", 1)[0].strip().lower()
    sniffed = sniff_image(head)
    if media_type in _TEXT_TYPES:
        if sniffed is not None:
            raise _mismatch(media_type, f"a {IMAGE_NAMES[sniffed]} image")
        if not head:
            raise empty_body()
        return _TEXT_TYPES[media_type]()
    if media_type in _IMAGE_TYPES:
        expected = _IMAGE_TYPES[media_type]
        if not head:
            raise empty_body()
        if sniffed not in (None, expected):
            raise _mismatch(media_type, f"a {IMAGE_NAMES[sniffed]} image")
        if not could_be(expected, head):
            raise _mismatch(media_type, f"not a {IMAGE_NAMES[expected]} image")
        return image_normaliser(expected)
    if media_type in _UNTYPED:
        if not head:
            raise empty_body()
        if sniffed is None:
            raise InvalidContent(
                "unsupported_media_type",
                "The content type is not declared and the content is not a recognised image.",
            )
        return image_normaliser(sniffed)
    shown = f" {media_type}" if _SHOWABLE.fullmatch(media_type) else ""
    raise InvalidContent("unsupported_media_type", f"The media type{shown} is not supported.")


def _mismatch(media_type: str, found: str) -> InvalidContent:
    return InvalidContent("format_mismatch", f"The content is declared as {media_type} but is {found}.")
