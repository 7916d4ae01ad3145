"""Security checks the integration suite does not already make (read-only, against the shared stack).

Already covered elsewhere and not repeated here: plaintext HTTP to the gateway
(test_gateway_limits), plaintext gRPC (test_storage_reads), plaintext Kafka,
wrong SCRAM password, the reader writing to the data-stored topic or using
foreign groups, the storage key outside its buckets and on the admin API,
plain-HTTP MinIO, SSE on a freshly written object (test_stack), the API-key
auth matrix (test_gateway_auth).
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer

from pantheon.devstack import minio_admin
from pantheon.devstack.credentials import KAFKA_READER_USER, load
from pantheon.devstack.environment import environment
from pantheon.devstack.kafka_admin import client_config
from pantheon.devstack.paths import StackPaths
from pantheon.events.topics import RECORDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "pantheon.devstack", "up"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return environment()


def _host_port(value: str) -> tuple[str, int]:
    host, port = value.removeprefix("https://").rsplit(":", 1)
    return host, int(port)


@pytest.mark.parametrize(
    "endpoint", ["PANTHEON_GATEWAY_URL", "PANTHEON_GRPC_TARGET", "KAFKA_BOOTSTRAP", "MINIO_ENDPOINT"]
)
def test_a_certificate_for_another_host_name_is_refused(env: dict[str, str], endpoint: str) -> None:
    host, port = _host_port(env[endpoint])
    context = ssl.create_default_context(cafile=env["PANTHEON_CA_FILE"])
    # The same server and CA verify fine under the right name ...
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host),
    ):
        pass
    # ... and a client that expects another host refuses the certificate.
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="example.org")


@pytest.mark.parametrize("topic", [RECORDS.name])
def test_the_reader_user_cannot_write_to_the_records_topic(env: dict[str, str], topic: str) -> None:
    conf = client_config(
        env["KAFKA_BOOTSTRAP"], env["PANTHEON_CA_FILE"], KAFKA_READER_USER, env["KAFKA_SASL_PASSWORD"]
    )
    producer = Producer({**conf, "message.timeout.ms": 20000})
    reports: list[Any] = []
    producer.produce(topic, key=b"k", value=b"must not land", on_delivery=lambda err, _m: reports.append(err))
    producer.flush(30)
    assert reports and reports[0] is not None, "the reader could write"
    assert reports[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, reports[0]
    # (Write on the dead-letter topic is granted to the reader on purpose: consumers
    # park what they cannot process there; see kafka_admin.ensure_acls.)


def test_every_sampled_object_in_every_bucket_reports_sse(env: dict[str, str]) -> None:
    root = minio_admin.s3_client(
        env["MINIO_ENDPOINT"].removeprefix("https://"),
        env["MINIO_ROOT_USER"],
        env["MINIO_ROOT_PASSWORD"],
        Path(env["PANTHEON_CA_FILE"]),
    )
    checked = 0
    for bucket in minio_admin.all_buckets():
        for n, obj in enumerate(root.list_objects(bucket, recursive=True)):
            if n >= 25:
                break
            stat = root.stat_object(bucket, obj.object_name or "")
            assert stat.metadata is not None
            assert stat.metadata.get("x-amz-server-side-encryption"), (bucket, obj.object_name)
            checked += 1
    assert checked > 0, "no objects to check"


def test_api_keys_are_stored_hashed(env: dict[str, str]) -> None:
    text = Path(env["PANTHEON_API_KEYS_FILE"]).read_text()
    for name in ("PANTHEON_API_KEY", "PANTHEON_API_KEY_B", "PANTHEON_API_KEY_READONLY"):
        key = env[name]
        assert key not in text, f"{name} is stored in plain text"
        assert hashlib.sha256(key.encode()).hexdigest() in text, f"no hash of {name}"


def _secrets() -> dict[str, str]:
    creds = load(StackPaths.from_env().credentials)
    assert creds is not None
    secret = {
        f.name: getattr(creds, f.name)
        for f in dataclasses.fields(creds)
        if any(word in f.name for word in ("password", "secret", "api_key"))
    }
    kms = secret.get("minio_kms_secret_key", "")
    if ":" in kms:
        secret["minio_kms_secret_key"] = kms.split(":", 1)[1]  # the key material, not its name
    return {k: v for k, v in secret.items() if v}


def test_secrets_never_appear_in_logs(env: dict[str, str]) -> None:
    state = StackPaths.from_env().state
    logs = {
        p
        for pattern in ("*/logs/*.log", "*/*.log", "services/*.log", "gateway/*.log")
        for p in state.glob(pattern)
        if p.is_file()
    }
    assert logs, f"no logs under {state}"
    secrets = _secrets()
    assert len(secrets) >= 8, sorted(secrets)
    leaks = []
    for path in sorted(logs):
        data = path.read_bytes()
        leaks += [f"{name} in {path}" for name, value in secrets.items() if value.encode() in data]
    assert not leaks, leaks


def test_secrets_never_appear_in_error_bodies(env: dict[str, str]) -> None:
    import httpx

    context = ssl.create_default_context(cafile=env["PANTHEON_CA_FILE"])
    secrets = _secrets()
    bodies = []
    with httpx.Client(base_url=env["PANTHEON_GATEWAY_URL"], verify=context, timeout=10) as http:
        bodies.append(http.get("/v1/objects/01ARZ3NDEKTSV4RRFFQ69G5FAV").text)  # 401: no key
        bad_key = {"Authorization": f"Bearer {env['PANTHEON_API_KEY']}x"}
        bodies.append(http.get("/v1/objects", headers=bad_key).text)
        headers = {"Authorization": f"Bearer {env['PANTHEON_API_KEY_READONLY']}"}
        bodies.append(http.post("/v1/records", headers=headers, json={}).text)
        bodies.append(http.post("/v1/objects", headers=headers, content=b"x").text)
    time.sleep(0.2)
    for body in bodies:
        assert body
        for name, value in secrets.items():
            assert value not in body, name
