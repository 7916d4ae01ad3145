"""The gateway app in process (no services needed): auth, limits, errors, request ids, OpenAPI.

Everything here is answered before any gRPC call, so the channel (opened by
the lifespan hook) never connects.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import KeyStore, hash_key
from gateway.settings import ConfigError, GatewaySettings

CITY, AGENCY, VIEWER = "city-key", "agency-key", "viewer-key"
PROBLEM = "application/problem+json"


def keys() -> KeyStore:
    return KeyStore.from_document(
        {
            "keys": [
                {"principal": "demo-city", "key_sha256": hash_key(CITY), "scopes": ["ingest", "read"]},
                {
                    "principal": "demo-agency",
                    "key_sha256": hash_key(AGENCY),
                    "scopes": ["ingest", "read"],
                    "data_types": ["weather.*"],
                },
                {"principal": "demo-viewer", "key_sha256": hash_key(VIEWER), "scopes": ["read"]},
            ]
        }
    )


def settings(tmp_path: Path, **overrides: Any) -> GatewaySettings:
    for name in ("ca.crt", "server.crt", "server.key", "keys.json", "client.crt", "client.key"):
        (tmp_path / name).write_text("placeholder")
    values: dict[str, Any] = {
        "grpc_target": "127.0.0.1:1",
        "ca_file": str(tmp_path / "ca.crt"),
        "tls_cert_file": str(tmp_path / "server.crt"),
        "tls_key_file": str(tmp_path / "server.key"),
        "api_keys_file": str(tmp_path / "keys.json"),
        "client_cert_file": str(tmp_path / "client.crt"),
        "client_key_file": str(tmp_path / "client.key"),
        "max_records_bytes": 1000,
        "rate_per_s": 0.001,
        "rate_burst": 50,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings(tmp_path), keys=keys())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://gateway.test") as http:
            yield http


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["reason"] == reason
    assert body["type"] == f"urn:pantheon:problem:{reason}"
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_no_key_is_401_with_a_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/objects", params={"data_type": "sensor.x"})
    assert_problem(response, 401, "missing_api_key")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header", ["Bearer wrong-key", "Basic Y2l0eS1rZXk6", "Bearer", f"Bearer {hash_key(CITY)}"]
)
async def test_a_bad_key_is_401(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get(
        "/v1/objects", params={"data_type": "sensor.x"}, headers={"Authorization": header}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_read_only_key_may_not_ingest(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/records", headers=auth(VIEWER), json={"records": []})
    assert_problem(response, 403, "scope_missing")


async def test_a_key_may_not_ingest_as_another_source(client: httpx.AsyncClient) -> None:
    params = {
        "data_type": "sensor.x",
        "observed_at": "2024-01-01T00:00:00Z",
        "lat": 1,
        "lon": 2,
        "source": "other",
    }
    response = await client.post(
        "/v1/objects",
        params=params,
        headers={**auth(CITY), "Content-Type": "application/json"},
        content=b"{}",
    )
    body = assert_problem(response, 403, "source_not_allowed")
    assert body["errors"][0]["field"] == "source"


async def test_a_key_may_not_ingest_or_search_data_types_outside_its_scope(client: httpx.AsyncClient) -> None:
    params = {"data_type": "sensor.x", "observed_at": "2024-01-01T00:00:00Z", "lat": 1, "lon": 2}
    upload = await client.post(
        "/v1/objects",
        params=params,
        headers={**auth(AGENCY), "Content-Type": "application/json"},
        content=b"{}",
    )
    assert_problem(upload, 403, "data_type_not_allowed")
    search = await client.get("/v1/objects", params={"data_type": "sensor.x"}, headers=auth(AGENCY))
    assert_problem(search, 403, "data_type_not_allowed")


async def test_malformed_query_parameters_are_422_with_field_names(client: httpx.AsyncClient) -> None:
    params = {"data_type": "sensor.x", "observed_at": "yesterday", "lat": "north", "lon": 2}
    response = await client.post(
        "/v1/objects",
        params=params,
        headers={**auth(CITY), "Content-Type": "application/json"},
        content=b"{}",
    )
    body = assert_problem(response, 422, "invalid_request")
    assert {e["field"] for e in body["errors"]} == {"observed_at", "lat"}
    assert "north" not in response.text and "yesterday" not in response.text


async def test_missing_metadata_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/objects", headers={**auth(CITY), "Content-Type": "application/json"}, content=b"{}"
    )
    body = assert_problem(response, 422, "invalid_request")
    assert {e["field"] for e in body["errors"]} == {"data_type", "observed_at", "lat", "lon"}


async def test_unsupported_record_content_types_are_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/records", headers={**auth(CITY), "Content-Type": "text/plain"}, content=b"hello"
    )
    assert_problem(response, 415, "unsupported_media_type")


async def test_a_declared_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/records", headers={**auth(CITY), "Content-Type": "application/json"}, content=b" " * 1001
    )
    assert_problem(response, 413, "body_too_large")


async def test_a_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 100

    response = await client.post(
        "/v1/records", headers={**auth(CITY), "Content-Type": "application/json"}, content=body()
    )
    assert_problem(response, 413, "body_too_large")


@pytest.mark.parametrize(
    "object_id", ["not-a-ulid", "01jd5q3w6z8k4t2m9n7p5r3s1v", "01JD5Q3W6Z8K4T2M9N7P5R3S1U", "%2E%2E"]
)
async def test_ids_that_are_not_ulids_are_400(client: httpx.AsyncClient, object_id: str) -> None:
    for path in (f"/v1/objects/{object_id}", f"/v1/objects/{object_id}/metadata"):
        response = await client.get(path, headers=auth(CITY))
        assert_problem(response, 400, "invalid_id")


async def test_path_traversal_never_reaches_a_route(client: httpx.AsyncClient) -> None:
    for path in ("/v1/objects/../../etc/passwd", "/v1/objects/..%2F..%2Fetc%2Fpasswd", "/v1/objects/a/b/c"):
        response = await client.get(path, headers=auth(CITY))
        assert response.status_code in (400, 404), path
        assert response.headers["content-type"] == PROBLEM


async def test_unknown_routes_and_methods_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v2/nothing"), 404, "route_not_found")
    deleted = await client.delete("/v1/objects", headers=auth(CITY))
    assert_problem(deleted, 405, "method_not_allowed")
    assert "GET" in deleted.headers["allow"]


async def test_request_ids_are_echoed_when_valid_and_replaced_when_not(client: httpx.AsyncClient) -> None:
    ok = await client.get("/healthz", headers={"X-Request-Id": "client-req.42_a"})
    assert ok.headers["x-request-id"] == "client-req.42_a"
    for bad in ("has spaces", "x" * 129, "semi;colon"):
        response = await client.get("/healthz", headers={"X-Request-Id": bad})
        assert response.headers["x-request-id"] != bad
        assert len(response.headers["x-request-id"]) == 32


async def test_the_rate_limit_is_per_key_with_retry_after(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path, rate_per_s=0.5, rate_burst=2), keys=keys())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://gateway.test") as http:
            statuses = []
            for _ in range(3):
                r = await http.get("/v1/objects/bad-id", headers=auth(CITY))
                statuses.append(r.status_code)
            assert statuses == [400, 400, 429]
            assert r.headers["retry-after"] == "2"
            assert_problem(r, 429, "rate_limited")
            other = await http.get("/v1/objects/bad-id", headers=auth(VIEWER))
            assert other.status_code == 400


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/v1/objects/bad-id", headers=auth(CITY))
    await client.get("/v2/nothing")
    text = (await client.get("/metrics")).text
    assert 'pantheon_gateway_requests_total{method="GET",route="/v1/objects/{id}",status="400"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "pantheon_gateway_request_duration_seconds_bucket" in text


async def test_healthz_needs_no_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_openapi_documents_every_route_for_client_generators(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operations = {(path, method): op for path, item in spec["paths"].items() for method, op in item.items()}
    assert {(p, m) for p, m in operations} == {
        ("/v1/objects", "post"),
        ("/v1/objects", "get"),
        ("/v1/objects/{id}", "get"),
        ("/v1/objects/{id}/metadata", "get"),
        ("/v1/records", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    }
    ids = [op["operationId"] for op in operations.values()]
    assert len(set(ids)) == len(ids)
    upload = operations[("/v1/objects", "post")]
    assert {"application/json", "text/csv", "image/png", "image/jpeg", "multipart/form-data"} <= set(
        upload["requestBody"]["content"]
    )
    for (path, _), op in operations.items():
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                assert list(response["content"]) == [PROBLEM], (path, status)
    # Every reference resolves (hand-written bodies point at injected schemas).
    text = json.dumps(spec)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        name = ref.removeprefix("#/components/schemas/")
        assert name in spec["components"]["schemas"], ref
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_settings_refuse_missing_tls_files_and_plaintext_targets(tmp_path: Path) -> None:
    good = settings(tmp_path)
    env = {
        "PANTHEON_CA_FILE": good.ca_file,
        "PANTHEON_TLS_CERT_FILE": good.tls_cert_file,
        "PANTHEON_TLS_KEY_FILE": good.tls_key_file,
        "PANTHEON_API_KEYS_FILE": good.api_keys_file,
        "PANTHEON_CLIENT_CERT_FILE": good.client_cert_file,
        "PANTHEON_CLIENT_KEY_FILE": good.client_key_file,
    }
    loaded = GatewaySettings.from_env(env)
    assert (loaded.listen_host, loaded.listen_port) == ("127.0.0.1", 8443)
    for name in env:
        with pytest.raises(ConfigError, match=name):
            GatewaySettings.from_env({k: v for k, v in env.items() if k != name})
    with pytest.raises(ConfigError):
        GatewaySettings.from_env({**env, "PANTHEON_CA_FILE": str(tmp_path / "missing.crt")})
    with pytest.raises(ConfigError, match="TLS is implied"):
        GatewaySettings.from_env({**env, "PANTHEON_GRPC_TARGET": "http://127.0.0.1:50051"})
    with pytest.raises(ConfigError, match="LISTEN"):
        GatewaySettings.from_env({**env, "PANTHEON_GATEWAY_LISTEN": "8443"})
    with pytest.raises(ConfigError, match="CHUNK"):
        GatewaySettings.from_env({**env, "PANTHEON_GATEWAY_CHUNK_BYTES": str(5 * 2**20)})


def test_stream_deadlines_grow_with_the_size(tmp_path: Path) -> None:
    s = settings(tmp_path, min_stream_rate_bps=1_000_000.0, max_stream_deadline_s=100.0)
    assert s.stream_deadline(30.0, 0) == 30.0
    assert s.stream_deadline(30.0, 10_000_000) == 40.0
    assert s.stream_deadline(30.0, 10**12) == 100.0
    assert s.stream_deadline(30.0, None) == 100.0
