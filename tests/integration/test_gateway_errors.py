"""Bad input over real HTTPS: a clear 4xx problem, and nothing stored or published."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from gateway_support import (
    Events,
    Gateway,
    object_params,
    observed,
    record,
    rfc3339,
    stored_keys,
    unique_type,
)
from minio import Minio

from tests.samples import make_png

pytestmark = pytest.mark.timeout(120)
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def http(stack_env: dict[str, str]) -> Iterator[httpx.Client]:
    with Gateway.from_env(stack_env).client() as client:
        yield client


@pytest.fixture(scope="module")
def events(kafka_config: Any, stack_env: dict[str, str]) -> Iterator[Events]:
    topics = [stack_env[t] for t in ("PANTHEON_EVENTS_TOPIC", "PANTHEON_RECORDS_TOPIC", "PANTHEON_DLQ_TOPIC")]
    watcher = Events(kafka_config(), topics)
    yield watcher
    watcher.close()


@pytest.fixture(scope="module")
def refused_types(events: Events) -> Iterator[set[str]]:
    """Data types of refused requests: at the end, no event may name any of them."""
    found: set[str] = set()
    yield found
    # Refusals are answered before anything is published; waiting once for
    # stragglers covers every test of the module.
    events.none_within(lambda e: e.data_type in found, wait_s=3)


@pytest.fixture
def nothing_kept(refused_types: set[str], minio_root_client: Minio) -> Iterator[str]:
    """A fresh data type; afterwards nothing may be stored (or, see above, announced) under it."""
    data_type = unique_type()
    refused_types.add(data_type)
    yield data_type
    assert stored_keys(minio_root_client, data_type) == []


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


def fields(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body["errors"]}


def test_malformed_json_is_400(http: httpx.Client, nothing_kept: str) -> None:
    response = http.post(
        "/v1/objects",
        params=object_params(nothing_kept),
        content=b'{"pm10": 17.5,',
        headers={"Content-Type": "application/json"},
    )
    assert problem(response, 400)["reason"] == "invalid_json"


@pytest.mark.parametrize(
    ("media_type", "body", "status", "reason"),
    [
        ("text/plain", b"hello", 415, "unsupported_media_type"),
        ("application/json", make_png(), 400, "format_mismatch"),
        ("image/jpeg", make_png(), 400, "format_mismatch"),
        ("application/json", b"", 400, "empty_body"),
    ],
)
def test_content_that_is_not_what_it_claims_is_refused(
    http: httpx.Client, nothing_kept: str, media_type: str, body: bytes, status: int, reason: str
) -> None:
    response = http.post(
        "/v1/objects", params=object_params(nothing_kept), content=body, headers={"Content-Type": media_type}
    )
    assert problem(response, status)["reason"] == reason


def test_records_in_an_unsupported_content_type_are_415(http: httpx.Client, nothing_kept: str) -> None:
    response = http.post(
        "/v1/records",
        params={"data_type": nothing_kept},
        content=json.dumps(record()),
        headers={"Content-Type": "text/plain"},
    )
    assert problem(response, 415)["reason"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("params", "status", "names"),
    [
        ({"lat": "north"}, 422, {"lat"}),
        ({"observed_at": "yesterday"}, 422, {"observed_at"}),
        ({"observed_at": "2024-11-20T10:00:00"}, 422, {"observed_at"}),  # no offset
        ({"classification": "secret"}, 422, {"classification"}),
        ({"labels": "novalue"}, 422, {"labels"}),
        ({"lat": 95}, 400, {"lat"}),
        ({"lon": -181}, 400, {"lon"}),
        ({"data_type": "Sensor Readings"}, 400, {"data_type"}),
        ({"data_type": "gossip.rumour"}, 400, {"data_type"}),
        ({"entity_id": "bad id with spaces"}, 400, {"entity_id"}),
        ({"schema_ref": "not a uri"}, 400, {"schema_ref"}),
        ({"observed_at": rfc3339(datetime.now(UTC) + timedelta(days=1))}, 400, {"observed_at"}),
    ],
)
def test_bad_metadata_names_the_parameter(
    http: httpx.Client, nothing_kept: str, params: dict[str, Any], status: int, names: set[str]
) -> None:
    response = http.post(
        "/v1/objects",
        params={**object_params(nothing_kept), **params},
        content=b'{"a":1}',
        headers={"Content-Type": "application/json"},
    )
    assert fields(problem(response, status)) == names


def test_a_bad_idempotency_key_is_400(http: httpx.Client, nothing_kept: str) -> None:
    response = http.post(
        "/v1/objects",
        params=object_params(nothing_kept),
        content=b'{"a":1}',
        headers={"Content-Type": "application/json", "Idempotency-Key": "spaces are not allowed"},
    )
    assert fields(problem(response, 400)) == {"Idempotency-Key"}


def test_malformed_record_batches_are_refused_whole(http: httpx.Client, nothing_kept: str) -> None:
    # The ingestion service parses record documents: a wrong shape is 400
    # with one error per problem, and nothing is stored (`nothing_kept`).
    bad_json = http.post(
        "/v1/records", content=b'{"data_type": ', headers={"Content-Type": "application/json"}
    )
    assert fields(problem(bad_json, 400)) == {"body"}
    no_type = http.post("/v1/records", json={"records": [record()]})
    assert fields(problem(no_type, 400)) == {"data_type"}
    shape = http.post(
        "/v1/records",
        json={"data_type": nothing_kept, "records": [record(), {**record(), "observed_at": "noon"}]},
    )
    assert fields(problem(shape, 400)) == {"records[1].observed_at"}
    csv = http.post(
        "/v1/records",
        params={"data_type": nothing_kept},
        content=f"entity_id,observed_at,lat\ns,{observed()},1\n",
        headers={"Content-Type": "text/csv"},
    )
    assert fields(problem(csv, 400)) == {"columns.lon"}


def test_too_many_records_is_413(http: httpx.Client, nothing_kept: str) -> None:
    records = [record(f"s-{i}") for i in range(10_001)]
    response = http.post("/v1/records", json={"data_type": nothing_kept, "records": records})
    assert problem(response, 413)["reason"] == "too_many_records"


def test_an_oversized_declared_body_is_413_before_it_is_sent(http: httpx.Client, nothing_kept: str) -> None:
    declared = 6 * 2**30  # over the 5 GiB object limit
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        chunk = b"x" * 2**20
        while sent < declared:
            sent += len(chunk)
            yield chunk

    response = http.post(
        "/v1/objects",
        params=object_params(nothing_kept),
        content=body(),
        headers={"Content-Type": "text/csv", "Content-Length": str(declared)},
    )
    assert problem(response, 413)["reason"] == "body_too_large"
    # Cut off early: measured in bytes sent, not in seconds (a busy machine is slow).
    assert sent < 256 * 2**20, f"the client had sent {sent} bytes before the answer"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/objects/..%2F..%2Fetc%2Fpasswd",
        "/v1/objects/%2e%2e",
        "/v1/objects/../../etc/passwd",
        "/v1/objects/01arz3ndektsv4rrffq69g5fav",
        "/v1/objects/01ARZ3NDEKTSV4RRFFQ69G5FA%2F",
        "/v1/objects/01ARZ3NDEKTSV4RRFFQ69G5FAV%00/metadata",
        "/v1/objects/" + "A" * 300,
    ],
)
def test_ids_that_are_not_ulids_never_reach_storage(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert response.status_code in (400, 404), response.text
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("params", "status", "names"),
    [
        ({}, 422, {"data_type"}),
        ({"data_type": "sensor.x", "bbox": "1,2,3"}, 422, {"bbox"}),
        ({"data_type": "sensor.x", "bbox": "16.5,48.0,16.0,48.4"}, 400, {"bbox"}),
        ({"data_type": "sensor.x", "page_size": 0}, 422, {"page_size"}),
        ({"data_type": "sensor.x", "page_size": 5000}, 422, {"page_size"}),
        ({"data_type": "sensor.x", "since": "last week"}, 422, {"since"}),
        ({"data_type": "sensor.x", "page_token": "garbage"}, 400, {"page_token"}),
    ],
)
def test_bad_search_parameters(
    http: httpx.Client, params: dict[str, Any], status: int, names: set[str]
) -> None:
    assert fields(problem(http.get("/v1/objects", params=params), status)) == names


def test_multipart_with_the_file_before_its_metadata_is_422(http: httpx.Client, nothing_kept: str) -> None:
    metadata = {"data_type": nothing_kept, "observed_at": observed(), "lat": 48.2, "lon": 16.3}
    response = http.post(
        "/v1/objects",
        files=[("file", ("a.png", make_png(), "image/png")), ("metadata", (None, json.dumps(metadata)))],
    )
    assert fields(problem(response, 422)) == {"file"}
