"""`/v1/objects` over real HTTPS against the running stack: upload, announce, download, search."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
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
    of_type,
    rfc3339,
    stored_keys,
    unique_type,
)
from minio import Minio
from pantheon_api.events.v1 import events_pb2

from tests.samples import make_jpeg, make_png

pytestmark = pytest.mark.timeout(120)

# Text bodies are given in the services' canonical form (sorted keys, compact,
# newline-terminated), so what is downloaded equals what was uploaded.
BODIES: dict[str, tuple[str, bytes]] = {
    "json": ("application/json", b'{"pm10":17.5,"station":"station-42"}\n'),
    "ndjson": ("application/x-ndjson", b'{"pm10":17.5}\n{"pm10":18.25}\n'),
    "csv": ("text/csv", b"station,pm10,calibrated\nstation-42,17.5,true\nstation-43,3,false\n"),
    "geojson": ("application/geo+json", b'{"coordinates":[16.3738,48.2082],"type":"Point"}\n'),
    "png": ("image/png", make_png()),
    "jpeg": ("image/jpeg", make_jpeg()),
}


@pytest.fixture(scope="module")
def gw(stack_env: dict[str, str]) -> Gateway:
    return Gateway.from_env(stack_env)


@pytest.fixture(scope="module")
def http(gw: Gateway) -> Iterator[httpx.Client]:
    with gw.client() as client:
        yield client


@pytest.fixture(scope="module")
def events(kafka_config: Any, stack_env: dict[str, str]) -> Iterator[Events]:
    watcher = Events(kafka_config(), [stack_env["PANTHEON_EVENTS_TOPIC"]])
    yield watcher
    watcher.close()


def upload(http: httpx.Client, data_type: str, kind: str, **extra: Any) -> httpx.Response:
    media_type, body = BODIES[kind]
    headers = {"Content-Type": media_type, **extra.pop("headers", {})}
    return http.post("/v1/objects", params=object_params(data_type, **extra), content=body, headers=headers)


@pytest.mark.parametrize("kind", list(BODIES))
def test_each_format_is_stored_announced_and_downloaded_byte_for_byte(
    http: httpx.Client, events: Events, minio_root_client: Minio, kind: str
) -> None:
    data_type = unique_type()
    media_type, body = BODIES[kind]
    request_id = f"gwtest-{uuid.uuid4().hex}"
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    response = upload(
        http,
        data_type,
        kind,
        entity_id="station-42",
        labels="district=07,kind=test",
        headers={"X-Request-Id": request_id, "traceparent": traceparent},
    )
    assert response.status_code == 201, response.text
    assert response.headers["x-request-id"] == request_id
    created = response.json()
    assert created["replayed"] is False
    assert created["media_type"] == media_type
    assert created["size"] == len(body)
    assert created["sha256"] == hashlib.sha256(body).hexdigest()
    assert response.headers["location"] == f"/v1/objects/{created['id']}"
    meta = created["metadata"]
    assert meta["source"] == "demo-city" and meta["data_type"] == data_type
    assert meta["entity_id"] == "station-42" and meta["labels"] == {"district": "07", "kind": "test"}
    assert meta["lineage"]["request_id"] == request_id
    assert stored_keys(minio_root_client, data_type) == [created["key"]]

    # Announced: a DataStored event that points at exactly this object.
    (event,) = events.wait_for(lambda e: e.headers.get("ce_id") == created["event_id"])
    assert isinstance(event.payload, events_pb2.DataStored)
    assert event.payload.object.bucket == created["bucket"] and event.payload.object.key == created["key"]
    assert event.payload.object.sha256 == created["sha256"]
    assert event.payload.metadata.id == created["id"]
    assert event.headers["ce_requestid"] == request_id
    # The public edge starts a trace of its own (linked to the caller's when
    # tracing is on): the caller's trace id never reaches Kafka.
    assert traceparent.split("-")[1] not in event.headers.get("traceparent", "")

    download = http.get(f"/v1/objects/{created['id']}")
    assert download.status_code == 200
    assert download.content == body
    assert download.headers["content-type"].split(";")[0] == media_type
    assert download.headers["content-length"] == str(len(body))
    assert download.headers["etag"] == f'"{created["sha256"]}"'
    assert download.headers["accept-ranges"] == "bytes"


def test_metadata_route_describes_the_object(http: httpx.Client) -> None:
    data_type = unique_type()
    created = upload(http, data_type, "json", classification="public", provider="City of Vienna").json()
    response = http.get(f"/v1/objects/{created['id']}/metadata")
    assert response.status_code == 200
    info = response.json()
    assert info["id"] == created["id"] and info["key"] == created["key"]
    assert info["encryption"]  # SSE at rest
    assert info["metadata"]["classification"] == "CLASSIFICATION_PUBLIC"
    assert info["metadata"]["provider"] == "City of Vienna"
    assert response.headers["etag"] == f'"{created["sha256"]}"'
    missing = http.get("/v1/objects/01ARZ3NDEKTSV4RRFFQ69G5FAV/metadata")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


def test_range_and_conditional_requests(http: httpx.Client) -> None:
    body = BODIES["png"][1]
    created = upload(http, unique_type("imagery"), "png").json()
    url = f"/v1/objects/{created['id']}"
    size = len(body)

    part = http.get(url, headers={"Range": "bytes=0-7"})
    assert part.status_code == 206
    assert part.content == body[:8]
    assert part.headers["content-range"] == f"bytes 0-7/{size}"
    assert part.headers["content-length"] == "8"

    tail = http.get(url, headers={"Range": "bytes=-12"})
    assert tail.status_code == 206 and tail.content == body[-12:]
    rest = http.get(url, headers={"Range": "bytes=10-"})
    assert rest.status_code == 206 and rest.content == body[10:]

    beyond = http.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"
    assert beyond.json()["reason"] == "range_not_satisfiable"

    etag = part.headers["etag"]
    assert http.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert http.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    stale = http.get(url, headers={"Range": "bytes=0-7", "If-Range": '"stale"'})
    assert stale.status_code == 200 and stale.content == body


def test_multipart_upload_streams_the_file_part(http: httpx.Client, events: Events) -> None:
    data_type = unique_type("imagery")
    png = make_png()
    metadata = {
        "data_type": data_type,
        "observed_at": observed(),
        "lat": 48.2,
        "lon": 16.37,
        "labels": {"a": "b"},
    }
    response = http.post(
        "/v1/objects",
        files={
            "metadata": (None, json.dumps(metadata), "application/json"),
            "file": ("drone.png", png, "image/png"),
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["metadata"]["labels"] == {"a": "b"}
    assert http.get(f"/v1/objects/{created['id']}").content == png
    events.wait_for(lambda e: e.headers.get("ce_id") == created["event_id"])


def test_a_replay_with_the_same_idempotency_key_returns_the_first_result(
    http: httpx.Client, events: Events, minio_root_client: Minio
) -> None:
    data_type = unique_type()
    key = f"gwtest-{uuid.uuid4()}"
    params = object_params(data_type)
    body = BODIES["json"][1]
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    first = http.post("/v1/objects", params=params, content=body, headers=headers)
    second = http.post("/v1/objects", params=params, content=body, headers=headers)
    assert first.status_code == 201, first.text
    assert second.status_code == 200, second.text
    assert second.json()["replayed"] is True
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["event_id"] == first.json()["event_id"]
    assert first.json()["metadata"]["idempotency_key"] == key
    assert len(stored_keys(minio_root_client, data_type)) == 1
    assert len(events.wait_for(of_type(data_type), wait_s=15)) >= 1
    events.none_within(
        lambda e: e.data_type == data_type and e.headers["ce_id"] != first.json()["event_id"], 2
    )

    # The key names one request: reusing it for other metadata is a conflict.
    reused = http.post("/v1/objects", params={**params, "entity_id": "other"}, content=body, headers=headers)
    assert reused.status_code == 409
    assert reused.json()["reason"] == "idempotency_key_reused"


def test_search_by_data_type_source_time_and_area(http: httpx.Client) -> None:
    data_type = unique_type()
    now = datetime.now(UTC)
    vienna = upload(
        http, data_type, "json", observed_at=rfc3339(now - timedelta(minutes=5)), lat=48.2, lon=16.37
    )
    graz = upload(http, data_type, "csv", observed_at=rfc3339(now - timedelta(hours=3)), lat=47.07, lon=15.44)
    assert vienna.status_code == graz.status_code == 201
    ids = {vienna.json()["id"], graz.json()["id"]}

    def search(**params: Any) -> set[str]:
        response = http.get("/v1/objects", params={"data_type": data_type, **params})
        assert response.status_code == 200, response.text
        return {o["id"] for o in response.json()["objects"]}

    assert search() == ids
    assert search(source="demo-city") == ids
    assert search(source="someone-else") == set()
    assert search(since=rfc3339(now - timedelta(hours=1))) == {vienna.json()["id"]}
    assert search(until=rfc3339(now - timedelta(hours=1))) == {graz.json()["id"]}
    assert search(bbox="16.0,48.0,16.6,48.4") == {vienna.json()["id"]}
    assert search(bbox="15.0,46.8,15.8,47.3") == {graz.json()["id"]}
    assert search(data_type=unique_type()) == set()

    first_page = http.get("/v1/objects", params={"data_type": data_type, "page_size": 1}).json()
    assert len(first_page["objects"]) == 1 and first_page["next_page_token"]
    second_page = http.get(
        "/v1/objects",
        params={"data_type": data_type, "page_size": 1, "page_token": first_page["next_page_token"]},
    ).json()
    assert {first_page["objects"][0]["id"], second_page["objects"][0]["id"]} == ids

    # Page tokens are sealed: a changed one is refused, and none reads as text.
    token = first_page["next_page_token"]
    assert "demo-city" not in token and data_type not in token
    tampered = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    refused = http.get("/v1/objects", params={"data_type": data_type, "page_size": 1, "page_token": tampered})
    assert refused.status_code == 400 and refused.json()["reason"] == "invalid_page_token"

    too_long = http.get(
        "/v1/objects",
        params={"data_type": data_type, "since": rfc3339(now - timedelta(days=40)), "until": rfc3339(now)},
    )
    assert too_long.status_code == 400
    assert too_long.headers["content-type"] == "application/problem+json"


def test_a_concurrent_duplicate_is_409_with_retry_after(http: httpx.Client) -> None:
    data_type = unique_type()
    params = object_params(data_type)
    headers = {"Content-Type": "text/csv", "Idempotency-Key": f"gwtest-{uuid.uuid4()}"}
    first_chunk_sent = threading.Event()
    results: dict[str, httpx.Response] = {}

    rows = b"station,pm10\n" + b"station-42,17.5\n" * 70_000  # over one 1 MiB gRPC chunk

    def slow_body() -> Iterator[bytes]:
        yield rows  # the gateway forwards full chunks at once: the service claims the key
        first_chunk_sent.set()
        time.sleep(3)  # the first call holds the key meanwhile
        yield b"station-43,18.5\n"

    def first() -> None:
        results["first"] = http.post("/v1/objects", params=params, content=slow_body(), headers=headers)

    worker = threading.Thread(target=first)
    worker.start()
    assert first_chunk_sent.wait(10)
    time.sleep(0.5)  # let the service claim the key
    second = http.post(
        "/v1/objects", params=params, content=b"station,pm10\nstation-42,17.5\n", headers=headers
    )
    worker.join(30)
    assert second.status_code == 409, second.text
    assert second.headers["retry-after"] == "1"
    assert second.json()["reason"] == "in_progress"
    assert results["first"].status_code == 201
