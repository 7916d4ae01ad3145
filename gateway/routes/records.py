"""`/v1/records`: many small records in one request (JSON, NDJSON or CSV).

The batch becomes one IngestRecords call (one gRPC message, so the body is
read whole, within the route's body limit). Records whose values break the
rules are rejected one by one by the ingestion service; the answer is 201
when every record was accepted, 207 with each record's outcome when some
were rejected, and a 400 problem when all were.
"""

from __future__ import annotations

from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb

from gateway.batches import build_request, outcomes, parse_csv, parse_json_batch, parse_ndjson
from gateway.deps import CallMetadataDep, ClientsDep, IngestPrincipal, SettingsDep
from gateway.limits import declared_length, read_limited
from gateway.mapping import metadata_json, parse_labels, record_field, renamed
from gateway.problems import FieldError, Problem, documented, from_rpc_error, request_id_of, request_invalid
from gateway.schemas import BatchFormat, Classification, RecordsResult

router = APIRouter(tags=["records"])

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)
CSV_TYPES = frozenset({"text/csv"})

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
    principal: IngestPrincipal,
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
    limit = settings.max_records_bytes
    declared_length(request.headers, limit)
    body = await read_limited(request.stream(), limit)
    query_labels = parse_labels(labels or ())
    fields: dict[str, Any] = {
        "data_type": data_type,
        "source": source,
        "batch_format": batch_format,
        "provider": provider,
        "classification": classification,
        "schema_ref": schema_ref,
    }
    if media_type in JSON_TYPES:
        batch = parse_json_batch(body, settings.max_records)
        records = batch.records
        for name in fields:
            if getattr(batch, name) is not None:
                fields[name] = getattr(batch, name)
        batch_labels = {**query_labels, **batch.labels}
    else:
        parse = parse_ndjson if media_type in NDJSON_TYPES else parse_csv
        records = parse(body, settings.max_records)
        batch_labels = query_labels
    if not fields["data_type"]:
        raise request_invalid(
            [FieldError(field="data_type", reason="missing", description="data_type is required")],
            "The batch has no data_type (body field or query parameter).",
        )
    if not records:
        raise request_invalid(
            [FieldError(field="records", reason="missing", description="at least one record is required")],
            "The batch has no records.",
        )
    if fields["source"] and fields["source"] != principal.name:
        raise Problem(
            403,
            "source_mismatch",
            f"This API key ingests as source {principal.name!r} only.",
            [FieldError(field="source", reason="source_mismatch", description="must equal the key's source")],
        )
    if not principal.may_ingest(fields["data_type"]):
        raise Problem(403, "data_type_not_allowed", "This API key may not ingest this data type.")

    ingest = build_request(
        data_type=fields["data_type"],
        source=principal.name,
        records=records,
        idempotency_key=idempotency_key,
        batch_format=fields["batch_format"],
        provider=fields["provider"],
        classification=fields["classification"],
        labels=batch_labels,
        schema_ref=fields["schema_ref"],
    )
    try:
        response: pb.IngestRecordsResponse = await clients.ingest.IngestRecords(
            ingest, timeout=settings.ingest_deadline_s, metadata=call_metadata
        )
    except grpc.aio.AioRpcError as exc:
        problem = from_rpc_error(exc, request_id_of(request))
        problem.errors = renamed(problem.errors, record_field)
        raise problem from None
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
