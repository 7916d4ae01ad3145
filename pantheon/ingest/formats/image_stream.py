"""What the image walkers (png.py, jpeg.py, tiff.py) share: the formats and a pass-through stream.

Images are stored unchanged; a walker only keeps a few header bytes and
counters, so memory stays constant whatever the image size, and time is
linear in it. `ImageStream` passes the bytes through and hands them to its
walker; `check_pixels` holds the dimensions an image declares to
`caps.MAX_IMAGE_PIXELS` (reason `image_too_large`), so no reader is handed
a decompression bomb.
"""

from __future__ import annotations

from pantheon_api.metadata.v1 import metadata_pb2

from pantheon.ingest import caps
from pantheon.ingest.formats.base import Format, InvalidContent, empty_body
from pantheon.metadata.naming import EXTENSIONS, MEDIA_TYPES

PNG, JPEG, TIFF = metadata_pb2.FORMAT_PNG, metadata_pb2.FORMAT_JPEG, metadata_pb2.FORMAT_TIFF
IMAGE_NAMES: dict[Format, str] = {PNG: "PNG", JPEG: "JPEG", TIFF: "TIFF"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Classic TIFF (42) in both byte orders, then BigTIFF (43), which large GeoTIFFs use.
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def corrupt(detail: str) -> InvalidContent:
    return InvalidContent("corrupt_image", f"The image is corrupt: {detail}.")


def check_pixels(width: int, height: int) -> None:
    if width * height > caps.MAX_IMAGE_PIXELS:
        raise caps.IMAGE_PIXELS.refuse(f"The image ({width} x {height} pixels)")


class ImageStream:
    """Pass-through normaliser; subclasses walk the structure in `_walk` and `_end`."""

    def __init__(self, fmt: Format) -> None:
        self.format = fmt
        self.media_type = MEDIA_TYPES[fmt]
        self.extension = EXTENSIONS[fmt]
        self.record_count = 0
        self.size = 0

    @property
    def held(self) -> int:
        return 0  # a few header bytes at most

    def feed(self, chunk: bytes) -> bytes:
        if chunk:
            self._walk(chunk)
            self.size += len(chunk)
        return chunk

    def finish(self) -> bytes:
        if self.size == 0:
            raise empty_body()
        self._end()
        return b""

    def _walk(self, chunk: bytes) -> None:
        raise NotImplementedError

    def _end(self) -> None:
        raise NotImplementedError

    def _mismatch(self) -> InvalidContent:
        return InvalidContent("format_mismatch", f"The content is not a {IMAGE_NAMES[self.format]} image.")
