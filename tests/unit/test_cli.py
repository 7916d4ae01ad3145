"""The CLI's own input checks: bad sidecars and bad key commands fail with a
clear message and change nothing (no request is sent, no key file written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pantheon.cli import main

GATEWAY = {"PANTHEON_GATEWAY_URL": "https://127.0.0.1:1", "PANTHEON_API_KEY": "unused"}


@pytest.mark.parametrize("sidecar", ["{not json", "[1, 2]"])
def test_a_broken_sidecar_is_named_and_nothing_is_sent(
    sidecar: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in GATEWAY.items():
        monkeypatch.setenv(name, value)  # port 1: any request would fail differently
    data = tmp_path / "tile.png"
    data.write_bytes(b"\x89PNG")
    (tmp_path / "tile.png.meta.json").write_text(sidecar)
    assert main(["ingest", str(data), "--data-type", "imagery.uav", "--lat", "1", "--lon", "2"]) == 1
    err = capsys.readouterr().err
    assert "tile.png.meta.json" in err and "Traceback" not in err


def test_keys_create_list_revoke_keep_only_hashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.json"
    assert main(["keys", "create", "--file", str(keys), "--principal", "vienna-sensors", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    stored = keys.read_text()
    assert created["key"] not in stored and created["id"] in stored
    assert keys.stat().st_mode & 0o077 == 0
    assert main(["keys", "revoke", "--file", str(keys), created["id"]]) == 0
    assert json.loads(keys.read_text())["keys"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "--principal", "p1", "--scopes", "admin"], "scopes are ingest, read"),
        (["keys", "revoke", "abcdef123456"], "no key with id"),
    ],
)
def test_bad_key_commands_change_nothing(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text('{"keys": []}\n')
    assert main([*args, "--file", str(keys)]) == 1
    assert message in capsys.readouterr().err
    assert keys.read_text() == '{"keys": []}\n'
