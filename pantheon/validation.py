"""Protovalidate checks, reported as field violations.

The rules live in proto/ as protovalidate annotations; this module runs them
and turns each violation into a `FieldViolation` with a dotted field path
(`location.latitude`, `labels["BAD"]`, `records[3].entity_id`) that both
transports can show to callers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import protovalidate
from buf.validate import validate_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message


@dataclass(frozen=True)
class FieldViolation:
    """One broken rule: which field, which rule, and what is wrong."""

    field: str
    rule_id: str
    description: str


def _subscript(element: Any) -> str:
    subscript = element.subscript
    if subscript is None:
        return ""
    value = subscript.value
    return f"[{value!r}]" if isinstance(value, str) else f"[{value}]"


def _path(violation: Any) -> str:
    elements = violation.proto.field.elements if violation.proto.field else []
    return ".".join(e.field_name + _subscript(e) for e in elements)


def violations(message: Message, prefix: str = "") -> list[FieldViolation]:
    """Every rule `message` breaks; empty when it is valid.

    `prefix` is prepended to field paths, for messages validated on their own
    but reported as part of a larger one (a record inside a batch).
    """
    found = []
    try:
        collected = protovalidate.collect_violations(message)
    except protovalidate.EvaluationError:
        # A rule could not be evaluated on these values (for example, a time
        # range so wide its duration overflows): the input is out of range.
        return [FieldViolation(prefix, "evaluation_failed", "values are outside the supported range")]
    for violation in collected:
        path = _path(violation)
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        found.append(FieldViolation(path, violation.proto.rule_id, violation.proto.message))
    for path in _bad_values(message):
        found.append(FieldViolation(f"{prefix}.{path}" if prefix else path, *_BAD_VALUE))
    return found


#: Timestamps protobuf defines (years 1 to 9999, nanos below a second), which
#: protovalidate does not check; a value outside them breaks every consumer
#: that converts it (JSON, datetime), so it is refused like any broken rule.
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799
_TIMESTAMP = "google.protobuf.Timestamp"
#: Struct values are free-form, but JSON (stored batches, consumers) has no
#: NaN or Infinity.
_VALUE = "google.protobuf.Value"
_STRUCT = "google.protobuf.Struct"
_BAD_VALUE = ("value.well_formed", "must be a valid timestamp (years 1-9999) or a finite number")


@cache
def _checked_alone(field: FieldDescriptor) -> bool:
    """Whether the proto leaves `field`'s items to be checked one by one
    (`repeated.items.ignore = IGNORE_ALWAYS`, as a batch's records are): a bad
    item is then its own rejection, never its whole message's."""
    rules = field.GetOptions().Extensions[validate_pb2.field]
    return bool(rules.repeated.items.ignore == validate_pb2.IGNORE_ALWAYS)


@cache
def _may_hold(descriptor: Descriptor) -> bool:
    """Whether a message of this type can hold a Timestamp or a Struct value,
    at any depth (outside fields checked one by one)."""
    seen: set[str] = set()
    todo = [descriptor]
    while todo:
        found = todo.pop()
        if found.full_name in (_TIMESTAMP, _VALUE):
            return True
        if found.full_name not in seen:
            seen.add(found.full_name)
            todo += [f.message_type for f in found.fields if f.message_type and not _checked_alone(f)]
    return False


@cache
def _walk(field: FieldDescriptor) -> str:
    """How `_bad_values` walks a field: "" (not at all: it cannot hold a
    bad value), "map", "repeated" or "single"."""
    held = field.message_type
    if held is None or _checked_alone(field) or not _may_hold(held):
        return ""
    if held.GetOptions().map_entry:
        return "map"  # the entry can hold one, so its value can (keys are scalars)
    return "repeated" if field.is_repeated else "single"


#: A field path as `_bad_values` walks it: field names (str), map keys (in a
#: 1-tuple) and indices (int); made readable (`_render`) only for a bad value.
Path = tuple[str | tuple[Any] | int, ...]


def _render(path: Path) -> str:
    out = ""
    for step in path:
        if isinstance(step, str):
            out = f"{out}.{step}" if out else step
        else:
            out += f"[{step[0]!r}]" if isinstance(step, tuple) else f"[{step}]"
    return out


def _bad_values(message: Message) -> list[str]:
    """Paths of set Timestamps out of range and non-finite numbers in Structs,
    outside the fields whose items are checked one by one."""
    found: list[Path] = []
    _collect_bad(message, (), found)
    return [_render(path) for path in found]


def _collect_bad(message: Message, path: Path, found: list[Path]) -> None:
    # Only the subtrees that can hold a bad value are walked (`_walk`), and
    # a path is rendered only when bad: a batch's thousands of values are
    # checked at the cost of reading them.
    name = message.DESCRIPTOR.full_name
    if name == _TIMESTAMP:
        seconds, nanos = message.seconds, message.nanos  # type: ignore[attr-defined]
        if not (_MIN_SECONDS <= seconds <= _MAX_SECONDS and 0 <= nanos < 1_000_000_000):
            found.append(path)
        return
    if name == _VALUE and message.WhichOneof("kind") == "number_value":
        if not math.isfinite(message.number_value):  # type: ignore[attr-defined]
            found.append(path)
        return
    if name == _STRUCT:  # the bulk of a record: its payload's numbers, read directly
        fields = message.fields  # type: ignore[attr-defined]
        for key in fields:  # (a map's items() view costs half as much again)
            value = fields[key]
            kind = value.WhichOneof("kind")
            if kind == "number_value":
                if not math.isfinite(value.number_value):
                    found.append((*path, "fields", (key,)))
            elif kind in ("struct_value", "list_value"):
                _collect_bad(value, (*path, "fields", (key,)), found)
        return
    for field, value in message.ListFields():
        walk = _walk(field)
        if not walk:
            continue
        here = (*path, field.name)
        if walk == "map":
            for k, v in value.items():
                _collect_bad(v, (*here, (k,)), found)
        elif walk == "repeated":
            for i, v in enumerate(value):
                _collect_bad(v, (*here, i), found)
        else:
            _collect_bad(value, here, found)
