"""Upload streams: a header message, then content chunks.

`IngestObject` and `PutObject` share this shape (a `part` oneof of `header`
and `chunk`); both services read it the same way. `PutObject` may also send
announcement pieces between the header and the first chunk.

A chunk's size cap (the proto's `bytes.max_len` on `chunk`) is checked here,
where the chunk is read, not with the other rules in the interceptor: every
read of a protobuf bytes field copies it, so each chunk is read exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import cache
from typing import Any

from buf.validate import validate_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from pantheon.errors import InvalidArgument
from pantheon.validation import FieldViolation


async def split_upload(requests: AsyncIterator[Any]) -> tuple[Any, AsyncIterator[bytes]]:
    """The stream's header and an iterator over its non-empty chunks."""
    stream = aiter(requests)
    header = await _header(stream)
    return header, _chunks(None, stream)


async def split_announced_upload(
    requests: AsyncIterator[Any], limit: int
) -> tuple[Any, bytes, AsyncIterator[bytes]]:
    """PutObject's stream: the header, the announcement (its pieces, which
    come before the first chunk, joined; at most `limit` bytes), and an
    iterator over the non-empty chunks."""
    stream = aiter(requests)
    header = await _header(stream)
    announcement = bytearray()
    async for message in stream:
        if message.WhichOneof("part") != "announcement":
            return header, bytes(announcement), _chunks(message, stream)
        if len(announcement) + len(message.announcement) > limit:
            raise InvalidArgument(f"the announcement is larger than {limit} bytes", reason="too_large")
        announcement += message.announcement
    return header, bytes(announcement), _chunks(None, stream)


async def _header(stream: AsyncIterator[Any]) -> Any:
    first = await anext(stream, None)
    if first is None or first.WhichOneof("part") != "header":
        raise InvalidArgument("the first message must carry the header", reason="missing_header")
    return first.header


async def _chunks(first: Any, stream: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """The non-empty chunks of `first` (if any) and the rest of the stream."""

    async def rest() -> AsyncIterator[Any]:
        if first is not None:
            yield first
        async for message in stream:
            yield message

    async for message in rest():
        part = message.WhichOneof("part")
        if part == "header":
            raise InvalidArgument("only the first message may carry a header", reason="duplicate_header")
        if part != "chunk":
            raise InvalidArgument(
                "announcement pieces must come before the content", reason="misplaced_announcement"
            )
        chunk = message.chunk
        limit = _chunk_cap(message.DESCRIPTOR)
        if limit is not None and len(chunk) > limit:
            del chunk  # not kept alive by the error's traceback
            raise InvalidArgument.from_violations(
                [FieldViolation("chunk", "bytes.max_len", f"must be at most {limit} bytes")]
            )
        if chunk:
            yield chunk


@cache
def _chunk_cap(descriptor: Descriptor) -> int | None:
    """The proto's size cap of an upload stream message's `chunk`, if that
    is the field's only rule (cached per message type: it is read for every
    chunk). A chunk with any other rule is left to the full check."""
    if "part" not in descriptor.oneofs_by_name or "chunk" not in descriptor.fields_by_name:
        return None
    rules = descriptor.fields_by_name["chunk"].GetOptions().Extensions[validate_pb2.field]
    if [f.name for f, _ in rules.ListFields()] != ["bytes"]:
        return None
    if [f.name for f, _ in rules.bytes.ListFields()] != ["max_len"]:
        return None
    return int(rules.bytes.max_len)


def is_chunk(message: Message) -> bool:
    """Whether `message` is a content chunk of an upload stream (whose cap
    the stream's reader checks)."""
    return _chunk_cap(message.DESCRIPTOR) is not None and message.WhichOneof("part") == "chunk"


async def prepend(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`head` (if any), then everything in `rest`; `head` is let go once
    handed on (it may be an upload's whole part)."""
    if head:
        yield head
    del head
    async for piece in rest:
        yield piece


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    """`data` in pieces of at most `size` bytes."""
    for start in range(0, len(data), size):
        yield data[start : start + size]
