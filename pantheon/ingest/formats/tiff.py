"""TIFF and BigTIFF, checked structurally as they stream past: the header and the first IFD."""

from __future__ import annotations

import struct

from pantheon.ingest.formats.image_stream import TIFF, TIFF_MAGICS, ImageStream, corrupt


class TiffWalker(ImageStream):
    """Header, first IFD offset inside the file, the IFD's entry count and its next-IFD offset.

    The offsets are known before the bytes they point at stream past (the
    count follows the IFD offset, the next-IFD offset follows the count), so
    those few bytes are picked out of the stream wherever they lie, without
    buffering the image. IFD chains are never followed, so a loop cannot
    hold the walker; a first IFD that points back at itself is refused, as
    it would hold a reader that follows the chain.
    """

    def __init__(self) -> None:
        super().__init__(TIFF)
        self._header = bytearray()
        self._header_size = 8
        self._order = "<"
        self._big = False
        self._ifd_offset: int | None = None
        self._count_bytes = bytearray()
        self._next_at: int | None = None
        self._next_bytes = bytearray()

    def _walk(self, chunk: bytes) -> None:
        pos = 0
        if self._ifd_offset is None:
            pos = self._read_header(chunk)
            if self._ifd_offset is None:
                return
        width, entry, _ = self._sizes()
        self._pick(chunk, pos, self._count_bytes, self._ifd_offset, width)
        if self._next_at is None and len(self._count_bytes) == width:
            self._next_at = self._ifd_offset + width + self._count() * entry
        if self._next_at is not None:
            self._pick(chunk, pos, self._next_bytes, self._next_at, self._sizes()[2])

    def _pick(self, chunk: bytes, pos: int, field: bytearray, at: int, length: int) -> None:
        """Add to `field` the bytes of [at, at + length) that `chunk` (from `pos`) holds."""
        start = at + len(field)
        low = max(start, self.size + pos) - self.size
        high = min(at + length, self.size + len(chunk)) - self.size
        if low < high:
            field += chunk[low:high]

    def _sizes(self) -> tuple[int, int, int]:
        """Bytes of an IFD's entry count, of one entry, and of the next-IFD offset."""
        return (8, 20, 8) if self._big else (2, 12, 4)

    def _count(self) -> int:
        count: int = struct.unpack(self._order + ("Q" if self._big else "H"), self._count_bytes)[0]
        return count

    def _read_header(self, chunk: bytes) -> int:
        pos = 0
        while self._ifd_offset is None and pos < len(chunk):
            part = chunk[pos : pos + self._header_size - len(self._header)]
            self._header += part
            pos += len(part)
            if len(self._header) >= 4 and not self._header.startswith(TIFF_MAGICS):
                raise self._mismatch()
            if len(self._header) >= 4 and self._header[:4] in TIFF_MAGICS[2:]:  # BigTIFF
                self._big, self._header_size = True, 16
            if len(self._header) == self._header_size:
                self._parse_header(bytes(self._header))
        return pos

    def _parse_header(self, header: bytes) -> None:
        self._order = "<" if header.startswith(b"II") else ">"
        if self._big:
            offset_size, zero, offset = struct.unpack(self._order + "HHQ", header[4:16])
            if (offset_size, zero) != (8, 0):
                raise corrupt("the BigTIFF header is invalid")
        else:
            offset = struct.unpack(self._order + "I", header[4:8])[0]
        if offset < self._header_size:
            raise corrupt("the first IFD offset points into the header")
        self._ifd_offset = offset

    def _end(self) -> None:
        if self._ifd_offset is None:
            raise corrupt("the header is truncated")
        if self._ifd_offset >= self.size:
            raise corrupt("the first IFD offset points past the end of the file")
        width, entry, next_offset = self._sizes()
        if len(self._count_bytes) < width:
            raise corrupt("the first IFD is truncated")
        count = self._count()
        if count == 0:
            raise corrupt("the first IFD has no entries")
        if self._ifd_offset + width + count * entry + next_offset > self.size:
            raise corrupt("the first IFD is truncated")
        following = struct.unpack(self._order + ("Q" if self._big else "I"), self._next_bytes)[0]
        if following == self._ifd_offset:
            raise corrupt("the first IFD points to itself as the next")
        if following >= self.size or 0 < following < self._header_size:
            raise corrupt("the next IFD offset points outside the file")
