"""What `scripts/stack status` prints: each process of the stack, running and ready or not."""

from __future__ import annotations

from dataclasses import dataclass

from pantheon.devstack import gateway, haproxy, kafka, kafka_admin, mesh, minio, services
from pantheon.devstack.certs import CertFiles
from pantheon.devstack.credentials import load
from pantheon.devstack.settings import Settings


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
