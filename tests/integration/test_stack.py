"""The dev stack itself: TLS, SCRAM, ACLs, SSE and least privilege, for real."""

from __future__ import annotations

import io
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from minio import Minio
from minio.error import MinioAdminException, S3Error

from pantheon.devstack import minio_admin, process
from pantheon.devstack.settings import Settings
from pantheon.events.topics import DATA_STORED, RECORDS
from tests.integration.support import private_stack_env

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK = REPO_ROOT / "scripts" / "stack"
BUCKET = "pantheon-sensor"


def _deliver(producer: Producer, topic: str, key: bytes, value: bytes) -> Message:
    """Produce one message and wait for its delivery report (error or not)."""
    reports: list[tuple[KafkaError | None, Message]] = []
    producer.produce(topic, key=key, value=value, on_delivery=lambda err, msg: reports.append((err, msg)))
    producer.flush(30)
    assert reports, "no delivery report within 30 s"
    err, msg = reports[0]
    if err is not None:
        raise KafkaException(err)
    return msg


@pytest.mark.timeout(90)
def test_ingest_produces_and_reader_consumes_over_sasl_ssl(kafka_config: Any) -> None:
    key = f"devstack-test-{uuid.uuid4()}".encode()
    payload = os.urandom(64) + key
    producer = Producer(
        kafka_config(
            "pantheon-ingest",
            **{"enable.idempotence": True, "acks": "all", "message.timeout.ms": 20000},
        )
    )
    delivered = _deliver(producer, RECORDS.name, key, payload)
    partition, offset = delivered.partition(), delivered.offset()

    consumer = Consumer(
        kafka_config(
            "pantheon-reader",
            **{
                "group.id": f"pantheon-test-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
        )
    )

    def on_assign(c: Consumer, partitions: list[Any]) -> None:
        # Start exactly at our message; skip whatever other runs left behind.
        for tp in partitions:
            tp.offset = offset if tp.partition == partition else OFFSET_END
        c.assign(partitions)

    consumer.subscribe([RECORDS.name], on_assign=on_assign)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            if msg.key() == key:
                assert msg.value() == payload
                return
        pytest.fail("the produced message was not consumed within 60 s")
    finally:
        consumer.close()


@pytest.mark.timeout(30)
def test_wrong_scram_password_is_refused(kafka_config: Any) -> None:
    errors: list[KafkaError] = []
    admin = AdminClient(kafka_config("pantheon-ingest", password="not-the-password", error_cb=errors.append))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(e.code() == KafkaError._AUTHENTICATION for e in errors):
        admin.poll(0.5)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


@pytest.mark.timeout(30)
def test_plaintext_client_gets_no_metadata(stack_env: dict[str, str]) -> None:
    conf: dict[str, Any] = {
        "bootstrap.servers": stack_env["KAFKA_BOOTSTRAP"],
        "security.protocol": "PLAINTEXT",
        "error_cb": lambda _e: None,
    }
    admin = AdminClient(conf)
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


@pytest.mark.timeout(60)
def test_reader_cannot_write_to_data_stored_topic(kafka_config: Any) -> None:
    producer = Producer(kafka_config("pantheon-reader", **{"message.timeout.ms": 20000}))
    with pytest.raises(KafkaException) as info:
        _deliver(producer, DATA_STORED.name, b"k", b"must not land")
    assert info.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


@pytest.mark.timeout(30)
def test_reader_cannot_use_groups_outside_pantheon_prefix(kafka_config: Any) -> None:
    consumer = Consumer(kafka_config("pantheon-reader", **{"group.id": f"other-{uuid.uuid4()}"}))
    consumer.subscribe([RECORDS.name])
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            err = msg.error() if msg is not None else None
            if err is not None:
                assert err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, err
                return
        pytest.fail("no group authorization error within 15 s")
    finally:
        consumer.close()


@pytest.mark.timeout(60)
def test_storage_key_puts_and_gets_encrypted_objects(minio_client: Minio, minio_root_client: Minio) -> None:
    name = f"devstack-test/{uuid.uuid4()}.bin"
    data = os.urandom(4096)
    minio_client.put_object(
        BUCKET, name, io.BytesIO(data), len(data), content_type="application/octet-stream"
    )
    try:
        resp = minio_client.get_object(BUCKET, name)
        try:
            assert resp.read() == data
        finally:
            resp.close()
            resp.release_conn()
        stat = minio_client.stat_object(BUCKET, name)
        assert stat.metadata is not None
        assert stat.metadata.get("x-amz-server-side-encryption"), dict(stat.metadata)
        # The storage key has no delete permission (retention is not its call).
        with pytest.raises(S3Error) as info:
            minio_client.remove_object(BUCKET, name)
        assert info.value.code == "AccessDenied"
    finally:
        minio_root_client.remove_object(BUCKET, name)


@pytest.mark.timeout(60)
def test_storage_key_is_denied_outside_its_policy(
    stack_env: dict[str, str], minio_client: Minio, minio_root_client: Minio
) -> None:
    bucket = f"outside-policy-{uuid.uuid4()}"
    minio_root_client.make_bucket(bucket)
    try:
        with pytest.raises(S3Error) as put_info:
            minio_client.put_object(bucket, "x", io.BytesIO(b"x"), 1)
        assert put_info.value.code == "AccessDenied"
        with pytest.raises(S3Error) as list_info:
            list(minio_client.list_objects(bucket))
        assert list_info.value.code == "AccessDenied"
    finally:
        minio_root_client.remove_bucket(bucket)

    admin = minio_admin.admin_client(
        stack_env["PANTHEON_S3_ENDPOINT"].removeprefix("https://"),
        stack_env["PANTHEON_S3_ACCESS_KEY"],
        stack_env["PANTHEON_S3_SECRET_KEY"],
        Path(stack_env["PANTHEON_CA_FILE"]),
    )
    with pytest.raises(MinioAdminException) as admin_info:
        admin.user_list()
    assert "AccessDenied" in str(admin_info.value) or "403" in str(admin_info.value)


@pytest.mark.timeout(30)
def test_plain_http_to_minio_fails(stack_env: dict[str, str]) -> None:
    url = stack_env["MINIO_ENDPOINT"].replace("https://", "http://") + "/minio/health/live"
    # Go's TLS server answers plain HTTP with 400 (or drops the connection):
    # either way no request is served in clear text.
    with pytest.raises((urllib.error.HTTPError, urllib.error.URLError, ConnectionError)) as info:
        urllib.request.urlopen(url, timeout=5)
    if isinstance(info.value, urllib.error.HTTPError):
        assert info.value.code == 400


def _stack(
    env: dict[str, str], *args: str, timeout: float = 600
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run([str(STACK), *args], env=env, capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_isolated_stack_up_twice_then_down_leaves_nothing(tmp_path: Path, stack_env: dict[str, str]) -> None:
    state = tmp_path / "stack"
    env = private_stack_env(state)
    kafka_port, minio_port = env["PANTHEON_KAFKA_PORT"], env["PANTHEON_MINIO_PORT"]
    marker = str(state) + "/"
    try:
        first, _ = _stack(env, "up")
        assert first.returncode == 0, first.stderr
        running = sorted(process.pids_referencing(marker))
        second, _ = _stack(env, "up")
        assert second.returncode == 0, second.stderr
        # The second `up` starts nothing: every process is the one the first started.
        assert second.stderr.count("already running") == 4, second.stderr
        assert sorted(process.pids_referencing(marker)) == running

        status, _ = _stack(env, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        # One process per component, each started from this state dir.
        assert len(process.pids_referencing(marker)) == len(status.stdout.splitlines())

        env_out, _ = _stack(env, "env")
        assert f"KAFKA_BOOTSTRAP=127.0.0.1:{kafka_port}" in env_out.stdout
        assert f"MINIO_ENDPOINT=https://127.0.0.1:{minio_port}" in env_out.stdout
    finally:
        down, _ = _stack(env, "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert process.pids_referencing(marker) == []
    status_after, _ = _stack(env, "status")
    assert status_after.returncode != 0
    # The shared stack was not touched.
    shared, _ = _stack(dict(os.environ), "status")
    assert shared.returncode == 0, shared.stdout


@pytest.mark.timeout(60)
def test_the_controller_listener_wants_the_node_certificate(stack_env: dict[str, str]) -> None:
    """Nobody but the Kafka node itself reaches the controller: plaintext and
    TLS without the node's client certificate are both refused."""
    port = Settings.from_env().kafka_controller_port
    context = ssl.create_default_context(cafile=stack_env["PANTHEON_CA_FILE"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        # TLS 1.3 reports a missing client certificate on the first read.
        tls.sendall(b"\x00\x00\x00\x01\x00")
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            tls.recv(1)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
        plain.sendall(b"\x00\x00\x00\x0e\x00\x12\x00\x03\x00\x00\x00\x01\x00\x04test")
        # A TLS alert (0x15) or a closed socket: never a Kafka response.
        assert plain.recv(1) in (b"", b"\x15")
