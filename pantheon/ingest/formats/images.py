"""PNG, JPEG and TIFF: identified by their bytes, checked structurally as they stream past.

Images are stored unchanged; these walkers only keep a few header bytes and
counters, so memory stays constant whatever the image size, and time is
linear in it. The dimensions a PNG or JPEG declares are held to
`caps.MAX_IMAGE_PIXELS` (reason `image_too_large`), so no reader is handed a
decompression bomb.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable

from pantheon_api.metadata.v1 import metadata_pb2

from pantheon.ingest import caps
from pantheon.ingest.formats.base import Format, InvalidContent, Normaliser, empty_body
from pantheon.metadata.naming import EXTENSIONS, MEDIA_TYPES

PNG, JPEG, TIFF = metadata_pb2.FORMAT_PNG, metadata_pb2.FORMAT_JPEG, metadata_pb2.FORMAT_TIFF
IMAGE_NAMES: dict[Format, str] = {PNG: "PNG", JPEG: "JPEG", TIFF: "TIFF"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Classic TIFF (42) in both byte orders, then BigTIFF (43), which large GeoTIFFs use.
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_MAGICS: dict[Format, tuple[bytes, ...]] = {
    PNG: (_PNG_SIGNATURE,),
    JPEG: (b"\xff\xd8\xff",),
    TIFF: _TIFF_MAGICS,
}


def sniff_image(head: bytes) -> Format | None:
    """Return the image format `head` starts with, if any."""
    for fmt, magics in _MAGICS.items():
        if head.startswith(magics):
            return fmt
    return None


def could_be(fmt: Format, head: bytes) -> bool:
    """Whether `head` starts like `fmt`, or is too short to rule it out."""
    return any(head.startswith(magic) or magic.startswith(head) for magic in _MAGICS[fmt])


def image_normaliser(fmt: Format) -> Normaliser:
    walkers: dict[Format, Callable[[], Normaliser]] = {PNG: _Png, JPEG: _Jpeg, TIFF: _Tiff}
    return walkers[fmt]()


def _corrupt(detail: str) -> InvalidContent:
    return InvalidContent("corrupt_image", f"The image is corrupt: {detail}.")


def _check_pixels(width: int, height: int) -> None:
    if width * height > caps.MAX_IMAGE_PIXELS:
        raise caps.IMAGE_PIXELS.refuse(f"The image ({width} x {height} pixels)")


class _ImageStream:
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


# PNG walker states: which fixed-size field is being collected, or chunk data.
_SIGNATURE, _CHUNK_HEAD, _CHUNK_DATA, _CHUNK_CRC, _AFTER_IEND = range(5)


class _Png(_ImageStream):
    """Signature, then length/type/data/CRC chunks from IHDR to IEND, CRCs checked."""

    def __init__(self) -> None:
        super().__init__(PNG)
        self._state = _SIGNATURE
        self._field = bytearray()
        self._need = len(_PNG_SIGNATURE)
        self._remaining = 0
        self._type = b""
        self._crc = 0
        self._chunks = 0
        self._ihdr = bytearray()
        self._seen_idat = False

    def _walk(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        pos = 0
        while pos < len(view):
            if self._state == _AFTER_IEND:
                raise _corrupt("data follows the IEND chunk")
            if self._state == _CHUNK_DATA:
                # Chunk data can be megabytes: CRC it as it passes, never keep it.
                part = view[pos : pos + self._remaining]
                self._crc = zlib.crc32(part, self._crc)
                if self._type == b"IHDR":
                    self._ihdr += part
                self._remaining -= len(part)
                pos += len(part)
                if self._remaining == 0:
                    self._state, self._need = _CHUNK_CRC, 4
                continue
            part = view[pos : pos + self._need - len(self._field)]
            self._field += part
            pos += len(part)
            if len(self._field) == self._need:
                field = bytes(self._field)
                self._field.clear()
                self._complete(field)

    def _complete(self, field: bytes) -> None:
        if self._state == _SIGNATURE:
            if field != _PNG_SIGNATURE:
                raise self._mismatch()
            self._state, self._need = _CHUNK_HEAD, 8
        elif self._state == _CHUNK_HEAD:
            self._chunk_head(field)
        else:
            self._chunk_end(struct.unpack(">I", field)[0])

    def _chunk_head(self, field: bytes) -> None:
        length, ctype = struct.unpack(">I4s", field)
        if length >= 2**31 or not ctype.isalpha():
            raise _corrupt(f"chunk {self._chunks + 1} has an invalid header")
        if (self._chunks == 0) != (ctype == b"IHDR"):
            raise _corrupt("IHDR must be the first chunk, and only the first")
        if (ctype == b"IHDR" and length != 13) or (ctype == b"IEND" and length != 0):
            raise _corrupt(f"the {ctype.decode('ascii')} chunk has a wrong length")
        self._chunks += 1
        self._type = ctype
        self._crc = zlib.crc32(ctype)
        self._remaining = length
        self._state, self._need = (_CHUNK_DATA, 0) if length else (_CHUNK_CRC, 4)

    def _chunk_end(self, crc: int) -> None:
        name = self._type.decode("ascii")
        if crc != self._crc:
            raise _corrupt(f"chunk {self._chunks} ({name}) fails its CRC check")
        if self._type == b"IHDR":
            width, height = struct.unpack(">II", self._ihdr[:8])
            if width == 0 or height == 0:
                raise _corrupt("the image has zero width or height")
            if width >= 2**31 or height >= 2**31:
                raise _corrupt("the image width or height is over 2^31 - 1")
            _check_pixels(width, height)
        elif self._type == b"IDAT":
            self._seen_idat = True
        elif self._type == b"IEND":
            if not self._seen_idat:
                raise _corrupt("there is no image data (IDAT)")
            self._state = _AFTER_IEND
            return
        self._state, self._need = _CHUNK_HEAD, 8

    def _end(self) -> None:
        if self._state != _AFTER_IEND:
            raise _corrupt("it is truncated before the IEND chunk")


# JPEG walker states.
_SOI, _MARKER, _MARKER_CODE, _LENGTH, _SKIP, _SCAN, _SCAN_FF, _AFTER_EOI = range(8)
_SOF_CODES = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), 0xCD, 0xCE, 0xCF})
_SOS, _EOI, _SOI_CODE = 0xDA, 0xD9, 0xD8
_RST_CODES = frozenset(range(0xD0, 0xD8))
_NOT_FILL = re.compile(rb"[^\xff]")
_FRAME_HEAD = 5  # sample precision (1 byte), height (2), width (2)


class _Jpeg(_ImageStream):
    """SOI, length-prefixed segments, entropy-coded scans, then EOI as the last bytes."""

    def __init__(self) -> None:
        super().__init__(JPEG)
        self._state = _SOI
        self._field = bytearray()
        self._code = 0
        self._remaining = 0
        self._in_scan = False
        self._seen_frame = False
        self._seen_scan = False
        # The first bytes of a frame header (precision, height, width), while collected.
        self._frame: bytearray | None = None

    def _walk(self, chunk: bytes) -> None:
        pos = 0
        while pos < len(chunk):
            state = self._state
            if state == _SKIP:
                step = min(self._remaining, len(chunk) - pos)
                if self._frame is not None:
                    self._frame += chunk[pos : pos + min(step, _FRAME_HEAD - len(self._frame))]
                    if len(self._frame) == _FRAME_HEAD:
                        _, height, width = struct.unpack(">BHH", self._frame)
                        self._frame = None
                        _check_pixels(width, height)
                self._remaining -= step
                pos += step
                if self._remaining == 0:
                    self._state = _SCAN if self._in_scan else _MARKER
            elif state == _SCAN:
                # In entropy-coded data 0xFF is always escaped or a marker, so find() skips ahead.
                found = chunk.find(b"\xff", pos)
                pos = len(chunk) if found < 0 else found + 1
                if found >= 0:
                    self._state = _SCAN_FF
            elif state in (_SOI, _LENGTH):
                part = chunk[pos : pos + 2 - len(self._field)]
                self._field += part
                pos += len(part)
                if len(self._field) == 2:
                    field = bytes(self._field)
                    self._field.clear()
                    self._segment_start(field)
            elif state == _AFTER_EOI:
                raise _corrupt("data follows the end-of-image marker")
            elif state == _MARKER:
                # Stray bytes between segments are skipped, as libjpeg does (with a
                # warning): some encoders write them and the image still decodes.
                found = chunk.find(b"\xff", pos)
                pos = len(chunk) if found < 0 else found + 1
                if found >= 0:
                    self._state = _MARKER_CODE
            else:
                # 0xFF fill bytes may pad any marker: skip a run of them at C speed.
                code = _NOT_FILL.search(chunk, pos)
                if code is None:
                    pos = len(chunk)
                else:
                    pos = code.end()
                    self._marker_byte(chunk[code.start()])

    def _marker_byte(self, byte: int) -> None:
        """The byte after 0xFF (and any fill) in a marker or scan state."""
        if self._state == _SCAN_FF and (byte == 0 or byte in _RST_CODES):
            self._state = _SCAN  # stuffed 0xFF or restart marker inside the scan
        else:
            self._marker(byte)

    def _marker(self, code: int) -> None:
        if code == _EOI:
            if not self._seen_scan:
                raise _corrupt("it has no image scan")
            self._state = _AFTER_EOI
        elif code == _SOI_CODE or code == 0:
            raise _corrupt("it has a misplaced marker")
        elif code in _RST_CODES or code == 0x01:
            self._state = _SCAN if self._in_scan else _MARKER  # markers without a length
        else:
            self._code = code
            self._state = _LENGTH

    def _segment_start(self, field: bytes) -> None:
        if self._state == _SOI:
            if field != b"\xff\xd8":
                raise self._mismatch()
            self._state = _MARKER
            return
        length = struct.unpack(">H", field)[0]
        if length < 2:
            raise _corrupt("a segment has an invalid length")
        if self._code in _SOF_CODES:
            if length - 2 < _FRAME_HEAD:
                raise _corrupt("a frame header is truncated")
            self._seen_frame = True
            self._frame = bytearray()
        self._in_scan = self._code == _SOS
        if self._in_scan:
            if not self._seen_frame:
                raise _corrupt("a scan comes before the frame header")
            self._seen_scan = True
        self._remaining = length - 2
        if self._remaining:
            self._state = _SKIP
        else:
            self._state = _SCAN if self._in_scan else _MARKER

    def _end(self) -> None:
        if self._state != _AFTER_EOI:
            raise _corrupt("it is truncated before the end-of-image marker")


class _Tiff(_ImageStream):
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
            if len(self._header) >= 4 and not self._header.startswith(_TIFF_MAGICS):
                raise self._mismatch()
            if len(self._header) >= 4 and self._header[:4] in _TIFF_MAGICS[2:]:  # BigTIFF
                self._big, self._header_size = True, 16
            if len(self._header) == self._header_size:
                self._parse_header(bytes(self._header))
        return pos

    def _parse_header(self, header: bytes) -> None:
        self._order = "<" if header.startswith(b"II") else ">"
        if self._big:
            offset_size, zero, offset = struct.unpack(self._order + "HHQ", header[4:16])
            if (offset_size, zero) != (8, 0):
                raise _corrupt("the BigTIFF header is invalid")
        else:
            offset = struct.unpack(self._order + "I", header[4:8])[0]
        if offset < self._header_size:
            raise _corrupt("the first IFD offset points into the header")
        self._ifd_offset = offset

    def _end(self) -> None:
        if self._ifd_offset is None:
            raise _corrupt("the header is truncated")
        if self._ifd_offset >= self.size:
            raise _corrupt("the first IFD offset points past the end of the file")
        width, entry, next_offset = self._sizes()
        if len(self._count_bytes) < width:
            raise _corrupt("the first IFD is truncated")
        count = self._count()
        if count == 0:
            raise _corrupt("the first IFD has no entries")
        if self._ifd_offset + width + count * entry + next_offset > self.size:
            raise _corrupt("the first IFD is truncated")
        following = struct.unpack(self._order + ("Q" if self._big else "I"), self._next_bytes)[0]
        if following == self._ifd_offset:
            raise _corrupt("the first IFD points to itself as the next")
        if following >= self.size or 0 < following < self._header_size:
            raise _corrupt("the next IFD offset points outside the file")
