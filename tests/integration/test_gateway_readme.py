"""The curl examples of the README's "REST API" section run against the stack's gateway."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SECTION = README.split("\n## REST API\n", 1)[1].split("\n## ", 1)[0]
SCRIPTS = re.findall(r"```sh\n(.*?)```", SECTION, re.S)


@pytest.mark.timeout(120)
def test_the_rest_api_examples_work(stack_env: dict[str, str]) -> None:
    assert SCRIPTS, "the REST API section has no sh examples"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(SCRIPTS)],
        env={**os.environ, **stack_env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert '"replayed":false' in out  # the upload
    assert '"media_type":"image/png"' in out  # the multipart upload
    assert '"accepted":2' in out  # the CSV batch
    assert "urn:pantheon:problem:scope_missing" in out  # the error example
