"""up / down for the whole dev stack (Kafka, MinIO, the services, the gateway),
in either profile (settings.py: single, or ha with haproxy in front of MinIO and the gateways).

What `status` and `env` print is in status.py and environment.py.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
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
from pantheon.devstack.credentials import Credentials, load_or_create
from pantheon.devstack.environment import server_env
from pantheon.devstack.errors import StackError, failure
from pantheon.devstack.files import write_atomic
from pantheon.devstack.paths import StackPaths
from pantheon.devstack.settings import HOST, KafkaNode, MinioNode, Replica, Settings, recorded_profile
from pantheon.policy import PolicyError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 90.0
#: Seven JVM and MinIO processes boot on two cores in the HA profile.
HA_TIMEOUT = 300.0
#: Seconds between the HA profile's Kafka JVM starts.
KAFKA_STAGGER_S = 2.0


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
        raise failure("Kafka did not become ready", exc, kafka.server_log(first_kafka)) from exc
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
        raise failure("MinIO did not become ready", exc, minio.server_log(s.minio_nodes[0])) from exc

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


def _alive(running_pid: Callable[[StackPaths, Replica], int | None], p: StackPaths, replica: Replica) -> bool:
    return running_pid(p, replica) is not None


def _start_services(s: Settings, certs: CertFiles, timeout: float) -> None:
    p = s.paths
    env = server_env(s, mesh.INGEST)
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
            raise failure(f"{replica.name} did not become ready", exc, replica.stdout) from exc
        log.info("%s started (pid %d) on %s, log %s", replica.name, pid, replica.listen, replica.log)


def _start_gateways(s: Settings, creds: Credentials, certs: CertFiles, timeout: float) -> None:
    p = s.paths
    # Rewritten on every `up`: the hashes follow credentials.json.
    gateway.write_keys_file(p, creds)
    # Each replica enforces its share of the rate limits (gateway/settings.py).
    env = {**server_env(s, mesh.GATEWAY), "PANTHEON_GATEWAY_REPLICAS": str(len(s.gateway_replicas))}
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
            raise failure(f"{replica.name} did not become ready", exc, replica.stdout) from exc
        log.info("%s started (pid %d) on %s, log %s", replica.name, pid, replica.listen, replica.log)
    if s.ha:
        # Through the balancer: its health checks have seen a replica.
        try:
            gateway.wait_live(s.gateway_url, certs.ca_cert, timeout=timeout, still_running=lambda: True)
        except TimeoutError as exc:
            raise failure("haproxy did not reach a gateway", exc, haproxy.log_file(p)) from exc
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
