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
        (["keys", "create", "--principal", "p1", "--scopes", ""], "scopes are ingest, read"),
        (["keys", "create", "--principal", "p1", "--scopes", "read,write"], "scopes are ingest, read"),
        (["keys", "revoke", "abcdef123456"], "no key with id"),
        # Principals are source names, as the gateway requires.
        (["keys", "create", "--principal", "Vienna_Sensors"], "such as 'vienna-sensors'"),
        (["keys", "create", "--principal", "p"], "is not a source name"),
        (["keys", "create", "--principal=-p1"], "is not a source name"),
        (["keys", "create", "--principal", "p" * 64], "is not a source name"),
        (["keys", "create", "--principal", "demo city"], "is not a source name"),
        # Data-type patterns: '*', '<prefix>.*' or a data type.
        (["keys", "create", "--principal", "p1", "--data-types", "sens*"], "pattern 'sens*' is invalid"),
        (["keys", "create", "--principal", "p1", "--data-types", "sensor.*,"], "pattern '' is invalid"),
        (["keys", "create", "--principal", "p1", "--data-types", "Sensor.x"], "pattern 'Sensor.x'"),
        (["keys", "create", "--principal", "p1", "--data-types", "a.b.c.d.e"], "pattern 'a.b.c.d.e'"),
    ],
)
def test_bad_key_commands_change_nothing(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text('{"keys": []}\n')
    assert main([*args, "--file", str(keys)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert keys.read_text() == '{"keys": []}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]  # no temporary file left


def test_a_refused_key_creates_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.json"
    assert main(["keys", "create", "--file", str(keys), "--principal", "Vienna_Sensors"]) == 1
    assert "pantheon keys: principal 'Vienna_Sensors' is not a source name" in capsys.readouterr().err
    assert not keys.exists()


def _broken_keys_file(tmp_path: Path) -> tuple[Path, str]:
    """A keys file the gateway cannot load: a good entry and one with a bad principal."""
    keys = tmp_path / "keys.json"
    entries = [
        {"id": "aaaaaaaaaaaa", "principal": "good", "key_sha256": "a" * 64, "scopes": ["read"]},
        {"id": "bbbbbbbbbbbb", "principal": "Bad_Name", "key_sha256": "b" * 64, "scopes": ["read"]},
    ]
    text = json.dumps({"keys": entries}, indent=2) + "\n"
    keys.write_text(text)
    return keys, text


def test_keys_create_refuses_to_add_to_a_file_the_gateway_cannot_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, text = _broken_keys_file(tmp_path)
    assert main(["keys", "create", "--file", str(keys), "--principal", "vienna-sensors"]) == 1
    err = capsys.readouterr().err
    assert "already invalid" in err and "keys[1].principal" in err and "keys_unavailable" in err
    assert keys.read_text() == text


def test_keys_revoke_may_remove_the_entry_that_breaks_the_file_but_no_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, text = _broken_keys_file(tmp_path)
    assert main(["keys", "revoke", "--file", str(keys), "aaaaaaaaaaaa"]) == 1  # still broken after
    assert "keys[0].principal" in capsys.readouterr().err
    assert keys.read_text() == text
    assert main(["keys", "revoke", "--file", str(keys), "bbbbbbbbbbbb"]) == 0  # repairs it
    assert [e["principal"] for e in json.loads(keys.read_text())["keys"]] == ["good"]


def test_keys_list_warns_about_a_file_the_gateway_cannot_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, _ = _broken_keys_file(tmp_path)
    assert main(["keys", "list", "--file", str(keys), "--json"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert "warning: the gateway cannot load" in err and "keys[1].principal" in err


@pytest.mark.parametrize("content", ["{not json", "[]", '{"keys": {}}'])
def test_keys_commands_name_an_unparsable_file_and_leave_it_alone(
    content: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(content)
    for args in (["create", "--principal", "p1"], ["list"], ["revoke", "aaaaaaaaaaaa"]):
        assert main(["keys", *args, "--file", str(keys)]) == 1
        err = capsys.readouterr().err
        assert str(keys) in err and "Traceback" not in err
    assert keys.read_text() == content
