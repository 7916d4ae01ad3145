"""One error hierarchy for both transports.

Each error knows its gRPC status code, its HTTP status and a stable
snake_case reason (AIP-193). Services raise these; one gRPC interceptor turns
them into a rich `google.rpc.Status` (ErrorInfo, BadRequest, RetryInfo) and
the gateway maps the status back to HTTP. Messages are written for callers:
they never contain exception text from a backend.
"""

from __future__ import annotations

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
#: Most characters of one violation's field path or description, since
#: both may quote what the caller sent.
MAX_VIOLATION_CHARS = 256
#: Most characters of the field names an error's message lists.
MAX_LISTED_CHARS = 200


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
            packed = any_pb2.Any()
            packed.Pack(error_details_pb2.BadRequest(field_violations=self._reported()))
            found.append(packed)
        return found

    def to_status(self) -> status_pb2.Status:
        status = super().to_status()
        left_out = len(self.violations) - len(self._reported())
        if left_out:
            status.message += f" ({left_out} more violations not listed)"
        return status

    def _reported(self) -> list[error_details_pb2.BadRequest.FieldViolation]:
        """The violations the status carries: the first ones, up to `violation_bytes`."""
        reported, size = [], 0
        for v in self.violations:
            item = error_details_pb2.BadRequest.FieldViolation(
                field=v.field[:MAX_VIOLATION_CHARS],
                description=v.description[:MAX_VIOLATION_CHARS],
                reason=v.rule_id[:MAX_VIOLATION_CHARS],
            )
            size += item.ByteSize() + 3  # its tag and length in the BadRequest
            if size > self.violation_bytes:
                break
            reported.append(item)
        return reported

    @classmethod
    def from_violations(
        cls,
        violations: Iterable[FieldViolation],
        what: str = "request",
        *,
        violation_bytes: int = MAX_VIOLATION_BYTES,
    ) -> InvalidArgument:
        found = list(violations)
        fields = sorted({v.field or what for v in found})
        listed: list[str] = []
        for name in fields:
            if listed and sum(map(len, listed)) + len(name) > MAX_LISTED_CHARS:
                break
            listed.append(name[:MAX_LISTED_CHARS])
        text = ", ".join(listed)
        if len(listed) < len(fields):
            text += f" and {len(fields) - len(listed)} more"
        return cls(
            f"invalid {what}: {text}",
            reason="validation_failed",
            violations=found,
            violation_bytes=violation_bytes,
        )


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
