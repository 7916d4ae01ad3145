"""JSON, GeoJSON and NDJSON: strict parsing and one canonical serialisation."""

from __future__ import annotations

import json
from typing import Any

from pantheon_api.metadata.v1 import metadata_pb2

from pantheon.ingest.formats.base import Format, InvalidContent, LineSplitter, empty_body
from pantheon.ingest.formats.geojson import geojson_problem
from pantheon.metadata.naming import EXTENSIONS, MEDIA_TYPES

# JSON documents are parsed whole, so their size is capped instead of streamed.
MAX_JSON_BYTES = 64 * 2**20

_SHOWN_KEY_CHARS = 32


class _JsonProblem(Exception):
    """Why a text is not acceptable JSON, with the position when known."""

    def __init__(self, detail: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.line = line
        self.column = column


def _reject_constant(_name: str) -> Any:
    raise _JsonProblem("NaN and Infinity are not allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                shown = key if len(key) <= _SHOWN_KEY_CHARS else key[:_SHOWN_KEY_CHARS] + "…"
                raise _JsonProblem(f"duplicate key {shown!r}")
            seen.add(key)
    return obj


# Built once: json.loads and json.dumps with options build a new coder per call,
# a cost that shows when NDJSON runs them for every line.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def parse_json(text: str) -> Any:
    """Parse strictly: no NaN/Infinity, no duplicate keys; raise `_JsonProblem`."""
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise _JsonProblem("not valid JSON", exc.lineno, exc.colno) from None
    except RecursionError:
        raise _JsonProblem("nested too deeply") from None
    except ValueError:
        # Integers beyond the interpreter's digit limit land here.
        raise _JsonProblem("a number is out of range") from None


def canonical_json(obj: Any) -> bytes:
    """Serialise `obj` in the one canonical form: sorted keys, no spaces, UTF-8."""
    try:
        text = _ENCODER.encode(obj)
    except RecursionError:
        raise _JsonProblem("nested too deeply") from None
    except ValueError:
        # A literal such as 1e400 parses to inf, which JSON cannot spell.
        raise _JsonProblem("a number is out of range") from None
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # "\ud800" is a legal JSON escape, but a lone surrogate has no UTF-8 form.
        raise _JsonProblem("a string holds an unpaired surrogate escape") from None


class JsonNormaliser:
    """One JSON document, buffered whole up to `MAX_JSON_BYTES`."""

    _reason = "invalid_json"

    def __init__(self) -> None:
        self.format: Format = metadata_pb2.FORMAT_JSON
        self.media_type = MEDIA_TYPES[self.format]
        self.extension = EXTENSIONS[self.format]
        self.record_count = 0
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> bytes:
        if len(self._buffer) + len(chunk) > MAX_JSON_BYTES:
            raise InvalidContent("too_large", f"JSON documents are limited to {MAX_JSON_BYTES // 2**20} MiB.")
        self._buffer += chunk
        return b""

    def finish(self) -> bytes:
        try:
            text = self._buffer.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidContent(
                self._reason, f"The document is not valid UTF-8 (byte {exc.start})."
            ) from None
        self._buffer = bytearray()
        if not text.strip():
            raise empty_body()
        try:
            obj = parse_json(text)
            self._check(obj)
            out = canonical_json(obj)
        except _JsonProblem as problem:
            where = f" (line {problem.line}, column {problem.column})" if problem.line else ""
            raise InvalidContent(
                self._reason, f"The document is rejected: {problem.detail}{where}."
            ) from None
        self.record_count = self._count(obj)
        return out

    def _check(self, obj: Any) -> None:
        """Hook for document types stricter than plain JSON."""

    def _count(self, obj: Any) -> int:
        return len(obj) if isinstance(obj, list) else 1


class GeoJsonNormaliser(JsonNormaliser):
    """A JSON document that must also be RFC 7946 GeoJSON."""

    def __init__(self) -> None:
        super().__init__()
        self.format = metadata_pb2.FORMAT_GEOJSON
        self.media_type = MEDIA_TYPES[self.format]
        self.extension = EXTENSIONS[self.format]

    def _check(self, obj: Any) -> None:
        problem = geojson_problem(obj)
        if problem is not None:
            raise InvalidContent("invalid_geojson", f"The document is not GeoJSON: {problem}.")

    def _count(self, obj: Any) -> int:
        # A FeatureCollection counts its features; any other GeoJSON object is one record.
        if obj["type"] == "FeatureCollection":
            return len(obj["features"])
        return 1


class NdjsonNormaliser:
    """Newline-delimited JSON objects, one line in memory at a time."""

    def __init__(self) -> None:
        self.format: Format = metadata_pb2.FORMAT_NDJSON
        self.media_type = MEDIA_TYPES[self.format]
        self.extension = EXTENSIONS[self.format]
        self.record_count = 0
        self._lines = LineSplitter("invalid_ndjson")

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._line(number, raw) for number, raw in self._lines.feed(chunk))

    def finish(self) -> bytes:
        last = self._lines.finish()
        out = self._line(*last) if last is not None else b""
        if self.record_count == 0:
            raise empty_body()
        return out

    def _line(self, number: int, raw: bytes) -> bytes:
        if not raw.strip():
            return b""  # blank lines (including a lone "\r") separate nothing
        try:
            obj = parse_json(raw.decode("utf-8"))
            if not isinstance(obj, dict):
                raise _JsonProblem("not a JSON object")
            out = canonical_json(obj)
        except UnicodeDecodeError as exc:
            raise InvalidContent(
                "invalid_ndjson", f"Line {number} is not valid UTF-8 (byte {exc.start})."
            ) from None
        except _JsonProblem as problem:
            where = f" (column {problem.column})" if problem.column else ""
            raise InvalidContent(
                "invalid_ndjson", f"Line {number} is rejected: {problem.detail}{where}."
            ) from None
        self.record_count += 1
        return out
