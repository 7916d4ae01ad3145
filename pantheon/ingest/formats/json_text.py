"""JSON, GeoJSON and NDJSON: strict parsing within caps, and one canonical serialisation.

Strict: no NaN or Infinity, no duplicate keys, no number that overflows a
double. Within caps (`pantheon.ingest.caps`): nesting depth, digits in a
number, keys per object and key length for every JSON text; document size
for JSON and GeoJSON documents, which are parsed whole; line length for
NDJSON, which streams line by line.

Depth and number length are checked by a linear pre-scan before the decoder
runs, so neither a RecursionError (slow, and dependent on the stack) nor the
interpreter's quadratic string-to-integer conversion is ever reached: the
pre-scan drops escape pairs, then strings, then measures what is left (the
document's structure) with C-level byte operations. Keys are checked as each
object is built.

A whole document is parsed by `normalise_json_document` or
`normalise_geojson_document`: plain functions of bytes, so a process pool can
run them (see `pantheon.ingest.workers`).
"""

from __future__ import annotations

import codecs
import json
import re
from array import array
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from pantheon_api.metadata.v1 import metadata_pb2

from pantheon.ingest import caps
from pantheon.ingest.formats.base import Format, InvalidContent, LineSplitter, empty_body
from pantheon.ingest.formats.geojson import check_geojson
from pantheon.metadata.naming import EXTENSIONS, MEDIA_TYPES

# Kept for callers of the former name; the cap lives in `caps`.
MAX_JSON_BYTES = caps.MAX_JSON_DOCUMENT_BYTES

_SHOWN_KEY_CHARS = 32

#: A whole-document job: canonical bytes and record count from the raw bytes.
DocumentJob = Callable[[bytes], tuple[bytes, int]]


class JsonProblem(Exception):
    """Why a text is not acceptable JSON, with the position when known.

    `reason` is None for a syntax or strictness problem (the caller picks its
    own reason, such as `invalid_json`) and a cap's reason code when the text
    is over a cap; `detail` then names the cap and its value.
    """

    def __init__(
        self, detail: str, line: int | None = None, column: int | None = None, *, reason: str | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.line = line
        self.column = column
        self.reason = reason


def _over(cap: caps.Cap, subject: str) -> JsonProblem:
    return JsonProblem(cap.describe(subject), reason=cap.reason)


# -- the pre-scan -------------------------------------------------------------

# Linear by construction: a single literal pattern, C-level byte operations
# (translate, split, join, find, count) and one pass of running sums.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)  # a backslash and the byte it escapes
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_TOO_MANY_DIGITS = b"0" * (caps.MAX_JSON_NUMBER_DIGITS + 1)
_SMALLEST_CAP = min(caps.MAX_JSON_DEPTH, caps.MAX_JSON_NUMBER_DIGITS, caps.MAX_JSON_KEY_CHARS)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
# Openers become +1 and closers -1 once read as signed bytes.
_DEPTH_STEPS = bytes.maketrans(_BRACKETS, b"\x01\xff\x01\xff")
# Openers in a row past the cap: found by a substring search, before any sum.
_TOO_MANY_OPENERS = b"\x01" * (caps.MAX_JSON_DEPTH + 1)


def check_caps(data: bytes) -> bool:
    """Raise `JsonProblem` if the JSON text `data` (UTF-8) nests deeper or has longer numbers than the caps.

    Linear in `data`. Strings do not count (a `[` or a long digit run inside a
    string is content), so those checks run on the text with its strings
    removed, when a cheap look at the whole text says they might fail; on
    invalid JSON the scan may over-count, which still refuses the text.
    Returns whether a string (so maybe a key) may be longer than
    `caps.MAX_JSON_KEY_CHARS`: when not, the decoder need not check keys.
    """
    if len(data) <= _SMALLEST_CAP:
        return False  # too short to break any of them
    may_have_long_strings = len(data) > caps.MAX_JSON_KEY_CHARS
    may_be_deep = data.count(b"[") + data.count(b"{") > caps.MAX_JSON_DEPTH
    may_have_long_number = len(data) > caps.MAX_JSON_NUMBER_DIGITS and _TOO_MANY_DIGITS in data.translate(
        _DIGITS_AS_ZERO
    )
    if not (may_be_deep or may_have_long_number):
        return may_have_long_strings
    escaped = b"\\" in data
    if escaped:
        data = _ESCAPE.sub(b"", data)  # then no quote inside a string is left
    pieces = data.split(b'"')
    if not escaped:
        # A string without escapes is at least as long in bytes as in characters.
        may_have_long_strings = max(map(len, pieces[1::2]), default=0) > caps.MAX_JSON_KEY_CHARS
    structure = b"".join(pieces[::2])
    del pieces
    if may_have_long_number and _TOO_MANY_DIGITS in structure.translate(_DIGITS_AS_ZERO):
        raise _over(caps.JSON_NUMBER, "a number")
    if may_be_deep:
        steps = structure.translate(_DEPTH_STEPS, _NOT_BRACKETS)
        if _TOO_MANY_OPENERS in steps or (
            len(steps) > caps.MAX_JSON_DEPTH and max(accumulate(array("b", steps))) > caps.MAX_JSON_DEPTH
        ):
            raise _over(caps.JSON_DEPTH, "the nesting")
    return may_have_long_strings


# -- decoding and encoding ----------------------------------------------------


def _reject_constant(_name: str) -> Any:
    raise JsonProblem("NaN and Infinity are not allowed")


def _shown(key: str) -> str:
    return repr(key if len(key) <= _SHOWN_KEY_CHARS else key[:_SHOWN_KEY_CHARS] + "…")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object from its members: no duplicate keys, no more than the cap."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonProblem(f"duplicate key {_shown(key)}")
            seen.add(key)
    if len(obj) > caps.MAX_JSON_OBJECT_KEYS:
        raise _over(caps.JSON_OBJECT_KEYS, f"an object with {len(obj)} keys")
    return obj


def _object_with_key_check(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`_object`, and no key longer than the cap (for texts that hold a long string)."""
    obj = _object(pairs)
    if obj and max(map(len, obj)) > caps.MAX_JSON_KEY_CHARS:
        key = next(k for k in obj if len(k) > caps.MAX_JSON_KEY_CHARS)
        raise _over(caps.JSON_KEY, f"the key {_shown(key)}")
    return obj


# Built once: json.loads and json.dumps with options build a new coder per call,
# a cost that shows when NDJSON runs them for every line.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_object)
_KEY_CHECKING_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, object_pairs_hook=_object_with_key_check
)
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def parse_json(text: str, utf8: bytes | None = None) -> Any:
    """Parse strictly and within the caps; raise `JsonProblem`.

    No NaN/Infinity, no duplicate keys, at most `caps.MAX_JSON_DEPTH` levels,
    `caps.MAX_JSON_NUMBER_DIGITS` digits in a row in a number,
    `caps.MAX_JSON_OBJECT_KEYS` keys per object and `caps.MAX_JSON_KEY_CHARS`
    characters per key. The size of `text` is the caller's cap. `utf8`, the
    text's UTF-8 form if the caller has it, saves encoding it again.
    """
    long_strings = check_caps(text.encode("utf-8", "surrogatepass") if utf8 is None else utf8)
    try:
        return (_KEY_CHECKING_DECODER if long_strings else _DECODER).decode(text)
    except json.JSONDecodeError as exc:
        raise JsonProblem("not valid JSON", exc.lineno, exc.colno) from None
    except RecursionError:  # not reached within the depth cap; kept as a guard
        raise _over(caps.JSON_DEPTH, "the nesting") from None
    except ValueError:
        # Integers beyond the interpreter's digit limit land here (not reached within the cap).
        raise JsonProblem("a number is out of range") from None


def canonical_json(obj: Any) -> bytes:
    """Serialise `obj` in the one canonical form: sorted keys, no spaces, UTF-8."""
    try:
        text = _ENCODER.encode(obj)
    except RecursionError:
        raise _over(caps.JSON_DEPTH, "the nesting") from None
    except ValueError:
        # A literal such as 1e400 parses to inf, which JSON cannot spell.
        raise JsonProblem("a number is out of range") from None
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # "\ud800" is a legal JSON escape, but a lone surrogate has no UTF-8 form.
        raise JsonProblem("a string holds an unpaired surrogate escape") from None


# -- whole documents ----------------------------------------------------------


def _document(data: bytes, reason: str) -> Any:
    if len(data) > caps.MAX_JSON_DOCUMENT_BYTES:
        raise caps.JSON_DOCUMENT.refuse("The document")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidContent(reason, f"The document is not valid UTF-8 (byte {exc.start}).") from None
    if not text.strip():
        raise empty_body()
    try:
        return parse_json(text, data.removeprefix(codecs.BOM_UTF8))
    except JsonProblem as problem:
        raise _document_error(problem, reason) from None


def _canonical(obj: Any, reason: str) -> bytes:
    try:
        return canonical_json(obj)
    except JsonProblem as problem:
        raise _document_error(problem, reason) from None


def _document_error(problem: JsonProblem, reason: str) -> InvalidContent:
    where = f" (line {problem.line}, column {problem.column})" if problem.line else ""
    return InvalidContent(problem.reason or reason, f"The document is rejected: {problem.detail}{where}.")


def normalise_json_document(data: bytes) -> tuple[bytes, int]:
    """The canonical form of one JSON document and its record count (a top-level array's length, else 1)."""
    obj = _document(data, "invalid_json")
    out = _canonical(obj, "invalid_json")
    return out, len(obj) if isinstance(obj, list) else 1


def normalise_geojson_document(data: bytes) -> tuple[bytes, int]:
    """The canonical form of one GeoJSON document and its record count (features, else 1)."""
    obj = _document(data, "invalid_json")
    check_geojson(obj)
    out = _canonical(obj, "invalid_json")
    # A FeatureCollection counts its features; any other GeoJSON object is one record.
    return out, len(obj["features"]) if obj["type"] == "FeatureCollection" else 1


class JsonNormaliser:
    """One JSON document, buffered whole up to `caps.MAX_JSON_DOCUMENT_BYTES`.

    `feed` only buffers; `finish` does all the work. A worker pool takes the
    work out with `detach` and runs it elsewhere (a process: the decoder
    holds the GIL for the whole document).
    """

    _job: DocumentJob = staticmethod(normalise_json_document)

    def __init__(self) -> None:
        self.format: Format = metadata_pb2.FORMAT_JSON
        self.media_type = MEDIA_TYPES[self.format]
        self.extension = EXTENSIONS[self.format]
        self.record_count = 0
        self._buffer = bytearray()

    @property
    def held(self) -> int:
        return len(self._buffer)

    def feed(self, chunk: bytes) -> bytes:
        if len(self._buffer) + len(chunk) > caps.MAX_JSON_DOCUMENT_BYTES:
            raise caps.JSON_DOCUMENT.refuse("The document")
        self._buffer += chunk
        return b""

    def detach(self) -> tuple[DocumentJob, bytes]:
        """The document's job and its bytes; run `job(data)`, then `adopt` its result."""
        data = bytes(self._buffer)
        self._buffer = bytearray()
        return self._job, data

    def adopt(self, result: tuple[bytes, int]) -> bytes:
        """Take the result of a detached job: record the count, return the output."""
        out, self.record_count = result
        return out

    def finish(self) -> bytes:
        job, data = self.detach()
        return self.adopt(job(data))


class GeoJsonNormaliser(JsonNormaliser):
    """A JSON document that must also be RFC 7946 GeoJSON."""

    _job: DocumentJob = staticmethod(normalise_geojson_document)

    def __init__(self) -> None:
        super().__init__()
        self.format = metadata_pb2.FORMAT_GEOJSON
        self.media_type = MEDIA_TYPES[self.format]
        self.extension = EXTENSIONS[self.format]


def _line_too_long(line: int) -> InvalidContent:
    return caps.NDJSON_LINE.refuse(f"Line {line}")


class NdjsonNormaliser:
    """Newline-delimited JSON objects, one line in memory at a time."""

    def __init__(self) -> None:
        self.format: Format = metadata_pb2.FORMAT_NDJSON
        self.media_type = MEDIA_TYPES[self.format]
        self.extension = EXTENSIONS[self.format]
        self.record_count = 0
        self._lines = LineSplitter(caps.MAX_NDJSON_LINE_BYTES, _line_too_long)

    @property
    def held(self) -> int:
        return self._lines.held

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
            obj = parse_json(raw.decode("utf-8"), raw)
            if not isinstance(obj, dict):
                raise JsonProblem("not a JSON object")
            out = canonical_json(obj)
        except UnicodeDecodeError as exc:
            raise InvalidContent(
                "invalid_ndjson", f"Line {number} is not valid UTF-8 (byte {exc.start})."
            ) from None
        except JsonProblem as problem:
            where = f" (column {problem.column})" if problem.column else ""
            raise InvalidContent(
                problem.reason or "invalid_ndjson", f"Line {number} is rejected: {problem.detail}{where}."
            ) from None
        self.record_count += 1
        return out
