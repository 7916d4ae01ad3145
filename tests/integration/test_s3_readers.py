"""Read-only S3 keys for downstream readers, against the shared stack's MinIO.

Through the REST gateway (as demo-city, which may ingest RESTRICTED data) one
PUBLIC and one RESTRICTED `weather.observation` object are stored; the
RESTRICTED one lands in `pantheon-weather-restricted`. Readers made with
`pantheon s3-reader create` then read MinIO directly with minio-py:

- `--data-types 'weather.*'` reads and lists the public object; it cannot
  list or read the restricted bucket, `pantheon-sensor` or `pantheon-index`,
  and cannot write or delete anything;
- the same with `--restricted` reads the restricted object too;
- an exact type is limited to its own object names;
- a revoked reader's key stops working.

Every reader is revoked at the end, whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Gateway, object_params, unique_type
from minio import Minio
from minio.error import S3Error

from pantheon.devstack import minio_admin

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
PANTHEON = ROOT / ".venv" / "bin" / "pantheon"
BODY = b'{"station":"s3-reader-test","t":21.5}\n'
DATA_TYPE = "weather.observation"


@pytest.fixture(scope="module")
def gw(stack_env: dict[str, str]) -> Gateway:
    return Gateway.from_env(stack_env)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PANTHEON), "s3-reader", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


Reader = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def make_reader(stack_env: dict[str, str]) -> Iterator[Reader]:
    """Factory: make_reader(*create_args) -> the `create --json` answer, revoked at teardown."""
    names: list[str] = []

    def make(*args: str) -> dict[str, Any]:
        name = f"itest-{uuid.uuid4().hex[:10]}"
        names.append(name)
        done = _cli(stack_env, "create", name, *args, "--json")
        assert done.returncode == 0, done.stderr
        created: dict[str, Any] = json.loads(done.stdout)
        assert created["name"] == name and created["access_key"] == f"pantheon-reader-{name}"
        return created

    yield make
    for name in names:
        _cli(stack_env, "revoke", name)


def _client(env: dict[str, str], reader: dict[str, Any]) -> Minio:
    return minio_admin.s3_client(
        env["MINIO_ENDPOINT"].removeprefix("https://"),
        reader["access_key"],
        reader["secret_key"],
        Path(env["PANTHEON_CA_FILE"]),
    )


def _upload(client: httpx.Client, data_type: str, classification: str) -> dict[str, Any]:
    response = client.post(
        "/v1/objects",
        params=object_params(data_type, classification=classification),
        content=BODY,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _hour_prefix(key: str) -> str:
    """`v1/<type>/<source>/<yyyy>/<mm>/<dd>/<hh>/` of an object name."""
    return "/".join(key.split("/")[:7]) + "/"


def _denied(call: Callable[[], Any]) -> None:
    with pytest.raises(S3Error) as caught:
        call()
    assert caught.value.code == "AccessDenied", caught.value.code


def _listed(s3: Minio, bucket: str, prefix: str) -> list[str]:
    return [o.object_name or "" for o in s3.list_objects(bucket, prefix=prefix, recursive=True)]


@pytest.fixture(scope="module")
def stored(gw: Gateway) -> dict[str, dict[str, Any]]:
    """A PUBLIC and a RESTRICTED weather.observation object, and a PUBLIC sensor one."""
    with gw.client(gw.key) as city:
        return {
            "public": _upload(city, DATA_TYPE, "public"),
            "restricted": _upload(city, DATA_TYPE, "restricted"),
            "sensor": _upload(city, unique_type("sensor"), "public"),
        }


def test_restricted_objects_land_in_the_restricted_bucket(
    stored: dict[str, dict[str, Any]], minio_root_client: Minio
) -> None:
    public, restricted = stored["public"], stored["restricted"]
    assert public["bucket"] == "pantheon-weather"
    assert restricted["bucket"] == "pantheon-weather-restricted"
    stat = minio_root_client.stat_object("pantheon-weather-restricted", restricted["key"])
    assert stat.metadata.get("x-amz-server-side-encryption")
    with pytest.raises(S3Error) as caught:
        minio_root_client.stat_object("pantheon-weather", restricted["key"])
    assert caught.value.code in ("NoSuchKey", "NoSuchObject")
    # Every restricted bucket exists, encrypted by default.
    for domain in ("sensor", "weather", "imagery", "report", "hazard", "infrastructure", "simulation"):
        config = minio_root_client.get_bucket_encryption(f"pantheon-{domain}-restricted")
        assert config is not None and config.rule.sse_algorithm == "AES256"


def test_a_domain_reader_reads_and_lists_only_public_data_and_writes_nothing(
    stored: dict[str, dict[str, Any]],
    make_reader: Reader,
    stack_env: dict[str, str],
    minio_root_client: Minio,
) -> None:
    public, restricted, sensor = stored["public"], stored["restricted"], stored["sensor"]
    reader = make_reader("--data-types", "weather.*")
    assert reader["readable"] == ["pantheon-weather/*"] and reader["restricted"] is False
    s3 = _client(stack_env, reader)

    # Reads and lists the public object.
    assert s3.get_object("pantheon-weather", public["key"]).read() == BODY
    assert public["key"] in _listed(s3, "pantheon-weather", _hour_prefix(public["key"]))

    # Not a byte, not a name of the restricted one.
    _denied(lambda: s3.get_object("pantheon-weather-restricted", restricted["key"]).read())
    _denied(lambda: s3.stat_object("pantheon-weather-restricted", restricted["key"]))
    _denied(lambda: _listed(s3, "pantheon-weather-restricted", ""))
    _denied(lambda: _listed(s3, "pantheon-weather-restricted", _hour_prefix(restricted["key"])))

    # Nothing of another domain, nothing of the index (which describes RESTRICTED objects too).
    _denied(lambda: s3.get_object("pantheon-sensor", sensor["key"]).read())
    _denied(lambda: _listed(s3, "pantheon-sensor", ""))
    _denied(lambda: s3.get_object("pantheon-index", f"ids/{restricted['id']}").read())
    _denied(lambda: _listed(s3, "pantheon-index", "ids/"))

    # No writes, no deletes, anywhere.
    for bucket in ("pantheon-weather", "pantheon-weather-restricted", "pantheon-index"):
        _denied(lambda b=bucket: s3.put_object(b, f"v1/{DATA_TYPE}/intruder.json", BytesIO(b"{}"), 2))
    _denied(lambda: s3.remove_object("pantheon-weather", public["key"]))
    assert minio_root_client.stat_object("pantheon-weather", public["key"]).size == len(BODY)

    # `list` shows it without its secret; `revoke` ends it at once.
    listing = _cli(stack_env, "list", "--json")
    assert listing.returncode == 0, listing.stderr
    mine = [json.loads(line) for line in listing.stdout.splitlines() if reader["name"] in line]
    assert mine == [
        {
            "name": reader["name"],
            "access_key": reader["access_key"],
            "status": "enabled",
            "policies": [reader["access_key"]],
            "readable": ["pantheon-weather/*"],
        }
    ]
    assert reader["secret_key"] not in listing.stdout
    revoked = _cli(stack_env, "revoke", reader["name"])
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(S3Error) as caught:
        s3.get_object("pantheon-weather", public["key"]).read()
    assert caught.value.code in ("InvalidAccessKeyId", "AccessDenied")


def test_a_restricted_reader_reads_the_restricted_bucket_too_but_never_the_index(
    stored: dict[str, dict[str, Any]], make_reader: Reader, stack_env: dict[str, str]
) -> None:
    public, restricted = stored["public"], stored["restricted"]
    reader = make_reader("--data-types", "weather.*", "--restricted")
    s3 = _client(stack_env, reader)
    assert s3.get_object("pantheon-weather-restricted", restricted["key"]).read() == BODY
    assert restricted["key"] in _listed(s3, "pantheon-weather-restricted", _hour_prefix(restricted["key"]))
    assert s3.get_object("pantheon-weather", public["key"]).read() == BODY
    _denied(lambda: s3.get_object("pantheon-index", f"ids/{restricted['id']}").read())
    _denied(lambda: _listed(s3, "pantheon-sensor-restricted", ""))
    _denied(lambda: s3.put_object("pantheon-weather-restricted", "v1/x.json", BytesIO(b"{}"), 2))


def test_an_exact_type_reader_is_limited_to_that_type(
    gw: Gateway, stored: dict[str, dict[str, Any]], make_reader: Reader, stack_env: dict[str, str]
) -> None:
    with gw.client(gw.key) as city:
        other = _upload(city, unique_type("weather"), "public")
    reader = make_reader("--data-types", DATA_TYPE)
    assert reader["readable"] == [f"pantheon-weather/v1/{DATA_TYPE}/*"]
    s3 = _client(stack_env, reader)
    public = stored["public"]
    assert s3.get_object("pantheon-weather", public["key"]).read() == BODY
    assert public["key"] in _listed(s3, "pantheon-weather", _hour_prefix(public["key"]))
    _denied(lambda: s3.get_object("pantheon-weather", other["key"]).read())
    _denied(lambda: _listed(s3, "pantheon-weather", _hour_prefix(other["key"])))
    _denied(lambda: _listed(s3, "pantheon-weather", "v1/"))


def test_a_search_covers_the_restricted_bucket_only_with_the_grant(gw: Gateway) -> None:
    data_type = unique_type("weather")
    with gw.client(gw.key) as city, gw.client(gw.key_readonly) as viewer:
        public = _upload(city, data_type, "public")
        secret = _upload(city, data_type, "restricted")
        assert secret["bucket"] == "pantheon-weather-restricted"
        seen_by_city = city.get("/v1/objects", params={"data_type": data_type}).json()["objects"]
        assert sorted(o["id"] for o in seen_by_city) == sorted([public["id"], secret["id"]])
        seen_by_viewer = viewer.get("/v1/objects", params={"data_type": data_type}).json()["objects"]
        assert [o["id"] for o in seen_by_viewer] == [public["id"]]


def test_the_readme_example_runs(
    stored: dict[str, dict[str, Any]], make_reader: Reader, stack_env: dict[str, str]
) -> None:
    readme = (ROOT / "README.md").read_text()
    (code,) = re.findall(r"<!-- s3-reader-example -->\n```python\n(.*?)```", readme, re.S)
    reader = make_reader("--data-types", "weather.*")
    env = {**stack_env, "READER_ACCESS_KEY": reader["access_key"], "READER_SECRET_KEY": reader["secret_key"]}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("v1/weather.")


def test_bad_input_creates_nothing(stack_env: dict[str, str]) -> None:
    name = f"itest-{uuid.uuid4().hex[:10]}"
    for args in (["--data-types", "telemetry.*"], ["--data-types", "weather"], ["--data-types", ""]):
        done = _cli(stack_env, "create", name, *args)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert name not in _cli(stack_env, "list").stdout
    gone = _cli(stack_env, "revoke", name)
    assert gone.returncode == 1 and f"no reader {name}" in gone.stderr
