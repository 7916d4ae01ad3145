"""Admission control in the services: the concurrent-RPC limit, its status and
how the gateway answers it; the settings that size the limits and pools."""

from __future__ import annotations

import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.problems import from_rpc_error
from pantheon.config import S3Settings, ServiceSettings
from pantheon.devstack.mesh import DEV_CLIENT
from pantheon.server import channel_credentials, create_server
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
    # A bare channel: secure_channel's own health watch would hold the only slot.
    credentials = channel_credentials(dev_mesh.tls.ca_file, dev_mesh.identity(DEV_CLIENT))
    channel = grpc.aio.secure_channel(f"localhost:{running.port}", credentials)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        # One long-lived call (a health watch) takes the only slot.
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        await watch.read()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
        error = caught.value
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "Concurrent RPC limit exceeded" in (error.details() or "")

        problem = from_rpc_error(error, "req-1")
        assert problem.status in (429, 503)
        assert int(problem.headers["Retry-After"]) >= 1

        watch.cancel()
        # The slot is free again once the watch has ended.
        for _ in range(100):
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
                break
            except grpc.aio.AioRpcError as again:
                assert again.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        else:
            raise AssertionError("the slot was never given back")
        assert response.status != health_pb2.HealthCheckResponse.UNKNOWN
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
    store = S3ObjectStore(S3Settings("https://localhost:1", "a", "s", dev_mesh.tls.ca_file, threads=3))
    names = {await store._run(lambda: threading.current_thread().name) for _ in range(10)}
    assert names and all(name.startswith("s3") for name in names)
    assert store._executor._max_workers == 3
