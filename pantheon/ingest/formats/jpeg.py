"""JPEG, checked structurally as it streams past: segments, scans, then EOI as the last bytes."""

from __future__ import annotations

import re
import struct

from pantheon.ingest.formats.image_stream import JPEG, ImageStream, check_pixels, corrupt

# JPEG walker states.
_SOI, _MARKER, _MARKER_CODE, _LENGTH, _SKIP, _SCAN, _SCAN_FF, _AFTER_EOI = range(8)
_SOF_CODES = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), 0xCD, 0xCE, 0xCF})
_SOS, _EOI, _SOI_CODE = 0xDA, 0xD9, 0xD8
_RST_CODES = frozenset(range(0xD0, 0xD8))
_NOT_FILL = re.compile(rb"[^\xff]")
_FRAME_HEAD = 5  # sample precision (1 byte), height (2), width (2)


class JpegWalker(ImageStream):
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
                        check_pixels(width, height)
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
                raise corrupt("data follows the end-of-image marker")
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
                raise corrupt("it has no image scan")
            self._state = _AFTER_EOI
        elif code == _SOI_CODE or code == 0:
            raise corrupt("it has a misplaced marker")
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
            raise corrupt("a segment has an invalid length")
        if self._code in _SOF_CODES:
            if length - 2 < _FRAME_HEAD:
                raise corrupt("a frame header is truncated")
            self._seen_frame = True
            self._frame = bytearray()
        self._in_scan = self._code == _SOS
        if self._in_scan:
            if not self._seen_frame:
                raise corrupt("a scan comes before the frame header")
            self._seen_scan = True
        self._remaining = length - 2
        if self._remaining:
            self._state = _SKIP
        else:
            self._state = _SCAN if self._in_scan else _MARKER

    def _end(self) -> None:
        if self._state != _AFTER_EOI:
            raise corrupt("it is truncated before the end-of-image marker")
