"""One upload client stream (IngestObject, IngestRecordDocument): the header,
then content in fixed-size chunks.

Each chunk message is encoded straight from the body's pieces, in one copy
(`encode_chunk`): building the message and serializing it would copy every
byte of an upload three more times. The channel's stubs take such encoded
chunks as they are (gateway.channel).

Writes wait for gRPC flow control, so a slow service slows the reading of
the HTTP body instead of filling memory; at most one chunk is pending. If
the service ends the call early (invalid metadata, content that is not what
it claims), the next write raises its status as a problem. Anything else
that goes wrong cancels the call, and the service then stores nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import grpc
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb

from gateway.problems import from_rpc_error


class IngestStream:
    """Open with `start`, feed with `send`, close with `finish`; `cancel` on any failure.

    `method` is the stub's client-streaming call and `message` its request
    type, whose `part` oneof holds `header` or `chunk`.
    """

    def __init__(
        self,
        method: Any,
        message: Any = pb.IngestObjectRequest,
        *,
        timeout: float,
        metadata: tuple[tuple[str, str | bytes], ...],
        request_id: str,
        chunk_bytes: int,
    ) -> None:
        self._method = method
        self._message = message
        self._timeout = timeout
        self._metadata = metadata
        self._request_id = request_id
        self._chunk = chunk_bytes
        self._chunk_field = message.DESCRIPTOR.fields_by_name["chunk"].number
        #: Body pieces not yet sent, and their total length.
        self._pieces: deque[bytes | memoryview] = deque()
        self._pending = 0
        self._call: Any = None
        self._header: Any = None

    async def start(self, header: Any) -> None:
        """Remember the header; the call opens with the first chunk (or at
        `finish`), so a body refused early by a route limit never starts one."""
        self._header = header

    async def _open(self) -> None:
        if self._call is None:
            self._call = self._method(timeout=self._timeout, metadata=self._metadata)
            await self._write(self._message(header=self._header))

    async def send(self, data: bytes) -> None:
        if type(data) is not bytes:
            # Kept until sent, by reference: a buffer its caller reuses, or a
            # view of wider items, is copied into bytes first.
            data = memoryview(data).tobytes()
        self._pieces.append(data)
        self._pending += len(data)
        while self._pending >= self._chunk:
            await self._open()
            await self._write(self._take(self._chunk))

    async def finish(self) -> Any:
        await self._open()
        if self._pending:
            await self._write(self._take(self._pending))
        try:
            await self._call.done_writing()
            response = await self._call
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await self._raise_status()
            raise
        return response

    def _take(self, size: int) -> bytes:
        """The next `size` pending bytes, as one encoded chunk message."""
        taken: list[bytes | memoryview] = []
        need = size
        while need:
            piece = self._pieces[0]
            if len(piece) <= need:
                taken.append(self._pieces.popleft())
                need -= len(piece)
            else:
                view = memoryview(piece)
                taken.append(view[:need])
                self._pieces[0] = view[need:]
                need = 0
        self._pending -= size
        return encode_chunk(self._chunk_field, taken, size)

    def cancel(self) -> None:
        if self._call is not None and not self._call.done():
            self._call.cancel()

    async def _write(self, message: Any) -> None:
        try:
            await self._call.write(message)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            # The service already ended the call (it refused the upload). A
            # write racing with that end fails locally with a generic
            # INTERNAL; the call itself resolves to the service's status.
            await self._raise_status()
            raise

    async def _raise_status(self) -> None:
        try:
            await self._call
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, self._request_id) from None


def encode_chunk(field: int, pieces: list[bytes | memoryview], size: int) -> bytes:
    """The wire encoding of a message whose only field set is bytes field
    number `field`, holding `pieces` (`size` bytes in all): its tag, its
    length and the bytes, joined once."""
    return b"".join([_varint(field << 3 | _LENGTH_DELIMITED), _varint(size), *pieces])


#: The protobuf wire type of bytes fields.
_LENGTH_DELIMITED = 2


def _varint(value: int) -> bytes:
    """`value` as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
