"""ULIDs: encoding, ordering, determinism and validation."""

from __future__ import annotations

import hashlib
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pantheon.metadata.ulid import MAX_TIME_MS, is_ulid, new_ulid, ulid_from_key, ulid_time_ms

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

times = st.integers(min_value=0, max_value=MAX_TIME_MS)
randomness = st.binary(min_size=10, max_size=10)


def test_known_timestamp_encoding() -> None:
    # The time prefix from the example in the ULID specification's README.
    assert new_ulid(1469918176385, bytes(10)).startswith("01ARYZ6S41")


def test_extremes() -> None:
    assert new_ulid(0, bytes(10)) == "0" * 26
    assert new_ulid(MAX_TIME_MS, b"\xff" * 10) == "7" + "Z" * 25


def test_default_is_now_and_random() -> None:
    before = time.time_ns() // 1_000_000
    a, b = new_ulid(), new_ulid()
    after = time.time_ns() // 1_000_000
    assert is_ulid(a) and is_ulid(b)
    assert a != b
    assert before <= ulid_time_ms(a) <= after


@given(times, randomness)
def test_time_round_trips(ms: int, rand: bytes) -> None:
    ulid = new_ulid(ms, rand)
    assert is_ulid(ulid)
    assert ulid_time_ms(ulid) == ms


@given(times, times, randomness, randomness)
def test_string_order_is_time_order(ms_a: int, ms_b: int, rand_a: bytes, rand_b: bytes) -> None:
    a, b = new_ulid(ms_a, rand_a), new_ulid(ms_b, rand_b)
    if ms_a < ms_b:
        assert a < b
    elif ms_a > ms_b:
        assert a > b
    else:
        assert (a < b) == (rand_a < rand_b)


def test_key_derivation_is_deterministic() -> None:
    key = b"vienna-sensors/batch-2024-06-14-0001"
    first = ulid_from_key(1_718_357_412_000, key)
    assert ulid_from_key(1_718_357_412_000, key) == first
    assert ulid_from_key(1_718_357_412_000, key + b"x") != first
    assert ulid_time_ms(first) == 1_718_357_412_000


@given(times, st.binary(max_size=64))
def test_key_derivation_uses_sha256_prefix(ms: int, key: bytes) -> None:
    ulid = ulid_from_key(ms, key)
    # Decode the 80 random bits by hand rather than through the module under test.
    value = 0
    for c in ulid:
        value = (value << 5) | CROCKFORD.index(c)
    assert value & ((1 << 80) - 1) == int.from_bytes(hashlib.sha256(key).digest()[:10], "big")


@pytest.mark.parametrize(
    ("ms", "rand"),
    [(-1, bytes(10)), (MAX_TIME_MS + 1, bytes(10)), (0, bytes(9)), (0, bytes(11))],
)
def test_out_of_range_inputs_are_refused(ms: int, rand: bytes) -> None:
    with pytest.raises(ValueError):
        new_ulid(ms, rand)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "01ARZ3NDEKTSV4RRFFQ69G5FA",  # 25 characters
        "01ARZ3NDEKTSV4RRFFQ69G5FAVX",  # 27 characters
        "01arz3ndektsv4rrffq69g5fav",  # lower case
        "01ARZ3NDEKTSV4RRFFQ69G5FAI",  # I is not in the alphabet
        "01ARZ3NDEKTSV4RRFFQ69G5FAL",
        "01ARZ3NDEKTSV4RRFFQ69G5FAO",
        "01ARZ3NDEKTSV4RRFFQ69G5FAU",
        "81ARZ3NDEKTSV4RRFFQ69G5FAV",  # more than 128 bits
        "01ARZ3NDEKTSV4RRFFQ69G5FAV\n",
    ],
)
def test_invalid_strings_are_not_ulids(text: str) -> None:
    assert not is_ulid(text)
    with pytest.raises(ValueError):
        ulid_time_ms(text)


def test_non_strings_are_not_ulids() -> None:
    assert not is_ulid(None)
    assert not is_ulid(b"01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert is_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAV")
