"""Range and conditional requests: which bytes to send, when to answer 416 or 304."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ranges import ByteRange, RangeNotSatisfiable, none_match, parse_range, range_applies

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=100-", ByteRange(100, 999)),
        ("bytes=-10", ByteRange(990, 999)),
        ("bytes=-5000", ByteRange(0, 999)),  # a suffix longer than the object is the whole object
        ("bytes=990-5000", ByteRange(990, 999)),  # the end is clamped
        ("bytes=999-999", ByteRange(999, 999)),
        (" bytes=1-2 ", ByteRange(1, 2)),
    ],
)
def test_single_ranges_are_served(header: str, expected: ByteRange) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=5-1",  # last before first: invalid, so ignored
        "bytes=0-1,5-6",  # several ranges: the whole object instead
        "items=0-1",
        "bytes=-",
        "bytes=a-b",
        "bytes 0-1",
        "bytes=" + "9" * 30 + "-",
    ],
)
def test_other_range_headers_are_ignored(header: str | None) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=-0", "bytes=5000-5001"])
def test_ranges_past_the_end_are_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, SIZE)


def test_content_range_and_length() -> None:
    r = ByteRange(10, 19)
    assert r.length == 10
    assert r.content_range(SIZE) == "bytes 10-19/1000"


@given(size=st.integers(1, 10**12), first=st.integers(0, 10**13), last=st.integers(0, 10**13))
def test_a_served_range_always_lies_inside_the_object(size: int, first: int, last: int) -> None:
    for header in (f"bytes={first}-{last}", f"bytes={first}-", f"bytes=-{last}"):
        try:
            found = parse_range(header, size)
        except RangeNotSatisfiable:
            continue
        if found is not None:
            assert 0 <= found.start <= found.end < size
            assert found.length >= 1


ETAG = '"ab12"'


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ('"ab12"', True),
        ('W/"ab12"', True),
        ('"x", "ab12"', True),
        ("*", True),
        ('"other"', False),
        ("ab12", False),
    ],
)
def test_if_none_match(header: str | None, matches: bool) -> None:
    assert none_match(header, ETAG) is matches


def test_if_range_applies_the_range_only_for_the_current_etag() -> None:
    assert range_applies(None, ETAG)
    assert range_applies('"ab12"', ETAG)
    assert not range_applies('"old"', ETAG)
    assert not range_applies("Wed, 21 Oct 2015 07:28:00 GMT", ETAG)
