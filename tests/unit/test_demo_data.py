"""The bundled demo data: reproducible from its generator, and valid input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pantheon.ingest.normalise import open_normaliser

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo"
MANIFEST = json.loads((DEMO / "data" / "manifest.json").read_text())


def test_the_committed_data_is_what_the_generator_writes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(DEMO / "make_demo_data.py")],
        env={**os.environ, "PANTHEON_DEMO_OUT": str(tmp_path)},
        check=True,
        timeout=60,
    )
    for made in tmp_path.iterdir():
        assert made.read_bytes() == (DEMO / "data" / made.name).read_bytes(), made.name


def test_the_demo_set_is_small() -> None:
    assert sum(f.stat().st_size for f in (DEMO / "data").iterdir()) < 5 * 2**20


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_every_file_is_valid_for_its_declared_type(entry: dict[str, str]) -> None:
    data = (DEMO / "data" / entry["file"]).read_bytes()
    normaliser = open_normaliser(entry["content_type"], data[:65536])
    for start in range(0, len(data), 65536):
        normaliser.feed(data[start : start + 65536])
    normaliser.finish()
    assert normaliser.record_count > 0 or entry["content_type"].startswith("image/")
