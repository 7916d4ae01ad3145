"""MinIO or Kafka going away: callers get UNAVAILABLE with RetryInfo (not a
hang), nothing is acknowledged that is not stored and announced, and the
services recover without a restart when the backend returns.

Runs against a private stack (own state dir and ports), because it kills
backends that the other tests share.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from minio import Minio

from pantheon.devstack.environment import environment
from pantheon.devstack.settings import Settings
from pantheon.events.consumer import reader_config
from pantheon.events.topics import DATA_STORED
from tests.integration.support import (
    EventWatcher,
    from_source,
    ingest,
    ingest_stub,
    metadata,
    object_requests,
    private_stack_env,
    stored_keys,
    unique_source,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: Kafka's delivery timeout in this stack (the services fail a publish after it).
DELIVERY_TIMEOUT_S = 5
#: The caller's deadline for a call while a backend is down: 6x the delivery timeout and 3x
#: the S3 read timeout (PANTHEON_S3_READ_TIMEOUT_S, 10 s by default; pantheon/config.py). A
#: call that hangs instead of failing ends in DEADLINE_EXCEEDED, not UNAVAILABLE: this detects
#: a hang, it does not time the failure.
CALLER_DEADLINE_S = 6 * DELIVERY_TIMEOUT_S


def _stack(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [str(ROOT / "scripts/stack"), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = {
        **private_stack_env(tmp_path_factory.mktemp("stack")),
        # Fail a call a few seconds after Kafka stops acknowledging.
        "PANTHEON_KAFKA_DELIVERY_TIMEOUT_MS": str(DELIVERY_TIMEOUT_S * 1000),
    }
    try:
        _stack(env, "up")
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            described = environment(Settings.from_env())
        finally:
            os.environ.clear()
            os.environ.update(saved)
        yield {**env, **described}
    finally:
        _stack(env, "down")


def _kill(env: dict[str, str], component: str) -> None:
    pidfile = Path(env["PANTHEON_STACK_DIR"]) / component / f"{component}.pid"
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    time.sleep(0.5)


def _root_client(env: dict[str, str]) -> Minio:
    import ssl

    import urllib3

    http = urllib3.PoolManager(ssl_context=ssl.create_default_context(cafile=env["PANTHEON_CA_FILE"]))
    return Minio(
        env["MINIO_ENDPOINT"].removeprefix("https://"),
        access_key=env["MINIO_ROOT_USER"],
        secret_key=env["MINIO_ROOT_PASSWORD"],
        secure=True,
        http_client=http,
    )


def _retry_after(error: grpc.aio.AioRpcError) -> int:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.seconds
    raise AssertionError("no RetryInfo")


async def _unavailable_then_once(env: dict[str, str], component: str) -> None:
    source = unique_source()
    meta = metadata(source, idempotency_key=f"{component}-down")
    body = b"entity_id,temp\nvie-1,21.5\n"
    _kill(env, component)
    channel, stub = ingest_stub(env)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IngestObject(object_requests(meta, body, "text/csv"), timeout=CALLER_DEADLINE_S)
        # The services' own answer, before the caller's deadline (DEADLINE_EXCEEDED would be a hang).
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE, caught.value
        assert _retry_after(caught.value) > 0

        _stack(env, "up")  # brings the backend back; the services keep running
        watcher = EventWatcher(reader_config(env), [DATA_STORED.name])
        result = None
        for _ in range(60):
            try:
                result = await ingest(stub, meta, body, "text/csv")
                break
            except grpc.aio.AioRpcError as exc:
                # ABORTED: a claim left by the failed call is still settling.
                assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED), exc.code()
                time.sleep(1)
        assert result is not None, "did not recover"
        again = await ingest(stub, meta, body, "text/csv")
    assert again.replayed and again.metadata.id == result.metadata.id
    assert stored_keys(_root_client(env), "pantheon-sensor", "sensor.temperature", source) == [
        result.object.key
    ]
    events = watcher.collect(from_source(source), wait_s=3)
    watcher.close()
    # Announced after recovery under one id (a late copy of the failed
    # attempt would carry the same id: still one distinct event).
    assert {e.headers["ce_id"] for e in events} == {result.metadata.id}


async def test_minio_down_fails_fast_and_recovers(private_stack: dict[str, str]) -> None:
    await _unavailable_then_once(private_stack, "minio")


async def test_kafka_down_fails_fast_and_recovers(private_stack: dict[str, str]) -> None:
    await _unavailable_then_once(private_stack, "kafka")
