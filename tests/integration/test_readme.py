"""The README's examples run: every ```python block marked `<!-- readme-test -->`
and every `pantheon` and `scripts/grpcurl` shell command in it, against the
real stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"<!-- readme-test -->\n```python\n(.*?)```", README, re.S)
COMMANDS = re.findall(r"^((?:\.venv/bin/pantheon|scripts/grpcurl) .*?)(?:\s+#.*)?$", README, re.M)

pytestmark = pytest.mark.timeout(120)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2 and len(COMMANDS) >= 2


def _runs(command: str | list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        command,
        shell=isinstance(command, str),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()


@pytest.mark.parametrize("code", BLOCKS, ids=[f"python-{i}" for i in range(len(BLOCKS))])
def test_python_example_runs(code: str, stack_env: dict[str, str]) -> None:
    _runs([sys.executable, "-c", code], stack_env)


@pytest.mark.parametrize("command", COMMANDS)
def test_shell_example_runs(command: str, stack_env: dict[str, str]) -> None:
    _runs(command, stack_env)
