"""The zero-trust mesh in-process: identities from client certificates, the
policy per identity, principals asserted by the gateway, and what the
services enforce themselves. In-memory store and publisher; the real-stack
version of the refusals is tests/integration/test_mesh.py."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as pb_grpc
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as spb_grpc

from pantheon.config import ClientIdentity
from pantheon.devstack.mesh import DEV_CLIENT, GATEWAY, INGEST, SIMULATION
from pantheon.policy import PRINCIPAL_HEADER, Grant, Policy, PolicyError, Rule, rule_from
from pantheon.server import Running, create_server, secure_channel
from tests.integration.support import metadata, object_requests
from tests.unit.fakes import MemoryObjectStore, RecordingPublisher
from tests.unit.mesh import Mesh, make_mesh

CSV = b"entity_id,temp\nvie-1,21.5\n"


@pytest.fixture
def dev_mesh(tmp_path: Path) -> Mesh:
    return make_mesh(tmp_path)


@pytest.fixture
async def served(dev_mesh: Mesh) -> AsyncIterator[tuple[Running, MemoryObjectStore, RecordingPublisher]]:
    settings = dev_mesh.service_settings()
    store, publisher = MemoryObjectStore(), RecordingPublisher()
    running = await create_server(settings, store=store, publisher=publisher)
    yield running, store, publisher
    await running.stop(0)


class Caller:
    """Stubs on a channel that presents one identity."""

    def __init__(self, running: Running, ca_file: str, identity: ClientIdentity) -> None:
        self.channel = secure_channel(f"localhost:{running.port}", ca_file, identity)
        self.ingest: Any = pb_grpc.IngestionServiceStub(self.channel)
        self.storage: Any = spb_grpc.StorageServiceStub(self.channel)


@pytest.fixture
async def callers(served: tuple[Running, Any, Any], dev_mesh: Mesh) -> AsyncIterator[dict[str, Caller]]:
    running = served[0]
    found = {
        name: Caller(running, dev_mesh.tls.ca_file, dev_mesh.identity(name))
        for name in (DEV_CLIENT, GATEWAY, INGEST, SIMULATION, "stranger")
    }
    yield found
    for caller in found.values():
        await caller.channel.close()


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    raise AssertionError("no ErrorInfo")


async def _refused(call: Any, code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is code, caught.value.details()
    assert _reason(caught.value) == reason


def _principal(
    name: str, *types: str, restricted: bool = False, ingest: bool = True
) -> tuple[tuple[str, bytes]]:
    asserted = md.Principal(
        name=name,
        data_types=types or ("*",),
        may_ingest=ingest,
        may_read=True,
        may_read_restricted=restricted,
    )
    return ((PRINCIPAL_HEADER, asserted.SerializeToString()),)


def _records(source: str, data_type: str = "sensor.temperature") -> pb.IngestRecordsRequest:
    record = pb.Record(entity_id="e-1", location=md.GeoPoint(latitude=48.2, longitude=16.37))
    record.observed_at.GetCurrentTime()
    record.payload.update({"t": 1.0})
    return pb.IngestRecordsRequest(data_type=data_type, source=source, records=[record])


# -- identity --------------------------------------------------------------


async def test_a_caller_without_a_client_certificate_cannot_complete_the_handshake(
    served: tuple[Running, MemoryObjectStore, RecordingPublisher], dev_mesh: Mesh
) -> None:
    running, store, publisher = served
    credentials = grpc.ssl_channel_credentials(Path(dev_mesh.tls.ca_file).read_bytes())
    async with grpc.aio.secure_channel(f"localhost:{running.port}", credentials) as channel:
        stub: Any = pb_grpc.IngestionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IngestRecords(_records("src-a"), timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # the handshake failed
    assert store.stored() == [] and publisher.events == []


async def test_a_certificate_of_another_ca_is_refused(
    served: tuple[Running, MemoryObjectStore, RecordingPublisher], dev_mesh: Mesh, tmp_path_factory: Any
) -> None:
    running, store, publisher = served
    other = make_mesh(tmp_path_factory.mktemp("other-ca"))  # same names, another CA
    channel = secure_channel(f"localhost:{running.port}", dev_mesh.tls.ca_file, other.identity(DEV_CLIENT))
    async with channel:
        stub: Any = pb_grpc.IngestionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IngestRecords(_records("src-a"), timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert store.stored() == [] and publisher.events == []


async def test_an_identity_outside_the_policy_is_denied(callers: dict[str, Caller]) -> None:
    await _refused(
        callers["stranger"].ingest.IngestRecords(_records("stranger")),
        grpc.StatusCode.PERMISSION_DENIED,
        "unknown_identity",
    )


# -- the policy per identity ------------------------------------------------


async def test_only_the_ingest_identity_may_write_to_storage(
    callers: dict[str, Caller], served: tuple[Running, MemoryObjectStore, RecordingPublisher]
) -> None:
    _, store, _ = served
    claim = spb.ClaimIdempotencyKeyRequest(
        source="src-a",
        idempotency_key="k",
        candidate_id="01ARZ3NDEKTSV4RRFFQ69G5FAV",
        request_digest="0" * 64,
    )
    for name in (DEV_CLIENT, GATEWAY, SIMULATION):
        extra = {"metadata": _principal("src-a")} if name == GATEWAY else {}
        await _refused(
            callers[name].storage.ClaimIdempotencyKey(claim, **extra),
            grpc.StatusCode.PERMISSION_DENIED,
            "method_not_allowed",
        )
    assert store.objects == {}
    claimed = await callers[INGEST].storage.ClaimIdempotencyKey(claim)
    assert claimed.claimed


async def test_a_component_ingests_only_as_itself_and_only_its_data_types(
    callers: dict[str, Caller], served: tuple[Running, MemoryObjectStore, RecordingPublisher]
) -> None:
    _, store, publisher = served
    sim = callers[SIMULATION].ingest
    await _refused(
        sim.IngestRecords(_records("fire-brigade", "simulation.spread")),
        grpc.StatusCode.PERMISSION_DENIED,
        "source_not_allowed",
    )
    await _refused(
        sim.IngestObject(object_requests(metadata("fire-brigade", "simulation.spread"), CSV, "text/csv")),
        grpc.StatusCode.PERMISSION_DENIED,
        "source_not_allowed",
    )
    await _refused(
        sim.IngestRecords(_records(SIMULATION, "sensor.temperature")),
        grpc.StatusCode.PERMISSION_DENIED,
        "data_type_not_allowed",
    )
    assert store.stored() == [] and publisher.events == []
    ok = await sim.IngestRecords(_records(SIMULATION, "simulation.spread"))
    assert ok.accepted_count == 1


async def test_only_the_gateway_may_assert_a_principal(
    callers: dict[str, Caller], served: tuple[Running, MemoryObjectStore, RecordingPublisher]
) -> None:
    _, store, publisher = served
    for name in (DEV_CLIENT, SIMULATION):
        await _refused(
            callers[name].ingest.IngestRecords(_records(name), metadata=_principal(name)),
            grpc.StatusCode.PERMISSION_DENIED,
            "principal_not_allowed",
        )
    await _refused(
        callers[GATEWAY].ingest.IngestRecords(_records("src-a")),
        grpc.StatusCode.PERMISSION_DENIED,
        "principal_required",
    )
    garbage = ((PRINCIPAL_HEADER, b"\xff\xff not a message"),)
    await _refused(
        callers[GATEWAY].ingest.IngestRecords(_records("src-a"), metadata=garbage),
        grpc.StatusCode.PERMISSION_DENIED,
        "invalid_principal",
    )
    assert store.stored() == [] and publisher.events == []


async def test_the_services_enforce_the_principal_the_gateway_acts_for(
    callers: dict[str, Caller], served: tuple[Running, MemoryObjectStore, RecordingPublisher]
) -> None:
    _, store, publisher = served
    gw = callers[GATEWAY].ingest
    await _refused(
        gw.IngestRecords(_records("src-b"), metadata=_principal("src-a")),
        grpc.StatusCode.PERMISSION_DENIED,
        "source_not_allowed",
    )
    await _refused(
        gw.IngestRecords(_records("src-a", "sensor.temperature"), metadata=_principal("src-a", "weather.*")),
        grpc.StatusCode.PERMISSION_DENIED,
        "data_type_not_allowed",
    )
    await _refused(
        gw.IngestRecords(_records("src-a"), metadata=_principal("src-a", ingest=False)),
        grpc.StatusCode.PERMISSION_DENIED,
        "data_type_not_allowed",
    )
    assert store.stored() == [] and publisher.events == []
    ok = await gw.IngestRecords(_records("src-a"), metadata=_principal("src-a"))
    assert ok.accepted_count == 1


async def test_restricted_data_reaches_only_grants_that_allow_it(callers: dict[str, Caller]) -> None:
    secret = metadata("src-a", classification=md.CLASSIFICATION_RESTRICTED)
    stored = await callers[DEV_CLIENT].ingest.IngestObject(object_requests(secret, CSV, "text/csv"))
    object_id = stored.metadata.id
    stat = spb.StatObjectRequest(id=object_id)
    search = spb.SearchObjectsRequest(data_type="sensor.temperature", source="src-a")
    search.observed_after.FromSeconds(secret.observed_at.seconds - 3600)
    search.observed_before.FromSeconds(secret.observed_at.seconds + 3600)

    # Without the grant: refused, and absent from searches.
    for name, extra in ((SIMULATION, {}), (GATEWAY, {"metadata": _principal("viewer", restricted=False)})):
        storage = callers[name].storage
        await _refused(storage.StatObject(stat, **extra), grpc.StatusCode.PERMISSION_DENIED, "restricted")
        await _refused(
            storage.GetObject(spb.GetObjectRequest(id=object_id), **extra).read(),
            grpc.StatusCode.PERMISSION_DENIED,
            "restricted",
        )
        assert list((await storage.SearchObjects(search, **extra)).objects) == []

    # With it (the gateway only when its principal has it too).
    granted = {"metadata": _principal("viewer", restricted=True)}
    assert (await callers[GATEWAY].storage.StatObject(stat, **granted)).metadata.id == object_id
    found = await callers[GATEWAY].storage.SearchObjects(search, **granted)
    assert [o.metadata.id for o in found.objects] == [object_id]


async def test_a_data_type_outside_the_principal_grant_is_not_readable(callers: dict[str, Caller]) -> None:
    stored = await callers[DEV_CLIENT].ingest.IngestObject(
        object_requests(metadata("src-a"), CSV, "text/csv")
    )
    only_weather = {"metadata": _principal("viewer", "weather.*")}
    storage = callers[GATEWAY].storage
    await _refused(
        storage.StatObject(spb.StatObjectRequest(id=stored.metadata.id), **only_weather),
        grpc.StatusCode.PERMISSION_DENIED,
        "data_type_not_allowed",
    )
    search = spb.SearchObjectsRequest(data_type="sensor.temperature")
    search.observed_before.GetCurrentTime()
    search.observed_after.FromSeconds(search.observed_before.seconds - 3600)
    await _refused(
        storage.SearchObjects(search, **only_weather),
        grpc.StatusCode.PERMISSION_DENIED,
        "data_type_not_allowed",
    )


async def test_ingest_results_are_read_only_by_their_source(callers: dict[str, Caller]) -> None:
    request = _records(SIMULATION, "simulation.spread")
    request.idempotency_key = "run-1"
    await callers[SIMULATION].ingest.IngestRecords(request)
    result = pb.GetIngestResultRequest(source=SIMULATION, idempotency_key="run-1")
    assert (await callers[SIMULATION].ingest.GetIngestResult(result)).records.accepted_count == 1
    await _refused(
        callers[GATEWAY].ingest.GetIngestResult(result, metadata=_principal("src-a")),
        grpc.StatusCode.PERMISSION_DENIED,
        "source_not_allowed",
    )


# -- ids are immutable --------------------------------------------------------


async def test_a_second_put_under_a_bound_id_never_rebinds_it(
    callers: dict[str, Caller], served: tuple[Running, MemoryObjectStore, RecordingPublisher]
) -> None:
    _, store, _ = served
    first = await callers[DEV_CLIENT].ingest.IngestObject(object_requests(metadata("src-a"), CSV, "text/csv"))
    marker = ("pantheon-index", f"pending/{first.metadata.id}")
    for _ in range(200):  # the commit removes the marker in the background
        if marker not in store.objects:
            break
        await asyncio.sleep(0.01)
    assert marker not in store.objects
    forged = metadata("attacker", classification=md.CLASSIFICATION_PUBLIC)
    forged.id, forged.format = first.metadata.id, md.FORMAT_CSV

    async def put() -> AsyncIterator[spb.PutObjectRequest]:
        yield spb.PutObjectRequest(header=spb.PutObjectHeader(metadata=forged))
        yield spb.PutObjectRequest(chunk=b"entity_id,temp\nforged,0\n")

    # The bytes may be stored (under their own key), but the commit that
    # would make them visible cannot bind the id to them.
    stored = await callers[INGEST].storage.PutObject(put())
    commit = spb.CommitObjectRequest(
        object=spb.StatObjectResponse(object=stored.object, metadata=stored.metadata)
    )
    await _refused(
        callers[INGEST].storage.CommitObject(commit), grpc.StatusCode.ALREADY_EXISTS, "object_exists"
    )
    after = await callers[DEV_CLIENT].storage.StatObject(spb.StatObjectRequest(id=first.metadata.id))
    assert after.metadata.source == "src-a" and after.object.key == first.object.key
    # The forged bytes may lie in the bucket under their own name, but nothing
    # binds or finds them: no id points there, and search skips unbound keys.
    search = spb.SearchObjectsRequest(data_type="sensor.temperature", source="attacker")
    search.observed_before.GetCurrentTime()
    search.observed_after.FromSeconds(search.observed_before.seconds - 3600)
    assert list((await callers[DEV_CLIENT].storage.SearchObjects(search)).objects) == []
    assert first.object.key in store.stored()


# -- the policy file ---------------------------------------------------------


async def test_an_unreadable_policy_refuses_everyone_until_it_is_fixed(
    callers: dict[str, Caller], dev_mesh: Mesh, served: tuple[Running, MemoryObjectStore, RecordingPublisher]
) -> None:
    _, store, _ = served
    path = Path(dev_mesh.policy_file)
    good = path.read_text()
    path.write_text("{ not json")
    os.utime(path, ns=(1, 1))  # a different stamp even within the clock's resolution
    await _wait_for_reload()
    await _refused(
        callers[DEV_CLIENT].ingest.IngestRecords(_records("src-a")),
        grpc.StatusCode.UNAVAILABLE,
        "policy_unavailable",
    )
    assert store.stored() == []
    path.write_text(good)
    await _wait_for_reload()
    assert (await callers[DEV_CLIENT].ingest.IngestRecords(_records("src-a"))).accepted_count == 1


async def test_policy_changes_apply_without_a_restart(callers: dict[str, Caller], dev_mesh: Mesh) -> None:
    path = Path(dev_mesh.policy_file)
    document = json.loads(path.read_text())
    document["identities"][SIMULATION]["methods"] = ["StorageService/StatObject"]
    path.write_text(json.dumps(document))
    await _wait_for_reload()
    await _refused(
        callers[SIMULATION].ingest.IngestRecords(_records(SIMULATION, "simulation.spread")),
        grpc.StatusCode.PERMISSION_DENIED,
        "method_not_allowed",
    )


async def _wait_for_reload() -> None:
    import asyncio

    await asyncio.sleep(1.1)  # the file is checked at most once a second


# -- the policy model --------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        {"methods": ["IngestionService/Nope!"]},
        {"methods": ["OtherService/*"]},
        {"sources": ["UPPER"]},
        {"write_types": ["Sensor.*"]},
        {"read_types": ["sensor.**"]},
        {"read_restricted": "yes"},
        {"act_for_principals": 1},
        {"surprise": True},
    ],
)
def test_invalid_policy_entries_are_refused_with_the_field_named(entry: dict[str, Any]) -> None:
    with pytest.raises(PolicyError, match=r"identities\.x"):
        rule_from("x", entry)


def test_identities_outside_the_trust_domain_have_no_rule() -> None:
    policy = Policy.from_document({"trust_domain": "city.example", "identities": {"gateway": {}}})
    assert policy.rule_for("spiffe://city.example/gateway") is not None
    assert policy.rule_for("spiffe://pantheon.local/gateway") is None
    assert policy.rule_for("spiffe://city.example/gateway/extra") is None


def test_a_grant_is_the_rule_narrowed_by_the_principal() -> None:
    rule = Rule("gw", ("*",), ("*",), ("sensor.*", "weather.*"), ("*",), read_restricted=True)
    principal = md.Principal(name="a", data_types=["weather.*"], may_ingest=True, may_read=True)
    grant = Grant(rule, principal)
    assert grant.may_act_as("a") and not grant.may_act_as("b")
    assert grant.may_write("weather.observation") and not grant.may_write("sensor.temperature")
    assert not grant.may_read_restricted
    assert Grant(rule).may_write("sensor.temperature") and Grant(rule).may_read_restricted
    prefixed = Grant(Rule("t", sources=("test-*",)))
    assert prefixed.may_act_as("test-1") and not prefixed.may_act_as("prod-1")


# -- what the adversarial review found -----------------------------------------


def _enrol(dev_mesh: Mesh, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    from pantheon.cli import main

    monkeypatch.setenv("PANTHEON_CA_FILE", str(dev_mesh.certs.ca_cert))
    monkeypatch.setenv("PANTHEON_IDENTITIES_DIR", str(dev_mesh.paths.identities))
    return main(["identity", "--policy-file", dev_mesh.policy_file, *args])


async def test_a_revoked_certificate_stays_revoked_when_its_name_is_enrolled_again(
    served: tuple[Running, MemoryObjectStore, RecordingPublisher],
    dev_mesh: Mesh,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    running = served[0]
    assert _enrol(dev_mesh, monkeypatch, "create", "flood-model", "--sources", "flood-model",
                  "--write-types", "simulation.*") == 0  # fmt: skip
    cert, key = dev_mesh.paths.identities / "flood-model.crt", dev_mesh.paths.identities / "flood-model.key"
    kept = ClientIdentity(cert_file=str(tmp_path / "old.crt"), key_file=str(tmp_path / "old.key"))
    Path(kept.cert_file).write_bytes(cert.read_bytes())
    Path(kept.key_file).write_bytes(key.read_bytes())
    assert _enrol(dev_mesh, monkeypatch, "revoke", "flood-model") == 0
    assert not cert.exists()
    assert _enrol(dev_mesh, monkeypatch, "create", "flood-model", "--sources", "*", "--write-types", "*") == 0
    await _wait_for_reload()
    old = Caller(running, dev_mesh.tls.ca_file, kept)
    await _refused(
        old.ingest.IngestRecords(_records("city-hall")),
        grpc.StatusCode.PERMISSION_DENIED,
        "certificate_not_enrolled",
    )
    new = Caller(running, dev_mesh.tls.ca_file, ClientIdentity(cert_file=str(cert), key_file=str(key)))
    assert (await new.ingest.IngestRecords(_records("city-hall"))).accepted_count == 1
    await old.channel.close()
    await new.channel.close()


async def test_storage_writes_and_idempotency_records_hold_the_caller_to_its_grant(
    served: tuple[Running, MemoryObjectStore, RecordingPublisher], dev_mesh: Mesh
) -> None:
    running, store, _ = served
    path = Path(dev_mesh.policy_file)
    document = json.loads(path.read_text())
    document["identities"]["auditor"] = {
        "methods": ["StorageService/PutObject", "StorageService/GetIdempotencyKey"],
        "sources": ["auditor"],
        "write_types": ["weather.*"],
        "read_types": ["*"],
    }
    path.write_text(json.dumps(document))
    await _wait_for_reload()
    dev = Caller(running, dev_mesh.tls.ca_file, dev_mesh.identity(DEV_CLIENT))
    secret = metadata("city-hall", classification=md.CLASSIFICATION_RESTRICTED, idempotency_key="k-1")
    await dev.ingest.IngestObject(object_requests(secret, CSV, "text/csv"))
    auditor = Caller(running, dev_mesh.tls.ca_file, dev_mesh.identity("auditor"))
    await _refused(
        auditor.storage.GetIdempotencyKey(
            spb.GetIdempotencyKeyRequest(source="city-hall", idempotency_key="k-1")
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "source_not_allowed",
    )
    forged = metadata("city-hall")
    forged.id, forged.format = "01ARZ3NDEKTSV4RRFFQ69G5FAV", md.FORMAT_CSV

    async def put() -> AsyncIterator[spb.PutObjectRequest]:
        yield spb.PutObjectRequest(header=spb.PutObjectHeader(metadata=forged))
        yield spb.PutObjectRequest(chunk=CSV)

    stored_before = store.stored()
    await _refused(auditor.storage.PutObject(put()), grpc.StatusCode.PERMISSION_DENIED, "source_not_allowed")
    assert store.stored() == stored_before
    for caller in (dev, auditor):
        await caller.channel.close()


async def test_denials_name_neither_the_identity_nor_the_refused_data(callers: dict[str, Caller]) -> None:
    stored = await callers[DEV_CLIENT].ingest.IngestObject(
        object_requests(metadata("src-a", "sensor.air_quality"), CSV, "text/csv")
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await callers[GATEWAY].storage.StatObject(
            spb.StatObjectRequest(id=stored.metadata.id), metadata=_principal("viewer", "weather.*")
        )
    details = caught.value.details() or ""
    assert "air_quality" not in details and "gateway" not in details and "viewer" not in details


async def test_a_gateway_like_identity_ingests_only_as_the_sources_its_rule_allows(
    served: tuple[Running, MemoryObjectStore, RecordingPublisher], dev_mesh: Mesh
) -> None:
    path = Path(dev_mesh.policy_file)
    document = json.loads(path.read_text())
    document["identities"]["partner-gw"] = {**document["identities"][GATEWAY], "sources": ["partner-*"]}
    document["identities"]["partner-gw"]["certificates"] = []
    path.write_text(json.dumps(document))
    await _wait_for_reload()
    partner = Caller(served[0], dev_mesh.tls.ca_file, dev_mesh.identity("partner-gw"))
    await _refused(
        partner.ingest.IngestRecords(_records(SIMULATION), metadata=_principal(SIMULATION)),
        grpc.StatusCode.PERMISSION_DENIED,
        "source_not_allowed",
    )
    ok = await partner.ingest.IngestRecords(_records("partner-a"), metadata=_principal("partner-a"))
    assert ok.accepted_count == 1
    await partner.channel.close()


async def test_a_policy_replaced_with_the_same_mtime_and_size_is_reloaded(
    callers: dict[str, Caller], dev_mesh: Mesh
) -> None:
    path = Path(dev_mesh.policy_file)
    before = path.stat()
    text = path.read_text()
    narrowed = text.replace('"simulation.*"', '"simulation.x"', 1)  # same length
    assert len(narrowed) == len(text) and narrowed != text
    path.write_text(narrowed)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    await _wait_for_reload()
    await _refused(
        callers[SIMULATION].ingest.IngestRecords(_records(SIMULATION, "simulation.spread")),
        grpc.StatusCode.PERMISSION_DENIED,
        "data_type_not_allowed",
    )


def test_restricted_means_every_level_beyond_internal() -> None:
    grant = Grant(Rule("r", read_types=("*",)))
    assert grant.may_read(md.Metadata(data_type="sensor.x", classification=md.CLASSIFICATION_INTERNAL))
    assert not grant.may_read(md.Metadata(data_type="sensor.x", classification=md.CLASSIFICATION_RESTRICTED))
    assert not grant.may_read(md.Metadata(data_type="sensor.x", classification=7))  # a level added later
