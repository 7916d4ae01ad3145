"""Health, readiness, metrics and documentation routes of the running gateway."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from gateway_support import Gateway

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def anonymous(stack_env: dict[str, str]) -> Iterator[httpx.Client]:
    with Gateway.from_env(stack_env).client(None) as client:
        yield client


def test_healthz_answers_without_a_key(anonymous: httpx.Client) -> None:
    response = anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


def test_readyz_reports_the_services_both_backends_and_the_keys(anonymous: httpx.Client) -> None:
    response = anonymous.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {
            "services": "SERVING",
            "kafka": "SERVING",
            "objectstore": "SERVING",
            "api_keys": "SERVING",
        },
    }


def test_metrics_count_requests_latency_and_bytes(anonymous: httpx.Client, stack_env: dict[str, str]) -> None:
    # Each series appears once a request of its kind has been made: make them
    # here, so the test holds on a freshly started gateway too.
    anonymous.get("/healthz")
    with Gateway.from_env(stack_env).client() as http:
        http.post("/v1/records", content=b"x" * 100, headers={"Content-Type": "text/plain"})
        http.post("/v1/records", content=b"{" * 100, headers={"Content-Type": "application/json"})
    text = anonymous.get("/metrics").text
    assert 'pantheon_gateway_requests_total{method="POST",route="/v1/records",status="415"}' in text
    assert 'pantheon_gateway_request_duration_seconds_count{method="GET",route="/healthz"}' in text
    assert 'pantheon_gateway_request_body_bytes_total{route="/v1/records"}' in text
    assert "pantheon_gateway_requests_in_flight" in text


def test_openapi_and_docs_are_served(anonymous: httpx.Client) -> None:
    spec = anonymous.get("/openapi.json").json()
    ids = {op["operationId"] for item in spec["paths"].values() for op in item.values()}
    assert ids == {
        "uploadObject",
        "searchObjects",
        "downloadObject",
        "getObjectMetadata",
        "ingestRecords",
        "getHealth",
        "getReadiness",
        "getMetrics",
    }
    docs = anonymous.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
