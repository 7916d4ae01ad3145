"""Small, valid sample files built by hand (no image library needed).

Shared by the normaliser unit tests and the integration tests.
"""

from __future__ import annotations

import struct
import zlib


def png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def make_png() -> bytes:
    """A 2x2 RGB image: red, green / blue, white."""
    ihdr = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    rows = b"\x00\xff\x00\x00\x00\xff\x00" + b"\x00\x00\x00\xff\xff\xff\xff"
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"tEXt", b"Comment\x00a test image")
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def jpeg_segment(code: int, payload: bytes) -> bytes:
    return bytes([0xFF, code]) + struct.pack(">H", len(payload) + 2) + payload


def make_jpeg(scan: bytes = b"\x3f", app1: bytes = b"") -> bytes:
    """An 8x8 mid-grey baseline JPEG with one-code Huffman tables.

    The scan byte 0x3f is DC code "0" (difference 0), AC code "0" (end of
    block), then 1-bits padding the byte.
    """
    one_code_table = bytes([1] + [0] * 15) + b"\x00"
    return (
        b"\xff\xd8"
        + jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + (jpeg_segment(0xE1, app1) if app1 else b"")
        + jpeg_segment(0xDB, b"\x00" + bytes([1] * 64))
        + jpeg_segment(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00")
        + jpeg_segment(0xC4, b"\x00" + one_code_table)
        + jpeg_segment(0xC4, b"\x10" + one_code_table)
        + jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + scan
        + b"\xff\xd9"
    )


def tiff_entries(order: str, pixel_offset: int) -> list[bytes]:
    tags = [(256, 1), (257, 1), (258, 8), (259, 1), (262, 1), (273, pixel_offset), (278, 1)]
    tags.append((279, 1))
    return [struct.pack(order + "HHII", tag, 4, 1, value) for tag, value in tags]


def make_tiff(order: str = "<", ifd_at_end: bool = False) -> bytes:
    """A 1x1 8-bit greyscale TIFF, with its IFD before or after the pixel."""
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    if ifd_at_end:
        ifd_offset, pixel_offset = 10, 8  # pixel plus a pad byte keep the IFD word-aligned
    else:
        ifd_offset, pixel_offset = 8, 8 + 2 + 8 * 12 + 4
    entries = tiff_entries(order, pixel_offset)
    ifd = struct.pack(order + "H", len(entries)) + b"".join(entries) + b"\x00\x00\x00\x00"
    header = magic + struct.pack(order + "I", ifd_offset)
    return header + (b"\x80\x00" + ifd if ifd_at_end else ifd + b"\x80")


def make_bigtiff() -> bytes:
    entries = [struct.pack("<HHQQ", tag, 16, 1, value) for tag, value in [(256, 1), (257, 1)]]
    ifd = struct.pack("<Q", len(entries)) + b"".join(entries) + struct.pack("<Q", 0)
    return b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + ifd + b"\x80"
