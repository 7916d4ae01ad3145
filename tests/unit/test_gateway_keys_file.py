"""The API keys file fails closed: when it goes missing, unreadable or invalid
after start-up, the gateway forgets every key (never keeps the last good ones),
answers every presented key with 503 `keys_unavailable`, reports not ready,
and recovers at the next check after the file is fixed.

The stores here re-check the file at every call (`check_interval_s=0`); the
gateway's default is at most once a second.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import KeyFileError, KeyStore, KeysUnavailable, hash_key
from gateway.settings import GatewaySettings

CITY, VIEWER, REVOKED = "city-key", "viewer-key", "revoked-key"
PROBLEM = "application/problem+json"


def entry(principal: str, key: str, scopes: list[str]) -> dict[str, Any]:
    return {"principal": principal, "key_sha256": hash_key(key), "scopes": scopes}


GOOD = {
    "keys": [
        entry("demo-city", CITY, ["ingest", "read"]),
        entry("demo-viewer", VIEWER, ["read"]),
        entry("demo-old", REVOKED, ["read"]),
    ]
}


def write(path: Path, document: Any) -> None:
    # Atomic, as `pantheon keys` writes; a new inode, so the change is always seen.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(document if isinstance(document, str) else json.dumps(document))
    tmp.replace(path)


def _not_json(path: Path) -> None:
    write(path, '{"keys": [')


def _wrong_shape(path: Path) -> None:
    write(path, {"key": []})


def _bad_principal(path: Path) -> None:
    write(path, {"keys": [*GOOD["keys"][:2], entry("Vienna_Sensors", "new-key", ["read"])]})


def _bad_pattern(path: Path) -> None:
    write(path, {"keys": [{**GOOD["keys"][0], "data_types": ["sens*"]}, GOOD["keys"][1]]})


def _unhashable_scope(path: Path) -> None:
    write(path, {"keys": [{**GOOD["keys"][0], "scopes": [{"read": True}]}]})


def _not_utf8(path: Path) -> None:
    path.write_bytes(b'{"keys": ["\xff"]}')


def _too_deep(path: Path) -> None:
    write(path, "[" * 100_000 + "]" * 100_000)


def _missing(path: Path) -> None:
    path.unlink()


def _a_directory(path: Path) -> None:  # unreadable even for root (chmod 000 is not)
    path.unlink()
    path.mkdir()


BREAKAGES: dict[str, Callable[[Path], None]] = {
    "not JSON": _not_json,
    "wrong shape": _wrong_shape,
    "bad principal": _bad_principal,
    "bad pattern": _bad_pattern,
    "unhashable scope": _unhashable_scope,
    "not UTF-8": _not_utf8,
    "nested too deeply": _too_deep,
    "missing": _missing,
    "unreadable": _a_directory,
}


def repair(path: Path, document: Any = GOOD) -> None:
    if path.is_dir():
        path.rmdir()
    write(path, document)


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    write(path, GOOD)
    return path


# -- the store ---------------------------------------------------------------


@pytest.mark.parametrize("breakage", list(BREAKAGES), ids=list(BREAKAGES))
def test_a_keys_file_broken_after_start_refuses_every_key_until_it_is_fixed(
    breakage: str, keys_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = KeyStore.load(keys_file, check_interval_s=0)
    city = store.authenticate(CITY)
    assert city is not None and city.name == "demo-city" and store.problem() is None

    caplog.set_level(logging.INFO, logger="gateway.auth")
    BREAKAGES[breakage](keys_file)
    for key in (CITY, VIEWER, "unknown-key", ""):  # a key valid a moment ago is no exception
        with pytest.raises(KeysUnavailable):
            store.authenticate(key)
    assert len(store) == 0
    problem = store.problem()
    assert problem is not None and str(keys_file) in problem

    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, "one log line per breakage, not one per request"
    line = errors[0].getMessage()
    assert str(keys_file) in line
    for secret in (CITY, VIEWER, hash_key(CITY), hash_key(VIEWER)):
        assert secret not in line

    repair(keys_file)
    assert store.problem() is None
    viewer = store.authenticate(VIEWER)
    assert viewer is not None and viewer.name == "demo-viewer"
    assert len(store) == 3
    assert any("recovered" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_a_key_revoked_while_the_file_was_broken_stays_refused(keys_file: Path) -> None:
    store = KeyStore.load(keys_file, check_interval_s=0)
    assert store.authenticate(REVOKED) is not None
    _not_json(keys_file)
    with pytest.raises(KeysUnavailable):
        store.authenticate(REVOKED)
    repair(keys_file, {"keys": GOOD["keys"][:2]})  # fixed, and the old key revoked
    assert store.authenticate(REVOKED) is None
    assert store.authenticate(CITY) is not None


def test_a_file_fixed_in_place_is_picked_up_even_if_its_stamp_did_not_change(keys_file: Path) -> None:
    # Fixing a permission or a parent directory changes nothing a stat of the
    # file shows; while broken, every check re-reads the file.
    store = KeyStore.load(keys_file, check_interval_s=0)
    _a_directory(keys_file)
    with pytest.raises(KeysUnavailable):
        store.authenticate(CITY)
    repair(keys_file)
    store._stamp = KeyStore._stamp_of(keys_file)  # as if the fix left the stamp as last seen
    assert store.authenticate(CITY) is not None


def test_the_file_is_checked_at_most_once_per_interval(keys_file: Path) -> None:
    store = KeyStore.load(keys_file)  # the default: once a second
    _not_json(keys_file)
    assert store.authenticate(CITY) is not None  # checked less than a second ago
    store._checked -= 1.0
    with pytest.raises(KeysUnavailable):
        store.authenticate(CITY)


def test_a_store_without_a_file_is_never_broken() -> None:
    store = KeyStore.from_document(GOOD)
    assert store.problem() is None and store.authenticate(CITY) is not None


def test_at_start_up_a_bad_file_stops_the_gateway_naming_the_file(keys_file: Path, tmp_path: Path) -> None:
    _bad_principal(keys_file)
    with pytest.raises(KeyFileError, match=r"keys\.json is invalid: keys\[2\]\.principal"):
        KeyStore.load(keys_file)
    with pytest.raises(KeyFileError, match=r"keys\.json"):
        create_app(settings(tmp_path, keys_file))


# -- the gateway -------------------------------------------------------------


def settings(tmp_path: Path, keys_file: Path) -> GatewaySettings:
    """Settings with placeholder TLS files (the channel never connects)."""
    values: dict[str, Any] = {"grpc_target": "127.0.0.1:1", "api_keys_file": str(keys_file)}
    for name, field in GatewaySettings.model_fields.items():
        if field.is_required() and name not in values and name.endswith("_file"):
            placeholder = tmp_path / f"{name}.pem"
            placeholder.write_text("placeholder")
            values[name] = str(placeholder)
    return GatewaySettings(**values)


@pytest.fixture
async def gateway(tmp_path: Path, keys_file: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = KeyStore.load(keys_file, check_interval_s=0)
    app = create_app(settings(tmp_path, keys_file), keys=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://gateway.test") as http:
            yield http


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def accepted(http: httpx.AsyncClient, key: str) -> bool:
    """Whether the gateway takes `key`: a read-only key may not ingest (403 after auth, no service call)."""
    response = await http.post("/v1/records", headers=auth(key), json={"records": []})
    return response.status_code == 403 and response.json()["reason"] == "scope_missing"


async def readiness_of_keys(http: httpx.AsyncClient) -> str:
    response = await http.get("/readyz")  # the services are unreachable here: always 503
    assert response.status_code == 503 and response.headers["content-type"] == PROBLEM
    state: str = response.json()["checks"]["api_keys"]
    return state


async def test_the_gateway_answers_503_keys_unavailable_while_the_file_is_broken(
    gateway: httpx.AsyncClient, keys_file: Path
) -> None:
    assert await accepted(gateway, VIEWER)
    assert await readiness_of_keys(gateway) == "SERVING"

    _bad_principal(keys_file)
    requests = [
        gateway.post("/v1/records", headers=auth(VIEWER), json={"records": []}),
        gateway.get("/v1/objects", params={"data_type": "sensor.x"}, headers=auth(CITY)),
        gateway.get("/v1/objects/01JD5Q3W6Z8K4T2M9N7P5R3S1V", headers=auth(CITY)),
        gateway.get("/v1/objects/not-an-id/metadata", headers=auth("unknown-key")),
    ]
    for pending in requests:
        response = await pending
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == PROBLEM
        assert int(response.headers["retry-after"]) > 0
        assert "www-authenticate" not in response.headers  # not a statement about the key
        body = response.json()
        assert body["reason"] == "keys_unavailable"
        assert body["type"] == "urn:pantheon:problem:keys_unavailable"
        assert str(keys_file) not in response.text  # the file's name is for the log only
    missing = await gateway.get("/v1/objects", params={"data_type": "sensor.x"})
    assert missing.status_code == 401  # no key at all: that much is certain either way

    ready = await gateway.get("/readyz")
    assert ready.json()["checks"]["api_keys"] == "NOT_SERVING"
    assert "api_keys is NOT_SERVING" in ready.json()["detail"]
    assert (await gateway.get("/healthz")).status_code == 200  # alive, just not ready

    repair(keys_file)
    assert await readiness_of_keys(gateway) == "SERVING"  # readyz alone notices the repair
    assert await accepted(gateway, VIEWER)


async def test_a_missing_keys_file_is_not_ready_and_recovers(
    gateway: httpx.AsyncClient, keys_file: Path
) -> None:
    _missing(keys_file)
    assert await readiness_of_keys(gateway) == "NOT_SERVING"
    response = await gateway.post("/v1/records", headers=auth(VIEWER), json={"records": []})
    assert response.status_code == 503 and response.json()["reason"] == "keys_unavailable"
    repair(keys_file)
    assert await accepted(gateway, VIEWER)
    assert await readiness_of_keys(gateway) == "SERVING"
