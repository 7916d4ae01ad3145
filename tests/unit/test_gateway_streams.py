"""The gateway's upload streams: chunk messages encoded straight from the body's pieces."""

from __future__ import annotations

import random
from typing import Any

import pytest
from google.protobuf.message import Message
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb

from gateway.channel import _encoded
from gateway.streams import IngestStream, encode_chunk

MESSAGES = [pb.IngestObjectRequest, pb.IngestRecordDocumentRequest]


def split(data: bytes, rng: random.Random) -> list[bytes | memoryview]:
    """`data` in pieces of random sizes, some of them views."""
    pieces: list[bytes | memoryview] = []
    at = 0
    while at < len(data):
        size = rng.choice([1, 7, 300, 65536, 100_000])
        piece = data[at : at + size]
        pieces.append(memoryview(piece) if rng.random() < 0.5 else piece)
        at += size
    return pieces


@pytest.mark.parametrize("message", MESSAGES)
@pytest.mark.parametrize("size", [0, 1, 127, 128, 16383, 16384, 2**20, 4 * 2**20])
def test_an_encoded_chunk_is_the_message_protobuf_would_send(message: Any, size: int) -> None:
    data = random.Random(size).randbytes(size)
    field = message.DESCRIPTOR.fields_by_name["chunk"].number
    encoded = encode_chunk(field, split(data, random.Random(size + 1)), size)
    assert encoded == message(chunk=data).SerializeToString()
    assert message.FromString(encoded) == message(chunk=data)


class FakeCall:
    """A client-streaming call that keeps what is written, as the channel would send it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    async def write(self, request: Message | bytes) -> None:
        self.sent.append(_encoded(request))

    async def done_writing(self) -> None:
        self.closed = True

    def done(self) -> bool:
        return self.closed

    def __await__(self) -> Any:
        yield from []
        return pb.IngestObjectResponse()


@pytest.mark.parametrize("message", MESSAGES)
async def test_a_body_goes_out_as_its_header_then_whole_chunks_then_the_rest(message: Any) -> None:
    call = FakeCall()
    stream = IngestStream(lambda **_: call, message, timeout=1, metadata=(), request_id="r", chunk_bytes=1000)
    data = random.Random(3).randbytes(5500)
    await stream.start(type(message().header)())
    for piece in split(data, random.Random(4)):
        await stream.send(bytes(piece))
    await stream.finish()
    first, *chunks = [message.FromString(sent) for sent in call.sent]
    assert first.WhichOneof("part") == "header"
    assert [len(c.chunk) for c in chunks] == [1000] * 5 + [500]
    assert b"".join(c.chunk for c in chunks) == data
    assert call.closed


def test_the_upload_stubs_send_messages_serialized_and_chunks_as_they_are() -> None:
    message = pb.IngestObjectRequest(chunk=b"abc")
    assert _encoded(message) == message.SerializeToString()
    assert _encoded(b"\x12\x03abc") == b"\x12\x03abc"


async def test_a_piece_that_is_not_bytes_is_sent_as_it_was_when_given() -> None:
    import array

    call = FakeCall()
    stream = IngestStream(lambda **_: call, timeout=1, metadata=(), request_id="r", chunk_bytes=64)
    await stream.start(pb.ObjectHeader())
    buffer = bytearray(b"a" * 10)
    await stream.send(buffer)  # type: ignore[arg-type]
    buffer[:] = b"b" * 10  # the caller reuses its buffer
    await stream.send(array.array("i", [1, 2]))  # type: ignore[arg-type]
    await stream.finish()
    (chunk,) = [pb.IngestObjectRequest.FromString(sent).chunk for sent in call.sent[1:]]
    assert chunk == b"a" * 10 + array.array("i", [1, 2]).tobytes()
