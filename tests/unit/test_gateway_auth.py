"""API keys: hashed storage, lookup, scopes and data-type patterns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.auth import KeyFileError, KeyStore, Principal, hash_key, type_matches


def entry(principal: str, key: str, **extra: Any) -> dict[str, Any]:
    return {"principal": principal, "key_sha256": hash_key(key), "scopes": ["ingest", "read"], **extra}


def store(*entries: dict[str, Any]) -> KeyStore:
    return KeyStore.from_document({"keys": list(entries)})


@pytest.mark.parametrize(
    ("pattern", "data_type", "matches"),
    [
        ("*", "sensor.air_quality", True),
        ("sensor.*", "sensor.air_quality", True),
        ("sensor.*", "sensor.air_quality.pm10", True),
        ("sensor.*", "sensors.air_quality", False),
        ("sensor.*", "sensor", False),
        ("weather.*", "sensor.air_quality", False),
        ("sensor.air_quality", "sensor.air_quality", True),
        ("sensor.air_quality", "sensor.air_quality.pm10", False),
        ("sensor.air_quality.*", "sensor.air_quality.pm10", True),
    ],
)
def test_data_type_patterns(pattern: str, data_type: str, matches: bool) -> None:
    assert type_matches(pattern, data_type) is matches


def test_a_key_is_found_by_its_hash_and_gives_its_principal() -> None:
    keys = store(
        entry("demo-city", "key-a", data_types=["*"]), entry("demo-agency", "key-b", data_types=["weather.*"])
    )
    city = keys.authenticate("key-a")
    agency = keys.authenticate("key-b")
    assert city is not None and city.name == "demo-city"
    assert agency is not None and agency.name == "demo-agency"
    assert keys.authenticate("key-c") is None
    assert keys.authenticate("") is None
    assert keys.authenticate(hash_key("key-a")) is None  # the hash itself is not a key


def test_the_store_keeps_no_plaintext_key() -> None:
    keys = store(entry("demo-city", "very-secret-key"))
    assert "very-secret-key" not in repr(vars(keys))


def test_scopes_and_data_types_bound_what_a_principal_may_do() -> None:
    agency = Principal("demo-agency", frozenset({"ingest", "read"}), ("weather.*", "report.*"))
    viewer = Principal("demo-viewer", frozenset({"read"}), ("*",))
    city = Principal("demo-city", frozenset({"ingest", "read"}), ("*",), may_read_restricted=True)
    assert agency.may_ingest("weather.observation") and not agency.may_ingest("sensor.temperature")
    assert agency.may_read_type("report.incident") and not agency.may_read_type("imagery.uav")
    assert not viewer.may_ingest("sensor.temperature")
    assert viewer.may_read("sensor.temperature", restricted=False)
    assert not viewer.may_read("sensor.temperature", restricted=True)
    assert city.may_read("sensor.temperature", restricted=True)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "JSON object"),
        ({"keys": "x"}, "JSON object"),
        ({"keys": [1]}, "keys[0] is not an object"),
        ({"keys": [{**entry("Demo City", "k")}]}, "keys[0].principal"),
        ({"keys": [{**entry("demo-city", "k"), "key_sha256": "abc"}]}, "keys[0].key_sha256"),
        ({"keys": [{**entry("demo-city", "k"), "scopes": ["write"]}]}, "keys[0].scopes"),
        ({"keys": [{**entry("demo-city", "k"), "scopes": []}]}, "keys[0].scopes"),
        ({"keys": [{**entry("demo-city", "k"), "data_types": ["sens*"]}]}, "keys[0].data_types"),
        ({"keys": [{**entry("demo-city", "k"), "may_read_restricted": "yes"}]}, "may_read_restricted"),
        ({"keys": [entry("demo-city", "k"), entry("demo-agency", "k")]}, "same key twice"),
    ],
)
def test_malformed_key_files_are_refused_with_a_message_naming_the_entry(document: Any, message: str) -> None:
    with pytest.raises(KeyFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        KeyStore.from_document(document)


def test_keys_file_is_loaded_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [entry("demo-city", "k1", data_types=["sensor.*"])]}))
    keys = KeyStore.load(path)
    principal = keys.authenticate("k1")
    assert principal is not None and principal.data_types == ("sensor.*",)
    with pytest.raises(KeyFileError, match="cannot read"):
        KeyStore.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KeyFileError, match="cannot read"):
        KeyStore.load(tmp_path / "bad.json")
