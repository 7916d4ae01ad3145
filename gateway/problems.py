"""RFC 9457 problem details for every error the gateway answers.

Errors from the services arrive as rich gRPC statuses (AIP-193): a code, a
message written for callers, `ErrorInfo` (stable reason), `BadRequest`
(field violations) and `RetryInfo`. They map to HTTP by code; the `type`
URI is derived from the reason, so clients can branch on it. A status
without Pantheon's `ErrorInfo` (raised by the gRPC library itself: a
connection failure, an expired deadline) never has its message passed on,
since it may describe internals; neither does any 5xx beyond a generic text
and the request id.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)

#: ErrorInfo domain of the Pantheon services.
DOMAIN = "pantheon.scdt"
MEDIA_TYPE = "application/problem+json"
#: Problem `type` URIs are `urn:pantheon:problem:<reason>`: stable identifiers
#: (RFC 9457 allows non-resolvable URIs) derived from the ErrorInfo reason.
TYPE_PREFIX = "urn:pantheon:problem:"

_STATUS_DETAILS = "grpc-status-details-bin"

#: gRPC code -> HTTP status (AIP-193's mapping, with ABORTED and
#: FAILED_PRECONDITION as 409 Conflict and OUT_OF_RANGE as 416).
HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.OUT_OF_RANGE: 416,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

#: Reasons that have a more precise HTTP status than their gRPC code's.
REASON_STATUS: Mapping[str, int] = {
    "unsupported_media_type": 415,
    "too_large": 413,
    "too_many_records": 413,
    "json_too_large": 413,
}

#: Generic texts, used when the status carries no message meant for callers.
_GENERIC_DETAIL: Mapping[int, str] = {
    400: "The request is invalid.",
    401: "Authentication is required.",
    403: "The API key may not do this.",
    404: "Not found.",
    409: "The request conflicts with the current state; it may be retried later.",
    416: "The requested range is not satisfiable.",
    429: "Too many requests; retry later.",
    503: "A backend service is unavailable; retry later.",
    504: "The backend did not answer in time; retry later.",
}
#: Codes whose callers may retry after a short wait (seconds).
_RETRY_AFTER_DEFAULT: Mapping[int, int] = {409: 1, 429: 1, 503: 2}
#: What gRPC itself answers (RESOURCE_EXHAUSTED, no Pantheon ErrorInfo) when
#: a server's `maximum_concurrent_rpcs` is reached (the services are busy,
#: which says nothing about this caller's rate or request), ...
#: ... or when a message is over a channel's size limit.
_MESSAGE_TOO_LARGE_DETAILS = "larger than max"
#: Seconds a caller is asked to wait when the services are at that limit.
SERVICES_BUSY_RETRY_AFTER_S = 1


class FieldError(BaseModel):
    """One problem with one field of the request."""

    field: str = Field(description="Path of the field, such as `lat` or `records[3].observed_at`.")
    reason: str = Field(description="Stable rule id, such as `double.gte_lte` or `missing`.")
    description: str = Field(description="What is wrong, for people.")


class ProblemDetails(BaseModel):
    """An RFC 9457 problem: every error response has this shape."""

    type: str = Field(description="Stable URI of the kind of problem: `urn:pantheon:problem:<reason>`.")
    title: str = Field(description="Short summary of the HTTP status.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request, for people.")
    instance: str = Field(description="Path of the request.")
    request_id: str = Field(description="Id of the request (also the `X-Request-Id` response header).")
    reason: str = Field(description="Stable snake_case reason (the last part of `type`).")
    errors: list[FieldError] = Field(default_factory=list, description="Field-level problems, if any.")

    model_config = {
        "json_schema_extra": {
            "example": {
                "type": "urn:pantheon:problem:validation_failed",
                "title": "Bad Request",
                "status": 400,
                "detail": "invalid request: header.metadata.location.latitude",
                "instance": "/v1/objects",
                "request_id": "3f0c2b9a6f7e4d8c9b1a2e3d4c5b6a79",
                "reason": "validation_failed",
                "errors": [
                    {
                        "field": "header.metadata.location.latitude",
                        "reason": "double.gte_lte",
                        "description": "value must be greater than or equal to -90 and less than or "
                        "equal to 90",
                    }
                ],
            }
        }
    }


@dataclass(eq=False)  # exceptions stay hashable
class Problem(Exception):
    """An error answered as problem+json; raise it anywhere in a request."""

    status: int
    reason: str
    detail: str
    errors: Sequence[FieldError] = ()
    headers: dict[str, str] = field(default_factory=dict)
    #: Extension members (RFC 9457 section 3.2) added to the body.
    extensions: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.reason)

    @property
    def title(self) -> str:
        try:
            return http.HTTPStatus(self.status).phrase
        except ValueError:
            return "Error"

    def body(self, request_id: str, instance: str) -> dict[str, Any]:
        return {
            "type": TYPE_PREFIX + self.reason,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
            "request_id": request_id,
            "reason": self.reason,
            "errors": [e.model_dump() for e in self.errors],
            **self.extensions,
        }


def problem_response(problem: Problem, request_id: str, instance: str) -> JSONResponse:
    headers = dict(problem.headers)
    if problem.status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="pantheon"')
    return JSONResponse(
        problem.body(request_id, instance),
        status_code=problem.status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def internal_error(request_id: str) -> Problem:
    return Problem(500, "internal", f"Internal error; quote request id {request_id} when reporting it.")


# -- gRPC statuses ------------------------------------------------------------


@dataclass(frozen=True)
class RichStatus:
    """What a `google.rpc.Status` says, in gateway terms."""

    reason: str | None
    errors: list[FieldError]
    retry_after_s: int | None
    message: str


def read_status(status: status_pb2.Status) -> RichStatus:
    """Reason (from Pantheon's ErrorInfo), field violations and retry delay of a status."""
    reason: str | None = None
    errors: list[FieldError] = []
    retry: int | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == DOMAIN and info.reason:
                reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            errors.extend(
                FieldError(field=v.field, reason=v.reason or "invalid", description=v.description)
                for v in bad.field_violations
            )
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info_retry = error_details_pb2.RetryInfo()
            detail.Unpack(info_retry)
            delay = info_retry.retry_delay
            retry = max(1, delay.seconds + (1 if delay.nanos else 0))
    return RichStatus(reason, errors, retry, status.message)


def _status_from_trailers(trailers: Iterable[tuple[str, str | bytes]] | None) -> status_pb2.Status | None:
    for key, value in trailers or ():
        if key == _STATUS_DETAILS and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:
                return None
    return None


def from_rpc_error(error: grpc.aio.AioRpcError, request_id: str) -> Problem:
    """The problem to answer for a failed gRPC call."""
    code = error.code()
    status = HTTP_STATUS.get(code, 500)
    rich_status = _status_from_trailers(error.trailing_metadata())
    rich = read_status(rich_status) if rich_status is not None else None
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and rich is None:
        # gRPC's own answer, not a Pantheon limit: 429 is for rate and
        # concurrency limits of this caller only.
        if _MESSAGE_TOO_LARGE_DETAILS in (error.details() or ""):
            return Problem(413, "too_large", "The request is larger than the services accept in one message.")
        return Problem(
            503,
            "services_busy",
            "The services are at their limit of concurrent calls; retry shortly.",
            headers={"Retry-After": str(SERVICES_BUSY_RETRY_AFTER_S)},
        )
    if status == 500:
        if code is not grpc.StatusCode.CANCELLED:
            log.error("gRPC call failed with %s: %s (request %s)", code.name, error.details(), request_id)
        return internal_error(request_id)
    headers: dict[str, str] = {}
    retry = rich.retry_after_s if rich is not None else None
    if retry is None:
        retry = _RETRY_AFTER_DEFAULT.get(status)
    if retry is not None and code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ):
        headers["Retry-After"] = str(retry)
    if rich is not None and rich.reason is not None:
        status = REASON_STATUS.get(rich.reason, status) if status == 400 else status
        detail = rich.message or _GENERIC_DETAIL.get(status, "The request failed.")
        return Problem(status, rich.reason, detail, rich.errors, headers)
    # No Pantheon ErrorInfo: the status came from the gRPC machinery; its
    # message may name hosts or internals, so only the code is passed on.
    if status >= 500:
        log.warning("gRPC call failed with %s (request %s)", code.name, request_id)
    return Problem(status, code.name.lower(), _GENERIC_DETAIL[status], [], headers)


# -- exception handlers -------------------------------------------------------


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "-")


def _field_path(loc: Sequence[int | str]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("query", "header", "path", "body", "cookie"):
        parts = parts[1:]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "request"


def validation_errors(errors: Iterable[Mapping[str, Any]], prefix: str = "") -> list[FieldError]:
    """Pydantic/FastAPI validation errors as field errors (never echoing the input)."""
    found = []
    for error in errors:
        path = _field_path(tuple(error.get("loc", ())))
        if prefix:
            path = prefix + ("" if path == "request" else ("" if path.startswith("[") else ".") + path)
        found.append(
            FieldError(
                field=path, reason=str(error.get("type", "invalid")), description=str(error.get("msg", ""))
            )
        )
    return found


def request_invalid(errors: list[FieldError], detail: str = "The request is malformed.") -> Problem:
    return Problem(422, "invalid_request", detail, errors)


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(exc, request_id_of(request), request.url.path)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problem = request_invalid(validation_errors(exc.errors()))
    return problem_response(problem, request_id_of(request), request.url.path)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    reasons = {404: "route_not_found", 405: "method_not_allowed"}
    detail = {
        404: "No such route.",
        405: f"Method {request.method} is not allowed here.",
    }.get(exc.status_code, _GENERIC_DETAIL.get(exc.status_code, "The request failed."))
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    problem = Problem(exc.status_code, reasons.get(exc.status_code, "http_error"), detail, headers=headers)
    return problem_response(problem, request_id_of(request), request.url.path)


def _allowed_methods(request: Request) -> list[str]:
    # Starlette names only the first route that matched the path; RFC 9110
    # wants every method the resource supports, so ask the routes per method.
    found = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in request.app.routes):
            found.append(method)
    return found


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for problem+json errors."""
    descriptions = {
        400: "Invalid input (field violations in `errors`); nothing was stored or published.",
        401: "Missing or unknown API key (`WWW-Authenticate: Bearer`).",
        403: "The API key may not do this (scope, source or data type).",
        404: "No object with this id.",
        408: "The request body arrived too slowly (`body_timeout`); nothing was stored.",
        409: "Conflict: the idempotency key is in use (retry after `Retry-After`) or was used for "
        "other input.",
        413: "The body is larger than the route's limit, or the batch has too many records.",
        415: "The Content-Type is not accepted by this route.",
        416: "The range starts past the end of the object.",
        422: "The request is malformed (parameter types, JSON shape, missing parts).",
        429: "Rate limit of the API key exceeded (`rate_limited`), or the key has as many uploads in "
        "progress as it may (`too_many_concurrent_uploads`); retry after `Retry-After` seconds.",
        500: "Internal error; only the request id is given.",
        503: "A backend (Kafka, storage) is unavailable, the services or the gateway are at their "
        "limit of concurrent calls (`services_busy`, `overloaded`), or the gateway cannot load its API "
        "keys (`keys_unavailable`: the key was not checked); retry after `Retry-After` seconds.",
        504: "The backend did not answer in time.",
    }
    headers = {
        "X-Request-Id": {"description": "Id of the request.", "schema": {"type": "string"}},
    }
    retry_header = {
        "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}
    }
    found: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry_headers: dict[str, Any] = dict(headers)
        if status in (409, 429, 503):
            entry_headers.update(retry_header)
        if status == 401:
            entry_headers["WWW-Authenticate"] = {"description": "`Bearer`", "schema": {"type": "string"}}
        found[status] = {
            "description": descriptions[status],
            "headers": entry_headers,
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
        }
    return found
