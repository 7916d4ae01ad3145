"""Geohashes: known vectors, cell bounds and box coverage."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pantheon.metadata import geohash

lats = st.floats(min_value=-90, max_value=90, allow_nan=False)
lons = st.floats(min_value=-180, max_value=180, allow_nan=False)
precisions = st.integers(min_value=1, max_value=geohash.MAX_PRECISION)


@pytest.mark.parametrize(
    ("lat", "lon", "precision", "expected"),
    [
        (57.64911, 10.40744, 11, "u4pruydqqvj"),
        (48.2082, 16.3738, 5, "u2edk"),
        (42.605, -5.603, 5, "ezs42"),
        (0.0, 0.0, 1, "s"),
        (-90.0, -180.0, 12, "000000000000"),
        (90.0, 180.0, 12, "zzzzzzzzzzzz"),
    ],
)
def test_known_vectors(lat: float, lon: float, precision: int, expected: str) -> None:
    assert geohash.encode(lat, lon, precision) == expected


def test_default_precision_is_twelve() -> None:
    assert geohash.encode(48.2082, 16.3738) == geohash.encode(48.2082, 16.3738, 12)
    assert len(geohash.encode(48.2082, 16.3738)) == 12


def test_known_cell_bounds() -> None:
    min_lat, min_lon, max_lat, max_lon = geohash.decode_bbox("ezs42")
    assert (min_lat + max_lat) / 2 == pytest.approx(42.605, abs=0.001)
    assert (min_lon + max_lon) / 2 == pytest.approx(-5.603, abs=0.001)
    assert max_lat - min_lat == pytest.approx(180 / 2**12)
    assert max_lon - min_lon == pytest.approx(360 / 2**13)


@given(lats, lons, precisions)
def test_cell_contains_its_point(lat: float, lon: float, precision: int) -> None:
    cell = geohash.encode(lat, lon, precision)
    assert len(cell) == precision
    min_lat, min_lon, max_lat, max_lon = geohash.decode_bbox(cell)
    assert min_lat <= lat <= max_lat
    assert min_lon <= lon <= max_lon


@given(lats, lons)
def test_shorter_geohash_is_a_prefix(lat: float, lon: float) -> None:
    full = geohash.encode(lat, lon)
    assert all(geohash.encode(lat, lon, p) == full[:p] for p in range(1, 12))


@pytest.mark.parametrize(
    ("lat", "lon", "precision"),
    [
        (90.1, 0.0, 5),
        (-90.1, 0.0, 5),
        (0.0, 180.5, 5),
        (0.0, -181.0, 5),
        (math.nan, 0.0, 5),
        (0.0, math.nan, 5),
        (math.inf, 0.0, 5),
        (0.0, 0.0, 0),
        (0.0, 0.0, 13),
    ],
)
def test_encode_refuses_bad_input(lat: float, lon: float, precision: int) -> None:
    with pytest.raises(ValueError):
        geohash.encode(lat, lon, precision)


@pytest.mark.parametrize("bad", ["", "u2eda", "U2EDK", "u2ed!", "u2edkpppppppp"])
def test_decode_refuses_bad_input(bad: str) -> None:
    with pytest.raises(ValueError):
        geohash.decode_bbox(bad)


def test_box_inside_one_cell_is_that_cell() -> None:
    min_lat, min_lon, max_lat, max_lon = geohash.decode_bbox("u2edk")
    inner = (min_lat + 0.001, min_lon + 0.001, max_lat - 0.001, max_lon - 0.001)
    assert geohash.cells_covering(*inner, 5) == ["u2edk"]


def test_box_across_a_corner_has_four_cells() -> None:
    # The corner shared by u2edk and its neighbours to the north and east.
    _, _, max_lat, max_lon = geohash.decode_bbox("u2edk")
    cells = geohash.cells_covering(max_lat - 0.01, max_lon - 0.01, max_lat + 0.01, max_lon + 0.01, 5)
    assert cells is not None
    assert len(cells) == 4
    assert "u2edk" in cells
    assert cells == sorted(cells)


def test_whole_world_at_one_character() -> None:
    assert geohash.cells_covering(-90, -180, 90, 180, 1, limit=32) == list(geohash.ALPHABET)


def test_too_many_cells_gives_none() -> None:
    # Vienna at precision 5 needs 48 cells: within the default limit, not within 40.
    vienna = (48.1, 16.2, 48.3, 16.5)
    covering = geohash.cells_covering(*vienna, 5)
    assert covering is not None and len(covering) == 48
    assert geohash.cells_covering(*vienna, 5, limit=40) is None
    assert geohash.cells_covering(-90, -180, 90, 180, 12) is None


@pytest.mark.parametrize(
    "box",
    [(48.3, 16.2, 48.1, 16.5), (48.1, 16.5, 48.3, 16.2), (-91, 0, 0, 0), (0, 0, 0, 181)],
)
def test_invalid_box_is_refused(box: tuple[float, float, float, float]) -> None:
    with pytest.raises(ValueError):
        geohash.cells_covering(*box, 5)


@given(st.data())
def test_covering_contains_every_point_in_the_box(data: st.DataObject) -> None:
    lat_a, lat_b = data.draw(lats), data.draw(lats)
    lon_a, lon_b = data.draw(lons), data.draw(lons)
    # `+ 0.0` turns -0.0 into 0.0: sorted() keeps (0.0, -0.0) in that order,
    # which hypothesis rightly refuses as an empty float range.
    min_lat, max_lat = sorted((lat_a + 0.0, lat_b + 0.0))
    min_lon, max_lon = sorted((lon_a + 0.0, lon_b + 0.0))
    # Keep the box small enough to enumerate at precision 5 (about 0.04 degrees a cell).
    max_lat = min(max_lat, min_lat + 1.0)
    max_lon = min(max_lon, min_lon + 1.0)
    cells = geohash.cells_covering(min_lat, min_lon, max_lat, max_lon, 5, limit=2_000)
    assert cells is not None
    assert len(cells) == len(set(cells))
    points = st.tuples(
        st.floats(min_value=min_lat, max_value=max_lat),
        st.floats(min_value=min_lon, max_value=max_lon),
    )
    for lat, lon in [(min_lat, min_lon), (max_lat, max_lon), *data.draw(st.lists(points))]:
        assert geohash.encode(lat, lon, 5) in cells
