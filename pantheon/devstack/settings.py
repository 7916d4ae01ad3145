"""Ports, addresses and nodes of the dev stack, overridable through the environment.

Everything listens on 127.0.0.1 only: the stack is for one developer's
machine, and loopback keeps the dev credentials off the network.

Two profiles share one layout. `single` runs one process of everything.
`ha` (`scripts/stack up --ha`) runs what a production deployment runs, on
loopback: three Kafka nodes, four MinIO nodes forming one erasure set behind
haproxy, two service replicas and two gateway replicas behind haproxy. The
profile of a state dir is recorded in it at the first `up`, so `down`,
`status` and `env` need no flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pantheon.devstack.paths import StackPaths
from pantheon.devstack.variables import StackVariables
from pantheon.envconfig import ConfigError

HOST = "127.0.0.1"
SINGLE = "single"
HA = "ha"
PROFILES = (SINGLE, HA)

#: Processes per component in the HA profile. Three Kafka nodes are the
#: smallest quorum that survives one loss with min.insync.replicas=2; four
#: MinIO drives are the smallest erasure set with parity 2 (EC:2).
HA_KAFKA_NODES = 3
HA_MINIO_NODES = 4
HA_REPLICAS = 2

#: Where the HA profile's extra processes listen, relative to the configured
#: ports: Kafka node i at kafka_port + 2i (controller: kafka_controller_port
#: + 2i), MinIO node i at minio_port + 10 + i (console: minio_console_port +
#: 20 + i), service replica i at grpc_port + i (metrics: metrics_port + i),
#: gateway replica i at gateway_port + 10 + i. haproxy takes the configured
#: MinIO and gateway ports, so clients see one endpoint of each either way.
KAFKA_STRIDE = 2
MINIO_NODE_OFFSET = 10
MINIO_CONSOLE_OFFSET = 20
GATEWAY_REPLICA_OFFSET = 10


#: A stack variable or the state dir's record is unusable; the message (one
#: line) says which. The variables' own errors are envconfig's.
SettingsError = ConfigError


def recorded_profile(paths: StackPaths) -> str | None:
    """The profile the state dir was brought up with, if any. A state dir from
    before profiles were recorded, with data in the single layout, is single."""
    try:
        found = paths.profile_file.read_text().strip()
    except FileNotFoundError:
        legacy = (paths.kafka / "data").exists() or (paths.minio / "data").exists()
        return SINGLE if legacy else None
    if found not in PROFILES:
        raise SettingsError(f"{paths.profile_file} names an unknown profile {found!r}")
    return found


def _profile(paths: StackPaths, raw: str | None) -> str:
    """The state dir's record, else PANTHEON_STACK_PROFILE (`raw`), else single;
    the two disagreeing is an error (`down` must stop what `up` started)."""
    recorded = recorded_profile(paths)
    if not raw:
        return recorded or SINGLE
    if recorded not in (None, raw):
        raise SettingsError(
            f"the stack in {paths.state} was brought up with the {recorded} profile, "
            f"but PANTHEON_STACK_PROFILE={raw}; unset it, or `down --purge` that stack first"
        )
    return raw


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node (broker and controller): its id, ports and directory."""

    node_id: int
    port: int
    controller_port: int
    dir: Path

    @property
    def name(self) -> str:
        return f"kafka-{self.node_id}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def config(self) -> Path:
        return self.dir / "config"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def pidfile(self) -> Path:
        return self.dir / "kafka.pid"


@dataclass(frozen=True)
class MinioNode:
    """One MinIO server process and its drive."""

    index: int
    port: int
    console_port: int
    dir: Path

    @property
    def name(self) -> str:
        return f"minio-{self.index}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"https://{self.address}"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def certs(self) -> Path:
        """The node's --certs-dir (one per node: its path tells the processes apart)."""
        return self.dir / "certs"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def pidfile(self) -> Path:
        return self.dir / "minio.pid"


@dataclass(frozen=True)
class Replica:
    """One process of a stateless Pantheon component (services or gateway)."""

    component: str
    index: int
    port: int
    dir: Path
    #: The services' metrics port (0 for a gateway).
    metrics_port: int = 0

    @property
    def name(self) -> str:
        return f"{self.component}-{self.index}"

    @property
    def listen(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def metrics_listen(self) -> str:
        return f"{HOST}:{self.metrics_port}"

    @property
    def pidfile(self) -> Path:
        return self.dir / f"{self.component}.pid"

    @property
    def log(self) -> Path:
        return self.dir / f"{self.component}.log"

    @property
    def stdout(self) -> Path:
        return self.dir / "stdout.log"


@dataclass(frozen=True)
class Settings:
    """One stack: its profile, paths and ports."""

    paths: StackPaths
    kafka_port: int
    kafka_controller_port: int
    minio_port: int
    minio_console_port: int
    grpc_port: int
    gateway_port: int = 8443
    metrics_port: int = 9464
    profile: str = SINGLE

    @classmethod
    def from_env(cls, profile: str | None = None) -> Settings:
        """The stack of PANTHEON_STACK_DIR; its profile from `profile`,
        PANTHEON_STACK_PROFILE, the state dir's record, else `single`."""
        paths = StackPaths.from_env()
        given = StackVariables.from_env()
        ports = given.model_dump(exclude={"profile", "stack_dir", "cache_dir"})
        return cls(paths=paths, profile=profile or _profile(paths, given.profile), **ports)

    @property
    def ha(self) -> bool:
        return self.profile == HA

    @property
    def replication_factor(self) -> int:
        """Kafka's replication factor: 3 with three nodes or more, else one per node."""
        return min(3, len(self.kafka_nodes))

    # -- the processes ------------------------------------------------------------

    @property
    def kafka_nodes(self) -> tuple[KafkaNode, ...]:
        p = self.paths
        if not self.ha:
            return (KafkaNode(1, self.kafka_port, self.kafka_controller_port, p.kafka),)
        return tuple(
            KafkaNode(
                i + 1,
                self.kafka_port + KAFKA_STRIDE * i,
                self.kafka_controller_port + KAFKA_STRIDE * i,
                p.kafka / f"node-{i + 1}",
            )
            for i in range(HA_KAFKA_NODES)
        )

    @property
    def minio_nodes(self) -> tuple[MinioNode, ...]:
        p = self.paths
        if not self.ha:
            return (MinioNode(1, self.minio_port, self.minio_console_port, p.minio),)
        return tuple(
            MinioNode(
                i + 1,
                self.minio_port + MINIO_NODE_OFFSET + i,
                self.minio_console_port + MINIO_CONSOLE_OFFSET + i,
                p.minio / f"node-{i + 1}",
            )
            for i in range(HA_MINIO_NODES)
        )

    @property
    def service_replicas(self) -> tuple[Replica, ...]:
        p = self.paths
        if not self.ha:
            return (Replica("services", 1, self.grpc_port, p.services, self.metrics_port),)
        return tuple(
            Replica(
                "services", i + 1, self.grpc_port + i, p.services / f"replica-{i + 1}", self.metrics_port + i
            )
            for i in range(HA_REPLICAS)
        )

    @property
    def gateway_replicas(self) -> tuple[Replica, ...]:
        p = self.paths
        if not self.ha:
            return (Replica("gateway", 1, self.gateway_port, p.gateway),)
        return tuple(
            Replica(
                "gateway",
                i + 1,
                self.gateway_port + GATEWAY_REPLICA_OFFSET + i,
                p.gateway / f"replica-{i + 1}",
            )
            for i in range(HA_REPLICAS)
        )

    def ports(self) -> dict[str, int]:
        """Every port the stack listens on, by what listens there."""
        found = {
            f"{n.name} ({kind})": port
            for n in self.kafka_nodes
            for kind, port in (("clients", n.port), ("controller", n.controller_port))
        }
        found.update(
            {
                f"{n.name} ({kind})": port
                for n in self.minio_nodes
                for kind, port in (("S3", n.port), ("console", n.console_port))
            }
        )
        found.update({r.name: r.port for r in self.gateway_replicas})
        found.update(
            {
                f"{r.name} ({kind})": port
                for r in self.service_replicas
                for kind, port in (("gRPC", r.port), ("metrics", r.metrics_port))
            }
        )
        if self.ha:
            found.update({"haproxy (S3)": self.minio_port, "haproxy (REST)": self.gateway_port})
        return found

    @property
    def pidfiles(self) -> dict[str, Path]:
        """Every node's pidfile by the node's name (`kafka-1`, `minio-2`, `services-1`, ...)."""
        found = {n.name: n.pidfile for n in self.kafka_nodes}
        found.update({n.name: n.pidfile for n in self.minio_nodes})
        found.update({r.name: r.pidfile for r in self.service_replicas})
        found.update({r.name: r.pidfile for r in self.gateway_replicas})
        return found

    # -- what clients connect to ---------------------------------------------------

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(node.address for node in self.kafka_nodes)

    @property
    def minio_address(self) -> str:
        """The S3 endpoint: the one node, or haproxy in front of the four."""
        return f"{HOST}:{self.minio_port}"

    @property
    def minio_endpoint(self) -> str:
        return f"https://{self.minio_address}"

    @property
    def grpc_target(self) -> str:
        """A gRPC target naming every service replica (clients balance round_robin)."""
        addresses = [r.listen for r in self.service_replicas]
        return addresses[0] if len(addresses) == 1 else "ipv4:" + ",".join(addresses)

    @property
    def gateway_listen(self) -> str:
        return f"{HOST}:{self.gateway_port}"

    @property
    def gateway_url(self) -> str:
        """The REST edge: the one gateway, or haproxy in front of the replicas."""
        return f"https://{self.gateway_listen}"

    @property
    def metrics_urls(self) -> list[str]:
        return [f"https://{r.metrics_listen}/metrics" for r in self.service_replicas]
