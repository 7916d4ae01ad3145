"""Client channels to several service replicas: the service config (round
robin, health checks, retries of idempotent calls only), the TLS authority
of an address-list target, and two real TLS replicas in process, one of
which drains and one of which goes away, while calls keep succeeding.

Both channel factories are checked: pantheon/server.py's `secure_channel`
(CLI, tests, the services' own storage channel) and gateway/channel.py's
`open_channel` (which may not import `pantheon`, so it builds its own).
"""

from __future__ import annotations

import ast
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pantheon_api.ingest.v1 import ingest_service_pb2 as ipb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as ipb_grpc
from pantheon_api.storage.v1 import storage_service_pb2 as spb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as spb_grpc

from gateway import channel as gateway_channel
from gateway.settings import ConfigError, GatewaySettings
from pantheon import client_channel
from pantheon.config import ServiceSettings
from pantheon.devstack.mesh import DEV_CLIENT
from pantheon.server import Running, channel_credentials, create_server, secure_channel, server_credentials
from tests.unit.fakes import MemoryObjectStore, RecordingPublisher
from tests.unit.mesh import Mesh, make_mesh
from tests.unit.test_service_admission import _env as service_env

ROOT = Path(__file__).resolve().parents[2]
STORAGE = "pantheon_api.storage.v1.StorageService"
INGEST = "pantheon_api.ingest.v1.IngestionService"

#: What the protos declare NO_SIDE_EFFECTS or IDEMPOTENT (proto/pantheon_api/*/v1/*_service.proto).
IDEMPOTENT = {
    (STORAGE, "GetObject"),
    (STORAGE, "StatObject"),
    (STORAGE, "SearchObjects"),
    (STORAGE, "CompleteIdempotencyKey"),
    (STORAGE, "ReleaseIdempotencyKey"),
    (STORAGE, "GetIdempotencyKey"),
    (STORAGE, "CommitObject"),
    (STORAGE, "ListPendingObjects"),
    (STORAGE, "GetPendingObject"),
    (STORAGE, "DiscardPendingObject"),
    (INGEST, "GetIngestResult"),
    ("grpc.health.v1.Health", "Check"),
}
#: Calls with side effects that must never be repeated by the channel.
NEVER_RETRIED = {
    (INGEST, "IngestObject"),
    (INGEST, "IngestRecords"),
    (INGEST, "IngestRecordDocument"),
    (INGEST, "Reconcile"),
    (STORAGE, "PutObject"),
    (STORAGE, "ClaimIdempotencyKey"),
}

AUTHORITIES = [client_channel.default_authority, gateway_channel.default_authority]


def _gateway_settings(mesh: Mesh, target: str, **extra: Any) -> GatewaySettings:
    identity = mesh.identity(DEV_CLIENT)
    return GatewaySettings(
        grpc_target=target,
        ca_file=mesh.tls.ca_file,
        tls_cert_file=mesh.tls.cert_file,
        tls_key_file=mesh.tls.key_file,
        api_keys_file=mesh.policy_file,
        client_cert_file=identity.cert_file,
        client_key_file=identity.key_file,
        **extra,
    )


def _service_configs(options: list[tuple[str, str | int]]) -> dict[str, Any]:
    found = dict(options)
    assert found["grpc.enable_retries"] == 1
    config: dict[str, Any] = json.loads(str(found["grpc.service_config"]))
    return config


# -- the service config --------------------------------------------------------


@pytest.mark.parametrize("side", ["pantheon", "gateway"])
def test_the_service_config_balances_checks_health_and_retries_exactly_the_idempotent_calls(
    side: str, tmp_path: Path
) -> None:
    if side == "pantheon":
        options = client_channel.channel_options("127.0.0.1:1")
    else:
        options = gateway_channel.channel_options(_gateway_settings(make_mesh(tmp_path), "127.0.0.1:1"))
    config = _service_configs(options)
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    # A name that is SERVING from start-up until graceful shutdown (not "",
    # which follows Kafka and the object store; pantheon/client_channel.py).
    assert config["healthCheckConfig"] == {"serviceName": STORAGE}
    [method_config] = config["methodConfig"]
    retried = {(name["service"], name["method"]) for name in method_config["name"]}
    assert retried == IDEMPOTENT
    assert not retried & NEVER_RETRIED
    policy = method_config["retryPolicy"]
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert 2 <= policy["maxAttempts"] <= 5


def test_both_factories_build_the_same_service_config() -> None:
    assert client_channel.service_config() == gateway_channel.service_config()


def test_the_gateway_keeps_its_transport_options(tmp_path: Path) -> None:
    options = dict(gateway_channel.channel_options(_gateway_settings(make_mesh(tmp_path), "127.0.0.1:1")))
    assert options["grpc.http2.bdp_probe"] == 0
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.max_receive_message_length"] == gateway_channel.MAX_MESSAGE_BYTES


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


def _in(package: str, name: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_gateway_imports_no_pantheon_module_but_the_settings_leaf() -> None:
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        for name in _imports(path):
            assert not _in("pantheon", name) or _in("pantheon.envconfig", name), (path, name)


def test_the_settings_leaf_imports_nothing_else_of_pantheon_nor_the_gateway() -> None:
    for path in sorted((ROOT / "pantheon" / "envconfig").rglob("*.py")):
        for name in _imports(path):
            assert not _in("gateway", name), (path, name)
            assert not _in("pantheon", name) or _in("pantheon.envconfig", name), (path, name)


# -- the authority -------------------------------------------------------------


@pytest.mark.parametrize("authority", AUTHORITIES)
@pytest.mark.parametrize(
    ("target", "override", "expected"),
    [
        ("ipv4:127.0.0.1:1,127.0.0.1:2", None, "127.0.0.1"),
        ("ipv4:10.0.0.7:50051", None, "10.0.0.7"),
        ("ipv4:127.0.0.1", None, "127.0.0.1"),
        ("ipv4:///127.0.0.1:1,127.0.0.1:2", None, "127.0.0.1"),
        ("ipv6:[::1]:1,[::1]:2", None, "[::1]"),
        ("ipv6:::1", None, "[::1]"),
        # gRPC's own choice (the host) already matches the certificate.
        ("127.0.0.1:1", None, None),
        ("localhost:50051", None, None),
        ("dns:///x:1", None, None),
        ("dns:x:1", None, None),
        # An explicit name wins whatever the target.
        ("ipv4:127.0.0.1:1,127.0.0.1:2", "pantheon.internal", "pantheon.internal"),
        ("dns:///x:1", "pantheon.internal", "pantheon.internal"),
        ("ipv4:127.0.0.1:1,127.0.0.1:2", "", "127.0.0.1"),
    ],
)
def test_the_authority_of_a_target(
    authority: Callable[[str, str | None], str | None],
    target: str,
    override: str | None,
    expected: str | None,
) -> None:
    assert authority(target, override) == expected


def test_the_authority_becomes_a_channel_option_only_when_needed(tmp_path: Path) -> None:
    mesh = make_mesh(tmp_path)
    for options in (
        client_channel.channel_options("ipv4:127.0.0.1:1,127.0.0.1:2"),
        gateway_channel.channel_options(_gateway_settings(mesh, "ipv4:127.0.0.1:1,127.0.0.1:2")),
    ):
        assert dict(options)["grpc.default_authority"] == "127.0.0.1"
    for options in (
        client_channel.channel_options("127.0.0.1:1"),
        gateway_channel.channel_options(_gateway_settings(mesh, "127.0.0.1:1")),
    ):
        assert "grpc.default_authority" not in dict(options)
    overridden = _gateway_settings(mesh, "dns:///x:1", grpc_authority="pantheon.internal")
    assert dict(gateway_channel.channel_options(overridden))["grpc.default_authority"] == "pantheon.internal"


def test_the_settings_read_the_authority_and_accept_an_address_list(tmp_path: Path) -> None:
    mesh = make_mesh(tmp_path)
    identity = mesh.identity(DEV_CLIENT)
    env = {
        "PANTHEON_GRPC_TARGET": "ipv4:127.0.0.1:50051,127.0.0.1:50052",
        "PANTHEON_CA_FILE": mesh.tls.ca_file,
        "PANTHEON_TLS_CERT_FILE": mesh.tls.cert_file,
        "PANTHEON_TLS_KEY_FILE": mesh.tls.key_file,
        "PANTHEON_API_KEYS_FILE": mesh.policy_file,
        "PANTHEON_CLIENT_CERT_FILE": identity.cert_file,
        "PANTHEON_CLIENT_KEY_FILE": identity.key_file,
    }
    loaded = GatewaySettings.from_env(env)
    assert loaded.grpc_target == "ipv4:127.0.0.1:50051,127.0.0.1:50052"
    assert loaded.grpc_authority is None
    named = GatewaySettings.from_env({**env, "PANTHEON_GRPC_AUTHORITY": "pantheon.internal"})
    assert named.grpc_authority == "pantheon.internal"
    for bad in ("two names", "a,b", "https://x", "user@host", "host\x00"):
        with pytest.raises(ConfigError, match="PANTHEON_GRPC_AUTHORITY"):
            GatewaySettings.from_env({**env, "PANTHEON_GRPC_AUTHORITY": bad})

    services = ServiceSettings.from_env(service_env(PANTHEON_GRPC_AUTHORITY="pantheon.internal"))
    assert services.grpc_authority == "pantheon.internal"
    assert ServiceSettings.from_env(service_env()).grpc_authority is None


# -- two replicas in process, over TLS -------------------------------------------

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
#: A health name each replica reports differently, so a reply says which one answered.
WHO = "test.which-replica"


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[tuple[Mesh, Running, Running]]:
    mesh = make_mesh(tmp_path)
    first = await create_server(
        mesh.service_settings(), store=MemoryObjectStore(), publisher=RecordingPublisher()
    )
    second = await create_server(
        mesh.service_settings(), store=MemoryObjectStore(), publisher=RecordingPublisher()
    )
    assert first.health is not None and second.health is not None
    await first.health.set(WHO, SERVING)
    await second.health.set(WHO, NOT_SERVING)
    try:
        yield mesh, first, second
    finally:
        await first.stop(0)
        await second.stop(0)


def _open(side: str, mesh: Mesh, target: str) -> grpc.aio.Channel:
    if side == "pantheon":
        return secure_channel(target, mesh.tls.ca_file, mesh.identity(DEV_CLIENT))
    return gateway_channel.open_channel(_gateway_settings(mesh, target))


async def _answers(stub: health_pb2_grpc.HealthStub, calls: int) -> str:
    """Which replica answered each of `calls` health checks: "1" or "2" (any failure raises)."""
    found = ""
    for _ in range(calls):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=WHO), timeout=10)
        found += "1" if reply.status == SERVING else "2"
    return found


async def _eventually(stub: health_pb2_grpc.HealthStub, wanted: Callable[[str], bool]) -> None:
    """Calls until a run of ten answers satisfies `wanted` (bounded by calls, not a clock)."""
    seen = ""
    for _ in range(50):
        seen = await _answers(stub, 10)
        if wanted(seen):
            return
    raise AssertionError(f"the last ten calls went to {seen}")


@pytest.mark.parametrize("side", ["pantheon", "gateway"])
async def test_calls_spread_over_two_tls_replicas_and_survive_one_going_away(
    side: str, replicas: tuple[Mesh, Running, Running]
) -> None:
    mesh, first, second = replicas
    target = f"ipv4:127.0.0.1:{first.port},127.0.0.1:{second.port}"
    async with _open(side, mesh, target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        # Round robin: both replicas answer (over TLS, so the authority is right).
        await _eventually(stub, lambda seen: "1" in seen and "2" in seen)
        # The first replica goes away without draining: every call succeeds.
        await first.server.stop(0)
        assert await _answers(stub, 20) == "2" * 20


@pytest.mark.parametrize("side", ["pantheon", "gateway"])
async def test_a_draining_replica_gets_no_new_calls(
    side: str, replicas: tuple[Mesh, Running, Running]
) -> None:
    mesh, first, second = replicas
    target = f"ipv4:127.0.0.1:{first.port},127.0.0.1:{second.port}"
    async with _open(side, mesh, target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        await _eventually(stub, lambda seen: "1" in seen and "2" in seen)
        # The second replica begins its graceful shutdown (what Running.stop
        # does first): its health watch says NOT_SERVING, and once the
        # channel has heard it, calls go to the first only, though the
        # second still answers.
        assert second.health is not None
        await second.health.enter_graceful_shutdown()
        await _eventually(stub, lambda seen: set(seen) == {"1"})
        assert await _answers(stub, 20) == "1" * 20
        assert await _check(mesh, second, client_channel.HEALTH_CHECK_NAME) == NOT_SERVING


async def _check(mesh: Mesh, replica: Running, name: str) -> int:
    """Ask one replica directly, on a bare channel (no balancing, no health watch)."""
    credentials = channel_credentials(mesh.tls.ca_file, mesh.identity(DEV_CLIENT))
    async with grpc.aio.secure_channel(f"127.0.0.1:{replica.port}", credentials) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=name), timeout=10
        )
    return int(reply.status)


async def test_without_the_authority_an_address_list_fails_tls(
    replicas: tuple[Mesh, Running, Running],
) -> None:
    """The failure the default authority exists for (so the test above can fail)."""
    mesh, first, second = replicas
    target = f"ipv4:127.0.0.1:{first.port},127.0.0.1:{second.port}"
    options = [o for o in client_channel.channel_options(target) if o[0] != "grpc.default_authority"]
    credentials = channel_credentials(mesh.tls.ca_file, mesh.identity(DEV_CLIENT))
    async with grpc.aio.secure_channel(target, credentials, options=options) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "Hostname Verification" in (caught.value.details() or "")


# -- retries ---------------------------------------------------------------------


class Unavailable:
    """Handlers that fail every call with UNAVAILABLE, counting the attempts per method."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}

    def service(self, name: str, *methods: str) -> grpc.GenericRpcHandler:
        handlers = {
            method: grpc.unary_unary_rpc_method_handler(self._refuse(f"{name}/{method}"))
            for method in methods
        }
        return grpc.method_handlers_generic_handler(name, handlers)

    def _refuse(
        self, full: str
    ) -> Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[None]]:
        async def refuse(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
            self.attempts[full] = self.attempts.get(full, 0) + 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")

        return refuse


@pytest.mark.parametrize("side", ["pantheon", "gateway"])
async def test_unavailable_is_retried_for_an_idempotent_call_and_never_for_an_ingest_call(
    side: str, tmp_path: Path
) -> None:
    mesh = make_mesh(tmp_path)
    refusing = Unavailable()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (refusing.service(STORAGE, "StatObject"), refusing.service(INGEST, "IngestRecords"))
    )
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    await checker.set(client_channel.HEALTH_CHECK_NAME, SERVING)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(mesh.tls))
    await server.start()
    try:
        async with _open(side, mesh, f"ipv4:127.0.0.1:{port}") as channel:
            storage: Any = spb_grpc.StorageServiceStub(channel)
            ingest: Any = ipb_grpc.IngestionServiceStub(channel)
            for call in (
                storage.StatObject(spb.StatObjectRequest(), timeout=10),
                ingest.IngestRecords(ipb.IngestRecordsRequest(), timeout=10),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
                assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)
    # Three attempts (the policy's maximum) of the read; the ingest call once.
    assert refusing.attempts == {f"{STORAGE}/StatObject": 3, f"{INGEST}/IngestRecords": 1}
