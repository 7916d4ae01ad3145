"""PNG, JPEG and TIFF: identified by their bytes, and the walker that checks each.

An upload is recognised by its first bytes (`sniff_image`, `could_be`) and
handed to its format's walker (png.py, jpeg.py, tiff.py, on the pass-through
stream of image_stream.py), which checks its structure as it streams past
and stores it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from pantheon.ingest.formats.base import Format, Normaliser
from pantheon.ingest.formats.image_stream import JPEG, PNG, PNG_SIGNATURE, TIFF, TIFF_MAGICS
from pantheon.ingest.formats.jpeg import JpegWalker
from pantheon.ingest.formats.png import PngWalker
from pantheon.ingest.formats.tiff import TiffWalker

_MAGICS: dict[Format, tuple[bytes, ...]] = {
    PNG: (PNG_SIGNATURE,),
    JPEG: (b"\xff\xd8\xff",),
    TIFF: TIFF_MAGICS,
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
    walkers: dict[Format, Callable[[], Normaliser]] = {PNG: PngWalker, JPEG: JpegWalker, TIFF: TiffWalker}
    return walkers[fmt]()
