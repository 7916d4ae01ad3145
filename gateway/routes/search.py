"""`GET /v1/objects`: search objects by data type, source, observation time and area.

The storage service answers from its naming scheme, newest hour first, a
page at a time. The page token is opaque here: the services seal it with the
first page's window, so a continuation sends only what the client repeats.
Objects the key may not read (RESTRICTED ones for keys without that scope)
are left out of each page. Uploads are in uploads.py, downloads in
downloads.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import grpc
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb
from pydantic import AwareDatetime

from gateway.deps import CallMetadataDep, ClientsDep, ReadPrincipal, SettingsDep
from gateway.mapping import object_info, renamed, set_time
from gateway.problems import FieldError, Problem, documented, from_rpc_error, request_id_of, request_invalid
from gateway.schemas import SearchPage

router = APIRouter(tags=["objects"])

#: What a search covers when it names no `since`.
_DEFAULT_WINDOW = timedelta(hours=24)


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
        "objects are left out for keys that may not read them, and a page does a bounded amount of "
        "listing work, so a page can hold fewer than `page_size` objects, even none, while "
        "`next_page_token` is set: follow it until there is none."
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
        problem = from_rpc_error(exc, request_id_of(request))
        problem.errors = renamed(problem.errors, _search_field)
        raise problem from None
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
