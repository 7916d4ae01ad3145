"""`scripts/run --once` on a fresh private stack: it starts everything, loads
the demo data through the REST API, summarises what was stored and
announced, exits 0, and leaves nothing running."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from pantheon.devstack import process

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_run_once_loads_the_demo_and_stops_what_it_started(tmp_path: Path) -> None:
    names = ["KAFKA", "KAFKA_CONTROLLER", "MINIO", "MINIO_CONSOLE", "GRPC", "GATEWAY", "METRICS"]
    state = tmp_path / "stack"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PANTHEON_", "KAFKA_", "MINIO_"))},
        "PANTHEON_STACK_DIR": str(state),
        **{f"PANTHEON_{name}_PORT": str(port) for name, port in zip(names, _free_ports(7), strict=True)},
    }
    done = subprocess.run(
        [str(ROOT / "scripts/run"), "--once"], env=env, capture_output=True, text=True, timeout=540, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((ROOT / "scripts/demo/data/manifest.json").read_text())
    for entry in manifest:
        assert entry["file"] in done.stdout
    assert "FAILED" not in done.stdout
    assert "1920 records" in done.stdout  # the Vienna sensor day
    summary = next(line for line in done.stdout.splitlines() if "expected events found" in line)
    seen, expected = summary.split()[0], summary.split()[2]
    assert seen == expected and int(seen) >= 1920 + 288 + 4
    assert process.pids_referencing(str(state) + "/") == []
