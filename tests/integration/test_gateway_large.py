"""A 1 GiB streamed upload (and download) through a gateway process whose peak memory is measured.

The body, a 32768 x 32768 greyscale TIFF (an aerial image, say), is generated
on the fly by the client and sent chunked, so neither side ever holds it. A
TIFF rather than a CSV: the services store images unchanged, while their CSV
normaliser runs at about 14 MiB/s, and the ingestion service gives its own
call to storage a fixed 30 s deadline, so a 1 GiB CSV cannot be ingested at
all yet (see the report of issue 4). The gateway runs as a process of this
test's own, so its VmHWM (peak resident memory over its whole life) covers
exactly this transfer; the bound is on memory, not time.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support import Process, object_params, own_gateway, tls, unique_type

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

GiB = 2**30
MiB = 2**20
#: The gateway's peak resident memory may not exceed this, whatever the object size.
PEAK_RSS_LIMIT_MIB = 200

SIDE = 32768  # pixels: SIDE * SIDE bytes = 1 GiB of 8-bit greyscale


def tiff_header() -> bytes:
    """A little-endian TIFF header and IFD for one uncompressed SIDE x SIDE strip right after it."""
    entries = [
        (256, SIDE),  # ImageWidth
        (257, SIDE),  # ImageLength
        (258, 8),  # BitsPerSample
        (259, 1),  # Compression: none
        (262, 1),  # PhotometricInterpretation: black is zero
        (273, 0),  # StripOffsets, filled in below
        (277, 1),  # SamplesPerPixel
        (278, SIDE),  # RowsPerStrip
        (279, SIDE * SIDE),  # StripByteCounts
    ]
    pixels_at = 8 + 2 + len(entries) * 12 + 4
    ifd = struct.pack("<H", len(entries))
    for tag, value in entries:
        ifd += struct.pack("<HHII", tag, 4, 1, pixels_at if tag == 273 else value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00"


class Sampler:
    """Samples a process's resident memory every 50 ms in a thread."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self.process.rss_kib())
            time.sleep(0.05)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_1_gib_upload_and_download_stream_in_bounded_gateway_memory(
    stack_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row = bytes(range(256)) * (SIDE // 256)  # one row of pixels, a grey ramp
    digest = hashlib.sha256()
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        rows_per_piece = MiB // SIDE
        pieces = [tiff_header()] + [row * rows_per_piece] * (SIDE // rows_per_piece)
        for piece in pieces:
            digest.update(piece)
            sent += len(piece)
            yield piece

    with own_gateway(stack_env, tmp_path) as gw:
        baseline_kib = gw.rss_kib()
        with (
            httpx.Client(
                base_url=gw.url,
                verify=tls(stack_env["PANTHEON_CA_FILE"]),
                headers={"Authorization": f"Bearer {stack_env['PANTHEON_API_KEY']}"},
                timeout=300,
            ) as http,
            Sampler(gw) as upload_memory,
        ):
            started = time.monotonic()
            response = http.post(
                "/v1/objects",
                params=object_params(unique_type("imagery")),
                content=body(),
                headers={"Content-Type": "image/tiff"},
            )
            upload_s = time.monotonic() - started
        assert response.status_code == 201, response.text
        created = response.json()
        assert sent > GiB
        assert created["size"] == sent
        assert created["sha256"] == digest.hexdigest()
        assert created["metadata"]["format"] == "FORMAT_TIFF"

        with (
            httpx.Client(
                base_url=gw.url,
                verify=tls(stack_env["PANTHEON_CA_FILE"]),
                headers={"Authorization": f"Bearer {stack_env['PANTHEON_API_KEY']}"},
                timeout=300,
            ) as http,
            Sampler(gw) as download_memory,
        ):
            started = time.monotonic()
            received = hashlib.sha256()
            count = 0
            with http.stream("GET", f"/v1/objects/{created['id']}") as download:
                assert download.status_code == 200
                assert download.headers["content-length"] == str(sent)
                for piece in download.iter_bytes():
                    received.update(piece)
                    count += len(piece)
            download_s = time.monotonic() - started
        assert count == sent and received.hexdigest() == digest.hexdigest()
        peak_kib = gw.peak_rss_kib()

    with capsys.disabled():
        print(
            f"\n1 GiB TIFF: upload {sent / MiB / upload_s:.0f} MiB/s ({upload_s:.0f} s), "
            f"download {sent / MiB / download_s:.0f} MiB/s ({download_s:.0f} s); gateway RSS "
            f"baseline {baseline_kib / 1024:.0f} MiB, sampled peak upload "
            f"{upload_memory.peak_kib / 1024:.0f} MiB / download {download_memory.peak_kib / 1024:.0f} MiB, "
            f"VmHWM {peak_kib / 1024:.0f} MiB"
        )
    assert peak_kib < PEAK_RSS_LIMIT_MIB * 1024
    # Memory grows by a few chunks at most, not with the object.
    assert max(upload_memory.peak_kib, download_memory.peak_kib) - baseline_kib < 64 * 1024
