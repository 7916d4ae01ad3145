"""`/v1/records`: many small records in one request (JSON, NDJSON or CSV).

The edge stays thin: the body is streamed as it arrives, in chunks, to the
ingestion service's IngestRecordDocument, which parses and types it with
the rules CSV objects use, off its event loop. Here only the route's limits,
the key's scope and the query parameters are checked. A document of the
wrong shape is a 400 with one field error per problem; records whose values
break the rules are rejected one by one by the ingestion service; the
answer is 201 when every record was accepted, 207 with each record's outcome
when some were rejected, and a 400 problem when all were.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md

from gateway.batches import BATCH_FORMATS, CLASSIFICATIONS, outcomes
from gateway.deps import CallMetadataDep, ClientsDep, SettingsDep, UploadPrincipal
from gateway.limits import declared_length, limited
from gateway.mapping import metadata_json, parse_labels, record_field, renamed
from gateway.problems import FieldError, Problem, documented, request_id_of
from gateway.schemas import BatchFormat, Classification, RecordsResult
from gateway.streams import IngestStream

router = APIRouter(tags=["records"])

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)
CSV_TYPES = frozenset({"text/csv"})
#: The media type the services know each accepted one by.
_CANONICAL = {
    **dict.fromkeys(JSON_TYPES, "application/json"),
    **dict.fromkeys(NDJSON_TYPES, "application/x-ndjson"),
    **dict.fromkeys(CSV_TYPES, "text/csv"),
}

_NDJSON_EXAMPLE = (
    '{"entity_id": "station-42", "observed_at": "2024-11-20T10:00:00Z", '
    '"location": {"lat": 48.2082, "lon": 16.3738}, "payload": {"pm10": 17.5}}\n'
)
_CSV_EXAMPLE = (
    "entity_id,observed_at,lat,lon,pm10,calibrated\n"
    "station-42,2024-11-20T10:00:00Z,48.2082,16.3738,17.5,true\n"
)

_RECORDS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "A JSON batch; or NDJSON, one record object per line; or CSV with the columns "
            "`entity_id,observed_at,lat,lon` (and `alt`), every other column becoming a payload value "
            "(typed as boolean, integer, number or string; empty cells are left out). For NDJSON and CSV "
            "the batch fields come from the query parameters; for JSON the query parameters are defaults "
            "for fields the body leaves out."
        ),
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/RecordBatchIn"}},
            "application/x-ndjson": {"schema": {"type": "string"}, "example": _NDJSON_EXAMPLE},
            "text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE},
        },
    }
}


@router.post(
    "/v1/records",
    operation_id="ingestRecords",
    summary="Ingest a batch of small records",
    description=(
        "Stores the batch as one object and publishes one `RecordIngested` event per accepted record "
        "plus one `DataStored` event for the batch. Records that break the metadata rules are rejected "
        "individually (and sent to the dead-letter topic): 201 when all were accepted, 207 with "
        "per-record outcomes when some were rejected, 400 when all were. With an `Idempotency-Key` a "
        "retry returns the first result with `replayed: true` (status 200 instead of 201). A request "
        "whose shape is wrong (not JSON, missing fields, unparseable times or numbers) is refused whole "
        "with 422 and nothing is stored."
    ),
    status_code=201,
    response_model=RecordsResult,
    responses={
        201: {"description": "Every record was accepted."},
        200: {
            "description": "A replay of an earlier call with this Idempotency-Key.",
            "model": RecordsResult,
        },
        207: {"description": "Some records were rejected; see `results`.", "model": RecordsResult},
        **documented(400, 401, 403, 409, 413, 415, 422, 429, 500, 503, 504),
    },
    openapi_extra=_RECORDS_BODY,
)
async def ingest_records(
    request: Request,
    principal: UploadPrincipal,
    clients: ClientsDep,
    settings: SettingsDep,
    call_metadata: CallMetadataDep,
    data_type: Annotated[
        str | None,
        Query(description="Data type of the records (NDJSON/CSV).", examples=["sensor.air_quality"]),
    ] = None,
    source: Annotated[str | None, Query(description="Must equal the key's source; defaults to it.")] = None,
    batch_format: Annotated[BatchFormat | None, Query(description="How the batch is stored.")] = None,
    provider: Annotated[str | None, Query(description="Organisation that provides the data.")] = None,
    classification: Annotated[Classification | None, Query(description="Who may read it.")] = None,
    labels: Annotated[
        list[str] | None, Query(description="Batch labels as `key=value`, comma-separated or repeated.")
    ] = None,
    schema_ref: Annotated[str | None, Query(description="URI of the payloads' schema.")] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key", description="Makes retries safe: 1-128 characters of `[A-Za-z0-9._:-]`."
        ),
    ] = None,
) -> Response:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_TYPES | NDJSON_TYPES | CSV_TYPES:
        raise Problem(
            415,
            "unsupported_media_type",
            "Send records as application/json, application/x-ndjson or text/csv.",
            headers={"Accept-Post": "application/json, application/x-ndjson, text/csv"},
        )
    if source and source != principal.name:
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
    if data_type and not principal.may_ingest(data_type):
        raise Problem(403, "data_type_not_allowed", "This API key may not ingest this data type.")
    limit = settings.max_records_bytes
    length = declared_length(request.headers, limit)
    header = pb.RecordDocumentHeader(
        media_type=_CANONICAL[media_type],
        data_type=data_type or "",
        source=principal.name,
        idempotency_key=idempotency_key or "",
        batch_format=BATCH_FORMATS[batch_format] if batch_format else pb.BATCH_FORMAT_UNSPECIFIED,
        provider=provider or "",
        classification=CLASSIFICATIONS[classification] if classification else md.CLASSIFICATION_UNSPECIFIED,
        labels=parse_labels(labels or ()),
        schema_ref=schema_ref or "",
    )
    stream = IngestStream(
        clients.ingest.IngestRecordDocument,
        pb.IngestRecordDocumentRequest,
        timeout=settings.stream_deadline(settings.ingest_deadline_s, length),
        metadata=call_metadata,
        request_id=request_id_of(request),
        chunk_bytes=settings.chunk_bytes,
    )
    try:
        await stream.start(header)
        async for piece in limited(request.stream(), limit):
            await stream.send(piece)
        response: pb.IngestRecordsResponse = (await stream.finish()).result
    except Problem as problem:
        stream.cancel()
        problem.errors = renamed(problem.errors, record_field)
        raise
    except BaseException:
        stream.cancel()
        raise
    results = outcomes(response, record_field)
    status = 207 if response.rejected_count else (200 if response.replayed else 201)
    ref = response.object
    return JSONResponse(
        {
            "id": response.metadata.id,
            "bucket": ref.bucket,
            "key": ref.key,
            "sha256": ref.sha256,
            "size": ref.size_bytes,
            "etag": ref.etag,
            "media_type": response.metadata.media_type,
            "event_id": response.event_id,
            "replayed": response.replayed,
            "accepted": response.accepted_count,
            "rejected": response.rejected_count,
            "results": results,
            "metadata": metadata_json(response.metadata),
        },
        status_code=status,
        headers={"Location": f"/v1/objects/{response.metadata.id}"},
    )
