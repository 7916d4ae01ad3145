"""`/v1/objects`: upload one object, download it (ranges), read its metadata, search.

Uploads stream: the body is read piece by piece and sent to the ingestion
service in ~1 MiB chunks while it arrives, so memory stays flat whatever the
object size. Reads check the object's data type and classification against
the key's scopes after a StatObject, and answer 403 when they do not allow
it (the id itself is no secret: ids are handed out in events and searches).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb
from pydantic import AwareDatetime, ValidationError

from gateway.auth import Principal
from gateway.deps import CallMetadataDep, ClientsDep, ReadPrincipal, SettingsDep, UploadPrincipal
from gateway.limits import declared_length, limited
from gateway.mapping import (
    etag_of,
    object_created,
    object_field,
    object_info,
    object_metadata,
    parse_labels,
    renamed,
    set_time,
)
from gateway.multipart import FileData, FileStart, MetadataPart, MultipartReader, boundary_of
from gateway.problems import (
    FieldError,
    Problem,
    documented,
    from_rpc_error,
    internal_error,
    request_id_of,
    request_invalid,
    validation_errors,
)
from gateway.ranges import RangeNotSatisfiable, none_match, parse_range, range_applies
from gateway.schemas import Classification, ObjectCreated, ObjectInfo, ObjectMetadataIn, SearchPage
from gateway.settings import GatewaySettings
from gateway.streams import IngestStream

router = APIRouter(tags=["objects"])

ULID_PATTERN = "^[0-9A-HJKMNP-TV-Z]{26}$"
#: What a search covers when it names no `since`.
_DEFAULT_WINDOW = timedelta(hours=24)
_ULID = re.compile(ULID_PATTERN)
_METADATA_PARAMS = (
    "data_type",
    "observed_at",
    "lat",
    "lon",
    "alt",
    "entity_id",
    "source",
    "provider",
    "classification",
    "labels",
    "schema_ref",
)

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "The object's bytes, sent as the raw body with their Content-Type (metadata in the query "
            "parameters), or `multipart/form-data` with a `metadata` part (JSON, first) and a `file` "
            "part (its Content-Type is the object's). Text formats are normalised by the services; "
            "images are stored unchanged."
        ),
        "content": {
            "application/json": {"schema": {}, "example": {"pm10": 17.5, "station": "station-42"}},
            "application/geo+json": {
                "schema": {},
                "example": {"type": "Point", "coordinates": [16.3738, 48.2082]},
            },
            "application/x-ndjson": {
                "schema": {"type": "string"},
                "example": '{"pm10": 17.5}\n{"pm10": 18.1}\n',
            },
            "text/csv": {"schema": {"type": "string"}, "example": "station,pm10\nstation-42,17.5\n"},
            "image/png": _BINARY,
            "image/jpeg": _BINARY,
            "image/tiff": _BINARY,
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["metadata", "file"],
                    "properties": {
                        "metadata": {"$ref": "#/components/schemas/ObjectMetadataIn"},
                        "file": {"type": "string", "format": "binary"},
                    },
                },
                "encoding": {"metadata": {"contentType": "application/json"}},
            },
        },
    }
}
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


def _source_of(principal: Principal, requested: str | None) -> str:
    if requested and requested != principal.name:
        raise Problem(
            403,
            "source_not_allowed",
            f"This API key ingests as source {principal.name!r} only.",
            [
                FieldError(
                    field="source", reason="source_not_allowed", description="must equal the key's source"
                )
            ],
        )
    return principal.name


def _may_ingest(principal: Principal, data_type: str) -> None:
    if not principal.may_ingest(data_type):
        raise Problem(403, "data_type_not_allowed", "This API key may not ingest this data type.")


def _may_read(principal: Principal, meta: md.Metadata) -> None:
    if not principal.may_read_type(meta.data_type):
        raise Problem(403, "data_type_not_allowed", "This API key may not read this data type.")
    if not principal.may_read(meta.data_type, meta.classification == md.CLASSIFICATION_RESTRICTED):
        raise Problem(403, "restricted", "This API key may not read restricted data.")


def _created(response: pb.IngestObjectResponse) -> JSONResponse:
    return JSONResponse(
        object_created(response),
        status_code=200 if response.replayed else 201,
        headers={"Location": f"/v1/objects/{response.metadata.id}"},
    )


def _rpc_problem(
    exc: grpc.aio.AioRpcError, request: Request, rename: Callable[[str], str] | None = None
) -> Problem:
    problem = from_rpc_error(exc, request_id_of(request))
    if rename is not None:
        problem.errors = renamed(problem.errors, rename)
    return problem


def _validated_metadata(values: dict[str, Any], prefix: str = "") -> ObjectMetadataIn:
    try:
        return ObjectMetadataIn.model_validate(values)
    except ValidationError as exc:
        raise request_invalid(validation_errors(exc.errors(include_url=False), prefix)) from None


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
        raise _rpc_problem(exc, request) from None
    return info


# -- POST /v1/objects ------------------------------------------------------------


@router.post(
    "/v1/objects",
    operation_id="uploadObject",
    summary="Upload one object (raw body or multipart)",
    description=(
        "Stores one object and announces it with a `DataStored` event; answers once both are durable. "
        "With an `Idempotency-Key`, a retry returns the first result with `replayed: true` and status "
        "200 (the first call answers 201); a retry while the first call still runs gets 409 with "
        "`Retry-After`. The body streams through in bounded memory; a declared `Content-Length` over "
        "the limit is refused with 413 before the body is read (send `Expect: 100-continue` to avoid "
        "sending it at all). The metadata parameters are required for raw bodies and must not be "
        "given with multipart, whose `metadata` part carries them."
    ),
    status_code=201,
    response_model=ObjectCreated,
    responses={
        201: {
            "description": "Stored and announced.",
            "headers": {
                "Location": {"description": "URL of the object.", "schema": {"type": "string"}},
                "X-Request-Id": {"description": "Id of the request.", "schema": {"type": "string"}},
            },
        },
        200: {
            "description": "A replay: the stored result of an earlier call with this Idempotency-Key.",
            "model": ObjectCreated,
        },
        **documented(400, 401, 403, 409, 413, 415, 422, 429, 500, 503, 504),
    },
    openapi_extra=_UPLOAD_BODY,
)
async def upload_object(
    request: Request,
    principal: UploadPrincipal,
    clients: ClientsDep,
    settings: SettingsDep,
    call_metadata: CallMetadataDep,
    data_type: Annotated[
        str | None, Query(description="Registered dotted data type.", examples=["sensor.air_quality"])
    ] = None,
    observed_at: Annotated[
        AwareDatetime | None,
        Query(
            description="When the data was observed (RFC 3339 with offset).",
            examples=["2024-11-20T10:00:00Z"],
        ),
    ] = None,
    lat: Annotated[float | None, Query(description="WGS84 latitude.", examples=[48.2082])] = None,
    lon: Annotated[float | None, Query(description="WGS84 longitude.", examples=[16.3738])] = None,
    alt: Annotated[float | None, Query(description="Altitude in metres.")] = None,
    entity_id: Annotated[str | None, Query(description="Device or entity.", examples=["station-42"])] = None,
    source: Annotated[str | None, Query(description="Must equal the key's source; defaults to it.")] = None,
    provider: Annotated[str | None, Query(description="Organisation that provides the data.")] = None,
    classification: Annotated[Classification | None, Query(description="Who may read it.")] = None,
    labels: Annotated[
        list[str] | None,
        Query(
            description="Labels as `key=value`, comma-separated or repeated.",
            examples=["district=07,kind=test"],
        ),
    ] = None,
    schema_ref: Annotated[str | None, Query(description="URI of the content's schema.")] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Makes retries safe: 1-128 characters of `[A-Za-z0-9._:-]`.",
            examples=["station-42-2024-11-20T10:00Z"],
        ),
    ] = None,
) -> Response:
    content_type = request.headers.get("content-type", "")
    limit = settings.max_object_bytes
    length = declared_length(request.headers, limit)
    stream = IngestStream(
        clients.ingest.IngestObject,
        timeout=settings.stream_deadline(settings.ingest_deadline_s, length),
        metadata=call_metadata,
        request_id=request_id_of(request),
        chunk_bytes=settings.chunk_bytes,
    )
    if content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
        given = [name for name in _METADATA_PARAMS if request.query_params.get(name) is not None]
        if given:
            raise request_invalid(
                [
                    FieldError(field=n, reason="unexpected", description="give it in the metadata part")
                    for n in given
                ],
                "Multipart uploads carry their metadata in the `metadata` part, not in query parameters.",
            )
        return await _upload_multipart(request, principal, stream, content_type, idempotency_key, settings)

    values = {
        "data_type": data_type,
        "observed_at": observed_at,
        "lat": lat,
        "lon": lon,
        "alt": alt,
        "entity_id": entity_id,
        "source": source,
        "provider": provider,
        "classification": classification,
        "labels": parse_labels(labels or ()),
        "schema_ref": schema_ref,
    }
    given_metadata = _validated_metadata({k: v for k, v in values.items() if v is not None})
    header = _header(principal, given_metadata, content_type, idempotency_key)
    try:
        await stream.start(header)
        async for piece in limited(request.stream(), limit):
            await stream.send(piece)
        response = await stream.finish()
    except Problem as problem:
        stream.cancel()
        problem.errors = renamed(problem.errors, object_field)
        raise
    except BaseException:
        stream.cancel()
        raise
    return _created(response)


def _header(
    principal: Principal, given: ObjectMetadataIn, media_type: str, idempotency_key: str | None
) -> pb.ObjectHeader:
    source = _source_of(principal, given.source)
    _may_ingest(principal, given.data_type)
    meta = object_metadata(given, source)
    meta.idempotency_key = idempotency_key or ""
    return pb.ObjectHeader(metadata=meta, declared_media_type=media_type)


async def _upload_multipart(
    request: Request,
    principal: Principal,
    stream: IngestStream,
    content_type: str,
    idempotency_key: str | None,
    settings: GatewaySettings,
) -> Response:
    limit = settings.max_object_bytes
    reader = MultipartReader(boundary_of(content_type), settings.max_metadata_part_bytes)
    given: ObjectMetadataIn | None = None
    try:
        async for piece in limited(request.stream(), limit):
            for event in reader.feed(piece):
                if isinstance(event, MetadataPart):
                    given = _metadata_part(event.content)
                elif isinstance(event, FileStart):
                    assert given is not None  # the reader enforces the order
                    await stream.start(_header(principal, given, event.media_type, idempotency_key))
                elif isinstance(event, FileData):
                    await stream.send(event.content)
        reader.finish()
        response = await stream.finish()
    except Problem as problem:
        stream.cancel()
        problem.errors = renamed(problem.errors, object_field)
        raise
    except BaseException:
        stream.cancel()
        raise
    return _created(response)


def _metadata_part(content: bytes) -> ObjectMetadataIn:
    try:
        document = json.loads(content)
    except (ValueError, RecursionError):
        raise request_invalid(
            [
                FieldError(
                    field="metadata", reason="invalid_json", description="The metadata part is not JSON."
                )
            ]
        ) from None
    if not isinstance(document, dict):
        raise request_invalid(
            [
                FieldError(
                    field="metadata", reason="type", description="The metadata part must be a JSON object."
                )
            ]
        )
    return _validated_metadata(document, "metadata")


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
        raise _rpc_problem(exc, request) from None
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
            sent += len(message.chunk)
            yield message.chunk
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


# -- GET /v1/objects -------------------------------------------------------------------


def _bbox(raw: str) -> md.BoundingBox:
    parts = raw.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(v == v and abs(v) != float("inf") for v in values):
        raise request_invalid(
            [
                FieldError(
                    field="bbox", reason="format", description="bbox is minLon,minLat,maxLon,maxLat (numbers)"
                )
            ]
        )
    min_lon, min_lat, max_lon, max_lat = values
    return md.BoundingBox(
        min_longitude=min_lon, min_latitude=min_lat, max_longitude=max_lon, max_latitude=max_lat
    )


@router.get(
    "/v1/objects",
    operation_id="searchObjects",
    summary="Search objects by data type, source, observation time and area",
    description=(
        "Lists objects newest hour first, answered from the storage naming scheme. `until` defaults to "
        "now and `since` to 24 hours before `until`; the range may span at most 31 days. RESTRICTED "
        "objects are left out for keys that may not read them, so a page can hold fewer than "
        "`page_size` objects while `next_page_token` is set."
    ),
    response_model=SearchPage,
    responses={
        200: {"description": "One page of results."},
        **documented(400, 401, 403, 422, 429, 500, 503, 504),
    },
)
async def search_objects(
    request: Request,
    principal: ReadPrincipal,
    clients: ClientsDep,
    settings: SettingsDep,
    call_metadata: CallMetadataDep,
    data_type: Annotated[str, Query(description="Data type to search.", examples=["sensor.air_quality"])],
    source: Annotated[str | None, Query(description="Only this source.", examples=["demo-city"])] = None,
    since: Annotated[AwareDatetime | None, Query(description="Observed at or after (RFC 3339).")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Observed before (RFC 3339).")] = None,
    bbox: Annotated[
        str | None,
        Query(description="Area: minLon,minLat,maxLon,maxLat (WGS84).", examples=["16.18,48.11,16.58,48.33"]),
    ] = None,
    page_size: Annotated[int, Query(ge=1, le=1000, description="Objects per page.")] = 100,
    page_token: Annotated[
        str | None, Query(max_length=2048, description="`next_page_token` of the previous page (opaque).")
    ] = None,
) -> Response:
    if not principal.may_read_type(data_type):
        raise Problem(403, "data_type_not_allowed", "This API key may not read this data type.")
    search = spb.SearchObjectsRequest(
        data_type=data_type, source=source or "", page_size=page_size, page_token=page_token or ""
    )
    # A continuation sends only what the client repeats: the sealed token
    # holds the first page's window, so "until now" does not move while a
    # client pages.
    if page_token is None:
        until = until or datetime.now(UTC)
        floor = datetime.min.replace(tzinfo=UTC)  # no day before year 1 to default to
        since = since or (until - _DEFAULT_WINDOW if until - floor >= _DEFAULT_WINDOW else floor)
    if since is not None:
        set_time(search.observed_after, since, "since")
    if until is not None:
        set_time(search.observed_before, until, "until")
    if bbox is not None:
        search.bbox.CopyFrom(_bbox(bbox))
    try:
        found: spb.SearchObjectsResponse = await clients.storage.SearchObjects(
            search, timeout=settings.read_deadline_s, metadata=call_metadata
        )
    except grpc.aio.AioRpcError as exc:
        raise _rpc_problem(exc, request, _search_field) from None
    objects = [
        object_info(o)
        for o in found.objects
        if principal.may_read(o.metadata.data_type, o.metadata.classification == md.CLASSIFICATION_RESTRICTED)
    ]
    return JSONResponse({"objects": objects, "next_page_token": found.next_page_token or None})


_SEARCH_FIELDS = {"observed_after": "since", "observed_before": "until"}


def _search_field(path: str) -> str:
    if path.startswith("bbox."):
        return "bbox"
    return _SEARCH_FIELDS.get(path, path)
