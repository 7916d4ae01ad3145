"""The Kafka broker: jars from Maven Central, config, storage format, start.

Apache Kafka 4.1.1 runs as one KRaft node that is both broker and
controller. The jars come from Maven Central via scripts/lib/kafka-pom.xml
into the cache (no tarball host is reachable here). Clients and inter-broker
traffic use SASL_SSL with SCRAM-SHA-512; the users are written into the
metadata log when the storage is formatted, so no plaintext bootstrap phase
ever exists. Users added in later versions reach an already formatted
broker through `up` (kafka_admin.ensure_users, over SASL_SSL as admin).
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
from pantheon.devstack.settings import HOST, Settings

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
POM = REPO_ROOT / "scripts" / "lib" / "kafka-pom.xml"
JVM_HEAP = ("-Xmx1g", "-Xms256m")
NODE_ID = 1
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


def server_properties(settings: Settings, creds: Credentials, certs: CertFiles) -> str:
    p = settings.paths
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{KAFKA_ADMIN_USER}" password="{creds.kafka_admin_password}";'
    )
    return f"""\
# Written by pantheon.devstack on every `up`; edit the generator, not this file.
process.roles=broker,controller
node.id={NODE_ID}
controller.quorum.voters={NODE_ID}@{HOST}:{settings.kafka_controller_port}
controller.listener.names=CONTROLLER

# Clients and the broker itself speak SASL_SSL. The CONTROLLER listener
# carries only this node's broker<->controller traffic and is mutual TLS:
# both ends present the node's own certificate (not the services' one).
listeners=SASL_SSL://{HOST}:{settings.kafka_port},CONTROLLER://{HOST}:{settings.kafka_controller_port}
advertised.listeners=SASL_SSL://{HOST}:{settings.kafka_port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
listener.name.controller.ssl.client.auth=required
listener.name.controller.ssl.keystore.type=PEM
listener.name.controller.ssl.keystore.location={p.kafka_config / "node-keystore.pem"}
listener.name.controller.ssl.truststore.type=PEM
listener.name.controller.ssl.truststore.location={certs.ca_cert}

sasl.enabled.mechanisms={SCRAM_MECHANISM}
sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}

# PEM keystore: private key + certificate chain in one file; trust = dev CA.
ssl.keystore.type=PEM
ssl.keystore.location={p.kafka_config / "keystore.pem"}
ssl.truststore.type=PEM
ssl.truststore.location={certs.ca_cert}
ssl.endpoint.identification.algorithm=https
ssl.enabled.protocols=TLSv1.3,TLSv1.2

# Deny by default. admin is the broker's own inter-broker identity; the
# node certificate's principal is how broker and controller know each other
# on the CONTROLLER listener (registration, heartbeats).
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{KAFKA_ADMIN_USER};{NODE_PRINCIPAL}
allow.everyone.if.no.acl.found=false

log.dirs={p.kafka_data}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Topics are created explicitly by the stack, never by a typo in a producer.
auto.create.topics.enable=false
# One member groups in tests should not wait 3 s for more members.
group.initial.rebalance.delay.ms=0
"""


def log4j2_properties(paths: StackPaths) -> str:
    logs = paths.kafka_logs
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


def write_config(settings: Settings, creds: Credentials, certs: CertFiles) -> Path:
    """(Re)write server.properties, the PEM keystore and the log4j2 config."""
    p = settings.paths
    keystore = certs.server_key.read_bytes() + certs.server_cert.read_bytes() + certs.ca_cert.read_bytes()
    write_private(p.kafka_config / "keystore.pem", keystore)
    node_key, node_cert = ensure_node_cert(p.certs)
    node = node_key.read_bytes() + node_cert.read_bytes() + certs.ca_cert.read_bytes()
    write_private(p.kafka_config / "node-keystore.pem", node)
    # server.properties holds the admin password in the JAAS line: private.
    write_private(p.kafka_config / "server.properties", server_properties(settings, creds, certs).encode())
    write_atomic(p.kafka_config / "log4j2.properties", log4j2_properties(p).encode())
    p.kafka_logs.mkdir(parents=True, exist_ok=True)
    return p.kafka_config / "server.properties"


def _java_base(paths: StackPaths, libs: Path) -> list[str]:
    return [
        java(),
        *JVM_HEAP,
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={paths.kafka_config / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={paths.kafka_logs}",
        "-cp",
        f"{libs}/*",  # expanded by java itself, no shell involved
    ]


def _new_cluster_id() -> str:
    # Kafka cluster ids are 16 random bytes, base64url without padding; Kafka
    # itself avoids ids starting with '-' (they read like CLI flags).
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def is_formatted(paths: StackPaths) -> bool:
    return (paths.kafka_data / "meta.properties").is_file()


def format_storage(settings: Settings, creds: Credentials, libs: Path, config: Path) -> None:
    """Format the KRaft storage with the SCRAM users, only if not done yet."""
    p = settings.paths
    if is_formatted(p):
        return
    log.info("formatting Kafka storage in %s", p.kafka_data)
    argv = [
        *_java_base(p, libs),
        "kafka.tools.StorageTool",
        "format",
        "--config",
        str(config),
        "--cluster-id",
        _new_cluster_id(),
    ]
    for name, password in creds.kafka_scram_users().items():
        argv += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        # The output may echo arguments; it stays on this machine's terminal.
        raise RuntimeError(f"kafka storage format failed:\n{result.stdout}\n{result.stderr}")


def start(settings: Settings, libs: Path, config: Path) -> int:
    """Start the broker in the background; returns its pid."""
    p = settings.paths
    argv = [*_java_base(p, libs), MAIN_CLASS, str(config)]
    return process.start(argv, pidfile=p.kafka_pidfile, log_file=p.kafka_logs / "kafka.out", cwd=p.kafka)


def running_pid(paths: StackPaths) -> int | None:
    return process.running_pid(paths.kafka_pidfile, paths.process_marker, MAIN_CLASS)


def stop(paths: StackPaths) -> int | None:
    return process.stop(paths.kafka_pidfile, paths.process_marker, MAIN_CLASS)


def server_log(paths: StackPaths) -> Path:
    return paths.kafka_logs / "server.log"
