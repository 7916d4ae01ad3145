"""up / down / status / env for the whole dev stack (Kafka, MinIO, the services, the gateway),
in either profile (settings.py: single, or ha with haproxy in front of MinIO and the gateways)."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from pantheon.devstack import (
    gateway,
    haproxy,
    kafka,
    kafka_admin,
    mesh,
    minio,
    minio_admin,
    process,
    services,
)
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
from pantheon.devstack.files import tail, write_atomic
from pantheon.devstack.paths import StackPaths
from pantheon.devstack.settings import HOST, KafkaNode, MinioNode, Replica, Settings, recorded_profile
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
#: Seven JVM and MinIO processes boot on two cores in the HA profile.
HA_TIMEOUT = 300.0
#: Seconds between the HA profile's Kafka JVM starts.
KAFKA_STAGGER_S = 2.0


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


Node = TypeVar("Node", KafkaNode, MinioNode, Replica)


def _not_running(
    p: StackPaths, nodes: Sequence[Node], running_pid: Callable[[StackPaths, Node], int | None]
) -> list[Node]:
    """The nodes that are not running; those that are are named in the log."""
    down = []
    for node in nodes:
        pid = running_pid(p, node)
        if pid is None:
            down.append(node)
        else:
            log.info("%s already running (pid %d)", node.name, pid)
    return down


def _start_kafka(s: Settings, creds: Credentials, certs: CertFiles) -> None:
    """Format and start every Kafka node that is not running."""
    p = s.paths
    down_nodes = _not_running(p, s.kafka_nodes, kafka.running_pid)
    if not down_nodes:
        return
    _require_free(*(port for n in down_nodes for port in (n.port, n.controller_port)))
    ids = {n.name: kafka.cluster_id_of(n) for n in s.kafka_nodes if kafka.is_formatted(n)}
    if len(set(ids.values())) > 1:
        raise StackError(
            f"the Kafka nodes belong to different clusters ({ids}); `scripts/stack down --purge`"
        )
    if ids and len(ids) < len(s.kafka_nodes):
        # A node formatted afresh would vote with an empty log beside peers
        # that have one: KRaft with static voters cannot take that safely.
        raise StackError(
            f"Kafka nodes {sorted(ids)} have storage but "
            f"{sorted(n.name for n in s.kafka_nodes if n.name not in ids)} have none; "
            "`scripts/stack down --purge` to start the cluster afresh"
        )
    libs = kafka.ensure_libs(p)
    configs = {n: kafka.write_config(s, n, creds, certs) for n in down_nodes}
    # Formatting runs a JVM per node: side by side, one cluster id for all.
    cluster = next(iter(ids.values()), None) or kafka.new_cluster_id()
    with ThreadPoolExecutor(max_workers=len(down_nodes)) as pool:
        for fut in [
            pool.submit(kafka.format_storage, s, n, creds, libs, configs[n], cluster) for n in down_nodes
        ]:
            fut.result()
    for i, node in enumerate(down_nodes):
        if i:
            # Two cores: JVMs that start together all start slowly.
            time.sleep(KAFKA_STAGGER_S)
        pid = kafka.start(s, node, libs, configs[node])
        log.info("%s started (pid %d), log %s", node.name, pid, kafka.server_log(node))


def _start_minio(s: Settings, creds: Credentials, certs: CertFiles) -> None:
    """Start every MinIO node that is not running."""
    p = s.paths
    down_nodes = _not_running(p, s.minio_nodes, minio.running_pid)
    if not down_nodes:
        return
    _require_free(*(port for n in down_nodes for port in (n.port, n.console_port)))
    binary = minio.ensure_binary(p)
    for node in down_nodes:
        minio.install_certs(node, certs)
        pid = minio.start(s, node, binary, creds)
        log.info("%s started (pid %d), log %s", node.name, pid, minio.server_log(node))


def _start_haproxy(s: Settings, certs: CertFiles) -> None:
    p = s.paths
    pid = haproxy.running_pid(p)
    if pid is not None:
        if haproxy.is_current(s, certs):
            log.info("haproxy already running (pid %d)", pid)
            return
        # Ports or nodes changed since it started: start it again on the new config.
        log.info("haproxy's config changed: restarting it")
        haproxy.stop(p)
    _require_free(s.minio_port, s.gateway_port)
    try:
        pid = haproxy.start(s, certs)
    except RuntimeError as exc:
        raise StackError(str(exc)) from None
    log.info("haproxy started (pid %d) on %s and %s", pid, s.minio_endpoint, s.gateway_url)


def _choose_profile(s: Settings) -> None:
    """Record the stack's profile; refuse to switch one whose data exists."""
    p = s.paths
    recorded = recorded_profile(p)
    if recorded not in (None, s.profile) and (p.kafka.exists() or p.minio.exists()):
        raise StackError(
            f"the stack in {p.state} was brought up with the {recorded} profile; "
            "`scripts/stack down --purge` first, or choose another PANTHEON_STACK_DIR"
        )
    write_atomic(p.profile_file, f"{s.profile}\n".encode())


def up(settings: Settings | None = None, timeout: float | None = None) -> None:
    """Provision, start what is not running, wait until ready, apply resources."""
    s = settings or Settings.from_env()
    p = s.paths
    timeout = timeout or (HA_TIMEOUT if s.ha else DEFAULT_TIMEOUT)
    p.state.mkdir(parents=True, exist_ok=True)
    os.chmod(p.state, 0o700)  # credentials, keys and data: owner only
    ports = s.ports()
    shared = sorted({port for port in ports.values() if list(ports.values()).count(port) > 1})
    if shared:
        users = {port: [name for name, used in ports.items() if used == port] for port in shared}
        raise StackError(f"the port variables give several processes one port: {users}")
    _choose_profile(s)
    certs = ensure_certs(p.certs)
    if not p.credentials.exists() and any(kafka.is_formatted(n) for n in s.kafka_nodes):
        # The SCRAM users live in the formatted storage: fresh passwords
        # would never match them, and `up` would only time out.
        raise StackError(
            f"{p.credentials} is missing but {p.kafka} was formatted with the old "
            "credentials; run `scripts/stack down --purge` to start with fresh data"
        )
    creds = load_or_create(p.credentials)

    # Fetching jars (seconds) and compiling MinIO (minutes) are independent:
    # warm both caches side by side on a cold machine.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for fut in (pool.submit(kafka.ensure_libs, p), pool.submit(minio.ensure_binary, p)):
            fut.result()
    _start_kafka(s, creds, certs)
    _start_minio(s, creds, certs)
    if s.ha:
        _start_haproxy(s, certs)

    # Everything boots concurrently; now wait for each (one overall deadline).
    deadline = time.monotonic() + timeout
    admin = kafka_admin.admin_client(s.kafka_bootstrap, str(certs.ca_cert), creds.kafka_admin_password)
    first_kafka = s.kafka_nodes[0]
    try:
        kafka_admin.wait_ready(
            admin,
            brokers=len(s.kafka_nodes),
            timeout=timeout,
            still_running=lambda: all(kafka.running_pid(p, n) for n in s.kafka_nodes),
        )
    except (TimeoutError, RuntimeError) as exc:
        raise _failure("Kafka did not become ready", exc, kafka.server_log(first_kafka)) from exc
    try:
        for node in s.minio_nodes:
            minio.wait_ready(
                node.endpoint,
                certs.ca_cert,
                timeout=max(5.0, deadline - time.monotonic()),
                still_running=lambda: all(minio.running_pid(p, n) for n in s.minio_nodes),
            )
        # Through the balancer too (the same endpoint in the single profile).
        minio.wait_ready(
            s.minio_endpoint,
            certs.ca_cert,
            timeout=max(5.0, deadline - time.monotonic()),
            still_running=lambda: not s.ha or haproxy.running_pid(p) is not None,
        )
        # Every node, not just the one the balancer picks: admin calls
        # through it may land on a node that is still loading IAM.
        for node in s.minio_nodes:
            at_node = minio_admin.s3_client(
                node.address, creds.minio_root_user, creds.minio_root_password, certs.ca_cert
            )
            minio_admin.wait_iam_ready(at_node, timeout=max(5.0, deadline - time.monotonic()))
        root = minio_admin.s3_client(
            s.minio_address, creds.minio_root_user, creds.minio_root_password, certs.ca_cert
        )
    except (TimeoutError, RuntimeError) as exc:
        raise _failure("MinIO did not become ready", exc, minio.server_log(s.minio_nodes[0])) from exc

    created_topics = kafka_admin.ensure_topics(admin, replication_factor=s.replication_factor)
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
    _start_gateways(s, creds, certs, timeout=max(10.0, deadline - time.monotonic()))


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


def _alive(running_pid: Callable[[StackPaths, Replica], int | None], p: StackPaths, replica: Replica) -> bool:
    return running_pid(p, replica) is not None


def _start_services(s: Settings, certs: CertFiles, timeout: float) -> None:
    p = s.paths
    env = _server_env(s, mesh.INGEST)
    started = []
    for replica in _not_running(p, s.service_replicas, services.running_pid):
        _require_free(replica.port, replica.metrics_port)
        started.append((replica, services.start(p, replica, env)))
    for replica, pid in started:
        try:
            services.wait_serving(
                replica.listen,
                certs.ca_cert,
                mesh.identity_files(p, mesh.DEV_CLIENT),
                timeout=timeout,
                still_running=partial(_alive, services.running_pid, p, replica),
            )
        except (TimeoutError, RuntimeError) as exc:
            raise _failure(f"{replica.name} did not become ready", exc, replica.stdout) from exc
        log.info("%s started (pid %d) on %s, log %s", replica.name, pid, replica.listen, replica.log)


def _start_gateways(s: Settings, creds: Credentials, certs: CertFiles, timeout: float) -> None:
    p = s.paths
    # Rewritten on every `up`: the hashes follow credentials.json.
    gateway.write_keys_file(p, creds)
    # Each replica enforces its share of the rate limits (gateway/settings.py).
    env = {**_server_env(s, mesh.GATEWAY), "PANTHEON_GATEWAY_REPLICAS": str(len(s.gateway_replicas))}
    started = []
    for replica in _not_running(p, s.gateway_replicas, gateway.running_pid):
        _require_free(replica.port)
        started.append((replica, gateway.start(p, replica, env)))
    for replica, pid in started:
        try:
            gateway.wait_live(
                f"https://{replica.listen}",
                certs.ca_cert,
                timeout=timeout,
                still_running=partial(_alive, gateway.running_pid, p, replica),
            )
        except (TimeoutError, RuntimeError) as exc:
            raise _failure(f"{replica.name} did not become ready", exc, replica.stdout) from exc
        log.info("%s started (pid %d) on %s, log %s", replica.name, pid, replica.listen, replica.log)
    if s.ha:
        # Through the balancer: its health checks have seen a replica.
        try:
            gateway.wait_live(s.gateway_url, certs.ca_cert, timeout=timeout, still_running=lambda: True)
        except TimeoutError as exc:
            raise _failure("haproxy did not reach a gateway", exc, haproxy.log_file(p)) from exc
    log.info("REST edge on %s", s.gateway_url)


def down(settings: Settings | None = None, purge: bool = False) -> None:
    """Stop what `up` started (by pidfile, verified by cmdline); keep data unless purge."""
    s = settings or Settings.from_env()
    p = s.paths
    marker = p.process_marker

    def report(name: str, pid: int | None) -> None:
        log.info("%s %s", name, f"stopped (pid {pid})" if pid else "was not running")

    # The gateways first (they call the services), then the services (they
    # finish their calls through the balancer to MinIO), then the balancer.
    for replica in s.gateway_replicas:
        report(replica.name, gateway.stop(p, replica))
    for replica in s.service_replicas:
        report(replica.name, services.stop(p, replica))
    if s.ha:
        report("haproxy", haproxy.stop(p))
    # The backends' nodes all at once: Kafka's controlled shutdown takes a few seconds.
    with ThreadPoolExecutor(max_workers=len(s.kafka_nodes) + len(s.minio_nodes)) as pool:
        stopping = [(n.name, pool.submit(kafka.stop, p, n)) for n in s.kafka_nodes]
        stopping += [(n.name, pool.submit(minio.stop, p, n)) for n in s.minio_nodes]
        for name, fut in stopping:
            report(name, fut.result())
    leftovers = process.pids_referencing(marker)
    if leftovers:
        log.warning(
            "processes still referencing %s: %s (not started by this stack's pidfiles; left alone)",
            marker,
            leftovers,
        )
    if purge:
        # Data, logs and the profile go; certificates and credentials stay,
        # so exported env vars remain valid and the next `up` formats Kafka
        # with them.
        for d in (p.kafka, p.minio, p.haproxy):
            shutil.rmtree(d, ignore_errors=True)
        p.profile_file.unlink(missing_ok=True)
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
        return f"{self.name:<10} {state:<20} {ready:<10} {self.endpoint}"


def status(settings: Settings | None = None) -> list[ComponentStatus]:
    """One line per process; in the HA profile also the balancer's endpoints."""
    s = settings or Settings.from_env()
    p = s.paths
    creds = load(p.credentials)
    ca = CertFiles.in_dir(p.certs).ca_cert
    have_tls = ca.is_file()
    found = []
    for node in s.kafka_nodes:
        pid = kafka.running_pid(p, node)
        ready = False
        if pid and creds and have_tls:
            admin = kafka_admin.admin_client(node.address, str(ca), creds.kafka_admin_password)
            ready = kafka_admin.is_ready(admin)
        found.append(
            ComponentStatus(node.name if s.ha else "kafka", pid, ready, f"SASL_SSL://{node.address}")
        )
    for mnode in s.minio_nodes:
        pid = minio.running_pid(p, mnode)
        ready = bool(pid) and have_tls and minio.is_live(mnode.endpoint, ca)
        found.append(ComponentStatus(mnode.name if s.ha else "minio", pid, ready, mnode.endpoint))
    if s.ha:
        pid = haproxy.running_pid(p)
        # Ready: both balanced endpoints answer, MinIO with write quorum.
        ready = bool(pid) and have_tls and minio.has_write_quorum(s.minio_endpoint, ca)
        ready = ready and gateway.is_live(s.gateway_url, ca)
        found.append(ComponentStatus("haproxy", pid, ready, f"{s.minio_endpoint} {s.gateway_url}"))
    identity = mesh.identity_files(p, mesh.DEV_CLIENT)
    for replica in s.service_replicas:
        pid = services.running_pid(p, replica)
        ready = bool(pid) and have_tls and services.is_serving(replica.listen, ca, identity)
        found.append(
            ComponentStatus(replica.name if s.ha else "grpc", pid, ready, f"grpcs://{replica.listen}")
        )
    for replica in s.gateway_replicas:
        pid = gateway.running_pid(p, replica)
        url = f"https://{replica.listen}"
        ready = bool(pid) and have_tls and gateway.is_live(url, ca)
        found.append(ComponentStatus(replica.name if s.ha else "gateway", pid, ready, url))
    return found


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
        # The first replica's metrics; each replica serves its own.
        "PANTHEON_METRICS_URL": s.metrics_urls[0],
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
