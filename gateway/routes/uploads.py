"""`POST /v1/objects`: upload one object, as a raw body or as multipart/form-data.

Uploads stream: the body is read piece by piece and sent to the ingestion
service in ~1 MiB chunks while it arrives, so memory stays flat whatever the
object size. A raw body carries its metadata in the query parameters; a
multipart body in its `metadata` part (JSON, before the `file` part). The
key decides the source (`source` may only repeat it) and which data types
it may ingest. Downloads are in downloads.py, search in search.py.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pydantic import AwareDatetime, ValidationError

from gateway.auth import Principal
from gateway.deps import CallMetadataDep, ClientsDep, SettingsDep, UploadPrincipal
from gateway.limits import declared_length, limited
from gateway.mapping import object_created, object_field, object_metadata, parse_labels, renamed
from gateway.multipart import FileData, FileStart, MetadataPart, MultipartReader, boundary_of
from gateway.problems import (
    FieldError,
    Problem,
    documented,
    request_id_of,
    request_invalid,
    validation_errors,
)
from gateway.schemas import Classification, ObjectCreated, ObjectMetadataIn
from gateway.settings import GatewaySettings
from gateway.streams import IngestStream

router = APIRouter(tags=["objects"])

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


# -- helpers -------------------------------------------------------------------


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


def _created(response: pb.IngestObjectResponse) -> JSONResponse:
    return JSONResponse(
        object_created(response),
        status_code=200 if response.replayed else 201,
        headers={"Location": f"/v1/objects/{response.metadata.id}"},
    )


def _validated_metadata(values: dict[str, Any], prefix: str = "") -> ObjectMetadataIn:
    try:
        return ObjectMetadataIn.model_validate(values)
    except ValidationError as exc:
        raise request_invalid(validation_errors(exc.errors(include_url=False), prefix)) from None


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
