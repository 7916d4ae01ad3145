"""`/v1/records` over real HTTPS: JSON, NDJSON and CSV batches, per-record outcomes, events."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gateway_support import Events, Gateway, observed, of_type, record, stored_keys, unique_type
from minio import Minio
from pantheon_api.events.v1 import events_pb2

pytestmark = pytest.mark.timeout(120)


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


def test_a_json_batch_is_stored_and_each_record_announced(
    http: httpx.Client, events: Events, minio_root_client: Minio, stack_env: dict[str, str]
) -> None:
    data_type = unique_type()
    batch = {
        "data_type": data_type,
        "records": [record("station-1", pm10=17.5), record("station-2", pm10=3)],
        "labels": {"campaign": "winter"},
        "classification": "public",
    }
    response = http.post("/v1/records", json=batch)
    assert response.status_code == 201, response.text
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (2, 0)
    assert [r["status"] for r in result["results"]] == ["accepted", "accepted"]
    assert all(r["id"] for r in result["results"])
    assert stored_keys(minio_root_client, data_type) == [result["key"]]

    ingested = events.wait_for(
        lambda e: e.topic == stack_env["PANTHEON_RECORDS_TOPIC"] and e.data_type == data_type, 2
    )
    assert {e.headers["ce_id"] for e in ingested} == {r["id"] for r in result["results"]}
    payloads = {e.payload.metadata.entity_id: e.payload for e in ingested}
    assert isinstance(payloads["station-1"], events_pb2.RecordIngested)
    assert payloads["station-1"].payload["pm10"] == 17.5
    stored = events.wait_for(lambda e: e.headers.get("ce_id") == result["event_id"])
    assert stored[0].payload.object.key == result["key"]

    batch_object = http.get(f"/v1/objects/{result['id']}")
    assert batch_object.status_code == 200
    assert len(batch_object.content.splitlines()) == 2  # stored as NDJSON by default


def test_some_rejected_records_give_207_with_per_record_outcomes(
    http: httpx.Client, events: Events, stack_env: dict[str, str]
) -> None:
    data_type = unique_type()
    batch = {"data_type": data_type, "records": [record("ok-1"), record("bad-1", lat=95.0), record("ok-2")]}
    response = http.post("/v1/records", json=batch)
    assert response.status_code == 207, response.text
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (2, 1)
    outcome = result["results"][1]
    assert outcome["index"] == 1 and outcome["status"] == "rejected" and outcome["id"] is None
    assert outcome["reason"] == "validation_failed"
    assert outcome["errors"][0]["field"] == "records[1].location.lat"
    assert outcome["errors"][0]["reason"] == "double.gte_lte"
    dead = events.wait_for(lambda e: e.topic == stack_env["PANTHEON_DLQ_TOPIC"] and e.data_type == data_type)
    assert dead[0].headers["pantheon_reason"] == "invalid_record"


@pytest.mark.parametrize("n", [1, 2000])  # many: the error lists the first violations only
def test_an_all_rejected_batch_is_400_and_stores_nothing(
    http: httpx.Client, events: Events, minio_root_client: Minio, n: int
) -> None:
    data_type = unique_type()
    bad = [record(f"bad-{i}", lat=95.0) for i in range(n)]
    response = http.post("/v1/records", json={"data_type": data_type, "records": bad})
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["errors"][0]["field"] == "records[0].location.lat"
    assert 1 <= len(problem["errors"]) <= n
    assert stored_keys(minio_root_client, data_type) == []
    events.none_within(of_type(data_type))


def test_ndjson_records_with_batch_fields_from_the_query(
    http: httpx.Client, minio_root_client: Minio
) -> None:
    data_type = unique_type("weather")
    body = "\n".join(json.dumps(record(f"st-{i}", temp_c=20 + i)) for i in range(5)) + "\n"
    response = http.post(
        "/v1/records",
        params={"data_type": data_type, "labels": "a=1", "batch_format": "csv"},
        content=body,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["accepted"] == 5
    assert result["media_type"] == "text/csv"
    assert result["metadata"]["labels"] == {"a": "1"}
    assert result["key"].endswith(".csv")
    assert stored_keys(minio_root_client, data_type) == [result["key"]]


def test_csv_records_have_typed_payloads(
    http: httpx.Client, events: Events, stack_env: dict[str, str]
) -> None:
    data_type = unique_type()
    at = observed()
    body = (
        "entity_id,observed_at,lat,lon,alt,pm10,count,calibrated,site\n"
        f"s-1,{at},48.2,16.37,180,17.5,4,true,Ring West\n"
        f"s-2,{at},48.3,16.40,,3.25,7,false,\n"
    )
    response = http.post(
        "/v1/records", params={"data_type": data_type}, content=body, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 201, response.text
    found = events.wait_for(
        lambda e: e.topic == stack_env["PANTHEON_RECORDS_TOPIC"] and e.data_type == data_type, 2
    )
    by_entity = {e.payload.metadata.entity_id: e.payload for e in found}
    first = by_entity["s-1"]
    assert first.payload["pm10"] == 17.5 and first.payload["count"] == 4
    assert first.payload["calibrated"] is True and first.payload["site"] == "Ring West"
    assert first.metadata.location.altitude_m == 180
    assert "site" not in by_entity["s-2"].payload
    assert not by_entity["s-2"].metadata.location.HasField("altitude_m")


def test_a_replayed_batch_returns_the_first_result(http: httpx.Client, minio_root_client: Minio) -> None:
    data_type = unique_type()
    batch = {"data_type": data_type, "records": [record()]}
    headers = {"Idempotency-Key": f"gwtest-{uuid.uuid4()}"}
    first = http.post("/v1/records", json=batch, headers=headers)
    second = http.post("/v1/records", json=batch, headers=headers)
    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["replayed"] is True and second.json()["id"] == first.json()["id"]
    assert len(stored_keys(minio_root_client, data_type)) == 1
