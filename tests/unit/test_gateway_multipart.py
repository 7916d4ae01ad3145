"""The streaming multipart reader: metadata first, file bytes as they come, malformed bodies refused."""

from __future__ import annotations

import os

import pytest

from gateway.multipart import FileData, FileEnd, FileStart, MetadataPart, MultipartReader, boundary_of
from gateway.problems import Problem

BOUNDARY = "b0undary-x"


def part(name: str, content: bytes, content_type: str | None = None, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"\r\n" + content + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def run(data: bytes, piece: int, max_metadata: int = 1024) -> list[object]:
    reader = MultipartReader(BOUNDARY.encode(), max_metadata)
    events: list[object] = []
    for start in range(0, len(data), piece):
        events += reader.feed(data[start : start + piece])
    reader.finish()
    return events


@pytest.mark.parametrize("piece", [1, 7, 4096, 10**9])
def test_metadata_then_file_bytes_whatever_the_piece_size(piece: int) -> None:
    content = os.urandom(5000) + b"\r\n--" + BOUNDARY.encode()[:-1]  # a near-boundary inside the file
    data = body(
        part("metadata", b'{"data_type": "sensor.x"}', "application/json"),
        part("file", content, "image/png", "a.png"),
    )
    events = run(data, piece)
    assert events[0] == MetadataPart(b'{"data_type": "sensor.x"}')
    assert events[1] == FileStart("image/png")
    assert events[-1] == FileEnd()
    file_bytes = b"".join(e.content for e in events if isinstance(e, FileData))
    assert file_bytes == content


def test_file_data_is_handed_over_per_piece_not_held() -> None:
    content = b"x" * 100_000
    data = body(part("metadata", b"{}"), part("file", content, "text/csv"))
    reader = MultipartReader(BOUNDARY.encode(), 1024)
    largest = 0
    for start in range(0, len(data), 1000):
        for event in reader.feed(data[start : start + 1000]):
            if isinstance(event, FileData):
                largest = max(largest, len(event.content))
    assert largest <= 1000


def test_a_file_part_without_content_type_is_octet_stream() -> None:
    events = run(body(part("metadata", b"{}"), part("file", b"abc")), 10**6)
    assert events[1] == FileStart("application/octet-stream")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (body(part("file", b"abc", "text/csv"), part("metadata", b"{}")), "file"),
        (body(part("metadata", b"{}"), part("metadata", b"{}"), part("file", b"a")), "metadata"),
        (body(part("metadata", b"{}"), part("file", b"a"), part("file", b"b")), "file"),
        (body(part("metadata", b"{}"), part("other", b"x"), part("file", b"a")), "other"),
        (body(part("metadata", b"{}")), "file"),
        (part("metadata", b"{}") + part("file", b"a"), "body"),  # no closing boundary
        (b"this is not multipart at all", "body"),
    ],
)
def test_malformed_multipart_bodies_are_refused(data: bytes, field: str) -> None:
    with pytest.raises(Problem) as caught:
        run(data, 64)
    assert caught.value.status == 422
    assert caught.value.errors[0].field == field


def test_an_oversized_metadata_part_is_refused() -> None:
    with pytest.raises(Problem) as caught:
        run(body(part("metadata", b"{" + b" " * 2000 + b"}"), part("file", b"a")), 100, max_metadata=1024)
    assert caught.value.status == 413


def test_the_boundary_comes_from_the_content_type() -> None:
    assert boundary_of(f"multipart/form-data; boundary={BOUNDARY}") == BOUNDARY.encode()
    assert boundary_of(f'multipart/form-data; boundary="{BOUNDARY}"') == BOUNDARY.encode()
    with pytest.raises(Problem):
        boundary_of("multipart/form-data")
