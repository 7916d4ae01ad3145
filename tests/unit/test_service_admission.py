"""Admission control in the services: the concurrent-RPC limit, its status and
how the gateway answers it; the settings that size the limits and pools."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pantheon_api.ingest.v1 import ingest_service_pb2 as ingest_pb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as ingest_grpc
from pantheon_api.storage.v1 import storage_service_pb2 as storage_pb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as storage_grpc

from gateway.problems import from_rpc_error
from pantheon.config import S3Settings, ServiceSettings
from pantheon.devstack.mesh import DEV_CLIENT
from pantheon.metadata.ulid import new_ulid
from pantheon.server import create_server, secure_channel
from pantheon.storage.s3 import S3ObjectStore
from tests.unit.fakes import MemoryObjectStore, RecordingPublisher
from tests.unit.mesh import Mesh, make_mesh


@pytest.fixture(scope="module")
def dev_mesh(tmp_path_factory: pytest.TempPathFactory) -> Mesh:
    return make_mesh(tmp_path_factory.mktemp("mesh"))


async def test_a_call_past_the_concurrent_rpc_limit_is_refused_and_the_gateway_says_retry(
    dev_mesh: Mesh,
) -> None:
    settings = dev_mesh.service_settings(max_concurrent_rpcs=1)
    running = await create_server(settings, store=MemoryObjectStore(), publisher=RecordingPublisher())
    # A balanced, health-watching channel like every Pantheon client's: its
    # watch must not take the only slot, nor be refused while the slot is taken.
    channel = secure_channel(f"localhost:{running.port}", dev_mesh.tls.ca_file, dev_mesh.identity(DEV_CLIENT))
    try:
        ingest = ingest_grpc.IngestionServiceStub(channel)
        storage = storage_grpc.StorageServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        # One long-lived call (an upload that sends nothing yet) takes the only slot.
        held: asyncio.Queue[ingest_pb.IngestObjectRequest | None] = asyncio.Queue()

        async def nothing_yet() -> AsyncIterator[ingest_pb.IngestObjectRequest]:
            while (message := await held.get()) is not None:
                yield message

        upload = ingest.IngestObject(nothing_yet())
        refused: grpc.aio.AioRpcError | None = None
        for _ in range(100):  # until the upload's handler runs
            try:
                await storage.StatObject(storage_pb.StatObjectRequest(id=new_ulid()), timeout=10)
            except grpc.aio.AioRpcError as error:
                if error.code() is grpc.StatusCode.UNAVAILABLE:
                    refused = error
                    break
            await asyncio.sleep(0.05)
        assert refused is not None, "the second call was never refused"
        error = refused
        problem = from_rpc_error(error, "req-1")
        assert (problem.status, problem.reason) == (503, "services_busy")
        assert int(problem.headers["Retry-After"]) >= 1
        # Health answers all the while: a busy replica stays in its clients' rotation.
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        upload.cancel()
        # The slot is free again once the upload has ended.
        for _ in range(100):
            try:
                await storage.StatObject(storage_pb.StatObjectRequest(id=new_ulid()), timeout=10)
            except grpc.aio.AioRpcError as again:
                if again.code() is grpc.StatusCode.NOT_FOUND:
                    break
                assert again.code() is grpc.StatusCode.UNAVAILABLE
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the slot was never given back")
    finally:
        await channel.close()
        await running.stop(0)


def _env(**extra: str) -> dict[str, str]:
    return {
        "PANTHEON_CA_FILE": "ca.pem",
        "PANTHEON_TLS_CERT_FILE": "server.pem",
        "PANTHEON_TLS_KEY_FILE": "server.key",
        "PANTHEON_KAFKA_BOOTSTRAP": "localhost:9093",
        "PANTHEON_KAFKA_USERNAME": "u",
        "PANTHEON_KAFKA_PASSWORD": "p",
        "PANTHEON_S3_ENDPOINT": "https://localhost:9000",
        "PANTHEON_S3_ACCESS_KEY": "a",
        "PANTHEON_S3_SECRET_KEY": "s",
        "PANTHEON_POLICY_FILE": "policy.json",
        **extra,
    }


def test_admission_settings_have_defaults_and_variables() -> None:
    defaults = ServiceSettings.from_env(_env())
    assert defaults.max_concurrent_rpcs == 64
    assert defaults.s3.threads == 16
    assert (defaults.kafka.queue_max_messages, defaults.kafka.queue_max_kbytes) == (100_000, 256 * 1024)
    tuned = ServiceSettings.from_env(
        _env(
            PANTHEON_MAX_CONCURRENT_RPCS="8",
            PANTHEON_S3_THREADS="4",
            PANTHEON_KAFKA_QUEUE_MAX_MESSAGES="1000",
            PANTHEON_KAFKA_QUEUE_MAX_KBYTES="4096",
        )
    )
    assert tuned.max_concurrent_rpcs == 8
    assert tuned.s3.threads == 4
    assert (tuned.kafka.queue_max_messages, tuned.kafka.queue_max_kbytes) == (1000, 4096)


async def test_the_object_store_runs_its_calls_in_its_own_bounded_pool(dev_mesh: Mesh) -> None:
    store = S3ObjectStore(
        S3Settings(
            endpoint="https://localhost:1",
            access_key="a",
            secret_key="s",
            ca_file=dev_mesh.tls.ca_file,
            threads=3,
        )
    )
    names = {await store._run(lambda: threading.current_thread().name) for _ in range(10)}
    assert names and all(name.startswith("s3") for name in names)
    assert store._executor._max_workers == 3
