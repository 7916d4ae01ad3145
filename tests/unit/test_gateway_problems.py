"""gRPC statuses become RFC 9457 problems: status, reason, field errors, Retry-After, no leaks."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from gateway.problems import (
    TYPE_PREFIX,
    FieldError,
    Problem,
    from_rpc_error,
    read_status,
    validation_errors,
)


def _packed(message: object) -> any_pb2.Any:
    found = any_pb2.Any()
    found.Pack(message)  # type: ignore[arg-type]
    return found


def rpc_error(
    code: grpc.StatusCode,
    message: str = "",
    *,
    reason: str | None = None,
    domain: str = "pantheon.scdt",
    violations: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    retry_s: int | None = None,
) -> grpc.aio.AioRpcError:
    details = []
    if reason is not None:
        details.append(_packed(error_details_pb2.ErrorInfo(reason=reason, domain=domain)))
    if violations:
        details.append(
            _packed(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=f, reason=r, description=d)
                        for f, r, d in violations
                    ]
                )
            )
        )
    if retry_s is not None:
        details.append(
            _packed(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=retry_s)))
        )
    trailers = grpc.aio.Metadata()
    if details:
        status = status_pb2.Status(code=code.value[0], message=message, details=details)
        trailers = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, details=message)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.ABORTED, 409),
        (grpc.StatusCode.FAILED_PRECONDITION, 409),
        (grpc.StatusCode.OUT_OF_RANGE, 416),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.DATA_LOSS, 500),
        (grpc.StatusCode.UNIMPLEMENTED, 500),
    ],
)
def test_codes_map_to_http_statuses(code: grpc.StatusCode, status: int) -> None:
    problem = from_rpc_error(rpc_error(code, "message for callers", reason="some_reason"), "rid-1")
    assert problem.status == status


def test_a_rich_status_gives_reason_type_message_and_field_errors() -> None:
    error = rpc_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid request: header.metadata.location.latitude",
        reason="validation_failed",
        violations=[("header.metadata.location.latitude", "double.gte_lte", "must be at most 90")],
    )
    problem = from_rpc_error(error, "rid-2")
    body = problem.body("rid-2", "/v1/objects")
    assert body["type"] == TYPE_PREFIX + "validation_failed"
    assert body["reason"] == "validation_failed"
    assert body["title"] == "Bad Request"
    assert body["detail"] == "invalid request: header.metadata.location.latitude"
    assert body["request_id"] == "rid-2"
    assert body["instance"] == "/v1/objects"
    assert body["errors"] == [
        {
            "field": "header.metadata.location.latitude",
            "reason": "double.gte_lte",
            "description": "must be at most 90",
        }
    ]


def test_unavailable_carries_retry_after_from_retry_info() -> None:
    problem = from_rpc_error(
        rpc_error(
            grpc.StatusCode.UNAVAILABLE, "storage is unavailable", reason="backend_unavailable", retry_s=7
        ),
        "r",
    )
    assert problem.status == 503
    assert problem.headers["Retry-After"] == "7"


@pytest.mark.parametrize(
    ("code", "retry"),
    [
        (grpc.StatusCode.UNAVAILABLE, "2"),
        (grpc.StatusCode.ABORTED, "1"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "1"),
    ],
)
def test_retryable_codes_get_a_default_retry_after(code: grpc.StatusCode, retry: str) -> None:
    problem = from_rpc_error(rpc_error(code, "busy", reason="in_progress"), "r")
    assert problem.headers["Retry-After"] == retry


def test_a_status_from_the_grpc_library_never_passes_its_message_on() -> None:
    leaky = "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.1.2.3:50051: Connection refused"
    problem = from_rpc_error(rpc_error(grpc.StatusCode.UNAVAILABLE, leaky), "r")
    assert problem.status == 503
    assert "10.1.2.3" not in problem.detail and "ipv4" not in problem.detail
    assert problem.reason == "unavailable"
    assert problem.headers["Retry-After"] == "2"


def test_an_error_info_of_another_domain_is_not_trusted() -> None:
    problem = from_rpc_error(
        rpc_error(grpc.StatusCode.NOT_FOUND, "/etc/secret missing", reason="x", domain="other.example"), "r"
    )
    assert problem.status == 404
    assert "/etc/secret" not in problem.detail


def test_internal_errors_say_only_the_request_id() -> None:
    problem = from_rpc_error(
        rpc_error(grpc.StatusCode.INTERNAL, "Traceback: KeyError('x') in /srv/app.py", reason="internal"),
        "rid-500",
    )
    assert problem.status == 500
    assert problem.reason == "internal"
    assert "rid-500" in problem.detail
    assert "Traceback" not in problem.detail and "app.py" not in problem.detail


@pytest.mark.parametrize(("reason", "status"), [("unsupported_media_type", 415), ("too_large", 413)])
def test_reasons_with_a_precise_http_status_use_it(reason: str, status: int) -> None:
    problem = from_rpc_error(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "no", reason=reason), "r")
    assert problem.status == status


def test_per_record_statuses_are_read_the_same_way() -> None:
    status = status_pb2.Status(
        code=3,
        message="invalid record",
        details=[
            _packed(error_details_pb2.ErrorInfo(reason="validation_failed", domain="pantheon.scdt")),
            _packed(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field="records[2].entity_id", reason="required"
                        )
                    ]
                )
            ),
        ],
    )
    rich = read_status(status)
    assert rich.reason == "validation_failed"
    assert rich.errors == [FieldError(field="records[2].entity_id", reason="required", description="")]


def test_validation_errors_name_fields_without_echoing_input() -> None:
    errors = validation_errors(
        [
            {
                "loc": ("query", "lat"),
                "type": "float_parsing",
                "msg": "Input should be a number",
                "input": "SECRET",
            },
            {"loc": ("body", "records", 3, "observed_at"), "type": "missing", "msg": "Field required"},
        ]
    )
    assert [e.field for e in errors] == ["lat", "records[3].observed_at"]
    assert all("SECRET" not in e.description for e in errors)
    prefixed = validation_errors(
        [{"loc": ("location", "lat"), "type": "missing", "msg": "m"}], prefix="records[1]"
    )
    assert prefixed[0].field == "records[1].location.lat"


def test_a_problem_is_an_exception_with_its_reason() -> None:
    problem = Problem(413, "body_too_large", "too big")
    assert str(problem) == "body_too_large"
    assert problem.title == "Content Too Large" or problem.title == "Request Entity Too Large"
    assert hash(problem)  # exceptions must stay hashable
