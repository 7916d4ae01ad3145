"""The `pantheon` CLI against the running stack, as a data provider uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.samples import make_png

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


def pantheon(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pantheon", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def _status_with(env: dict[str, str], key: str) -> int:
    response = httpx.get(
        f"{env['PANTHEON_GATEWAY_URL']}/v1/objects",
        params={"data_type": "sensor.temperature"},
        headers={"Authorization": f"Bearer {key}"},
        verify=env["PANTHEON_CA_FILE"],
        timeout=10,
    )
    return response.status_code


def _eventually(want: int, env: dict[str, str], key: str) -> None:
    for _ in range(50):
        if _status_with(env, key) == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"gateway never answered {want} for the key")


def test_a_provider_creates_a_key_pushes_a_folder_resumably_and_reads_back(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    principal = f"test-cli-{uuid.uuid4().hex[:8]}"
    created = pantheon(
        stack_env, "keys", "create", "--principal", principal, "--data-types", "imagery.*", "--json"
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    env = {**stack_env, "PANTHEON_API_KEY": key["key"]}
    _eventually(403, env, key["key"])  # known key (403: sensor.* is outside its scopes)

    folder = tmp_path / "flight-7"
    folder.mkdir()
    png = make_png()
    for i in range(2):
        (folder / f"tile-{i}.png").write_bytes(png)  # the same bytes, taken at two places
        (folder / f"tile-{i}.png.meta.json").write_text(
            json.dumps({"lat": 38.1 + i / 100, "lon": 23.9, "observed_at": f"2026-07-23T14:2{i}:00Z"})
        )
    args = ["ingest", str(folder), "--data-type", "imagery.uav", "--entity-id", "uav-7", "--json"]
    first = pantheon(env, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    results = [json.loads(line) for line in first.stdout.splitlines()]
    assert len(results) == 2 and not any(r["replayed"] for r in results)
    assert len({r["id"] for r in results}) == 2  # metadata differs, so two objects

    again = pantheon(env, *args)  # an interrupted run, started again
    assert [json.loads(line)["replayed"] for line in again.stdout.splitlines()] == [True, True]

    found = pantheon(
        env, "search", "--data-type", "imagery.uav", "--source", principal,
        "--since", "2026-07-23T00:00:00Z", "--until", "2026-07-24T00:00:00Z", "--all", "--json",
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert sorted(json.loads(line)["id"] for line in found.stdout.splitlines()) == sorted(
        r["id"] for r in results
    )

    out = tmp_path / "copy.png"
    got = pantheon(env, "get", results[0]["id"], "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == png

    listed = pantheon(stack_env, "keys", "list", "--json")
    assert key["id"] in [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    assert key["key"] not in listed.stdout
    revoked = pantheon(stack_env, "keys", "revoke", key["id"])
    assert revoked.returncode == 0, revoked.stderr
    _eventually(401, env, key["key"])


def test_records_with_a_bad_row_report_it_and_fail(stack_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "readings.csv"
    path.write_text(
        "entity_id,observed_at,lat,lon,temperature_c\n"
        "vie-1,2026-07-23T10:00:00Z,48.2,16.37,31.5\n"
        "vie-2,2026-07-23T10:00:00Z,123.0,16.37,30.1\n"
    )
    done = pantheon(
        stack_env,
        "records",
        str(path),
        "--data-type",
        "sensor.temperature",
        "--label",
        f"run={uuid.uuid4().hex}",
    )
    assert done.returncode == 1
    assert "1 records accepted, 1 rejected" in done.stdout
    assert "record 1:" in done.stdout and "lat" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "/no/such/file.csv", "--data-type", "sensor.temperature"], "no such file"),
        (["ingest", "README.md"], "missing data_type, lat, lon"),
        (["records", "README.md", "--data-type", "sensor.temperature"], "must be CSV or NDJSON"),
        (["get", "not-an-id"], "HTTP 4"),
    ],
)
def test_mistakes_get_a_clear_message_and_a_non_zero_exit(
    stack_env: dict[str, str], args: list[str], message: str
) -> None:
    done = pantheon(stack_env, *args)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--principal", "Vienna_Sensors"], "is not a source name"),
        (["--principal", "vienna-sensors", "--data-types", "sens*"], "pattern 'sens*' is invalid"),
        (["--principal", "vienna-sensors", "--scopes", "admin"], "scopes are ingest, read"),
    ],
)
def test_keys_create_refuses_what_the_gateway_could_not_load(
    stack_env: dict[str, str], args: list[str], message: str
) -> None:
    # Only refusals: breaking the shared stack's keys file would fail every
    # other test's requests with 503 (that path is covered by unit tests).
    keys_file = Path(stack_env["PANTHEON_API_KEYS_FILE"])
    before = keys_file.read_bytes()
    done = pantheon(stack_env, "keys", "create", *args)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""  # no key shown
    assert keys_file.read_bytes() == before
    assert _status_with(stack_env, stack_env["PANTHEON_API_KEY"]) != 503  # the gateway still loads it
