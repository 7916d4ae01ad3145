"""The one server interceptor at the edge of every Pantheon gRPC service.

For each call it sets the request context (request id, and a SERVER span
that continues the caller's trace: pantheon/tracing.py),
authorizes the caller (its workload identity from the client certificate,
the mesh policy, and a principal the gateway acts for; see pantheon/policy.py),
admits it only while fewer than the configured number of Pantheon calls
run (health checks and reflection are never counted, so a busy replica stays
in its clients' rotation), checks every incoming message against its
protovalidate rules (streamed messages one by one, as they arrive), and
turns errors into rich gRPC statuses:
`PantheonError`s carry their own code and details; anything else is logged
with the request id and reported as a bare INTERNAL, never with its text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any, NoReturn, TypeAlias

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_status import rpc_status
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon import context as ctx
from pantheon import metrics, streams, tracing
from pantheon.envconfig import heap
from pantheon.errors import InvalidArgument, PantheonError, PermissionDenied, Unauthenticated, Unavailable
from pantheon.policy import PRINCIPAL_HEADER, Grant, PolicyFile, current_grant, fingerprint
from pantheon.validation import violations

log = logging.getLogger(__name__)

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
# Subscripted only for the type checker: the runtime class is not generic.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class Undecodable:
    """Stands in for a request message that did not parse (too deep, bad UTF-8)."""


def _decoding(deserializer: Callable[[bytes], Message] | None) -> Callable[[bytes], Any]:
    """`deserializer`, but a message that does not parse becomes `Undecodable`,
    so `check` answers INVALID_ARGUMENT instead of gRPC's UNKNOWN with the
    parser's own text."""
    assert deserializer is not None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, RecursionError: the bytes are not a valid message
            return Undecodable()

    return decode


def check(message: Message) -> None:
    """Raise InvalidArgument listing every rule `message` breaks."""
    if isinstance(message, Undecodable):
        raise InvalidArgument("the request is not a valid protobuf message", reason="undecodable")
    found = violations(message)
    if found:
        raise InvalidArgument.from_violations(found)


def check_streamed(message: Message) -> None:
    """`check` for one message of a request stream, except a content chunk's
    length: pantheon.streams checks that as it reads the chunk, once.

    A chunk message carries nothing but bytes under a length rule, and every
    read of a protobuf bytes field is a copy of it: checking the length here
    cost a full copy of every upload (and validating the chunk, a second).
    """
    if isinstance(message, Undecodable) or not streams.is_chunk(message):
        check(message)


async def _checked(requests: AsyncIterator[Message]) -> AsyncIterator[Message]:
    async for message in requests:
        check_streamed(message)
        yield message


async def _abort(context: Context, exc: BaseException, method: str) -> NoReturn:
    metrics.REJECTS.labels(exc.reason if isinstance(exc, PantheonError) else "internal").inc()
    heap.collect_after_failure()  # what the failed call held, freed soon
    if not isinstance(exc, PantheonError):
        log.exception("%s failed (request %s)", method, ctx.request_id.get())
        exc = PantheonError(f"internal error; request id {ctx.request_id.get()}")
    elif exc.code is grpc.StatusCode.INTERNAL:
        log.error("%s failed: %s (request %s)", method, exc.reason, ctx.request_id.get())
    _CALL_STATUS.set(exc.code)
    await context.abort_with_status(rpc_status.to_status(exc.to_status()))
    raise AssertionError("abort returned")  # pragma: no cover


#: The status code a call was aborted with (set by `_abort`, read by `_traced`).
_CALL_STATUS: ContextVar[grpc.StatusCode] = ContextVar("call_status", default=grpc.StatusCode.OK)


def _enter(context: Context) -> dict[str, Any]:
    metadata = dict(context.invocation_metadata() or ())
    ctx.request_id.set(str(metadata.get(ctx.REQUEST_ID_HEADER) or ctx.new_request_id())[:128])
    return metadata


@contextmanager
def _traced(method: str, metadata: dict[str, Any]) -> Iterator[None]:
    """The call's SERVER span, current for the whole call (its task ends with it)."""
    span = tracing.server_span(method, metadata)
    try:
        yield
    except BaseException:
        code = _CALL_STATUS.get()
        tracing.end_rpc_span(span, grpc.StatusCode.CANCELLED if code is grpc.StatusCode.OK else code)
        raise
    tracing.end_rpc_span(span, grpc.StatusCode.OK)


def _principal(raw: Any) -> md.Principal:
    try:
        principal = md.Principal.FromString(raw if isinstance(raw, bytes) else b"")
    except DecodeError:
        principal = md.Principal()
    if not principal.name or violations(principal):
        raise PermissionDenied("the principal assertion is malformed", reason="invalid_principal")
    return principal


def authorize(context: Context, method: str, metadata: dict[str, Any], policy: PolicyFile) -> Grant:
    """The grant of this call, from the caller's certificate and the policy.

    The identity is the SPIFFE ID of the client certificate, which the TLS
    handshake already verified against the deployment's CA.
    """
    auth = context.auth_context() or {}
    ids = list(auth.get("peer_spiffe_id") or [])
    if not ids:
        raise Unauthenticated("a client certificate with a SPIFFE ID is required", reason="identity_required")
    spiffe_id = ids[0].decode("utf-8", "replace")
    rule = policy.current().rule_for(spiffe_id)
    if rule is None:
        raise PermissionDenied(f"{spiffe_id} is not in the mesh policy", reason="unknown_identity")
    pem = next(iter(auth.get("x509_pem_cert") or []), b"")
    if rule.certificates and not rule.holds(fingerprint(bytes(pem))):
        raise PermissionDenied(
            "this certificate does not carry its identity (revoked, or not enrolled)",
            reason="certificate_not_enrolled",
        )
    if not rule.may_call(method):
        log.info("denied %s: %s is outside its policy", rule.name, method)
        raise PermissionDenied("the caller may not call this method", reason="method_not_allowed")
    raw = metadata.get(PRINCIPAL_HEADER)
    if raw is not None and not rule.act_for_principals:
        raise PermissionDenied("the caller may not act for principals", reason="principal_not_allowed")
    if raw is None and rule.act_for_principals:
        raise PermissionDenied(
            f"{rule.name} calls on behalf of principals and must name one", reason="principal_required"
        )
    return Grant(rule, _principal(raw) if raw is not None else None)


async def _drain_briefly(requests: AsyncIterator[Message], limit_s: float = 2.0) -> None:
    """Read what the client is still sending, for a moment, before failing.

    A grpc.aio client whose write fails because the server already ended
    the stream reports INTERNAL instead of the server's status (a client
    library bug, grpc/grpc#36066). Letting the client finish sending first
    delivers the real status to it; the time cap keeps a huge upload from
    holding the call.
    """

    async def rest() -> None:
        async for _ in requests:
            pass

    with suppress(Exception):
        await asyncio.wait_for(rest(), limit_s)


class Admission:
    """At most `limit` Pantheon calls at once (streams for their whole length).

    Past it a call is refused at once, before its handler runs, with
    UNAVAILABLE `services_busy` and a retry hint: clients retry idempotent
    calls on another replica by themselves, the gateway answers 503 with
    `Retry-After`. Health checks are not counted: clients watch each
    replica's health, and a watch refused because the replica is busy would
    take it out of their rotation long after the load has passed.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0  # only touched on the event loop

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.in_flight >= self.limit:
            raise Unavailable(
                "the services are at their limit of concurrent calls, retry shortly",
                reason="services_busy",
                retry_after_s=1,
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


@contextmanager
def _observed(method: str) -> Iterator[None]:
    """Count the call and time it, by the status code it ends with."""
    started = time.perf_counter()
    code = "OK"
    try:
        yield
    except PantheonError as exc:
        code = exc.code.name
        raise
    except Exception:
        code = "INTERNAL"
        raise
    finally:
        metrics.RPCS.labels(method, code).inc()
        metrics.RPC_SECONDS.labels(method).observe(time.perf_counter() - started)


def _wrap(handler: Handler, method: str, policy: PolicyFile, admission: Admission) -> Handler:
    # Pantheon has client-streaming, server-streaming and unary RPCs.
    if handler.request_streaming:
        inner_su: Any = handler.stream_unary

        async def stream_unary(requests: AsyncIterator[Message], context: Any) -> Any:
            metadata = _enter(context)
            with _traced(method, metadata):
                try:
                    with _observed(method), admission.slot():
                        current_grant.set(authorize(context, method, metadata, policy))
                        return await inner_su(_checked(requests), context)
                except Exception as exc:
                    await _drain_briefly(requests)
                    await _abort(context, exc, method)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, _decoding(handler.request_deserializer), handler.response_serializer
        )
    if handler.response_streaming:
        inner_us: Any = handler.unary_stream

        async def unary_stream(request: Message, context: Any) -> AsyncIterator[Any]:
            metadata = _enter(context)
            with _traced(method, metadata):
                try:
                    with _observed(method), admission.slot():
                        current_grant.set(authorize(context, method, metadata, policy))
                        check(request)
                        async for response in inner_us(request, context):
                            yield response
                except Exception as exc:
                    await _abort(context, exc, method)

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, _decoding(handler.request_deserializer), handler.response_serializer
        )
    inner_uu: Any = handler.unary_unary

    async def unary_unary(request: Message, context: Any) -> Any:
        metadata = _enter(context)
        with _traced(method, metadata):
            try:
                with _observed(method), admission.slot():
                    current_grant.set(authorize(context, method, metadata, policy))
                    check(request)
                    return await inner_uu(request, context)
            except Exception as exc:
                await _abort(context, exc, method)

    return grpc.unary_unary_rpc_method_handler(
        unary_unary, _decoding(handler.request_deserializer), handler.response_serializer
    )


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    """Request context, authorization, validation and error translation.

    Health and reflection pass through untouched: any caller with a
    certificate of the deployment's CA may use them (the TLS handshake
    already refused everyone else).
    """

    def __init__(self, policy: PolicyFile, max_concurrent_rpcs: int) -> None:
        self._policy = policy
        self._admission = Admission(max_concurrent_rpcs)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith("/pantheon_api."):
            return handler
        return _wrap(handler, method, self._policy, self._admission)
