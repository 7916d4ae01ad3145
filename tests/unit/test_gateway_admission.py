"""Admission control at the edge, in process: concurrent uploads per key, slow
bodies, slow or oversized request heads, and the connection limit's 503.

No assertion here is about time: waits are bounded loops over events, and
the timeouts under test either run on an injected clock or are tiny and only
the outcome is checked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md
from starlette.types import Message
from uvicorn.config import Config
from uvicorn.server import ServerState

import gateway.__main__ as gateway_main
from gateway.app import create_app
from gateway.deps import upload_principal
from gateway.problems import install_handlers
from gateway.routes import records, search, uploads
from gateway.settings import ConfigError, GatewaySettings
from gateway.slow_clients import BodyTimeoutMiddleware, GuardedHttpToolsProtocol, guarded_protocol
from tests.unit.test_gateway_app import AGENCY, CITY, assert_problem, auth, keys, settings

OBSERVED = "2024-01-01T00:00:00Z"


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let other tasks run until `condition` holds (bounded by steps, not by a clock)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


# -- a fake ingestion service ----------------------------------------------------


class FakeCall:
    """A client-streaming IngestObject call: writes wait for `gate`, or fail with `fail`."""

    def __init__(self, service: FakeIngest) -> None:
        self.service = service
        self.cancelled = False
        self.finished = False

    async def write(self, message: Any) -> None:
        if self.service.fail is not None:
            raise self.service.fail
        self.service.writes += 1
        await self.service.gate.wait()

    async def done_writing(self) -> None:
        return None

    def __await__(self) -> Any:
        return self._result().__await__()

    async def _result(self) -> pb.IngestObjectResponse:
        self.finished = True
        return pb.IngestObjectResponse(
            metadata=md.Metadata(id="01JD5Q3W6Z8K4T2M9N7P5R3S1V"), object=md.ObjectRef(bucket="b", key="k")
        )

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    def done(self) -> bool:
        return self.cancelled or self.finished


class FakeIngest:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None
        self.writes = 0
        self.calls: list[FakeCall] = []

    def IngestObject(self, **_: Any) -> FakeCall:  # the stub's method
        call = FakeCall(self)
        self.calls.append(call)
        return call


def upload_app(tmp_path: Path, **overrides: Any) -> tuple[FastAPI, FakeIngest]:
    app = create_app(settings(tmp_path, **overrides), keys=keys())
    fake = FakeIngest()
    app.state.clients = SimpleNamespace(ingest=fake)
    return app, fake


def upload_params(data_type: str = "sensor.x") -> dict[str, Any]:
    return {"data_type": data_type, "observed_at": OBSERVED, "lat": 1.0, "lon": 2.0}


class SlowBody:
    """A request body that sends one piece, then waits until `finish` is set."""

    def __init__(self) -> None:
        self.finish = asyncio.Event()
        self.started = 0

    def __call__(self) -> AsyncIterator[bytes]:
        async def pieces() -> AsyncIterator[bytes]:
            self.started += 1
            yield b"{"
            await self.finish.wait()
            yield b"}"

        return pieces()


async def post_object(
    http: httpx.AsyncClient, key: str, body: bytes | AsyncIterator[bytes] = b"{}", data_type: str = "sensor.x"
) -> httpx.Response:
    return await http.post(
        "/v1/objects",
        params=upload_params(data_type),
        headers={**auth(key), "Content-Type": "application/json"},
        content=body,
    )


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://gateway.test")


# -- concurrent uploads per principal ------------------------------------------------


def _calls(dependant: Dependant) -> set[Any]:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def test_both_upload_routes_hold_an_upload_slot() -> None:
    routes = {
        (route.path, method): route
        for route in (*uploads.router.routes, *search.router.routes, *records.router.routes)
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    for path in ("/v1/objects", "/v1/records"):
        assert upload_principal in _calls(routes[(path, "POST")].dependant), path
    assert upload_principal not in _calls(routes[("/v1/objects", "GET")].dependant)


async def test_slow_uploads_over_the_limit_get_429_while_another_key_passes(tmp_path: Path) -> None:
    app, fake = upload_app(tmp_path, max_concurrent_uploads=2)
    slow = SlowBody()
    async with client_for(app) as http:
        held = [asyncio.create_task(post_object(http, CITY, slow())) for _ in range(2)]
        await until(lambda: slow.started == 2, "both slow uploads are sending their bodies")

        refused = await post_object(http, CITY)
        assert_problem(refused, 429, "too_many_concurrent_uploads")
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["connection"] == "close"  # the body was not read

        other = await post_object(http, AGENCY, data_type="weather.x")
        assert other.status_code == 201, other.text

        slow.finish.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [201, 201]
        assert (await post_object(http, CITY)).status_code == 201
    assert len(fake.calls) == 4  # two held, the other key's, the last one: the refused one never reached them
    limiter = app.state.upload_limiter
    assert limiter.in_progress("demo-city") == limiter.in_progress("demo-agency") == 0


async def test_records_uploads_share_the_limit(tmp_path: Path) -> None:
    app, _ = upload_app(tmp_path, max_concurrent_uploads=1)
    slow = SlowBody()
    async with client_for(app) as http:
        held = asyncio.create_task(post_object(http, CITY, slow()))
        await until(lambda: slow.started == 1, "the slow upload is sending")
        refused = await http.post(
            "/v1/records", headers={**auth(CITY), "Content-Type": "application/json"}, content=b"{}"
        )
        assert_problem(refused, 429, "too_many_concurrent_uploads")
        slow.finish.set()
        assert (await held).status_code == 201


async def test_a_failed_upload_gives_its_slot_back(tmp_path: Path) -> None:
    app, fake = upload_app(tmp_path, max_concurrent_uploads=1)
    fake.fail = RuntimeError("the backend call blew up")
    async with client_for(app) as http:
        for _ in range(3):
            assert (await post_object(http, CITY)).status_code == 500
        assert app.state.upload_limiter.in_progress("demo-city") == 0
        fake.fail = None
        assert (await post_object(http, CITY)).status_code == 201


async def test_a_refused_upload_gives_its_slot_back(tmp_path: Path) -> None:
    app, _ = upload_app(tmp_path, max_concurrent_uploads=1)
    async with client_for(app) as http:
        for _ in range(3):  # refused by the route itself, after the slot was taken
            response = await http.post(
                "/v1/objects",
                params={**upload_params(), "source": "someone-else"},
                headers={**auth(CITY), "Content-Type": "application/json"},
                content=b"{}",
            )
            assert response.status_code == 403, response.text
        assert app.state.upload_limiter.in_progress("demo-city") == 0


async def test_a_client_that_goes_away_gives_its_slot_back(tmp_path: Path) -> None:
    app, fake = upload_app(tmp_path, max_concurrent_uploads=1)
    messages: list[Message] = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    query = "&".join(f"{k}={v}" for k, v in upload_params().items())
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/v1/objects",
        "raw_path": b"/v1/objects",
        "root_path": "",
        "query_string": query.encode(),
        "headers": [
            (b"host", b"gateway.test"),
            (b"authorization", f"Bearer {CITY}".encode()),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8443),
    }
    await app(scope, receive, send)
    # The body never completed: no gRPC stream was opened (or it was cancelled), so nothing is stored.
    assert all(call.cancelled for call in fake.calls)
    assert app.state.upload_limiter.in_progress("demo-city") == 0


async def test_a_cancelled_upload_gives_its_slot_back(tmp_path: Path) -> None:
    app, fake = upload_app(tmp_path, max_concurrent_uploads=1)
    fake.gate.clear()  # the services never answer
    async with client_for(app) as http:
        task = asyncio.create_task(post_object(http, CITY))
        await until(lambda: fake.writes == 1, "the upload reached the services")
        assert app.state.upload_limiter.in_progress("demo-city") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert app.state.upload_limiter.in_progress("demo-city") == 0


# -- slow bodies --------------------------------------------------------------------


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def body_app(timeout_s: float, min_rate_bps: float, clock: Callable[[], float] | None = None) -> Any:
    """An app whose one route reads the whole body, behind the body timeout."""
    inner = FastAPI()
    install_handlers(inner)

    @inner.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        size = 0
        async for piece in request.stream():
            size += len(piece)
        return {"size": size}

    extra = {"clock": clock} if clock is not None else {}
    return BodyTimeoutMiddleware(inner, timeout_s=timeout_s, min_rate_bps=min_rate_bps, **extra)


async def call(app: Any, receive: Callable[[], Awaitable[Message]]) -> tuple[int, dict[str, Any]]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/upload",
        "raw_path": b"/upload",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"t"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8443),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body)


async def test_a_body_that_stops_arriving_is_408() -> None:
    async def receive() -> Message:
        await asyncio.Event().wait()  # never
        raise AssertionError("unreachable")

    status, problem = await call(body_app(timeout_s=0.05, min_rate_bps=1.0), receive)
    assert (status, problem["reason"]) == (408, "body_timeout")
    assert "No part of the request body" in problem["detail"]


async def test_a_body_slower_than_the_minimum_rate_is_408() -> None:
    clock = ManualClock()
    pieces = 0

    async def receive() -> Message:  # one byte per (manual) second
        nonlocal pieces
        clock.now += 1.0
        pieces += 1
        return {"type": "http.request", "body": b"x", "more_body": True}

    app = body_app(timeout_s=3.0, min_rate_bps=5.0, clock=clock)
    status, problem = await call(app, receive)
    assert (status, problem["reason"]) == (408, "body_timeout")
    assert "slower than the minimum" in problem["detail"]
    # 3 s of grace plus 1 s per 5 bytes: the fifth second of waiting is one too many.
    assert pieces == 4


async def test_a_body_at_the_minimum_rate_passes_and_time_the_gateway_spends_is_not_counted() -> None:
    clock = ManualClock()
    sent = 0

    async def receive() -> Message:  # 10 bytes a second, for 100 seconds
        nonlocal sent
        clock.now += 1.0
        sent += 1
        return {"type": "http.request", "body": b"x" * 10, "more_body": sent < 100}

    status, result = await call(body_app(timeout_s=3.0, min_rate_bps=10.0, clock=clock), receive)
    assert (status, result) == (200, {"size": 1000})


async def test_after_the_body_receive_is_not_bounded() -> None:
    middleware = BodyTimeoutMiddleware(lambda *_: None, timeout_s=0.01, min_rate_bps=1.0)  # type: ignore[arg-type]
    seen: list[Message] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())  # waits for the disconnect: may take long

    middleware.app = app
    messages: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(0.05)  # longer than the body timeout
        return {"type": "http.disconnect"}

    await middleware({"type": "http"}, receive, lambda message: asyncio.sleep(0))
    assert [m["type"] for m in seen] == ["http.request", "http.disconnect"]


def test_body_timeout_needs_positive_bounds() -> None:
    with pytest.raises(ValueError):
        BodyTimeoutMiddleware(FastAPI(), timeout_s=0, min_rate_bps=1)


# -- request heads and the connection limit (the uvicorn protocol) -------------------


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8443)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        pass


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def connection(
    limit_concurrency: int | None = None, header_timeout_s: float = 60.0, max_header_bytes: int = 1024
) -> tuple[GuardedHttpToolsProtocol, FakeTransport, ServerState]:
    protocol_class = guarded_protocol(header_timeout_s, max_header_bytes)
    config = Config(app=ok_app, http=protocol_class, log_config=None, limit_concurrency=limit_concurrency)
    state = ServerState()
    protocol = protocol_class(config=config, server_state=state, app_state={})
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport, state


async def settled(state: ServerState) -> None:
    await until(lambda: not state.tasks, "the request tasks finished")


def status_of(transport: FakeTransport) -> int:
    return int(bytes(transport.written).split(b" ", 2)[1])


def problem_of(transport: FakeTransport) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(bytes(transport.written).split(b"\r\n\r\n", 1)[1])
    return body


async def test_a_head_within_the_cap_is_served() -> None:
    protocol, transport, state = connection()
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    await settled(state)
    assert status_of(transport) == 200
    assert protocol._header_timer is None  # disarmed once the head was complete
    assert not transport.closed  # kept alive


async def test_a_complete_head_over_the_cap_is_431() -> None:
    protocol, transport, state = connection(max_header_bytes=1024)
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
    await settled(state)
    assert status_of(transport) == 431
    assert problem_of(transport)["reason"] == "headers_too_large"
    assert transport.closed


async def test_an_incomplete_head_over_the_cap_is_cut_off_at_once() -> None:
    protocol, transport, _ = connection(max_header_bytes=1024)
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 600)
    assert not transport.closed
    protocol.data_received(b"a" * 600)  # still no end of headers, and past the cap
    assert status_of(transport) == 431
    assert transport.closed


async def test_an_overlong_query_string_counts_against_the_cap() -> None:
    protocol, transport, state = connection(max_header_bytes=1024)
    protocol.data_received(b"GET /v1/objects?q=" + b"a" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    await settled(state)
    assert status_of(transport) == 431


async def test_a_head_that_does_not_complete_in_time_is_408() -> None:
    protocol, transport, _ = connection()
    protocol.data_received(b"POST /v1/objects HTTP/1.1\r\nHost: t\r\n")  # ... and nothing more
    assert protocol._header_timer is not None
    protocol._header_timer.cancel()
    protocol._header_timeout()  # what the timer does when it fires
    assert status_of(transport) == 408
    assert problem_of(transport)["reason"] == "header_timeout"
    assert transport.closed


async def test_a_connection_that_never_sends_is_closed_silently() -> None:
    protocol, transport, _ = connection()
    assert protocol._header_timer is not None  # armed from the start
    protocol._header_timer.cancel()
    protocol._header_timeout()
    assert transport.closed and transport.written == b""


async def test_the_header_timer_really_fires() -> None:
    protocol, transport, _ = connection(header_timeout_s=0.01)
    protocol.data_received(b"GET / HTTP/1.1\r\n")
    await until(lambda: transport.closed, "the header timeout closed the connection")
    assert status_of(transport) == 408


async def test_a_kept_alive_connection_times_each_new_head() -> None:
    protocol, _, state = connection()
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    await settled(state)
    assert protocol._header_timer is None  # idle now: the keep-alive timeout's business
    protocol.data_received(b"GET /healthz HTTP/1.1\r\n")
    assert protocol._header_timer is not None
    protocol.connection_lost(None)
    assert protocol._header_timer is None


async def test_past_the_concurrency_limit_the_503_has_retry_after() -> None:
    protocol, transport, state = connection(limit_concurrency=1)  # this connection is the one
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    await settled(state)
    assert status_of(transport) == 503
    assert b"retry-after: 1\r\n" in bytes(transport.written).lower()
    assert problem_of(transport)["reason"] == "overloaded"


# -- settings and how the server is started ------------------------------------------


def _gateway_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    base = settings(tmp_path)  # writes placeholder files
    (tmp_path / "keys.json").write_text('{"keys": []}')
    return {
        "PANTHEON_CA_FILE": base.ca_file,
        "PANTHEON_TLS_CERT_FILE": base.tls_cert_file,
        "PANTHEON_TLS_KEY_FILE": base.tls_key_file,
        "PANTHEON_API_KEYS_FILE": base.api_keys_file,
        "PANTHEON_CLIENT_CERT_FILE": base.client_cert_file,
        "PANTHEON_CLIENT_KEY_FILE": base.client_key_file,
        **extra,
    }


def test_admission_settings_have_defaults_and_variables(tmp_path: Path) -> None:
    defaults = GatewaySettings.from_env(_gateway_env(tmp_path))
    assert (defaults.max_concurrent_uploads, defaults.max_connections) == (32, 512)
    assert (defaults.header_timeout_s, defaults.max_header_bytes) == (10.0, 32 * 1024)
    assert (defaults.body_timeout_s, defaults.body_min_rate_bps, defaults.keep_alive_timeout_s) == (
        15.0,
        16 * 1024,
        30,
    )
    tuned = GatewaySettings.from_env(
        _gateway_env(
            tmp_path,
            PANTHEON_GATEWAY_MAX_CONCURRENT_UPLOADS="2",
            PANTHEON_GATEWAY_MAX_CONNECTIONS="100",
            PANTHEON_GATEWAY_HEADER_TIMEOUT_S="5",
            PANTHEON_GATEWAY_MAX_HEADER_BYTES="8192",
            PANTHEON_GATEWAY_BODY_TIMEOUT_S="7.5",
            PANTHEON_GATEWAY_BODY_MIN_RATE_BPS="1024",
            PANTHEON_GATEWAY_KEEP_ALIVE_TIMEOUT_S="12",
        )
    )
    assert (tuned.max_concurrent_uploads, tuned.max_connections) == (2, 100)
    assert (tuned.header_timeout_s, tuned.max_header_bytes) == (5.0, 8192)
    assert (tuned.body_timeout_s, tuned.body_min_rate_bps, tuned.keep_alive_timeout_s) == (7.5, 1024, 12)
    with pytest.raises(ConfigError):
        GatewaySettings.from_env(_gateway_env(tmp_path, PANTHEON_GATEWAY_BODY_TIMEOUT_S="0"))


def test_uvicorn_gets_the_guarded_protocol_and_the_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _gateway_env(
        tmp_path,
        PANTHEON_GATEWAY_MAX_CONNECTIONS="77",
        PANTHEON_GATEWAY_HEADER_TIMEOUT_S="3",
        PANTHEON_GATEWAY_MAX_HEADER_BYTES="4096",
        PANTHEON_GATEWAY_KEEP_ALIVE_TIMEOUT_S="9",
    ).items():
        monkeypatch.setenv(name, value)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options))
    monkeypatch.setattr(gateway_main, "_configure_logging", lambda log_file, settings: None)
    assert gateway_main.main([]) == 0
    protocol = seen["http"]
    assert issubclass(protocol, GuardedHttpToolsProtocol)
    assert (protocol.header_timeout_s, protocol.max_header_bytes) == (3.0, 4096)
    assert (seen["limit_concurrency"], seen["timeout_keep_alive"]) == (77, 9)
