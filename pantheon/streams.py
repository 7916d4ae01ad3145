"""Upload streams: a header message, then content chunks.

`IngestObject` and `PutObject` share this shape (a `part` oneof of `header`
and `chunk`); both services read it the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pantheon.errors import InvalidArgument


async def split_upload(requests: AsyncIterator[Any]) -> tuple[Any, AsyncIterator[bytes]]:
    """The stream's header and an iterator over its non-empty chunks."""
    stream = aiter(requests)
    first = await anext(stream, None)
    if first is None or not first.HasField("header"):
        raise InvalidArgument("the first message must carry the header", reason="missing_header")

    async def chunks() -> AsyncIterator[bytes]:
        async for message in stream:
            if not message.HasField("chunk"):
                raise InvalidArgument("only the first message may carry a header", reason="duplicate_header")
            if message.chunk:
                yield message.chunk

    return first.header, chunks()


async def prepend(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`head` (if any), then everything in `rest`."""
    if head:
        yield head
    async for piece in rest:
        yield piece


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    """`data` in pieces of at most `size` bytes."""
    for start in range(0, len(data), size):
        yield data[start : start + size]
