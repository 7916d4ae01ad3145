"""Geohashes: encoding WGS84 points as hierarchical grid cells.

A geohash interleaves the bits of a binary search on longitude and latitude
(longitude first) and writes them five at a time in the geohash base32
alphabet. Each extra character splits a cell into 32, so a prefix of a
geohash is the larger cell containing it; that is what lets object names
carry a coarse location that prefix listings can filter on.

Cells are half-open on their southern and western edges: a point on a
boundary belongs to the cell north or east of it, except at 90 degrees north
and 180 degrees east, which belong to the last row and column.
"""

from __future__ import annotations

__all__ = [
    "ALPHABET",
    "DEFAULT_CELL_LIMIT",
    "MAX_PRECISION",
    "cells_covering",
    "decode_bbox",
    "encode",
]

#: The geohash base32 alphabet (digits and lower-case letters without a, i, l, o).
ALPHABET = "0123456789bcdefghjkmnpqrstuvwxyz"
_VALUES = {c: i for i, c in enumerate(ALPHABET)}

#: Twelve characters resolve a few centimetres; more would exceed what a
#: double's mantissa can tell apart and what the metadata standard stores.
MAX_PRECISION = 12

#: How many cells `cells_covering` returns at most unless told otherwise.
DEFAULT_CELL_LIMIT = 64


def encode(lat: float, lon: float, precision: int = MAX_PRECISION) -> str:
    """The geohash of (`lat`, `lon`) with `precision` characters.

    Raises ValueError for coordinates outside [-90, 90] x [-180, 180], NaN,
    or a precision outside 1..MAX_PRECISION.
    """
    _check_precision(precision)
    _check_point(lat, lon)
    lat_bits, lon_bits = _bit_counts(precision)
    return _cell(_index(lat, 90.0, lat_bits), _index(lon, 180.0, lon_bits), precision)


def decode_bbox(geohash: str) -> tuple[float, float, float, float]:
    """The cell of `geohash` as (min_lat, min_lon, max_lat, max_lon).

    Raises ValueError for an empty or over-long geohash or a character
    outside the (lower-case) alphabet.
    """
    _check_precision(len(geohash))
    lat_idx = lon_idx = 0
    position = 0
    for c in geohash:
        value = _VALUES.get(c)
        if value is None:
            raise ValueError(f"invalid geohash character {c!r} in {geohash!r}")
        for shift in range(4, -1, -1):
            bit = (value >> shift) & 1
            if position % 2 == 0:
                lon_idx = (lon_idx << 1) | bit
            else:
                lat_idx = (lat_idx << 1) | bit
            position += 1
    lat_bits, lon_bits = _bit_counts(len(geohash))
    # Cell sizes are 180 or 360 divided by a power of two, so these products
    # are exact and match the midpoints the encoder compares against.
    height = 180.0 / (1 << lat_bits)
    width = 360.0 / (1 << lon_bits)
    min_lat = -90.0 + lat_idx * height
    min_lon = -180.0 + lon_idx * width
    return (min_lat, min_lon, min_lat + height, min_lon + width)


def cells_covering(
    min_lat: float,
    min_lon: float,
    max_lat: float,
    max_lon: float,
    precision: int,
    *,
    limit: int = DEFAULT_CELL_LIMIT,
) -> list[str] | None:
    """The geohash cells of `precision` characters that intersect the box, sorted.

    Returns None when more than `limit` cells would be needed, so a caller
    can fall back to filtering by coordinates instead of issuing a flood of
    prefix listings. Every point inside the closed box (edges included) has
    a geohash starting with one of the returned cells. The box may not cross
    the antimeridian; split such a box in two.

    Raises ValueError for an invalid precision, coordinates out of range, or
    a box whose minimum exceeds its maximum.
    """
    _check_precision(precision)
    _check_point(min_lat, min_lon)
    _check_point(max_lat, max_lon)
    if min_lat > max_lat or min_lon > max_lon:
        raise ValueError(f"box minimum ({min_lat}, {min_lon}) exceeds its maximum ({max_lat}, {max_lon})")
    lat_bits, lon_bits = _bit_counts(precision)
    # The encoder's bisection is monotonic in each coordinate, so the cells
    # of the two corners bound the cells of every point in between.
    lat_lo, lat_hi = _index(min_lat, 90.0, lat_bits), _index(max_lat, 90.0, lat_bits)
    lon_lo, lon_hi = _index(min_lon, 180.0, lon_bits), _index(max_lon, 180.0, lon_bits)
    # Count before building, so a continent at precision 12 costs nothing.
    if (lat_hi - lat_lo + 1) * (lon_hi - lon_lo + 1) > limit:
        return None
    return sorted(
        _cell(lat_idx, lon_idx, precision)
        for lat_idx in range(lat_lo, lat_hi + 1)
        for lon_idx in range(lon_lo, lon_hi + 1)
    )


def _bit_counts(precision: int) -> tuple[int, int]:
    """(latitude bits, longitude bits); longitude gets the odd bit."""
    bits = 5 * precision
    lon_bits = (bits + 1) // 2
    return bits - lon_bits, lon_bits


def _index(value: float, half_range: float, bits: int) -> int:
    """The row or column of `value` in [-half_range, half_range] split into 2**bits."""
    lo, hi = -half_range, half_range
    index = 0
    for _ in range(bits):
        mid = (lo + hi) / 2
        if value >= mid:
            index = (index << 1) | 1
            lo = mid
        else:
            index <<= 1
            hi = mid
    return index


def _cell(lat_idx: int, lon_idx: int, precision: int) -> str:
    """The geohash of the cell in row `lat_idx` and column `lon_idx`."""
    lat_bits, lon_bits = _bit_counts(precision)
    lat_left, lon_left = lat_bits, lon_bits
    value = 0
    for position in range(5 * precision):
        if position % 2 == 0:
            lon_left -= 1
            value = (value << 1) | ((lon_idx >> lon_left) & 1)
        else:
            lat_left -= 1
            value = (value << 1) | ((lat_idx >> lat_left) & 1)
    return "".join(ALPHABET[(value >> (5 * i)) & 0x1F] for i in reversed(range(precision)))


def _check_precision(precision: int) -> None:
    if not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"geohash precision must be 1..{MAX_PRECISION}, got {precision}")


def _check_point(lat: float, lon: float) -> None:
    # Negated ranges, because NaN fails every comparison and must be refused.
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"latitude must be within [-90, 90], got {lat}")
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"longitude must be within [-180, 180], got {lon}")
