"""The Kafka broker: jars from Maven Central, config, storage format, start.

Apache Kafka 4.1.1 runs as KRaft nodes that are each broker and controller:
one in the single profile, three in the HA one (replication factor 3,
min.insync.replicas 2, no unclean leader election). The jars come from
Maven Central via scripts/lib/kafka-pom.xml into the cache (no tarball host
is reachable here). Clients and inter-broker traffic use SASL_SSL with
SCRAM-SHA-512; the users are written into the metadata log when the storage
is formatted, so no plaintext bootstrap phase ever exists. Users added in
later versions reach an already formatted cluster through `up`
(kafka_admin.ensure_users, over SASL_SSL as admin).
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pantheon.devstack import process
from pantheon.devstack.certs import NODE_PRINCIPAL, CertFiles, ensure_node_cert
from pantheon.devstack.credentials import KAFKA_ADMIN_USER, Credentials
from pantheon.devstack.files import write_atomic, write_private
from pantheon.devstack.paths import REPO_ROOT, StackPaths
from pantheon.devstack.settings import HOST, KafkaNode, Settings
from pantheon.events.topics import min_insync_replicas

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
POM = REPO_ROOT / "scripts" / "lib" / "kafka-pom.xml"
JVM_HEAP = ("-Xmx1g", "-Xms256m")
#: Three JVMs share 2 cores and a few GiB in the HA profile: a small heap is
#: enough once the log cleaner's dedupe buffer (128 MiB by default) shrinks.
HA_JVM_HEAP = ("-Xmx192m", "-Xms64m")
SCRAM_MECHANISM = "SCRAM-SHA-512"
#: Present in the broker's command line; with the state dir it identifies our JVM.
MAIN_CLASS = "kafka.Kafka"


def libs_dir(paths: StackPaths) -> Path:
    return paths.cache / f"kafka-{KAFKA_VERSION}" / "libs"


def ensure_libs(paths: StackPaths) -> Path:
    """Fetch the broker jars with Maven unless the cache already has them."""
    libs = libs_dir(paths)
    if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
        return libs
    log.info("fetching Kafka %s jars from Maven Central into %s", KAFKA_VERSION, libs)
    libs.parent.mkdir(parents=True, exist_ok=True)
    # Download into a sibling temp dir and rename: a half-finished download
    # must never look like a complete libs dir to the next run.
    with tempfile.TemporaryDirectory(dir=libs.parent, prefix=".libs-") as tmp:
        subprocess.run(
            [
                "mvn",
                "-q",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}/libs",
                "-DincludeScope=runtime",
            ],
            check=True,
        )
        shutil.rmtree(libs, ignore_errors=True)
        os.replace(Path(tmp) / "libs", libs)
    return libs


def java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise RuntimeError("java (17+) not found on PATH; install a JDK or set JAVA_HOME")
    return found


def _replication(settings: Settings) -> str:
    nodes = len(settings.kafka_nodes)
    factor = settings.replication_factor
    # Acknowledged means on two replicas once there are three: one node may
    # die without losing an acknowledged event, two stop writes (no false
    # acknowledgement), and an out-of-sync replica never becomes leader.
    min_isr = min_insync_replicas(factor)
    lines = f"""\
default.replication.factor={factor}
min.insync.replicas={min_isr}
unclean.leader.election.enable=false
offsets.topic.replication.factor={factor}
transaction.state.log.replication.factor={factor}
transaction.state.log.min.isr={min_isr}
share.coordinator.state.topic.replication.factor={factor}
share.coordinator.state.topic.min.isr={min_isr}
"""
    if nodes > 1:
        # A dead broker is fenced after 3 s instead of 9 (heartbeats every
        # 0.5 s), so partition leadership moves within seconds of a kill.
        lines += """\
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
log.cleaner.dedupe.buffer.size=8388608
"""
    return lines


def server_properties(settings: Settings, node: KafkaNode, creds: Credentials, certs: CertFiles) -> str:
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in settings.kafka_nodes)
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{KAFKA_ADMIN_USER}" password="{creds.kafka_admin_password}";'
    )
    return f"""\
# Written by pantheon.devstack on every `up`; edit the generator, not this file.
process.roles=broker,controller
node.id={node.node_id}
controller.quorum.voters={voters}
controller.listener.names=CONTROLLER

# Clients and the brokers speak SASL_SSL. The CONTROLLER listener carries
# only broker<->controller and controller<->controller traffic and is mutual
# TLS: both ends present the node certificate (not the services' one).
listeners=SASL_SSL://{node.address},CONTROLLER://{HOST}:{node.controller_port}
advertised.listeners=SASL_SSL://{node.address}
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
listener.name.controller.ssl.client.auth=required
listener.name.controller.ssl.keystore.type=PEM
listener.name.controller.ssl.keystore.location={node.config / "node-keystore.pem"}
listener.name.controller.ssl.truststore.type=PEM
listener.name.controller.ssl.truststore.location={certs.ca_cert}

sasl.enabled.mechanisms={SCRAM_MECHANISM}
sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}

# PEM keystore: private key + certificate chain in one file; trust = dev CA.
ssl.keystore.type=PEM
ssl.keystore.location={node.config / "keystore.pem"}
ssl.truststore.type=PEM
ssl.truststore.location={certs.ca_cert}
ssl.endpoint.identification.algorithm=https
ssl.enabled.protocols=TLSv1.3,TLSv1.2

# Deny by default. admin is the brokers' own inter-broker identity; the
# node certificate's principal is how brokers and controllers know each
# other on the CONTROLLER listener (registration, heartbeats, votes).
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{KAFKA_ADMIN_USER};{NODE_PRINCIPAL}
allow.everyone.if.no.acl.found=false

log.dirs={node.data}
num.partitions=1
{_replication(settings)}
# Topics are created explicitly by the stack, never by a typo in a producer.
auto.create.topics.enable=false
# One member groups in tests should not wait 3 s for more members.
group.initial.rebalance.delay.ms=0
"""


def log4j2_properties(node: KafkaNode) -> str:
    logs = node.logs
    return f"""\
# Kafka broker logging (log4j2 via log4j-slf4j-impl); written by pantheon.devstack.
status = warn
name = pantheon-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {logs / "server.log"}
appender.file.filePattern = {logs / "server.log.%i"}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
# Denied requests are logged at INFO by the authorizer: useful when an ACL bites.
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = INFO
"""


def write_config(settings: Settings, node: KafkaNode, creds: Credentials, certs: CertFiles) -> Path:
    """(Re)write the node's server.properties, PEM keystores and log4j2 config."""
    keystore = certs.server_key.read_bytes() + certs.server_cert.read_bytes() + certs.ca_cert.read_bytes()
    write_private(node.config / "keystore.pem", keystore)
    node_key, node_cert = ensure_node_cert(settings.paths.certs)
    node_pem = node_key.read_bytes() + node_cert.read_bytes() + certs.ca_cert.read_bytes()
    write_private(node.config / "node-keystore.pem", node_pem)
    # server.properties holds the admin password in the JAAS line: private.
    properties = server_properties(settings, node, creds, certs)
    write_private(node.config / "server.properties", properties.encode())
    write_atomic(node.config / "log4j2.properties", log4j2_properties(node).encode())
    node.logs.mkdir(parents=True, exist_ok=True)
    return node.config / "server.properties"


def _java_base(settings: Settings, node: KafkaNode, libs: Path) -> list[str]:
    return [
        java(),
        *(HA_JVM_HEAP if settings.ha else JVM_HEAP),
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={node.config / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={node.logs}",
        "-cp",
        f"{libs}/*",  # expanded by java itself, no shell involved
    ]


def new_cluster_id() -> str:
    # Kafka cluster ids are 16 random bytes, base64url without padding; Kafka
    # itself avoids ids starting with '-' (they read like CLI flags).
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _meta(node: KafkaNode) -> Path:
    return node.data / "meta.properties"


def is_formatted(node: KafkaNode) -> bool:
    return _meta(node).is_file()


def cluster_id_of(node: KafkaNode) -> str:
    """The cluster id a formatted node's storage belongs to."""
    for line in _meta(node).read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.removeprefix("cluster.id=").strip()
    raise RuntimeError(f"{_meta(node)} names no cluster.id")


def format_storage(
    settings: Settings, node: KafkaNode, creds: Credentials, libs: Path, config: Path, cluster: str
) -> None:
    """Format the node's KRaft storage for `cluster` with the SCRAM users, only if not done yet."""
    if is_formatted(node):
        return
    log.info("formatting Kafka storage in %s", node.data)
    argv = [
        *_java_base(settings, node, libs),
        "kafka.tools.StorageTool",
        "format",
        "--config",
        str(config),
        "--cluster-id",
        cluster,
    ]
    for name, password in creds.kafka_scram_users().items():
        argv += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        # The output may echo arguments; it stays on this machine's terminal.
        raise RuntimeError(f"kafka storage format failed:\n{result.stdout}\n{result.stderr}")


def start(settings: Settings, node: KafkaNode, libs: Path, config: Path) -> int:
    """Start the node in the background; returns its pid."""
    argv = [*_java_base(settings, node, libs), MAIN_CLASS, str(config)]
    return process.start(argv, pidfile=node.pidfile, log_file=node.logs / "kafka.out", cwd=node.dir)


def running_pid(paths: StackPaths, node: KafkaNode) -> int | None:
    return process.running_pid(node.pidfile, paths.process_marker, (MAIN_CLASS, str(node.config)))


def stop(paths: StackPaths, node: KafkaNode) -> int | None:
    return process.stop(node.pidfile, paths.process_marker, (MAIN_CLASS, str(node.config)))


def server_log(node: KafkaNode) -> Path:
    return node.logs / "server.log"
