"""Slow and oversized clients: time and size limits below the routes.

uvicorn (0.54, with httptools) has a keep-alive timeout and a concurrency
limit, and nothing else: a client that connects and sends its headers one
byte a minute, or headers of any size, or a body that trickles in, holds a
connection (and, for an upload, a slot and a gRPC stream) for as long as it
likes. Two pieces close that:

`GuardedHttpToolsProtocol` (pass `http=guarded_protocol(settings)` to
uvicorn) adds, per connection:

- a header timeout: the request line and headers must be complete within
  `header_timeout_s`, counted from the end of the TLS handshake for a
  connection's first request and from the first byte of each later one (the
  idle time between requests is the keep-alive timeout's). Past it the
  client gets 408 `header_timeout` and the connection is closed (silently if
  it never sent a byte: that is an idle connection, not a request);
- a header size cap: the request line plus headers may be at most
  `max_header_bytes`; a complete head over it gets 431 `headers_too_large`,
  and an incomplete one is cut off as soon as it crosses it (plus at most one
  network read), so a head never grows in memory without bound;
- `Retry-After` on uvicorn's own 503 for `limit_concurrency` (its plain-text
  answer has none): a problem+json 503 `overloaded` instead.

`BodyTimeoutMiddleware` (ASGI, around the app) bounds the wait for request
bodies, as Apache's mod_reqtimeout `body=<timeout>,MinRate=<rate>` does: the
next piece of a body must arrive within `timeout_s`, and the total time spent
waiting for body bytes may be at most `timeout_s` plus one second per
`min_rate_bps` bytes received so far. Only time the gateway spends waiting on
the client counts: while the gateway itself waits (gRPC flow control, a slow
backend) the clock is stopped. Past either bound the request is answered
408 `body_timeout` (the routes cancel their gRPC call, so nothing is stored)
and the connection is closed. Once a body is complete, `receive` is passed
through untouched (it then only waits for a disconnect, during downloads).

Not covered here: the TLS handshake, which runs before the protocol exists
(asyncio's default handshake timeout, 60 s, bounds it; uvicorn does not
expose it), and slow readers of responses (the transport's write buffer
and flow control pause the response; the keep-alive timeout does not apply).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from asyncio import TimerHandle
from collections.abc import Callable
from typing import Any, ClassVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable
from uvicorn._types import Scope as UvicornScope
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from gateway.problems import MEDIA_TYPE, Problem

log = logging.getLogger(__name__)

#: Seconds a client is asked to wait after the gateway refused it for load.
OVERLOADED_RETRY_AFTER_S = 1
#: Key in a request's scope state marking a head that was too large.
_REFUSED = "pantheon.head_too_large"


def _problem_body(status: int, reason: str, detail: str, request_id: str, instance: str) -> bytes:
    problem = Problem(status, reason, detail)
    return json.dumps(problem.body(request_id, instance)).encode()


async def _answer(
    send: ASGISendCallable, status: int, reason: str, detail: str, path: str, extra: list[tuple[bytes, bytes]]
) -> None:
    request_id = uuid.uuid4().hex
    body = _problem_body(status, reason, detail, request_id, path)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
                (b"connection", b"close"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def overloaded(scope: UvicornScope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """What a request past `limit_concurrency` gets instead of uvicorn's bare 503."""
    await _answer(
        send,
        503,
        "overloaded",
        "The gateway is at its limit of concurrent connections and requests; retry shortly.",
        str(scope.get("path", "")),
        [(b"retry-after", str(OVERLOADED_RETRY_AFTER_S).encode())],
    )


def _headers_too_large(limit: int) -> ASGI3Application:
    async def refuse(scope: UvicornScope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        await _answer(
            send,
            431,
            "headers_too_large",
            f"The request line and headers are larger than the limit of {limit} bytes.",
            str(scope.get("path", "")),
            [],
        )

    return refuse


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and a header size cap."""

    header_timeout_s: ClassVar[float] = 10.0
    max_header_bytes: ClassVar[int] = 32 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: TimerHandle | None = None
        self._awaiting_head = True
        self._head_bytes = 0

    # -- the header timeout ------------------------------------------------

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes:
            log.info("closing a connection whose request headers took over %gs", self.header_timeout_s)
            self._write_refusal(
                408,
                "header_timeout",
                f"The request headers did not arrive within {self.header_timeout_s:g} seconds.",
            )
        self.transport.close()

    def _write_refusal(self, status: int, reason: str, detail: str) -> None:
        """A problem answer written straight to the transport (no request was started)."""
        request_id = uuid.uuid4().hex
        body = _problem_body(status, reason, detail, request_id, "")
        head = [
            STATUS_LINE[status],
            b"content-type: " + MEDIA_TYPE.encode() + b"\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"x-request-id: " + request_id.encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)

    # -- protocol and parser callbacks --------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        over = self._awaiting_head and self._head_bytes > self.max_header_bytes
        if over and not self.transport.is_closing():
            # The head is still incomplete and already over the cap: stop here.
            log.info("closing a connection whose request headers exceed %d bytes", self.max_header_bytes)
            self._disarm_header_timer()
            self._write_refusal(
                431,
                "headers_too_large",
                f"The request line and headers are larger than the limit of {self.max_header_bytes} bytes.",
            )
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        self._awaiting_head = False
        self._head_bytes = 0
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_header_bytes:
            self.scope["state"][_REFUSED] = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # What arrives next on this connection is the next request's head.
        self._awaiting_head = True

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        if app is service_unavailable:
            app = overloaded
        elif cycle.scope["state"].pop(_REFUSED, False):
            log.info("refused a request whose headers exceed %d bytes", self.max_header_bytes)
            app = _headers_too_large(self.max_header_bytes)
        super()._start_asgi_task(cycle, app)


def guarded_protocol(header_timeout_s: float, max_header_bytes: int) -> type[GuardedHttpToolsProtocol]:
    """The protocol class to hand uvicorn (`http=`), with these limits."""
    return type(
        "GatewayHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout_s": header_timeout_s, "max_header_bytes": max_header_bytes},
    )


# -- request bodies -----------------------------------------------------------


def body_timeout(detail: str) -> Problem:
    return Problem(408, "body_timeout", detail, headers={"Connection": "close"})


class BodyTimeoutMiddleware:
    """Bounds the time a request body may take to arrive (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        timeout_s: float,
        min_rate_bps: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout_s <= 0 or min_rate_bps <= 0:
            raise ValueError("the body timeout and minimum rate must be positive")
        self.app = app
        self.timeout_s = timeout_s
        self.min_rate_bps = min_rate_bps
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        waited = 0.0
        received = 0
        complete = False

        async def bounded_receive() -> Message:
            nonlocal waited, received, complete
            if complete:
                return await receive()
            # The wait allowed: the gap between pieces, and what is left of
            # the budget the minimum rate gives for what has arrived so far.
            budget = self.timeout_s + received / self.min_rate_bps - waited
            allowed = min(self.timeout_s, budget)
            started = self._clock()
            try:
                if allowed <= 0:
                    raise TimeoutError
                async with asyncio.timeout(allowed):
                    message = await receive()
            except TimeoutError:
                complete = True
                request_id = scope.get("state", {}).get("request_id", "-")
                if allowed < self.timeout_s:
                    log.info("body slower than %g bytes/s (request %s)", self.min_rate_bps, request_id)
                    raise body_timeout(
                        f"The request body arrives slower than the minimum of {self.min_rate_bps:g} "
                        "bytes per second."
                    ) from None
                log.info("no body data for %gs (request %s)", self.timeout_s, request_id)
                raise body_timeout(
                    f"No part of the request body arrived for {self.timeout_s:g} seconds."
                ) from None
            waited += self._clock() - started
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
            else:  # http.disconnect
                complete = True
            return message

        await self.app(scope, bounded_receive, send)
