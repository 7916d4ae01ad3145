"""The one test-only fault seam (pantheon/faults.py): the crash point between
store and publish fires only when the services start with
`PANTHEON_FAULT_INJECTION=1` *and* `PANTHEON_FAULT_CRASH_BEFORE_PUBLISH=1`;
either alone does nothing, and nothing else can turn it on.

`os._exit` is replaced by a recorder that raises, so a crash fails the call
instead of the test process.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator

import grpc
import pytest
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as pb_grpc

from pantheon import faults
from pantheon.devstack.mesh import DEV_CLIENT
from pantheon.ingest.service import IngestionServicer
from pantheon.server import create_server, secure_channel
from tests.integration.support import metadata, object_requests
from tests.unit.fakes import MemoryObjectStore, RecordingPublisher
from tests.unit.mesh import Mesh, make_mesh

CSV = b"entity_id,temp\nvie-1,21.5\n"


class Exited(Exception):
    pass


@pytest.fixture(scope="module")
def dev_mesh(tmp_path_factory: pytest.TempPathFactory) -> Mesh:
    return make_mesh(tmp_path_factory.mktemp("mesh"))


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The statuses `os._exit` was called with; each call raises Exited. Faults start unarmed."""
    calls: list[int] = []

    def exit_(status: int) -> None:
        calls.append(status)
        raise Exited(status)

    monkeypatch.setattr(faults.os, "_exit", exit_)
    monkeypatch.setattr(faults, "_crash_points", frozenset())
    yield calls


def test_crash_point_is_a_no_op_unless_armed(exits: list[int]) -> None:
    faults.crash_point(faults.AFTER_STORE)
    faults.install(RecordingPublisher(), crash_after_store=False)
    faults.crash_point(faults.AFTER_STORE)
    assert exits == []


def test_install_arms_the_crash_point_loudly(exits: list[int], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=faults.__name__):
        faults.install(RecordingPublisher(), crash_after_store=True)
    assert any("FAULT INJECTION ENABLED" in r.getMessage() for r in caplog.records)
    faults.crash_point("some_other_point")
    assert exits == []
    with pytest.raises(Exited):
        faults.crash_point(faults.AFTER_STORE)
    assert exits == [faults.CRASH_STATUS]


def test_the_ingestion_servicer_has_no_fault_switch() -> None:
    parameters = inspect.signature(IngestionServicer).parameters
    assert not [name for name in parameters if "crash" in name or "fault" in name]


@pytest.mark.parametrize(
    ("fault_injection", "crash_before_publish", "crashes"),
    [(False, True, False), (True, False, False), (True, True, True)],
    ids=["crash-variable-alone-is-ignored", "armed-without-crash", "armed-and-crash"],
)
async def test_the_services_crash_after_the_store_only_when_armed(
    dev_mesh: Mesh,
    exits: list[int],
    fault_injection: bool,
    crash_before_publish: bool,
    crashes: bool,
) -> None:
    settings = dev_mesh.service_settings(
        fault_injection=fault_injection, crash_before_publish=crash_before_publish
    )
    store, publisher = MemoryObjectStore(), RecordingPublisher()
    running = await create_server(settings, store=store, publisher=publisher)
    channel = secure_channel(f"localhost:{running.port}", dev_mesh.tls.ca_file, dev_mesh.identity(DEV_CLIENT))
    try:
        stub = pb_grpc.IngestionServiceStub(channel)
        if crashes:
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.IngestObject(object_requests(metadata("src-a"), CSV, "text/csv"))
            assert exits == [faults.CRASH_STATUS]
            assert len(store.stored()) == 1  # stored ...
            assert publisher.events == []  # ... and never published
        else:
            result = await stub.IngestObject(object_requests(metadata("src-a"), CSV, "text/csv"))
            assert exits == []
            assert [e.event_id for e in publisher.events] == [result.metadata.id]
    finally:
        await channel.close()
        await running.stop(0)
