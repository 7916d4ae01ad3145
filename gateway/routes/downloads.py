"""`GET /v1/objects/{id}` and `/v1/objects/{id}/metadata`: an object's bytes (ranges) and metadata.

Both start with a StatObject, then check the object's data type and
classification against the key's scopes, and answer 403 when they do not
allow it (the id itself is no secret: ids are handed out in events and
searches). The bytes stream from the storage service's GetObject as they
arrive. Uploads are in uploads.py, search in search.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb

from gateway.auth import Principal
from gateway.deps import CallMetadataDep, ClientsDep, ReadPrincipal, SettingsDep
from gateway.mapping import etag_of, object_info
from gateway.problems import FieldError, Problem, documented, from_rpc_error, internal_error, request_id_of
from gateway.ranges import RangeNotSatisfiable, none_match, parse_range, range_applies
from gateway.schemas import ObjectInfo

router = APIRouter(tags=["objects"])

ULID_PATTERN = "^[0-9A-HJKMNP-TV-Z]{26}$"
_ULID = re.compile(ULID_PATTERN)

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_OBJECT_HEADERS = {
    "ETag": {"description": "Quoted SHA-256 of the object's bytes.", "schema": {"type": "string"}},
    "X-Request-Id": {"description": "Id of the request.", "schema": {"type": "string"}},
}

IdPath = Annotated[
    str,
    Path(
        alias="id",
        description="The object's id (a ULID, upper-case Crockford base32).",
        examples=["01JD5Q3W6Z8K4T2M9N7P5R3S1V"],
        json_schema_extra={"pattern": ULID_PATTERN},
    ),
]


# -- helpers -------------------------------------------------------------------


def _checked_id(object_id: str) -> str:
    if not _ULID.fullmatch(object_id):
        raise Problem(
            400,
            "invalid_id",
            "The object id is not a ULID.",
            [FieldError(field="id", reason="string.pattern", description=f"must match {ULID_PATTERN}")],
        )
    return object_id


def _may_read(principal: Principal, meta: md.Metadata) -> None:
    if not principal.may_read_type(meta.data_type):
        raise Problem(403, "data_type_not_allowed", "This API key may not read this data type.")
    if not principal.may_read(meta.data_type, meta.classification == md.CLASSIFICATION_RESTRICTED):
        raise Problem(403, "restricted", "This API key may not read restricted data.")


async def _stat(
    request: Request,
    clients: ClientsDep,
    settings: SettingsDep,
    call_metadata: CallMetadataDep,
    object_id: str,
) -> spb.StatObjectResponse:
    try:
        info: spb.StatObjectResponse = await clients.storage.StatObject(
            spb.StatObjectRequest(id=object_id), timeout=settings.read_deadline_s, metadata=call_metadata
        )
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc, request_id_of(request)) from None
    return info


# -- GET /v1/objects/{id} --------------------------------------------------------


@router.get(
    "/v1/objects/{id}",
    operation_id="downloadObject",
    summary="Download an object's bytes (streamed; single byte ranges)",
    description=(
        "Streams the stored bytes with their Content-Type, Content-Length and ETag (the quoted SHA-256). "
        "One `Range` (`bytes=a-b`, `bytes=a-`, `bytes=-n`) is answered with 206; other Range forms are "
        "ignored. `If-None-Match` answers 304, `If-Range` is honoured. A key that may not read the "
        "object's data type or classification gets 403."
    ),
    response_class=Response,
    responses={
        200: {
            "description": "The object's bytes.",
            "content": {"application/octet-stream": _BINARY},
            "headers": {
                **_OBJECT_HEADERS,
                "Accept-Ranges": {"description": "`bytes`", "schema": {"type": "string"}},
                "Content-Length": {"description": "Size in bytes.", "schema": {"type": "integer"}},
            },
        },
        206: {
            "description": "The requested byte range.",
            "content": {"application/octet-stream": _BINARY},
            "headers": {
                **_OBJECT_HEADERS,
                "Content-Range": {"description": "`bytes a-b/size`", "schema": {"type": "string"}},
            },
        },
        304: {"description": "Not modified (If-None-Match matched).", "headers": _OBJECT_HEADERS},
        **documented(400, 401, 403, 404, 416, 422, 429, 500, 503, 504),
    },
)
async def download_object(
    request: Request,
    object_id: IdPath,
    principal: ReadPrincipal,
    clients: ClientsDep,
    settings: SettingsDep,
    call_metadata: CallMetadataDep,
    range_header: Annotated[
        str | None, Header(alias="Range", description="One byte range.", examples=["bytes=0-1023"])
    ] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match", description="ETags held.")] = None,
    if_range: Annotated[
        str | None, Header(alias="If-Range", description="Serve the range only for this ETag.")
    ] = None,
) -> Response:
    info = await _stat(request, clients, settings, call_metadata, _checked_id(object_id))
    _may_read(principal, info.metadata)
    etag = etag_of(info)
    size = info.object.size_bytes
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if none_match(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    byte_range = None
    if range_applies(if_range, etag):
        try:
            byte_range = parse_range(range_header, size)
        except RangeNotSatisfiable:
            raise Problem(
                416,
                "range_not_satisfiable",
                f"The range is outside the object ({size} bytes).",
                headers={"Content-Range": f"bytes */{size}"},
            ) from None
    offset, length = (byte_range.start, byte_range.length) if byte_range else (0, size)
    if byte_range:
        headers["Content-Range"] = byte_range.content_range(size)
    headers["Content-Length"] = str(length)

    call = clients.storage.GetObject(
        spb.GetObjectRequest(id=info.metadata.id, offset=offset, length=length if byte_range else 0),
        timeout=settings.stream_deadline(settings.read_deadline_s, length),
        metadata=call_metadata,
    )
    try:
        first = await call.read()
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc, request_id_of(request)) from None
    if not isinstance(first, spb.GetObjectResponse) or not first.HasField("info"):
        call.cancel()
        raise internal_error(request_id_of(request))
    return StreamingResponse(
        _content(call, length),
        status_code=206 if byte_range else 200,
        headers=headers,
        media_type=info.metadata.media_type or "application/octet-stream",
    )


async def _content(call: Any, expected: int) -> AsyncIterator[bytes]:
    """The chunks of a GetObject stream; a short stream fails loudly (the client sees a cut response)."""
    sent = 0
    try:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                break
            chunk = message.chunk  # each read of a bytes field is a copy
            sent += len(chunk)
            yield chunk
        if sent != expected:
            raise RuntimeError(f"object stream ended after {sent} of {expected} bytes")
    finally:
        call.cancel()


# -- GET /v1/objects/{id}/metadata --------------------------------------------------


@router.get(
    "/v1/objects/{id}/metadata",
    operation_id="getObjectMetadata",
    summary="Read an object's metadata and storage reference",
    response_model=ObjectInfo,
    responses={
        200: {"description": "The object's metadata.", "headers": _OBJECT_HEADERS},
        **documented(400, 401, 403, 404, 422, 429, 500, 503, 504),
    },
)
async def get_object_metadata(
    request: Request,
    object_id: IdPath,
    principal: ReadPrincipal,
    clients: ClientsDep,
    settings: SettingsDep,
    call_metadata: CallMetadataDep,
) -> Response:
    info = await _stat(request, clients, settings, call_metadata, _checked_id(object_id))
    _may_read(principal, info.metadata)
    return JSONResponse(object_info(info), headers={"ETag": etag_of(info)})
