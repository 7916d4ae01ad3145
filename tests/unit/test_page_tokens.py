"""Sealed search page tokens: opaque to clients, tamper-evident, bound to their search."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.errors import InvalidArgument
from pantheon.storage.page_tokens import PageTokens, new_key

KEY = (
    "v1/sensor.temperature/restricted-source/2026/11/25/01/u2edh/"
    "20261125T014732Z_01M8865YZBWNJVKMN2ASJFF6DQ.csv"
)
AFTER = datetime(2026, 11, 25, tzinfo=UTC)
BEFORE = AFTER + timedelta(hours=6)


def _request(**fields: object) -> pb.SearchObjectsRequest:
    req = pb.SearchObjectsRequest(data_type="sensor.temperature", **fields)  # type: ignore[arg-type]
    req.observed_after.FromDatetime(AFTER)
    req.observed_before.FromDatetime(BEFORE)
    return req


def _continuation(token: str, **fields: object) -> pb.SearchObjectsRequest:
    return pb.SearchObjectsRequest(data_type="sensor.temperature", page_token=token, **fields)  # type: ignore[arg-type]


def test_a_token_resumes_its_search_with_its_window() -> None:
    tokens = PageTokens(new_key())
    token = tokens.seal(_request(), AFTER, BEFORE, KEY)
    assert tokens.window_and_resume(_continuation(token)) == (AFTER, BEFORE, KEY)
    repeated = _request(page_token=token, page_size=7)  # the same window repeated, another page size
    assert tokens.window_and_resume(repeated) == (AFTER, BEFORE, KEY)


def test_nothing_inside_a_token_can_be_read() -> None:
    token = PageTokens(new_key()).seal(_request(), AFTER, BEFORE, KEY)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for secret in (b"restricted-source", b"01M8865YZBWNJVKMN2ASJFF6DQ", b"2026"):
        assert secret not in raw
    other = PageTokens(new_key()).seal(_request(), AFTER, BEFORE, KEY)
    assert other != token  # a fresh nonce every time


@pytest.mark.parametrize("position", [0, 5, 20, -1, -17])
def test_a_changed_token_is_refused(position: int) -> None:
    tokens = PageTokens(new_key())
    raw = bytearray(base64.urlsafe_b64decode(tokens.seal(_request(), AFTER, BEFORE, KEY) + "=="))
    raw[position] ^= 0x01
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(InvalidArgument) as caught:
        tokens.window_and_resume(_continuation(tampered))
    assert caught.value.reason == "invalid_page_token"
    assert [v.field for v in caught.value.violations] == ["page_token"]


@pytest.mark.parametrize("garbage", ["", "x", "bm90LWEtdG9rZW4", "!!!!", "A" * 2048])
def test_garbage_and_other_keys_tokens_are_refused(garbage: str) -> None:
    tokens = PageTokens(new_key())
    foreign = PageTokens(new_key()).seal(_request(), AFTER, BEFORE, KEY)
    for token in (garbage, foreign):
        if not token:
            continue
        with pytest.raises(InvalidArgument):
            tokens.window_and_resume(_continuation(token))


def test_a_token_belongs_to_its_filter_and_window() -> None:
    tokens = PageTokens(new_key())
    token = tokens.seal(_request(), AFTER, BEFORE, KEY)
    with pytest.raises(InvalidArgument, match="different search"):
        tokens.window_and_resume(_continuation(token, source="someone-else"))
    moved = _continuation(token)
    moved.observed_before.FromDatetime(BEFORE + timedelta(hours=1))
    with pytest.raises(InvalidArgument, match="different search"):
        tokens.window_and_resume(moved)


def test_the_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PageTokens(b"short")


@pytest.mark.parametrize("value", ["not base64!", "c2hvcnQ=", "QUFB" * 20])
def test_a_token_key_that_is_not_32_base64_bytes_stops_the_services(value: str) -> None:
    from pantheon.config import ConfigError, ServiceSettings
    from tests.unit.test_service_admission import _env

    with pytest.raises(ConfigError, match=r"^PANTHEON_PAGE_TOKEN_KEY: expected the base64 of 32") as caught:
        ServiceSettings.from_env(_env(PANTHEON_PAGE_TOKEN_KEY=value))
    assert value not in str(caught.value)  # a secret is never echoed
    assert ServiceSettings.from_env(_env()).page_token_key is None
    key = base64.b64encode(b"k" * 32).decode()
    assert ServiceSettings.from_env(_env(PANTHEON_PAGE_TOKEN_KEY=key)).page_token_key == b"k" * 32
