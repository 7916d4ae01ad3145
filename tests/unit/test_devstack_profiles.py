"""The dev stack's two profiles: which processes, on which ports, with which settings."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pantheon.devstack import haproxy, kafka, minio
from pantheon.devstack.certs import ensure_certs
from pantheon.devstack.credentials import Credentials
from pantheon.devstack.errors import StackError
from pantheon.devstack.paths import StackPaths
from pantheon.devstack.settings import HA, SINGLE, Settings, SettingsError, recorded_profile
from pantheon.devstack.stack import _choose_profile, up


def settings(tmp_path: Path, profile: str) -> Settings:
    return Settings(
        StackPaths(tmp_path, tmp_path / "cache"), 19092, 19093, 9000, 9001, 50051, 8443, 9464, profile
    )


def test_the_single_profile_runs_one_of_everything_where_it_always_did(tmp_path: Path) -> None:
    s = settings(tmp_path, SINGLE)
    assert [n.address for n in s.kafka_nodes] == ["127.0.0.1:19092"]
    assert s.kafka_nodes[0].pidfile == tmp_path / "kafka" / "kafka.pid"
    assert s.minio_nodes[0].pidfile == tmp_path / "minio" / "minio.pid"
    assert s.service_replicas[0].pidfile == tmp_path / "services" / "services.pid"
    assert s.gateway_replicas[0].pidfile == tmp_path / "gateway" / "gateway.pid"
    assert s.grpc_target == "127.0.0.1:50051" and s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.replication_factor == 1


def test_the_ha_profile_runs_three_brokers_four_minio_nodes_and_two_replicas_on_distinct_ports(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path, HA)
    assert s.kafka_bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert [n.controller_port for n in s.kafka_nodes] == [19093, 19095, 19097]
    assert [n.port for n in s.minio_nodes] == [9010, 9011, 9012, 9013]
    assert s.grpc_target == "ipv4:127.0.0.1:50051,127.0.0.1:50052"
    assert [r.port for r in s.gateway_replicas] == [8453, 8454]
    # Clients see one S3 endpoint and one REST endpoint: haproxy's.
    assert s.minio_endpoint == "https://127.0.0.1:9000" and s.gateway_url == "https://127.0.0.1:8443"
    ports = [
        *(p for n in s.kafka_nodes for p in (n.port, n.controller_port)),
        *(p for n in s.minio_nodes for p in (n.port, n.console_port)),
        *(p for r in s.service_replicas for p in (r.port, r.metrics_port)),
        *(r.port for r in s.gateway_replicas),
        s.minio_port,
        s.gateway_port,
    ]
    assert len(ports) == len(set(ports))
    dirs = [n.dir for n in (*s.kafka_nodes, *s.minio_nodes, *s.service_replicas, *s.gateway_replicas)]
    assert len(dirs) == len(set(dirs))
    assert s.replication_factor == 3


def test_ha_brokers_replicate_three_times_acknowledge_on_two_and_never_elect_an_unclean_leader(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path, HA)
    certs = ensure_certs(tmp_path / "certs")
    for node in s.kafka_nodes:
        props = dict(
            line.split("=", 1)
            for line in kafka.server_properties(s, node, Credentials.generate(), certs).splitlines()
            if "=" in line and not line.startswith("#")
        )
        assert props["node.id"] == str(node.node_id)
        assert props["controller.quorum.voters"] == "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
        assert props["default.replication.factor"] == "3" and props["offsets.topic.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2" and props["transaction.state.log.min.isr"] == "2"
        assert props["unclean.leader.election.enable"] == "false"
        assert props["log.dirs"] == str(node.data)
    single = settings(tmp_path, SINGLE)
    text = kafka.server_properties(single, single.kafka_nodes[0], Credentials.generate(), certs)
    assert "min.insync.replicas=1" in text and "broker.session.timeout.ms" not in text


def test_the_balancer_config_checks_every_node_over_tls_and_haproxy_accepts_it(tmp_path: Path) -> None:
    s = settings(tmp_path, HA)
    certs = ensure_certs(tmp_path / "certs")
    text = haproxy.config(s, certs)
    for node in s.minio_nodes:
        assert (
            f"server {node.name} {node.address} check check-ssl verify required ca-file {certs.ca_cert}"
            in text
        )
    for replica in s.gateway_replicas:
        assert f"server {replica.name} {replica.listen} check check-ssl" in text
    assert "uri /minio/health/live" in text and "uri /healthz" in text
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    checked = subprocess.run([haproxy.binary(), "-c", "-q", "-f", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_profile_is_recorded_and_a_stack_with_data_does_not_switch(tmp_path: Path) -> None:
    ha = settings(tmp_path, HA)
    _choose_profile(ha)
    assert recorded_profile(ha.paths) == HA
    (tmp_path / "kafka").mkdir()
    with pytest.raises(StackError, match="down --purge"):
        _choose_profile(settings(tmp_path, SINGLE))
    # Without data (after `down --purge`) the profile may change.
    (tmp_path / "kafka").rmdir()
    _choose_profile(settings(tmp_path, SINGLE))
    assert recorded_profile(ha.paths) == SINGLE


def test_a_state_dir_from_before_profiles_is_single_and_does_not_switch_silently(tmp_path: Path) -> None:
    (tmp_path / "kafka" / "data").mkdir(parents=True)
    paths = StackPaths(tmp_path, tmp_path / "cache")
    assert recorded_profile(paths) == SINGLE
    with pytest.raises(StackError, match="down --purge"):
        _choose_profile(settings(tmp_path, HA))


def test_ports_the_variables_make_collide_are_named_before_anything_starts(tmp_path: Path) -> None:
    s = Settings(StackPaths(tmp_path, tmp_path / "cache"), 19092, 19093, 9000, 9001, 9463, 8443, 9464, HA)
    ports = s.ports()
    assert ports["services-2 (gRPC)"] == ports["services-1 (metrics)"] == 9464
    with pytest.raises(StackError, match="several processes one port"):
        up(s)


def test_the_environment_chooses_the_profile_and_refuses_an_unknown_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PANTHEON_STACK_DIR", str(tmp_path))
    monkeypatch.delenv("PANTHEON_STACK_PROFILE", raising=False)
    assert Settings.from_env().profile == SINGLE
    (tmp_path / "profile").write_text("ha\n")
    assert Settings.from_env().profile == HA  # `down`, `status` and `env` follow the record
    # `down` must stop what `up` started: a disagreeing variable is an error, not a choice.
    monkeypatch.setenv("PANTHEON_STACK_PROFILE", "single")
    with pytest.raises(SettingsError, match="brought up with the ha profile"):
        Settings.from_env()
    monkeypatch.setenv("PANTHEON_STACK_PROFILE", "cluster")
    with pytest.raises(SettingsError, match="PANTHEON_STACK_PROFILE"):
        Settings.from_env()
    (tmp_path / "profile").unlink()
    monkeypatch.setenv("PANTHEON_STACK_PROFILE", "ha")
    assert Settings.from_env().profile == HA


def test_each_node_is_told_apart_by_a_path_so_down_needs_no_port_variables(tmp_path: Path) -> None:
    s = settings(tmp_path, HA)
    moved = Settings(s.paths, 29092, 29093, 29000, 29001, 51051, 28443, 29464, HA)
    for a, b in zip(s.minio_nodes, moved.minio_nodes, strict=True):
        assert minio._expect(a) == minio._expect(b)  # ports do not matter
    assert len({minio._expect(n) for n in s.minio_nodes}) == len(s.minio_nodes)
    assert len({str(n.config) for n in s.kafka_nodes}) == len(s.kafka_nodes)
    assert len({str(r.log) for r in (*s.service_replicas, *s.gateway_replicas)}) == 4
