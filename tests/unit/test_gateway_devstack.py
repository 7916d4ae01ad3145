"""The dev stack's demo API keys: generated once, kept in credentials.json, hashed for the gateway."""

from __future__ import annotations

import json
import stat
from dataclasses import asdict
from pathlib import Path

from gateway.auth import KeyStore
from pantheon.devstack import gateway as devstack_gateway
from pantheon.devstack.credentials import Credentials, load, load_or_create
from pantheon.devstack.paths import StackPaths


def test_the_demo_keys_file_holds_only_hashes_and_the_gateway_accepts_the_keys(tmp_path: Path) -> None:
    creds = Credentials.generate()
    paths = StackPaths(state=tmp_path, cache=tmp_path / "cache")
    written = devstack_gateway.write_keys_file(paths, creds)
    text = written.read_text()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    for key in creds.api_keys().values():
        assert key.startswith("pantheon_") and key not in text
    keys = KeyStore.load(written)
    city = keys.authenticate(creds.api_key_city)
    agency = keys.authenticate(creds.api_key_agency)
    viewer = keys.authenticate(creds.api_key_viewer)
    assert city is not None and city.name == "demo-city" and city.may_read("sensor.x", restricted=True)
    assert agency is not None and agency.may_ingest("weather.wind") and not agency.may_ingest("sensor.x")
    assert viewer is not None and not viewer.may_ingest("sensor.x") and not viewer.may_read("sensor.x", True)


def test_an_older_credentials_file_gets_api_keys_on_up_and_keeps_its_passwords(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    old = {k: v for k, v in asdict(Credentials.generate()).items() if not k.startswith("api_key_")}
    path.write_text(json.dumps(old))
    assert load(path) is not None and load(path).api_key_city == ""  # type: ignore[union-attr]
    upgraded = load_or_create(path)
    assert upgraded.api_key_city and upgraded.api_key_agency and upgraded.api_key_viewer
    assert upgraded.kafka_admin_password == old["kafka_admin_password"]
    assert load_or_create(path) == upgraded  # stable from now on
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
