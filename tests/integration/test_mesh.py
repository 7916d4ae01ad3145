"""The zero-trust mesh against the real stack: no data RPC without a client
certificate of the deployment's CA, a policy per identity, principals only
from the gateway, immutable ids, and every refusal changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from minio import Minio
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as pb_grpc
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as spb_grpc

from pantheon.config import ClientIdentity
from pantheon.devstack.certs import ensure_certs, issue_identity
from pantheon.devstack.credentials import KAFKA_SIMULATION_USER
from pantheon.devstack.mesh import DEV_CLIENT, INGEST, SIMULATION
from pantheon.events.topics import ALL_TOPICS
from pantheon.policy import PRINCIPAL_HEADER
from pantheon.server import secure_channel
from tests.integration.conftest import KafkaConfig
from tests.integration.support import (
    EventWatcher,
    from_source,
    ingest,
    metadata,
    object_requests,
    record,
    stored_keys,
    unique_source,
)
from tests.integration.test_cli import pantheon

CSV = b"entity_id,temperature_c\nvie-0042,31.5\n"
CLAIM_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def _identity(env: dict[str, str], name: str) -> ClientIdentity:
    root = Path(env["PANTHEON_IDENTITIES_DIR"])
    return ClientIdentity(cert_file=str(root / f"{name}.crt"), key_file=str(root / f"{name}.key"))


def _channel(env: dict[str, str], identity: ClientIdentity | None) -> grpc.aio.Channel:
    if identity is None:  # TLS that trusts the server, but no certificate of our own
        credentials = grpc.ssl_channel_credentials(Path(env["PANTHEON_CA_FILE"]).read_bytes())
        return grpc.aio.secure_channel(env["PANTHEON_GRPC_TARGET"], credentials)
    return secure_channel(env["PANTHEON_GRPC_TARGET"], env["PANTHEON_CA_FILE"], identity)


@pytest.fixture
def watcher(stack_env: dict[str, str], kafka_config: KafkaConfig) -> Any:
    # The ingest user may not read; the simulation user reads every topic,
    # restricted ones included, so it sees anything a refusal might leak.
    config = kafka_config(KAFKA_SIMULATION_USER, stack_env["KAFKA_SIMULATION_PASSWORD"])
    w = EventWatcher(config, [t.name for t in ALL_TOPICS])
    yield w
    w.close()


def _valid_calls(source: str, known_id: str) -> dict[str, Callable[[Any, Any], Any]]:
    """One valid request per data RPC the issue names, as a coroutine factory."""
    meta = metadata(source)
    search = spb.SearchObjectsRequest(data_type="sensor.temperature", source=source)
    search.observed_before.GetCurrentTime()
    search.observed_after.FromSeconds(search.observed_before.seconds - 3600)
    records = pb.IngestRecordsRequest(
        data_type="sensor.temperature", source=source, records=[record("e-1", meta.observed_at.ToDatetime())]
    )
    claim = spb.ClaimIdempotencyKeyRequest(
        source=source, idempotency_key="k-1", candidate_id=CLAIM_ID, request_digest="0" * 64
    )
    return {
        "IngestRecords": lambda i, s: i.IngestRecords(records, timeout=10),
        "IngestObject": lambda i, s: i.IngestObject(object_requests(meta, CSV, "text/csv"), timeout=10),
        "SearchObjects": lambda i, s: s.SearchObjects(search, timeout=10),
        "StatObject": lambda i, s: s.StatObject(spb.StatObjectRequest(id=known_id), timeout=10),
        "GetObject": lambda i, s: s.GetObject(spb.GetObjectRequest(id=known_id), timeout=10).read(),
        "ClaimIdempotencyKey": lambda i, s: s.ClaimIdempotencyKey(claim, timeout=10),
    }


@pytest.fixture
async def known_object(stack_env: dict[str, str]) -> AsyncIterator[pb.IngestObjectResponse]:
    channel = _channel(stack_env, _identity(stack_env, DEV_CLIENT))
    async with channel:
        yield await ingest(pb_grpc.IngestionServiceStub(channel), metadata(unique_source()), CSV, "text/csv")  # type: ignore[arg-type]


async def _refusals(
    env: dict[str, str], identity: ClientIdentity | None, source: str, known_id: str
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    async with _channel(env, identity) as channel:
        stubs = (pb_grpc.IngestionServiceStub(channel), spb_grpc.StorageServiceStub(channel))
        for name, call in _valid_calls(source, known_id).items():
            try:
                await call(*stubs)
                found[name] = "answered"
            except grpc.aio.AioRpcError as exc:
                found[name] = exc.code()
    return found


async def test_without_a_client_certificate_no_data_rpc_completes(
    stack_env: dict[str, str], known_object: pb.IngestObjectResponse, minio_client: Minio, watcher: Any
) -> None:
    source = unique_source()
    found = await _refusals(stack_env, None, source, known_object.metadata.id)
    # The handshake itself is refused: the call never reaches a service.
    assert found == dict.fromkeys(_valid_calls(source, "x"), grpc.StatusCode.UNAVAILABLE)
    assert stored_keys(minio_client, "pantheon-sensor", "sensor.temperature", source) == []
    assert watcher.collect(from_source(source), wait_s=3) == []


async def test_a_certificate_from_another_ca_is_refused(
    stack_env: dict[str, str], known_object: pb.IngestObjectResponse, tmp_path: Path, minio_client: Minio
) -> None:
    other = ensure_certs(tmp_path / "other-ca")
    cert, key = issue_identity(
        other.ca_cert, other.ca_key, tmp_path, DEV_CLIENT, f"spiffe://pantheon.local/{DEV_CLIENT}"
    )[::-1]
    source = unique_source()
    found = await _refusals(
        stack_env, ClientIdentity(cert_file=str(cert), key_file=str(key)), source, known_object.metadata.id
    )
    assert set(found.values()) == {grpc.StatusCode.UNAVAILABLE}
    assert stored_keys(minio_client, "pantheon-sensor", "sensor.temperature", source) == []


async def test_an_identity_is_held_to_its_policy(
    stack_env: dict[str, str], known_object: pb.IngestObjectResponse, minio_client: Minio, watcher: Any
) -> None:
    source = unique_source()
    found = await _refusals(stack_env, _identity(stack_env, SIMULATION), source, known_object.metadata.id)
    assert found == {
        # Not its source: refused by the ingestion service itself.
        "IngestRecords": grpc.StatusCode.PERMISSION_DENIED,
        "IngestObject": grpc.StatusCode.PERMISSION_DENIED,
        # Reads it may make (the object is INTERNAL, which it may read).
        "SearchObjects": "answered",
        "StatObject": "answered",
        "GetObject": "answered",
        # Outside its methods: only the ingestion identity writes to storage.
        "ClaimIdempotencyKey": grpc.StatusCode.PERMISSION_DENIED,
    }
    assert stored_keys(minio_client, "pantheon-sensor", "sensor.temperature", source) == []
    assert watcher.collect(from_source(source), wait_s=3) == []


async def test_a_component_ingests_its_own_data_as_itself(stack_env: dict[str, str]) -> None:
    meta = metadata(SIMULATION, "simulation.fire_spread")
    async with _channel(stack_env, _identity(stack_env, SIMULATION)) as channel:
        result = await ingest(pb_grpc.IngestionServiceStub(channel), meta, CSV, "text/csv")  # type: ignore[arg-type]
    assert result.metadata.source == SIMULATION and result.object.bucket == "pantheon-simulation"


async def test_a_principal_assertion_from_a_non_gateway_identity_is_refused(
    stack_env: dict[str, str], minio_client: Minio, watcher: Any
) -> None:
    source = unique_source()
    forged = md.Principal(
        name=source, data_types=["*"], may_ingest=True, may_read=True, may_read_restricted=True
    )
    meta = metadata(source)
    for name in (DEV_CLIENT, SIMULATION):
        async with _channel(stack_env, _identity(stack_env, name)) as channel:
            stub: Any = pb_grpc.IngestionServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.IngestObject(
                    object_requests(meta, CSV, "text/csv"),
                    metadata=((PRINCIPAL_HEADER, forged.SerializeToString()),),
                    timeout=10,
                )
            assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert stored_keys(minio_client, "pantheon-sensor", "sensor.temperature", source) == []
    assert watcher.collect(from_source(source), wait_s=3) == []


async def test_a_put_under_an_existing_id_changes_nothing_readers_see(
    stack_env: dict[str, str],
    known_object: pb.IngestObjectResponse,
    minio_client: Minio,
    minio_root_client: Minio,
) -> None:
    first = known_object
    # Once the commit's marker is swept (a moment later): while it is there,
    # a put under the id is refused outright (FAILED_PRECONDITION id_in_use).
    marker = f"pending/{first.metadata.id}"
    for _ in range(100):
        if marker not in {
            o.object_name for o in minio_root_client.list_objects("pantheon-index", "pending/")
        }:
            break
        await asyncio.sleep(0.1)
    forged = metadata("attacker-" + unique_source()[5:], classification=md.CLASSIFICATION_PUBLIC)
    forged.id, forged.format = first.metadata.id, md.FORMAT_CSV

    async def put() -> AsyncIterator[spb.PutObjectRequest]:
        yield spb.PutObjectRequest(header=spb.PutObjectHeader(metadata=forged))
        yield spb.PutObjectRequest(chunk=b"entity_id,temperature_c\nforged,0\n")

    async with _channel(stack_env, _identity(stack_env, INGEST)) as channel:
        storage: Any = spb_grpc.StorageServiceStub(channel)
        # The bytes may be stored under their own key, but the commit that
        # would make them visible cannot bind the id to them.
        stored = await storage.PutObject(put(), timeout=10)
        forged_info = spb.StatObjectResponse(object=stored.object, metadata=stored.metadata)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await storage.CommitObject(spb.CommitObjectRequest(object=forged_info), timeout=10)
        assert caught.value.code() is grpc.StatusCode.ALREADY_EXISTS
        after = await storage.StatObject(spb.StatObjectRequest(id=first.metadata.id), timeout=10)
        body = b"".join(
            [r.chunk async for r in storage.GetObject(spb.GetObjectRequest(id=first.metadata.id), timeout=10)]
        )
    assert after.object.key == first.object.key and after.metadata.source == first.metadata.source
    assert body.endswith(b"vie-0042,31.5\n")
    # The forged bytes may lie in the bucket under their own name (only the
    # ingest identity can put any), but no id binds them and search skips them.
    async with _channel(stack_env, _identity(stack_env, DEV_CLIENT)) as channel:
        search = spb.SearchObjectsRequest(data_type="sensor.temperature", source=forged.source)
        search.observed_before.GetCurrentTime()
        search.observed_after.FromSeconds(search.observed_before.seconds - 3600)
        found = await spb_grpc.StorageServiceStub(channel).SearchObjects(search, timeout=10)  # type: ignore[misc]
    assert list(found.objects) == []


async def _ingest_as(env: dict[str, str], identity: ClientIdentity, source: str) -> Any:
    async with _channel(env, identity) as channel:
        stub: Any = pb_grpc.IngestionServiceStub(channel)
        try:
            return await ingest(stub, metadata(source, "simulation.flood_depth"), CSV, "text/csv")
        except grpc.aio.AioRpcError as exc:
            return exc.code()


async def test_a_component_is_enrolled_and_revoked_with_the_cli(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    name = "flood-" + unique_source()[5:]
    env = {**stack_env, "PANTHEON_IDENTITIES_DIR": str(tmp_path)}
    created = pantheon(env, "identity", "create", name, "--sources", name, "--write-types", "simulation.*")
    assert created.returncode == 0, created.stderr
    identity = ClientIdentity(cert_file=str(tmp_path / f"{name}.crt"), key_file=str(tmp_path / f"{name}.key"))
    try:
        # The services pick the policy up within a second; poll a bounded while.
        for _ in range(50):
            result = await _ingest_as(stack_env, identity, name)
            if not isinstance(result, grpc.StatusCode):
                break
            await asyncio.sleep(0.2)
        assert result.metadata.source == name
        assert await _ingest_as(stack_env, identity, unique_source()) is grpc.StatusCode.PERMISSION_DENIED
        # Keep a copy, as a leaked certificate would be: revoking deletes the files.
        leaked = ClientIdentity(cert_file=str(tmp_path / "leaked.crt"), key_file=str(tmp_path / "leaked.key"))
        Path(leaked.cert_file).write_bytes(Path(identity.cert_file).read_bytes())
        Path(leaked.key_file).write_bytes(Path(identity.key_file).read_bytes())
        identity = leaked
    finally:
        revoked = pantheon(env, "identity", "revoke", name)
    assert revoked.returncode == 0, revoked.stderr
    assert not (tmp_path / f"{name}.crt").exists()
    for _ in range(50):
        if await _ingest_as(stack_env, identity, name) is grpc.StatusCode.PERMISSION_DENIED:
            break
        await asyncio.sleep(0.2)
    assert await _ingest_as(stack_env, identity, name) is grpc.StatusCode.PERMISSION_DENIED
    bad = pantheon(env, "identity", "create", "Not_A_Name")
    assert bad.returncode == 1 and "lower-case" in bad.stderr
