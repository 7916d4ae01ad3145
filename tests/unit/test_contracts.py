"""The proto contracts: generated code is current, buf lint is clean, and
nothing breaks wire or source compatibility with the main branch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)


def test_generated_code_matches_protos() -> None:
    done = run("scripts/gen", "--check")
    assert done.returncode == 0, done.stderr


def test_buf_lint_is_clean() -> None:
    done = run("scripts/buf", "lint")
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_breaking_change_against_main() -> None:
    has_main = run("git", "rev-parse", "--verify", "--quiet", "refs/heads/main^{commit}")
    if has_main.returncode != 0:
        pytest.skip("no main branch yet: nothing to compare the protos with")
    in_main = run("git", "ls-tree", "--name-only", "main", "proto/pantheon_api")
    if not in_main.stdout.strip():
        pytest.skip("main has no protos yet: nothing to compare with")
    done = run("scripts/buf", "breaking", "--against", ".git#branch=main")
    assert done.returncode == 0, done.stdout + done.stderr
