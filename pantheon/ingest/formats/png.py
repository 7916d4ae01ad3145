"""PNG, checked structurally as it streams past: chunks from IHDR to IEND, CRCs checked."""

from __future__ import annotations

import struct
import zlib

from pantheon.ingest.formats.image_stream import PNG, PNG_SIGNATURE, ImageStream, check_pixels, corrupt

# PNG walker states: which fixed-size field is being collected, or chunk data.
_SIGNATURE, _CHUNK_HEAD, _CHUNK_DATA, _CHUNK_CRC, _AFTER_IEND = range(5)


class PngWalker(ImageStream):
    """Signature, then length/type/data/CRC chunks from IHDR to IEND, CRCs checked."""

    def __init__(self) -> None:
        super().__init__(PNG)
        self._state = _SIGNATURE
        self._field = bytearray()
        self._need = len(PNG_SIGNATURE)
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
                raise corrupt("data follows the IEND chunk")
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
            if field != PNG_SIGNATURE:
                raise self._mismatch()
            self._state, self._need = _CHUNK_HEAD, 8
        elif self._state == _CHUNK_HEAD:
            self._chunk_head(field)
        else:
            self._chunk_end(struct.unpack(">I", field)[0])

    def _chunk_head(self, field: bytes) -> None:
        length, ctype = struct.unpack(">I4s", field)
        if length >= 2**31 or not ctype.isalpha():
            raise corrupt(f"chunk {self._chunks + 1} has an invalid header")
        if (self._chunks == 0) != (ctype == b"IHDR"):
            raise corrupt("IHDR must be the first chunk, and only the first")
        if (ctype == b"IHDR" and length != 13) or (ctype == b"IEND" and length != 0):
            raise corrupt(f"the {ctype.decode('ascii')} chunk has a wrong length")
        self._chunks += 1
        self._type = ctype
        self._crc = zlib.crc32(ctype)
        self._remaining = length
        self._state, self._need = (_CHUNK_DATA, 0) if length else (_CHUNK_CRC, 4)

    def _chunk_end(self, crc: int) -> None:
        name = self._type.decode("ascii")
        if crc != self._crc:
            raise corrupt(f"chunk {self._chunks} ({name}) fails its CRC check")
        if self._type == b"IHDR":
            width, height = struct.unpack(">II", self._ihdr[:8])
            if width == 0 or height == 0:
                raise corrupt("the image has zero width or height")
            if width >= 2**31 or height >= 2**31:
                raise corrupt("the image width or height is over 2^31 - 1")
            check_pixels(width, height)
        elif self._type == b"IDAT":
            self._seen_idat = True
        elif self._type == b"IEND":
            if not self._seen_idat:
                raise corrupt("there is no image data (IDAT)")
            self._state = _AFTER_IEND
            return
        self._state, self._need = _CHUNK_HEAD, 8

    def _end(self) -> None:
        if self._state != _AFTER_IEND:
            raise corrupt("it is truncated before the IEND chunk")
