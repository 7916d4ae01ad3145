"""up / down / status / env for the whole dev stack (Kafka, MinIO, the services, the gateway)."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pantheon.devstack import gateway, kafka, kafka_admin, mesh, minio, minio_admin, process, services
from pantheon.devstack.certs import CertFiles, ensure_certs
from pantheon.devstack.credentials import (
    KAFKA_INGEST_USER,
    KAFKA_READER_USER,
    KAFKA_SIMULATION_USER,
    MINIO_STORAGE_USER,
    Credentials,
    load,
    load_or_create,
)
from pantheon.devstack.files import tail
from pantheon.devstack.settings import HOST, Settings
from pantheon.events.topics import (
    DATA_STORED,
    DEAD_LETTER,
    RECORDS,
    RESTRICTED_DATA_STORED,
    RESTRICTED_DEAD_LETTER,
    RESTRICTED_RECORDS,
)
from pantheon.policy import PolicyError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 90.0


class StackError(RuntimeError):
    """A stack operation failed; the message is meant for the user's terminal."""


def _failure(what: str, exc: Exception, log_file: Path) -> StackError:
    return StackError(
        f"{what}: {exc}\n--- last 40 lines of {log_file} ---\n{tail(log_file, 40)}\n---\n"
        "processes that did start are left running for inspection; `scripts/stack down` stops them"
    )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _require_free(*ports: int) -> None:
    # A clear message beats a JVM stack trace about "Address already in use".
    busy = [p for p in ports if not _port_free(p)]
    if busy:
        raise StackError(
            f"port(s) {busy} on {HOST} are in use by another process; stop it or choose other "
            "ports (PANTHEON_KAFKA_PORT, PANTHEON_KAFKA_CONTROLLER_PORT, PANTHEON_MINIO_PORT, "
            "PANTHEON_MINIO_CONSOLE_PORT, PANTHEON_GRPC_PORT, PANTHEON_GATEWAY_PORT)"
        )


def _start_kafka(s: Settings, creds: Credentials, certs: CertFiles, libs: Path) -> int:
    _require_free(s.kafka_port, s.kafka_controller_port)
    config = kafka.write_config(s, creds, certs)
    kafka.format_storage(s, creds, libs, config)
    pid = kafka.start(s, libs, config)
    log.info("kafka started (pid %d), log %s", pid, kafka.server_log(s.paths))
    return pid


def _start_minio(s: Settings, creds: Credentials, certs: CertFiles, binary: Path) -> int:
    _require_free(s.minio_port, s.minio_console_port)
    minio.install_certs(s.paths, certs)
    pid = minio.start(s, binary, creds)
    log.info("minio started (pid %d), log %s", pid, minio.server_log(s.paths))
    return pid


def up(settings: Settings | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Provision, start what is not running, wait until ready, apply resources."""
    s = settings or Settings.from_env()
    p = s.paths
    p.state.mkdir(parents=True, exist_ok=True)
    os.chmod(p.state, 0o700)  # credentials, keys and data: owner only
    certs = ensure_certs(p.certs)
    if not p.credentials.exists() and kafka.is_formatted(p):
        # The SCRAM users live in the formatted storage: fresh passwords
        # would never match them, and `up` would only time out.
        raise StackError(
            f"{p.credentials} is missing but {p.kafka_data} was formatted with the old "
            "credentials; run `scripts/stack down --purge` to start with fresh data"
        )
    creds = load_or_create(p.credentials)

    kafka_pid = kafka.running_pid(p)
    minio_pid = minio.running_pid(p)
    # Fetching jars (seconds) and compiling MinIO (minutes) are independent:
    # do them side by side on a cold machine.
    with ThreadPoolExecutor(max_workers=2) as pool:
        libs_f: Future[Path] | None = None if kafka_pid else pool.submit(kafka.ensure_libs, p)
        bin_f: Future[Path] | None = None if minio_pid else pool.submit(minio.ensure_binary, p)
        libs = libs_f.result() if libs_f else None
        binary = bin_f.result() if bin_f else None

    if kafka_pid is None:
        assert libs is not None
        _start_kafka(s, creds, certs, libs)
    else:
        log.info("kafka already running (pid %d)", kafka_pid)
    if minio_pid is None:
        assert binary is not None
        _start_minio(s, creds, certs, binary)
    else:
        log.info("minio already running (pid %d)", minio_pid)

    # Both boot concurrently; now wait for each (one overall deadline).
    deadline = time.monotonic() + timeout
    admin = kafka_admin.admin_client(s.kafka_bootstrap, str(certs.ca_cert), creds.kafka_admin_password)
    try:
        kafka_admin.wait_ready(admin, timeout=timeout, still_running=lambda: kafka.running_pid(p) is not None)
    except (TimeoutError, RuntimeError) as exc:
        raise _failure("Kafka did not become ready", exc, kafka.server_log(p)) from exc
    try:
        minio.wait_live(
            s,
            certs.ca_cert,
            timeout=max(5.0, deadline - time.monotonic()),
            still_running=lambda: minio.running_pid(p) is not None,
        )
        root = minio_admin.s3_client(
            s.minio_address, creds.minio_root_user, creds.minio_root_password, certs.ca_cert
        )
        minio_admin.wait_iam_ready(root, timeout=max(5.0, deadline - time.monotonic()))
    except (TimeoutError, RuntimeError) as exc:
        raise _failure("MinIO did not become ready", exc, minio.server_log(p)) from exc

    created_topics = kafka_admin.ensure_topics(admin)
    kafka_admin.ensure_users(admin, creds)
    kafka_admin.ensure_acls(admin)
    created_buckets = minio_admin.ensure_buckets(root)
    minio_admin.ensure_storage_user(
        minio_admin.admin_client(
            s.minio_address, creds.minio_root_user, creds.minio_root_password, certs.ca_cert
        ),
        creds.minio_storage_secret,
    )
    if created_topics:
        log.info("created topics %s", ", ".join(created_topics))
    if created_buckets:
        log.info("created buckets %s", ", ".join(created_buckets))
    try:
        mesh.ensure_identities(p, certs)
    except PolicyError as exc:
        raise StackError(str(exc)) from None
    _start_services(s, certs, timeout=max(10.0, deadline - time.monotonic()))
    _start_gateway(s, creds, certs, timeout=max(10.0, deadline - time.monotonic()))


#: Plaintext demo API keys are for clients: no server process gets them (the
#: gateway reads their hashes from PANTHEON_API_KEYS_FILE).
_CLIENT_ONLY = frozenset(
    {
        "PANTHEON_API_KEY",
        "PANTHEON_API_KEY_B",
        "PANTHEON_API_KEY_READONLY",
        # The consumers' Kafka passwords: no server process consumes.
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SIMULATION_PASSWORD",
    }
)


def _server_env(s: Settings, identity: str) -> dict[str, str]:
    """The environment of a server process that calls the services as `identity`."""
    merged = {**os.environ, **environment(s)}
    cert, key = mesh.identity_files(s.paths, identity)
    merged.update(PANTHEON_CLIENT_CERT_FILE=str(cert), PANTHEON_CLIENT_KEY_FILE=str(key))
    return {k: v for k, v in merged.items() if k not in _CLIENT_ONLY}


def _start_services(s: Settings, certs: CertFiles, timeout: float) -> None:
    p = s.paths
    pid = services.running_pid(p)
    if pid is not None:
        log.info("services already running (pid %d)", pid)
        return
    _require_free(s.grpc_port, s.metrics_port)
    pid = services.start(p, _server_env(s, mesh.INGEST), s.grpc_target, s.metrics_listen)
    try:
        services.wait_serving(
            s.grpc_target,
            certs.ca_cert,
            mesh.identity_files(p, mesh.DEV_CLIENT),
            timeout=timeout,
            still_running=lambda: services.running_pid(p) is not None,
        )
    except (TimeoutError, RuntimeError) as exc:
        raise _failure("the Pantheon services did not become ready", exc, p.services / "stdout.log") from exc
    log.info("services started (pid %d), log %s", pid, p.services_log)


def _start_gateway(s: Settings, creds: Credentials, certs: CertFiles, timeout: float) -> None:
    p = s.paths
    # Rewritten on every `up`: the hashes follow credentials.json.
    gateway.write_keys_file(p, creds)
    pid = gateway.running_pid(p)
    if pid is not None:
        log.info("gateway already running (pid %d)", pid)
        return
    _require_free(s.gateway_port)
    pid = gateway.start(p, _server_env(s, mesh.GATEWAY), s.gateway_listen)
    try:
        gateway.wait_live(
            s.gateway_url,
            certs.ca_cert,
            timeout=timeout,
            still_running=lambda: gateway.running_pid(p) is not None,
        )
    except (TimeoutError, RuntimeError) as exc:
        raise _failure("the REST gateway did not become ready", exc, p.gateway / "stdout.log") from exc
    log.info("gateway started (pid %d) on %s, log %s", pid, s.gateway_url, p.gateway_log)


def down(settings: Settings | None = None, purge: bool = False) -> None:
    """Stop what `up` started (by pidfile, verified by cmdline); keep data unless purge."""
    s = settings or Settings.from_env()
    p = s.paths
    marker = p.process_marker
    # The gateway first (it calls the services), then the services: they
    # hold connections to both backends.
    pid = gateway.stop(p)
    log.info("gateway %s", f"stopped (pid {pid})" if pid else "was not running")
    pid = services.stop(p)
    log.info("services %s", f"stopped (pid {pid})" if pid else "was not running")
    # Stop both at once: Kafka's controlled shutdown takes a few seconds.
    with ThreadPoolExecutor(max_workers=2) as pool:
        k = pool.submit(kafka.stop, p)
        m = pool.submit(minio.stop, p)
        for name, fut in (("kafka", k), ("minio", m)):
            pid = fut.result()
            log.info("%s %s", name, f"stopped (pid {pid})" if pid else "was not running")
    leftovers = process.pids_referencing(marker)
    if leftovers:
        log.warning(
            "processes still referencing %s: %s (not started by this stack's pidfiles; left alone)",
            marker,
            leftovers,
        )
    if purge:
        # Data and logs go; certificates and credentials stay, so exported
        # env vars remain valid and the next `up` formats Kafka with them.
        for d in (p.kafka_data, p.kafka_logs, p.minio_data, p.minio_logs):
            shutil.rmtree(d, ignore_errors=True)
        log.info("purged data and logs under %s", p.state)


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    ready: bool
    endpoint: str

    def line(self) -> str:
        state = f"running pid {self.pid}" if self.pid else "not running"
        ready = "ready" if self.ready else "NOT READY"
        return f"{self.name:<7} {state:<20} {ready:<10} {self.endpoint}"


def status(settings: Settings | None = None) -> list[ComponentStatus]:
    s = settings or Settings.from_env()
    p = s.paths
    creds = load(p.credentials)
    ca = CertFiles.in_dir(p.certs).ca_cert
    kafka_pid, minio_pid = kafka.running_pid(p), minio.running_pid(p)
    kafka_ready = minio_ready = False
    if kafka_pid and creds and ca.is_file():
        admin = kafka_admin.admin_client(s.kafka_bootstrap, str(ca), creds.kafka_admin_password)
        kafka_ready = kafka_admin.is_ready(admin)
    if minio_pid and ca.is_file():
        minio_ready = minio.is_live(s, ca)
    services_pid = services.running_pid(p)
    services_ready = (
        bool(services_pid)
        and ca.is_file()
        and services.is_serving(s.grpc_target, ca, mesh.identity_files(p, mesh.DEV_CLIENT))
    )
    gateway_pid = gateway.running_pid(p)
    gateway_ready = bool(gateway_pid) and ca.is_file() and gateway.is_live(s.gateway_url, ca)
    return [
        ComponentStatus("kafka", kafka_pid, kafka_ready, f"SASL_SSL://{s.kafka_bootstrap}"),
        ComponentStatus("minio", minio_pid, minio_ready, s.minio_endpoint),
        ComponentStatus("grpc", services_pid, services_ready, f"grpcs://{s.grpc_target}"),
        ComponentStatus("gateway", gateway_pid, gateway_ready, s.gateway_url),
    ]


def environment(settings: Settings | None = None) -> dict[str, str]:
    """Endpoints and dev credentials of the stack, as environment variables.

    Raises StackError before the first `up` (no credentials exist yet).
    """
    s = settings or Settings.from_env()
    p = s.paths
    creds = load(p.credentials)
    if creds is None:
        raise StackError(f"no stack in {p.state} yet; run `scripts/stack up` first")
    certs = CertFiles.in_dir(p.certs)
    return {
        # Downstream consumers (any language): the read-only Kafka user.
        "KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": kafka.SCRAM_MECHANISM,
        "KAFKA_SASL_USERNAME": KAFKA_READER_USER,
        "KAFKA_SASL_PASSWORD": creds.kafka_reader_password,
        # An internal consumer that also reads the RESTRICTED topics.
        "KAFKA_SIMULATION_USERNAME": KAFKA_SIMULATION_USER,
        "KAFKA_SIMULATION_PASSWORD": creds.kafka_simulation_password,
        # The Pantheon services: the producing Kafka user.
        "PANTHEON_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "PANTHEON_KAFKA_USERNAME": KAFKA_INGEST_USER,
        "PANTHEON_KAFKA_PASSWORD": creds.kafka_ingest_password,
        "PANTHEON_CA_FILE": str(certs.ca_cert),
        "PANTHEON_TLS_CERT_FILE": str(certs.server_cert),
        "PANTHEON_TLS_KEY_FILE": str(certs.server_key),
        # The mesh: its policy, and the identity this shell's tools present
        # (dev-client; the server processes get their own, see _server_env).
        "PANTHEON_POLICY_FILE": str(p.policy_file),
        "PANTHEON_PAGE_TOKEN_KEY": creds.page_token_key,
        "PANTHEON_CLIENT_CERT_FILE": str(mesh.identity_files(p, mesh.DEV_CLIENT)[0]),
        "PANTHEON_CLIENT_KEY_FILE": str(mesh.identity_files(p, mesh.DEV_CLIENT)[1]),
        "PANTHEON_IDENTITIES_DIR": str(p.identities),
        "MINIO_ENDPOINT": s.minio_endpoint,
        "MINIO_ROOT_USER": creds.minio_root_user,
        "MINIO_ROOT_PASSWORD": creds.minio_root_password,
        "PANTHEON_S3_ENDPOINT": s.minio_endpoint,
        "PANTHEON_S3_ACCESS_KEY": MINIO_STORAGE_USER,
        "PANTHEON_S3_SECRET_KEY": creds.minio_storage_secret,
        "PANTHEON_GRPC_TARGET": s.grpc_target,
        "PANTHEON_METRICS_URL": f"https://{s.metrics_listen}/metrics",
        "PANTHEON_EVENTS_TOPIC": DATA_STORED.name,
        "PANTHEON_RECORDS_TOPIC": RECORDS.name,
        "PANTHEON_DLQ_TOPIC": DEAD_LETTER.name,
        "PANTHEON_RESTRICTED_EVENTS_TOPIC": RESTRICTED_DATA_STORED.name,
        "PANTHEON_RESTRICTED_RECORDS_TOPIC": RESTRICTED_RECORDS.name,
        "PANTHEON_RESTRICTED_DLQ_TOPIC": RESTRICTED_DEAD_LETTER.name,
        # The REST gateway and its demo API keys (see pantheon/devstack/gateway.py).
        "PANTHEON_GATEWAY_URL": s.gateway_url,
        "PANTHEON_API_KEY": creds.api_key_city,
        "PANTHEON_API_KEY_B": creds.api_key_agency,
        "PANTHEON_API_KEY_READONLY": creds.api_key_viewer,
        "PANTHEON_API_KEYS_FILE": str(p.api_keys_file),
    }


def export_lines(env: dict[str, str]) -> list[str]:
    """`export NAME=value` lines, values quoted for POSIX shells."""
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
