"""The events library against the real Kafka: typed protobuf events in
CloudEvents binary mode, the consumer helper's commit, dead-letter and
duplicate handling, and `pantheon tail`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from pantheon_api.events.v1 import events_pb2

from pantheon.config import KafkaSettings
from pantheon.devstack.credentials import KAFKA_SIMULATION_USER
from pantheon.events.consumer import EventConsumer, Received
from pantheon.events.producer import Event, KafkaPublisher
from pantheon.events.topics import DATA_STORED, DEAD_LETTER, restricted_name
from tests.integration.support import EventWatcher, data_stored_event, from_source, unique_source

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def publisher(stack_env: dict[str, str]) -> Any:
    p = KafkaPublisher(KafkaSettings.from_env(stack_env))
    yield p
    p.close()


async def test_a_protobuf_event_round_trips_over_sasl_ssl(
    publisher: KafkaPublisher, kafka_config: Any
) -> None:
    source = unique_source()
    event = data_stored_event(source)
    watcher = EventWatcher(kafka_config(), [DATA_STORED.name])
    await publisher.publish([event])
    (seen,) = watcher.collect(from_source(source), count=1)
    watcher.close()
    assert seen.payload == event.payload
    assert seen.key == source
    assert seen.headers["ce_id"] == event.event_id
    assert seen.headers["ce_type"] == "pantheon.data.stored.v1"
    assert seen.headers["ce_subject"] == event.event_id


def _consumer(kafka_config: Any, handler: Any) -> EventConsumer:
    consumer = EventConsumer(
        kafka_config(),
        f"pantheon-test-{uuid.uuid4().hex[:8]}",
        [DATA_STORED.name],
        handler,
        dlq_topic=DEAD_LETTER.name,
        from_beginning=False,
    )
    consumer.wait_until_assigned()
    return consumer


async def test_a_failing_handler_sends_the_event_to_the_dead_letter_topic(
    publisher: KafkaPublisher, kafka_config: Any
) -> None:
    source = unique_source()

    def handler(received: Received) -> None:
        if received.attributes.source == f"/pantheon/{source}":
            raise RuntimeError("simulation engine rejected it")

    consumer = _consumer(kafka_config, handler)
    dlq = EventWatcher(kafka_config(), [DEAD_LETTER.name])
    event = data_stored_event(source)
    await publisher.publish([event])
    consumer.run(idle_timeout_s=3)
    consumer.close()
    (letter,) = dlq.collect(from_source(source), count=1)
    dlq.close()
    assert letter.headers["pantheon_reason"] == "handler_failed"
    assert letter.headers["pantheon_error"] == "RuntimeError"
    assert letter.headers["pantheon_original_topic"] == DATA_STORED.name
    assert letter.headers["ce_subject"] == event.event_id
    assert isinstance(letter.payload, events_pb2.DeadLetter)
    assert events_pb2.DataStored.FromString(letter.payload.original) == event.payload


async def test_a_failed_restricted_event_is_dead_lettered_on_the_restricted_topic_only(
    publisher: KafkaPublisher, kafka_config: Any, stack_env: dict[str, str]
) -> None:
    source = unique_source()
    restricted = kafka_config(KAFKA_SIMULATION_USER, stack_env["KAFKA_SIMULATION_PASSWORD"])
    restricted_stored, restricted_dlq = restricted_name(DATA_STORED.name), restricted_name(DEAD_LETTER.name)

    def handler(received: Received) -> None:
        raise RuntimeError("cannot process")

    consumer = EventConsumer(
        restricted,
        f"simulation-engine-test-{uuid.uuid4().hex[:8]}",
        [restricted_stored],
        handler,
        dlq_topic=DEAD_LETTER.name,
        from_beginning=False,
    )
    consumer.wait_until_assigned()
    public_dlq = EventWatcher(kafka_config(), [DEAD_LETTER.name])
    private_dlq = EventWatcher(restricted, [restricted_dlq])
    event = data_stored_event(source)
    await publisher.publish([Event(restricted_stored, source, event.payload, event.event_id, source)])
    consumer.run(idle_timeout_s=3)
    consumer.close()
    (letter,) = private_dlq.collect(from_source(source), count=1)
    assert letter.headers["pantheon_original_topic"] == restricted_stored
    assert public_dlq.collect(from_source(source), wait_s=2) == []
    public_dlq.close()
    private_dlq.close()


async def test_a_redelivered_event_is_handled_once(publisher: KafkaPublisher, kafka_config: Any) -> None:
    source = unique_source()
    handled: list[str] = []

    def handler(received: Received) -> None:
        if received.attributes.source == f"/pantheon/{source}":
            handled.append(received.attributes.id)

    consumer = _consumer(kafka_config, handler)
    event = data_stored_event(source)
    await publisher.publish([event])
    await publisher.publish([event])  # a producer retry after a lost acknowledgement
    consumer.run(idle_timeout_s=3)
    consumer.close()
    assert handled == [event.event_id]


async def test_pantheon_tail_prints_decoded_events(
    publisher: KafkaPublisher, stack_env: dict[str, str]
) -> None:
    source = unique_source()
    await publisher.publish([data_stored_event(source)])
    done = subprocess.run(
        [sys.executable, "-m", "pantheon", "tail", "--json", "--from-beginning", "--max", "1"],
        env={**os.environ, **stack_env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    event = json.loads(line)
    assert event["type"] == "pantheon.data.stored.v1"
    assert event["data"]["metadata"]["data_type"]
