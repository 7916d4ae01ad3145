"""One IngestObject client stream: the header, then content in fixed-size chunks.

Writes wait for gRPC flow control, so a slow service slows the reading of
the HTTP body instead of filling memory; at most one chunk is pending. If
the service ends the call early (invalid metadata, content that is not what
it claims), the next write raises its status as a problem. Anything else
that goes wrong cancels the call, and the service then stores nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as ingest_grpc

from gateway.problems import from_rpc_error


class IngestStream:
    """Open with `start`, feed with `send`, close with `finish`; `cancel` on any failure."""

    def __init__(
        self,
        stub: ingest_grpc.IngestionServiceAsyncStub,
        *,
        timeout: float,
        metadata: tuple[tuple[str, str | bytes], ...],
        request_id: str,
        chunk_bytes: int,
    ) -> None:
        self._stub = stub
        self._timeout = timeout
        self._metadata = metadata
        self._request_id = request_id
        self._chunk = chunk_bytes
        self._pending = bytearray()
        self._call: Any = None

    async def start(self, header: pb.ObjectHeader) -> None:
        self._call = self._stub.IngestObject(timeout=self._timeout, metadata=self._metadata)
        await self._write(pb.IngestObjectRequest(header=header))

    async def send(self, data: bytes) -> None:
        self._pending += data
        while len(self._pending) >= self._chunk:
            piece = bytes(self._pending[: self._chunk])
            del self._pending[: self._chunk]
            await self._write(pb.IngestObjectRequest(chunk=piece))

    async def finish(self) -> pb.IngestObjectResponse:
        if self._pending:
            await self._write(pb.IngestObjectRequest(chunk=bytes(self._pending)))
            self._pending.clear()
        try:
            await self._call.done_writing()
            response: pb.IngestObjectResponse = await self._call
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await self._raise_status()
            raise
        return response

    def cancel(self) -> None:
        if self._call is not None and not self._call.done():
            self._call.cancel()

    async def _write(self, message: pb.IngestObjectRequest) -> None:
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
