"""The HA profile on a private stack: its shape, and a partition leader killed under load.

scripts/reliability --ha runs every HA scenario; CI runs the broker-leader kill here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import ConfigResource, ResourceType

from pantheon.devstack import credentials, kafka_admin
from pantheon.events.topics import ALL_TOPICS, RECORDS
from tests.reliability import ha
from tests.reliability.stack import ROOT, PrivateStack

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def log(message: str) -> None:
    print(message, file=sys.stderr)


@pytest.fixture(scope="module")
def ha_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    stack = PrivateStack.create(tmp_path_factory.mktemp("ha-stack"), ha=True)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


def test_the_profile_runs_every_node_and_replicates_every_topic_three_times(ha_stack: PrivateStack) -> None:
    status = subprocess.run(
        [str(ROOT / "scripts/stack"), "status"], env=ha_stack.base_env, capture_output=True, text=True
    )
    assert status.returncode == 0, status.stdout + status.stderr
    names = [line.split()[0] for line in status.stdout.splitlines()]
    kafka = [f"kafka-{i}" for i in (1, 2, 3)]
    minio = [f"minio-{i}" for i in (1, 2, 3, 4)]
    assert names == [*kafka, *minio, "haproxy", "services-1", "services-2", "gateway-1", "gateway-2"]
    env = ha_stack.env
    assert len(env["KAFKA_BOOTSTRAP"].split(",")) == 3
    assert env["PANTHEON_GRPC_TARGET"].startswith("ipv4:") and env["PANTHEON_GRPC_TARGET"].count(",") == 1

    creds = credentials.load(ha_stack.state_dir / "credentials.json")
    assert creds is not None
    admin = kafka_admin.admin_client(
        env["KAFKA_BOOTSTRAP"], env["PANTHEON_CA_FILE"], creds.kafka_admin_password
    )
    topics = admin.list_topics(timeout=15).topics
    for topic in ALL_TOPICS:
        for partition in topics[topic.name].partitions.values():
            assert len(partition.replicas) == 3, (topic.name, partition)
    resource = ConfigResource(ResourceType.TOPIC, RECORDS.name)
    config = admin.describe_configs([resource])[resource].result()
    assert config["min.insync.replicas"].value == "2"


# A stack start, warm-up, the kill and restart, cool-down, the reconciler's time and the check.
@pytest.mark.timeout(600)
def test_killing_the_partition_leader_under_load_loses_nothing(ha_stack: PrivateStack) -> None:
    row = ha.run(ha_stack, "leader-kill", log)
    assert not ha.bad(row), (row, row.notes)
    assert row.acknowledged > 0 and row.stored == row.distinct_events, row
    # Another broker took over while the load went on (bad() also checks it).
    assert row.notes["leader_moved_after_s"] is not None, row.notes
