"""Upload streams (pantheon/streams.py): a chunk's size cap is checked where
the chunk is read, for both upload contracts, since the interceptor no
longer reads chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.storage.v1 import storage_service_pb2 as spb

from pantheon.errors import InvalidArgument
from pantheon.interceptors import check_streamed
from pantheon.streams import is_chunk, split_announced_upload, split_upload

CAP = 4 * 2**20  # bytes.max_len of `chunk` in both protos


async def _stream(*messages: Any) -> AsyncIterator[Any]:
    for message in messages:
        yield message


async def _read_ingest(*chunks: bytes) -> list[bytes]:
    header = pb.IngestObjectRequest(header=pb.ObjectHeader(declared_media_type="text/csv"))
    _, body = await split_upload(_stream(header, *(pb.IngestObjectRequest(chunk=c) for c in chunks)))
    return [c async for c in body]


async def _read_storage(*chunks: bytes) -> list[bytes]:
    header = spb.PutObjectRequest(header=spb.PutObjectHeader())
    _, _, body = await split_announced_upload(
        _stream(header, *(spb.PutObjectRequest(chunk=c) for c in chunks)), limit=0
    )
    return [c async for c in body]


@pytest.mark.parametrize("read", [_read_ingest, _read_storage])
async def test_a_chunk_at_the_cap_is_read_and_one_over_it_is_refused(read: Any) -> None:
    assert await read(b"a", b"x" * CAP, b"", b"z") == [b"a", b"x" * CAP, b"z"]  # empty chunks skipped
    with pytest.raises(InvalidArgument) as caught:
        await read(b"a", b"x" * (CAP + 1))
    assert caught.value.reason == "validation_failed"
    assert [(v.field, v.rule_id) for v in caught.value.violations] == [("chunk", "bytes.max_len")]


async def test_the_refusal_comes_before_the_oversize_chunk_is_passed_on() -> None:
    header = pb.IngestObjectRequest(header=pb.ObjectHeader(declared_media_type="text/csv"))
    _, body = await split_upload(
        _stream(header, pb.IngestObjectRequest(chunk=b"ok"), pb.IngestObjectRequest(chunk=b"x" * (CAP + 1)))
    )
    assert await anext(body) == b"ok"
    with pytest.raises(InvalidArgument):
        await anext(body)


def test_the_interceptor_leaves_chunks_to_the_reader_and_checks_everything_else() -> None:
    big = pb.IngestObjectRequest(chunk=b"x" * (CAP + 1))
    assert is_chunk(big) and is_chunk(spb.PutObjectRequest(chunk=b"x"))
    check_streamed(big)  # the reader refuses it (above)
    assert not is_chunk(pb.IngestObjectRequest(header=pb.ObjectHeader()))
    assert not is_chunk(spb.PutObjectRequest(announcement=b"x"))
    with pytest.raises(InvalidArgument):
        check_streamed(pb.IngestObjectRequest())  # no part at all: `part` is required
