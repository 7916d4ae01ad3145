"""Pantheon from other languages, with the code generated from proto/:

- a Go program (tests/interop/go) ingests a record batch and an object over
  TLS gRPC, consumes the events over SASL_SSL with franz-go and checks the
  decoded metadata and the CloudEvents headers;
- a TypeScript program (tests/interop/ts) decodes events with generated/ts
  and @bufbuild/protobuf and checks them the same way.

Each checker also reads the other's capture (Go's events checked by
TypeScript, Python's by Go), and both must fail, naming the problem, when a
header or field is missing or wrong.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.interop import provision
from tests.interop.support import DAMAGE, Capture, damaged, python_capture

# Cold provisioning (module downloads, the Go build, npm ci) counts against the
# first test that needs it.
pytestmark = pytest.mark.timeout(900)

EVENTS = 5  # per capture: 2 DataStored (batch + object) and 3 RecordIngested
CHECKERS = ["go", "ts"]


@pytest.fixture(scope="session")
def go_program() -> Path:
    try:
        return provision.go_program()
    except provision.ProvisionError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def node_dir() -> Path:
    try:
        return provision.node_packages()
    except provision.ProvisionError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def go_live(
    go_program: Path, stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One live run of the Go program, with its capture dumped to a file."""
    dump = tmp_path_factory.mktemp("go") / "capture.json"
    done = subprocess.run(
        [str(go_program), "live", "-dump", str(dump), "-wait", "60s"],
        env={**os.environ, **stack_env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return done, dump


@pytest.fixture(scope="module")
def captures(
    go_live: tuple[subprocess.CompletedProcess[str], Path], stack_env: dict[str, str], kafka_config: Any
) -> dict[str, Capture]:
    done, dump = go_live
    assert done.returncode == 0, done.stdout + done.stderr
    return {
        "go": json.loads(dump.read_text()),
        "python": asyncio.run(python_capture(stack_env, kafka_config())),
    }


def run_checker(
    checker: str, capture: Capture, go_program: Path, node_dir: Path, tmp: Path
) -> subprocess.CompletedProcess[str]:
    path = tmp / f"capture-{checker}.json"
    path.write_text(json.dumps(capture, indent=2))
    if checker == "go":
        cmd, cwd = [str(go_program), "check", str(path)], None
    else:
        cmd, cwd = [str(node_dir / "node_modules" / ".bin" / "tsx"), "check.ts", str(path)], node_dir
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_go_program_ingests_over_grpc_and_checks_its_kafka_events(
    go_live: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    done, dump = go_live
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"ok: {EVENTS} Kafka records"), done.stdout
    capture = json.loads(dump.read_text())
    assert capture["source"].startswith("interop-go-")
    topics = sorted(r["topic"] for r in capture["records"])
    assert topics == ["pantheon.data-stored.v1"] * 2 + ["pantheon.records.v1"] * 3


@pytest.mark.parametrize("producer", ["go", "python"])
@pytest.mark.parametrize("checker", CHECKERS)
def test_checker_accepts_the_events_of_real_ingest_calls(
    checker: str,
    producer: str,
    captures: dict[str, Capture],
    go_program: Path,
    node_dir: Path,
    tmp_path: Path,
) -> None:
    capture = captures[producer]
    assert len(capture["records"]) == EVENTS, f"{producer} captured {len(capture['records'])} events"
    done = run_checker(checker, capture, go_program, node_dir, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"ok: {EVENTS} Kafka records of source {capture['source']}"), done.stdout


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("checker", CHECKERS)
def test_checker_fails_loudly_on_a_missing_or_wrong_header_or_field(
    checker: str, damage: str, captures: dict[str, Capture], go_program: Path, node_dir: Path, tmp_path: Path
) -> None:
    bad = damaged(captures["python"], damage)
    done = run_checker(checker, bad, go_program, node_dir, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert DAMAGE[damage][1] in done.stderr, done.stderr
    assert "FAIL:" in done.stderr and not done.stdout


def test_generated_typescript_type_checks_with_the_checker(node_dir: Path) -> None:
    # tsc follows the checker's imports into the generated package, so this
    # type-checks generated/ts under `strict` as a consumer would.
    tsc = node_dir / "node_modules" / ".bin" / "tsc"
    done = subprocess.run(
        [str(tsc), "--noEmit", "-p", "."],
        cwd=node_dir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
