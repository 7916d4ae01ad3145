"""`scripts/run --once` on a fresh private stack: it starts everything, loads
the demo data through the REST API, summarises what was stored and
announced, exits 0, and leaves nothing running."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pantheon.devstack import process
from tests.integration.support import private_stack_env

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_run_once_loads_the_demo_and_stops_what_it_started(tmp_path: Path) -> None:
    state = tmp_path / "stack"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PANTHEON_", "KAFKA_", "MINIO_"))}
    env = private_stack_env(state, clean)
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
