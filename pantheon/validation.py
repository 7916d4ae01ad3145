"""Protovalidate checks, reported as field violations.

The rules live in proto/ as protovalidate annotations; this module runs them
and turns each violation into a `FieldViolation` with a dotted field path
(`location.latitude`, `labels["BAD"]`, `records[3].entity_id`) that both
transports can show to callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import protovalidate
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
    return found
