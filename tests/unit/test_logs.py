"""Log lines: JSON when asked, always with the request id, never exception text."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
from starlette.types import Receive, Scope, Send

from gateway.metrics import Metrics
from gateway.middleware import EdgeMiddleware, RequestIdFilter
from pantheon import context, logs
from pantheon.envconfig import configure_logging


def test_json_lines_carry_the_request_id_and_no_exception_text(tmp_path: Path) -> None:
    path = tmp_path / "services.log"
    logs.configure(str(path), logs.LogSettings(format="json"))
    token = context.request_id.set("req-123")
    try:
        raise ValueError("password=hunter2")
    except ValueError:
        logging.getLogger("pantheon.test").exception("storing failed")
    finally:
        context.request_id.reset(token)
    logging.getLogger().handlers[0].flush()
    (line,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["request_id"] == "req-123"
    assert line["message"] == "storing failed"
    assert line["exception"] == "ValueError"
    assert "hunter2" not in path.read_text()


def test_text_lines_show_the_request_id(tmp_path: Path) -> None:
    path = tmp_path / "services.log"
    logs.configure(str(path), logs.LogSettings(format="text"))
    logging.getLogger("pantheon.test").info("hello")
    logging.getLogger().handlers[0].flush()
    assert "[-] hello" in path.read_text()


async def test_gateway_lines_written_during_a_request_carry_its_id(tmp_path: Path) -> None:
    path = tmp_path / "gateway.log"
    configure_logging(logs.LogSettings(format="json"), str(path), RequestIdFilter())

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        logging.getLogger("gateway.test").warning("refused")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    edge = EdgeMiddleware(app, Metrics())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=edge), base_url="http://t") as client:
        response = await client.get("/x", headers={"X-Request-Id": "req-456"})
    logging.getLogger("gateway.test").warning("between requests")
    logging.getLogger().handlers[0].flush()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert response.headers["x-request-id"] == "req-456"
    found = [(x["message"], x["request_id"]) for x in lines if x["logger"] == "gateway.test"]
    assert found == [("refused", "req-456"), ("between requests", "-")]
