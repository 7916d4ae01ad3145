"""The RFC 7946 checks a GeoJSON upload must pass beyond being JSON."""

from __future__ import annotations

from typing import Any

from pantheon.ingest import caps
from pantheon.ingest.formats.base import InvalidContent

# How many list levels sit above a single position in each geometry's coordinates.
_POSITION_DEPTH = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}
_GEOMETRY_TYPES = frozenset(_POSITION_DEPTH) | {"GeometryCollection"}
GEOJSON_TYPES = _GEOMETRY_TYPES | {"Feature", "FeatureCollection"}
_FEATURE = frozenset({"Feature"})


class _Bad(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def check_geojson(doc: Any) -> None:
    """Raise `InvalidContent` unless `doc` is GeoJSON within the caps.

    Reasons: `invalid_geojson`, or `too_many_positions` past
    `caps.MAX_GEOJSON_POSITIONS`. The walk is linear in the document and its
    recursion is bounded by the JSON depth cap the parser enforces.
    """
    problem = geojson_problem(doc)
    if problem is not None:
        raise InvalidContent("invalid_geojson", f"The document is not GeoJSON: {problem}.")


def geojson_problem(doc: Any) -> str | None:
    """Return why `doc` is not GeoJSON, or None when it is; over the position cap, raise."""
    walk = _Walk()
    try:
        kind = _type_of(doc, "the document", GEOJSON_TYPES)
        if kind == "FeatureCollection":
            features = doc.get("features")
            if not isinstance(features, list):
                raise _Bad("a FeatureCollection needs a features list")
            for index, feature in enumerate(features):
                walk.feature(feature, f"features[{index}]")
        elif kind == "Feature":
            walk.feature(doc, "the document")
        else:
            walk.geometry(doc, "the document")
    except _Bad as bad:
        return bad.detail
    except RecursionError:  # only for documents that did not come through parse_json
        return "geometry collections are nested too deeply"
    return None


def _type_of(obj: Any, where: str, allowed: frozenset[str]) -> str:
    if not isinstance(obj, dict):
        raise _Bad(f"{where} is not an object")
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in allowed:
        raise _Bad(f"{where} does not have an allowed GeoJSON type")
    return kind


class _Walk:
    """One document's walk, counting positions against the cap."""

    def __init__(self) -> None:
        self.positions = 0

    def feature(self, obj: Any, where: str) -> None:
        _type_of(obj, where, _FEATURE)
        properties = obj.get("properties")
        if properties is not None and not isinstance(properties, dict):
            raise _Bad(f"{where}.properties is not an object or null")
        geometry = obj.get("geometry")
        if geometry is not None:  # a null geometry is an unlocated feature, allowed by RFC 7946
            self.geometry(geometry, f"{where}.geometry")

    def geometry(self, obj: Any, where: str) -> None:
        kind = _type_of(obj, where, _GEOMETRY_TYPES)
        if kind == "GeometryCollection":
            members = obj.get("geometries")
            if not isinstance(members, list):
                raise _Bad(f"{where} needs a geometries list")
            for index, member in enumerate(members):
                self.geometry(member, f"{where}.geometries[{index}]")
            return
        self.positions_at(obj.get("coordinates"), _POSITION_DEPTH[kind], f"{where}.coordinates")

    def positions_at(self, value: Any, depth: int, where: str) -> None:
        if depth == 0:
            self._count(1)
            _position(value, where)
            return
        if not isinstance(value, list):
            raise _Bad(f"{where} is not nested as its geometry type requires")
        if depth == 1:
            self._count(len(value))
            for item in value:
                _position(item, where)
            return
        for item in value:
            self.positions_at(item, depth - 1, where)

    def _count(self, more: int) -> None:
        self.positions += more
        if self.positions > caps.MAX_GEOJSON_POSITIONS:
            raise caps.GEOJSON_POSITIONS.refuse(f"The document ({self.positions} positions so far)")


def _position(value: Any, where: str) -> None:
    if not isinstance(value, list) or len(value) < 2:
        raise _Bad(f"{where} holds a position that is not a list of at least two numbers")
    for number in value:
        # bool is an int subclass, but true/false is no coordinate.
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise _Bad(f"{where} holds a position with a non-numeric member")
    if not -180 <= value[0] <= 180:
        raise _Bad(f"{where} holds a longitude outside [-180, 180]")
    if not -90 <= value[1] <= 90:
        raise _Bad(f"{where} holds a latitude outside [-90, 90]")
