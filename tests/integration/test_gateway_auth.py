"""The auth matrix over real HTTPS: who may ingest what, and read what; refusals store nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gateway_support import Events, Gateway, object_params, of_type, record, stored_keys, unique_type
from minio import Minio

pytestmark = pytest.mark.timeout(120)

JSON_BODY = b'{"pm10":17.5}\n'


@pytest.fixture(scope="module")
def gw(stack_env: dict[str, str]) -> Gateway:
    return Gateway.from_env(stack_env)


@pytest.fixture(scope="module")
def events(kafka_config: Any, stack_env: dict[str, str]) -> Iterator[Events]:
    topics = [stack_env[t] for t in ("PANTHEON_EVENTS_TOPIC", "PANTHEON_RECORDS_TOPIC", "PANTHEON_DLQ_TOPIC")]
    watcher = Events(kafka_config(), topics)
    yield watcher
    watcher.close()


def post_object(client: httpx.Client, data_type: str, **params: Any) -> httpx.Response:
    return client.post(
        "/v1/objects",
        params=object_params(data_type, **params),
        content=JSON_BODY,
        headers={"Content-Type": "application/json"},
    )


def post_records(client: httpx.Client, data_type: str, **fields: Any) -> httpx.Response:
    return client.post("/v1/records", json={"data_type": data_type, "records": [record()], **fields})


def assert_refused(response: httpx.Response, status: int, reason: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if reason is not None:
        assert response.json()["reason"] == reason
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("key", [None, "not-a-key", "pantheon_" + "A" * 43])
def test_no_key_or_a_bad_key_is_401_everywhere_and_stores_nothing(
    gw: Gateway, events: Events, minio_root_client: Minio, key: str | None
) -> None:
    data_type = unique_type()
    with gw.client(key) as client:
        assert_refused(post_object(client, data_type), 401)
        assert_refused(post_records(client, data_type), 401)
        assert_refused(client.get("/v1/objects", params={"data_type": data_type}), 401)
        assert_refused(client.get("/v1/objects/01ARZ3NDEKTSV4RRFFQ69G5FAV"), 401)
        assert_refused(client.get("/v1/objects/01ARZ3NDEKTSV4RRFFQ69G5FAV/metadata"), 401)
    assert stored_keys(minio_root_client, data_type) == []
    events.none_within(of_type(data_type), wait_s=2)


def test_a_read_only_key_may_not_ingest(gw: Gateway, events: Events, minio_root_client: Minio) -> None:
    data_type = unique_type()
    with gw.client(gw.key_readonly) as viewer:
        assert_refused(post_object(viewer, data_type), 403, "scope_missing")
        assert_refused(post_records(viewer, data_type), 403, "scope_missing")
    assert stored_keys(minio_root_client, data_type) == []
    events.none_within(of_type(data_type), wait_s=2)


def test_a_key_may_not_ingest_as_another_source(
    gw: Gateway, events: Events, minio_root_client: Minio
) -> None:
    data_type = unique_type("weather")
    with gw.client(gw.key) as city:
        assert_refused(post_object(city, data_type, source="demo-agency"), 403, "source_not_allowed")
        assert_refused(post_records(city, data_type, source="demo-agency"), 403, "source_not_allowed")
        own = post_object(city, data_type, source="demo-city")
        assert own.status_code == 201 and own.json()["metadata"]["source"] == "demo-city"
    assert stored_keys(minio_root_client, data_type) == [own.json()["key"]]
    events.none_within(lambda e: e.data_type == data_type and e.payload.metadata.source != "demo-city", 2)


def test_key_b_reads_and_writes_only_its_data_types(gw: Gateway, minio_root_client: Minio) -> None:
    sensor_type, weather_type = unique_type("sensor"), unique_type("weather")
    with gw.client(gw.key) as city, gw.client(gw.key_b) as agency:
        sensor = post_object(city, sensor_type).json()
        assert_refused(agency.get(f"/v1/objects/{sensor['id']}"), 403, "data_type_not_allowed")
        assert_refused(agency.get(f"/v1/objects/{sensor['id']}/metadata"), 403, "data_type_not_allowed")
        assert_refused(
            agency.get("/v1/objects", params={"data_type": sensor_type}), 403, "data_type_not_allowed"
        )
        assert_refused(post_object(agency, unique_type("sensor")), 403, "data_type_not_allowed")

        own = post_object(agency, weather_type)
        assert own.status_code == 201 and own.json()["metadata"]["source"] == "demo-agency"
        assert agency.get(f"/v1/objects/{own.json()['id']}").content == JSON_BODY
        listed = agency.get("/v1/objects", params={"data_type": weather_type}).json()["objects"]
        assert [o["id"] for o in listed] == [own.json()["id"]]
        # The city reads everything, the agency's data included.
        assert city.get(f"/v1/objects/{own.json()['id']}").status_code == 200


def test_restricted_data_needs_the_restricted_grant(gw: Gateway) -> None:
    data_type = unique_type()
    with gw.client(gw.key) as city, gw.client(gw.key_readonly) as viewer:
        secret = post_object(city, data_type, classification="restricted").json()
        internal = post_object(city, data_type, classification="internal").json()
        assert_refused(viewer.get(f"/v1/objects/{secret['id']}"), 403, "restricted")
        assert_refused(viewer.get(f"/v1/objects/{secret['id']}/metadata"), 403, "restricted")
        assert viewer.get(f"/v1/objects/{internal['id']}").content == JSON_BODY
        seen = {o["id"] for o in viewer.get("/v1/objects", params={"data_type": data_type}).json()["objects"]}
        assert seen == {internal["id"]}
        assert city.get(f"/v1/objects/{secret['id']}").status_code == 200
