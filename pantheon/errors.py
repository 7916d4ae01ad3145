"""One error hierarchy for both transports.

Each error knows its gRPC status code, its HTTP status and a stable
snake_case reason (AIP-193). Services raise these; one gRPC interceptor turns
them into a rich `google.rpc.Status` (ErrorInfo, BadRequest, RetryInfo) and
the gateway maps the status back to HTTP. Messages are written for callers:
they never contain exception text from a backend.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from pantheon.validation import FieldViolation

#: ErrorInfo domain of every Pantheon error.
DOMAIN = "pantheon.scdt"
#: Trailing metadata entry that carries the rich status (gRPC's convention).
STATUS_DETAILS_KEY = "grpc-status-details-bin"
#: Most bytes of field violations an error carries. gRPC clients refuse
#: trailers over 8 KiB by default (`grpc.max_metadata_size`), and the
#: status travels base64-encoded beside the message (which it holds too):
#: a batch of thousands of invalid records would otherwise reach its caller
#: as RESOURCE_EXHAUSTED.
MAX_VIOLATION_BYTES = 2048
#: Most bytes (UTF-8) of one violation's field path, rule or description,
#: since they may quote what the caller sent. The first violation of an
#: error is cut to a quarter of that when it would not fit otherwise: an
#: error always reports one.
MAX_VIOLATION_TEXT_BYTES = 256
#: Most bytes of the field names an error's message lists.
MAX_LISTED_BYTES = 200


def reason_of(error: grpc.aio.AioRpcError) -> str | None:
    """The ErrorInfo reason of a failed call to a Pantheon service, if any."""
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info) and info.domain == DOMAIN:
                    return str(info.reason)
    return None


class PantheonError(Exception):
    """Base of every error Pantheon reports to a caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500
    reason: str = "internal"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def details(self) -> list[any_pb2.Any]:
        """The detail messages of the rich status: ErrorInfo first."""
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN))
        return [info]

    def to_status(self) -> status_pb2.Status:
        """The `google.rpc.Status` callers receive."""
        code: int = self.code.value[0]
        return status_pb2.Status(code=code, message=self.message, details=self.details())


class InvalidArgument(PantheonError):
    """The request is malformed; nothing was stored or published."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    reason = "invalid_argument"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: Sequence[FieldViolation] = (),
        violation_bytes: int = MAX_VIOLATION_BYTES,
    ) -> None:
        super().__init__(message, reason=reason)
        self.violations = list(violations)
        #: Most bytes of violations the status carries (the first ones).
        self.violation_bytes = violation_bytes

    def details(self) -> list[any_pb2.Any]:
        found = super().details()
        if self.violations:
            reported = [
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description, reason=v.rule_id
                )
                for v in self.reported
            ]
            packed = any_pb2.Any()
            packed.Pack(error_details_pb2.BadRequest(field_violations=reported))
            found.append(packed)
        return found

    @functools.cached_property
    def reported(self) -> list[FieldViolation]:
        """The violations the status carries (`reported_violations`)."""
        return reported_violations(self.violations, self.violation_bytes)

    def to_status(self) -> status_pb2.Status:
        status = super().to_status()
        left_out = len(self.violations) - len(self.reported)
        if left_out:
            status.message += (
                f" ({left_out} more {'violation' if left_out == 1 else 'violations'} not listed)"
            )
        return status

    @classmethod
    def from_violations(
        cls,
        violations: Iterable[FieldViolation],
        what: str = "request",
        *,
        violation_bytes: int = MAX_VIOLATION_BYTES,
    ) -> InvalidArgument:
        found = list(violations)
        fields = list(dict.fromkeys(v.field or what for v in found))  # in the order reported
        listed: list[str] = []
        length = 0
        for name in fields:
            name = _cut(name, MAX_LISTED_BYTES)
            length += len(name.encode())
            if listed and length > MAX_LISTED_BYTES:
                break
            listed.append(name)
        text = ", ".join(listed)
        if len(listed) < len(fields):
            text += f" and {len(fields) - len(listed)} more"
        return cls(
            f"invalid {what}: {text}",
            reason="validation_failed",
            violations=found,
            violation_bytes=violation_bytes,
        )


def reported_violations(violations: Iterable[FieldViolation], budget: int) -> list[FieldViolation]:
    """What an error reports of `violations`: the first ones, their texts cut,
    within `budget` bytes; always the first one, cut shorter if need be.
    Reporting what this returns reports it unchanged (a rejection stored and
    rebuilt says the same)."""
    reported: list[FieldViolation] = []
    size = 0
    for v in violations:
        item = _shortened(v, MAX_VIOLATION_TEXT_BYTES)
        if size + _size(item) > budget:
            if reported:
                break
            item = _shortened(v, MAX_VIOLATION_TEXT_BYTES // 4)
        reported.append(item)
        size += _size(item)
    return reported


def _shortened(v: FieldViolation, limit: int) -> FieldViolation:
    return FieldViolation(_cut(v.field, limit), _cut(v.rule_id, limit), _cut(v.description, limit))


def _size(v: FieldViolation) -> int:
    # The three texts, with a tag and a length each, in a field violation with its own.
    return len(v.field.encode()) + len(v.rule_id.encode()) + len(v.description.encode()) + 12


def _cut(text: str, limit: int) -> str:
    """`text` in at most `limit` bytes of UTF-8, whole characters only."""
    data = text.encode()
    return text if len(data) <= limit else data[:limit].decode(errors="ignore")


class Unauthenticated(PantheonError):
    code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    reason = "unauthenticated"


class PermissionDenied(PantheonError):
    code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403
    reason = "permission_denied"


class NotFound(PantheonError):
    code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    reason = "not_found"


class AlreadyExists(PantheonError):
    code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409
    reason = "already_exists"


class FailedPrecondition(PantheonError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409
    reason = "failed_precondition"


class Aborted(PantheonError):
    """A concurrent call holds what this one needs; retrying is safe."""

    code = grpc.StatusCode.ABORTED
    http_status = 409
    reason = "aborted"


class OutOfRange(PantheonError):
    code = grpc.StatusCode.OUT_OF_RANGE
    http_status = 416
    reason = "out_of_range"


class ResourceExhausted(PantheonError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429
    reason = "resource_exhausted"


class Unavailable(PantheonError):
    """A backend cannot be reached; nothing was acknowledged; retry later."""

    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    reason = "backend_unavailable"

    def __init__(self, message: str, *, reason: str | None = None, retry_after_s: int = 2) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_s = retry_after_s

    def details(self) -> list[any_pb2.Any]:
        found = super().details()
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=self.retry_after_s)))
        found.append(retry)
        return found


class DeadlineExceeded(PantheonError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504
    reason = "deadline_exceeded"


class Internal(PantheonError):
    """A bug; the caller sees only this generic message and the request id."""


def ok_status() -> status_pb2.Status:
    return status_pb2.Status(code=code_pb2.OK)
