"""`pantheon keys` and the gateway agree on what a valid keys file is.

The pantheon package never imports the gateway, so the CLI keeps its own copy
of the keys-file rules (pantheon/cli/keys.py) next to the gateway's
(gateway/auth.py). These tests import both and fail as soon as the copies
drift: the same grammars, the same verdict on a table of principals, scopes,
patterns and whole documents (and on generated ones), and every file the CLI
writes loads in the gateway.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import auth
from gateway.auth import KeyFileError, KeyStore, hash_key
from pantheon.cli import keys as cli_keys
from pantheon.cli import main
from pantheon.cli.rest import CliError
from pantheon.metadata import naming

DIGEST = hash_key("some-key")


def entry(**fields: Any) -> dict[str, Any]:
    return {"principal": "demo-city", "key_sha256": DIGEST, "scopes": ["ingest", "read"], **fields}


def gateway_loads(document: Any) -> bool:
    try:
        KeyStore.from_document(document)
    except KeyFileError:
        return False
    return True


def cli_accepts(check: Any, text: str) -> bool:
    try:
        check(text)
    except CliError:
        return False
    return True


def test_the_grammars_are_the_same() -> None:
    assert cli_keys._SOURCE.pattern == auth._SOURCE.pattern
    assert cli_keys._PATTERN.pattern == auth._PATTERN.pattern
    assert cli_keys._SHA256.pattern == auth._SHA256.pattern
    assert set(cli_keys.SCOPES) == auth.SCOPES
    # A principal is a source: the services' source rule (metadata.proto) is the same.
    assert auth._SOURCE.pattern == f"^{naming._SOURCE.pattern}$"


PRINCIPALS = {
    "vienna-sensors": True,
    "demo-city": True,
    "ab": True,
    "0day": True,
    "a" * 63: True,
    "x-": True,
    "Vienna_Sensors": False,
    "vienna_sensors": False,
    "Vienna-Sensors": False,
    "a": False,
    "a" * 64: False,
    "-leading": False,
    "with space": False,
    "dot.ted": False,
    "vienna-sensors\n": False,
    "": False,
    "wien-ä": False,
}


@pytest.mark.parametrize(("principal", "valid"), PRINCIPALS.items(), ids=repr)
def test_principals(principal: str, valid: bool) -> None:
    assert gateway_loads({"keys": [entry(principal=principal)]}) is valid
    assert cli_accepts(cli_keys.check_principal, principal) is valid


PATTERNS = {
    "*": True,
    "sensor.*": True,
    "sensor.air_quality": True,
    "sensor.air_quality.*": True,
    "weather": True,
    "a.b.c.d": True,
    "a.b.c.d.*": True,
    "sens*": False,
    "sensor.": False,
    "sensor..x": False,
    ".*": False,
    "*.sensor": False,
    "Sensor.x": False,
    "sensor.air-quality": False,
    "a.b.c.d.e": False,
    "s" * 32: False,
    "": False,
    "sensor.*\n": False,
}


@pytest.mark.parametrize(("pattern", "valid"), PATTERNS.items(), ids=repr)
def test_data_type_patterns(pattern: str, valid: bool) -> None:
    assert gateway_loads({"keys": [entry(data_types=[pattern])]}) is valid
    # The CLI strips blanks around each pattern ("weather.*, report.*"), then judges the same.
    assert cli_accepts(cli_keys.check_data_types, pattern) is (valid or PATTERNS.get(pattern.strip(), False))
    if cli_accepts(cli_keys.check_data_types, pattern):
        assert gateway_loads({"keys": [entry(data_types=cli_keys.check_data_types(pattern))]})


SCOPES = {
    "ingest": True,
    "read": True,
    "ingest,read": True,
    "read,ingest,read": True,
    "admin": False,
    "read,write": False,
    "": False,
    "READ": False,
}


@pytest.mark.parametrize(("text", "valid"), SCOPES.items(), ids=repr)
def test_scopes(text: str, valid: bool) -> None:
    # The CLI takes a comma-separated list (and sorts it); the file holds the list.
    assert gateway_loads({"keys": [entry(scopes=text.split(","))]}) is valid
    assert cli_accepts(cli_keys.check_scopes, text) is valid
    if valid:
        assert gateway_loads({"keys": [entry(scopes=cli_keys.check_scopes(text))]})


DOCUMENTS: dict[str, Any] = {
    "empty": {"keys": []},
    "minimal": {"keys": [entry()]},
    "everything": {"keys": [entry(data_types=["sensor.*"], may_read_restricted=True, id="x", note=1)]},
    "two keys": {"keys": [entry(), entry(principal="other", key_sha256=hash_key("other-key"))]},
    "a list": [],
    "no keys": {},
    "keys not a list": {"keys": {}},
    "entry not an object": {"keys": [1]},
    "no principal": {"keys": [{"key_sha256": DIGEST, "scopes": ["read"]}]},
    "principal not a string": {"keys": [entry(principal=7)]},
    "hash too short": {"keys": [entry(key_sha256="abc")]},
    "hash upper-case": {"keys": [entry(key_sha256=DIGEST.upper())]},
    "no scopes": {"keys": [entry(scopes=[])]},
    "scopes not a list": {"keys": [entry(scopes="read")]},
    "scope not a string": {"keys": [entry(scopes=[["read"]])]},
    "data_types empty": {"keys": [entry(data_types=[])]},
    "data_types null": {"keys": [entry(data_types=None)]},
    "data_types a string": {"keys": [entry(data_types="*")]},
    "pattern not a string": {"keys": [entry(data_types=[1])]},
    "restricted a string": {"keys": [entry(may_read_restricted="yes")]},
    "restricted null": {"keys": [entry(may_read_restricted=None)]},
    "same key twice": {"keys": [entry(), entry(principal="other")]},
}


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_whole_documents(name: str) -> None:
    document = DOCUMENTS[name]
    assert (cli_keys.document_problem(document) is None) is gateway_loads(document)


_TEXT = st.text(alphabet="abzAZ09-_.*\n ä", max_size=70)
_JSON_SCALARS = st.none() | st.booleans() | st.integers(-2, 2) | _TEXT
_VALID_PRINCIPALS = [p for p, ok in PRINCIPALS.items() if ok]
_VALID_PATTERNS = [p for p, ok in PATTERNS.items() if ok]
_DIGESTS = [hash_key(str(i)) for i in range(4)]

#: Per field: a valid value, a near miss (valid-looking, wrong) or junk.
_FIELDS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "principal": (st.sampled_from(_VALID_PRINCIPALS), st.sampled_from(list(PRINCIPALS)) | _TEXT),
    "key_sha256": (st.sampled_from(_DIGESTS), st.sampled_from([DIGEST[:-1], DIGEST.upper(), DIGEST + "0"])),
    "scopes": (
        st.lists(st.sampled_from(["ingest", "read"]), min_size=1, max_size=3),
        st.lists(st.sampled_from(["ingest", "read", "admin", "", "Read"]) | _JSON_SCALARS, max_size=3),
    ),
    "data_types": (
        st.lists(st.sampled_from(_VALID_PATTERNS), min_size=1, max_size=3),
        st.lists(st.sampled_from(list(PATTERNS)) | _TEXT, max_size=3),
    ),
    "may_read_restricted": (st.booleans(), st.sampled_from([0, 1, "true", None])),
}


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """Keys documents, mostly valid or nearly so: each field valid, a near miss, junk or absent."""
    entries: list[Any] = []
    for _ in range(draw(st.integers(0, 3))):
        raw: dict[str, Any] = {}
        for name, (valid, near_miss) in _FIELDS.items():
            roll = draw(st.integers(0, 19))
            if roll < 16:
                raw[name] = draw(valid)
            elif roll < 18:
                raw[name] = draw(near_miss)
            elif roll < 19:
                raw[name] = draw(_JSON_SCALARS)
        entries.append(raw if draw(st.integers(0, 19)) else draw(_JSON_SCALARS))
    return {"keys": entries} if draw(st.integers(0, 19)) else draw(st.just(entries) | _JSON_SCALARS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_generated_documents(document: Any) -> None:
    assert (cli_keys.document_problem(document) is None) is gateway_loads(document)


@pytest.mark.parametrize(
    ("options", "scopes", "data_types", "restricted"),
    [
        ([], {"ingest", "read"}, ("*",), False),
        (["--scopes", "read", "--data-types", "weather.*, report.*"], {"read"},
         ("weather.*", "report.*"), False),
        (["--scopes", "ingest", "--data-types", "sensor.air_quality", "--restricted"], {"ingest"},
         ("sensor.air_quality",), True),
    ],
)  # fmt: skip
def test_every_file_the_cli_writes_loads_in_the_gateway(
    options: list[str],
    scopes: set[str],
    data_types: tuple[str, ...],
    restricted: bool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "keys.json"
    base = ["keys", "create", "--file", str(path), "--json"]
    assert main([*base, "--principal", "vienna-sensors", *options]) == 0
    first = json.loads(capsys.readouterr().out)["key"]
    assert main([*base, "--principal", "vienna-sensors"]) == 0  # a second key, same principal
    second = json.loads(capsys.readouterr().out)["key"]
    store = KeyStore.load(path)
    principal = store.authenticate(first)
    assert principal is not None
    assert principal.name == "vienna-sensors"
    assert principal.scopes == scopes
    assert principal.data_types == data_types
    assert principal.may_read_restricted is restricted
    assert store.authenticate(second) is not None
