"""Limits and failure modes, against gateway processes of the tests' own (small limits, bad targets)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support import Gateway, object_params, own_gateway, record, stored_keys, tls, unique_type
from minio import Minio

pytestmark = pytest.mark.timeout(120)


def client(gw_url: str, stack_env: dict[str, str], key: str | None = None) -> httpx.Client:
    key = key or stack_env["PANTHEON_API_KEY"]
    return httpx.Client(
        base_url=gw_url,
        verify=tls(stack_env["PANTHEON_CA_FILE"]),
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def test_a_chunked_body_crossing_the_limit_is_413_and_nothing_is_stored(
    stack_env: dict[str, str], tmp_path: Path, minio_root_client: Minio
) -> None:
    data_type = unique_type()
    limit = 2**20
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield b"station,pm10\n"
        row = b"station-42,17.5\n" * 4096
        while sent < 64 * limit:
            sent += len(row)
            yield row

    with own_gateway(stack_env, tmp_path, PANTHEON_GATEWAY_MAX_OBJECT_BYTES=str(limit)) as gw:
        with client(gw.url, stack_env) as http:
            response = http.post(
                "/v1/objects",
                params=object_params(data_type),
                content=body(),
                headers={"Content-Type": "text/csv"},
            )
        assert response.status_code == 413, response.text
        assert response.json()["reason"] == "body_too_large"
        assert sent < 32 * limit, "the gateway should have stopped the upload early"
    assert stored_keys(minio_root_client, data_type) == []


def test_the_rate_limit_answers_429_with_retry_after(stack_env: dict[str, str], tmp_path: Path) -> None:
    with (
        own_gateway(
            stack_env, tmp_path, PANTHEON_GATEWAY_RATE_PER_S="0.2", PANTHEON_GATEWAY_RATE_BURST="3"
        ) as gw,
        client(gw.url, stack_env) as http,
        client(gw.url, stack_env, stack_env["PANTHEON_API_KEY_B"]) as other,
    ):
        statuses = [http.get("/v1/objects/not-an-id").status_code for _ in range(4)]
        assert statuses == [400, 400, 400, 429]
        limited = http.get("/v1/objects/not-an-id")
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        assert 1 <= int(limited.headers["retry-after"]) <= 5
        # Another key has its own bucket.
        assert other.get("/v1/objects/not-an-id").status_code == 400


def test_unreachable_services_are_503_with_retry_after(stack_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))  # a port nobody serves gRPC on
        target = f"127.0.0.1:{placeholder.getsockname()[1]}"
        with (
            own_gateway(stack_env, tmp_path, PANTHEON_GRPC_TARGET=target) as gw,
            client(gw.url, stack_env) as http,
        ):
            response = http.post("/v1/records", json={"data_type": unique_type(), "records": [record()]})
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"]
            body = response.json()
            assert body["reason"] == "unavailable"
            assert target not in response.text and "ipv4" not in response.text
            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["services"] == "UNREACHABLE"
            assert http.get("/healthz").status_code == 200


def test_an_expired_deadline_is_504(stack_env: dict[str, str], tmp_path: Path) -> None:
    with (
        own_gateway(stack_env, tmp_path, PANTHEON_GATEWAY_READ_DEADLINE_S="0.000001") as gw,
        client(gw.url, stack_env) as http,
    ):
        response = http.get("/v1/objects", params={"data_type": unique_type()})
        assert response.status_code == 504, response.text
        assert response.json()["reason"] == "deadline_exceeded"


def test_plain_http_to_the_gateway_fails(stack_env: dict[str, str]) -> None:
    url = Gateway.from_env(stack_env).url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/healthz", timeout=5)
    # A raw plaintext request gets no HTTP answer at all.
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = sock.recv(1024)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert not answer.startswith(b"HTTP/")


def test_tls_is_verified_against_the_dev_ca(stack_env: dict[str, str]) -> None:
    url = Gateway.from_env(stack_env).url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", verify=ssl.create_default_context(), timeout=5)
    assert (
        httpx.get(f"{url}/healthz", verify=tls(stack_env["PANTHEON_CA_FILE"]), timeout=5).status_code == 200
    )
