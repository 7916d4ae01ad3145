"""CloudEvents Kafka binding (binary mode) for protobuf payloads.

The record value is the serialised payload; the attributes travel as `ce_*`
headers (see proto/pantheon_api/events/v1/events.proto for the list).
`ce_dataschema` names the payload's full message name, so a consumer in any
language can pick the decoder without guessing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.message import Message
from pantheon_api.events.v1 import events_pb2

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/protobuf"
SCHEMA_PREFIX = "proto:"

#: ce_type of each payload message.
EVENT_TYPES: dict[str, str] = {
    events_pb2.DataStored.DESCRIPTOR.full_name: "pantheon.data.stored.v1",
    events_pb2.RecordIngested.DESCRIPTOR.full_name: "pantheon.record.ingested.v1",
    events_pb2.DeadLetter.DESCRIPTOR.full_name: "pantheon.dead.letter.v1",
}

#: Payload classes by full message name, for decoding.
PAYLOADS: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (events_pb2.DataStored, events_pb2.RecordIngested, events_pb2.DeadLetter)
}

Headers = list[tuple[str, str | bytes | None]]

_STANDARD = frozenset(
    (
        "ce_specversion",
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_time",
        "ce_subject",
        "ce_dataschema",
        "content-type",
    )
)


@dataclass(frozen=True)
class Attributes:
    """The CloudEvents attributes of one event."""

    id: str
    type: str
    source: str
    time: datetime
    subject: str = ""
    dataschema: str = ""
    extensions: Mapping[str, str] = field(default_factory=dict)


class HeaderEncoder:
    """Kafka headers, in CloudEvents binary mode, of events that share their
    time and extensions (one publish call's): what the events of one payload
    type and source have in common is encoded once."""

    def __init__(self, *, time: datetime | None = None, extensions: Mapping[str, str] | None = None) -> None:
        at = (time or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self._time = at.encode()
        self._extensions = [(key, value.encode()) for key, value in (extensions or {}).items() if value]
        self._shared: dict[tuple[str, str], Headers] = {}

    def headers(self, payload: Message, *, event_id: str, source: str, subject: str = "") -> Headers:
        name = payload.DESCRIPTOR.full_name
        shared = self._shared.get((name, source))
        if shared is None:
            shared = self._shared[(name, source)] = [
                ("ce_specversion", SPEC_VERSION.encode()),
                ("ce_type", EVENT_TYPES[name].encode()),
                ("ce_source", f"/pantheon/{source}".encode()),
                ("ce_time", self._time),
                ("ce_dataschema", (SCHEMA_PREFIX + name).encode()),
                ("content-type", CONTENT_TYPE.encode()),
                *self._extensions,
            ]
        own: Headers = [("ce_id", event_id.encode())]
        if subject:
            own.append(("ce_subject", subject.encode()))
        return own + shared


def headers_for(
    payload: Message,
    *,
    event_id: str,
    source: str,
    subject: str = "",
    extensions: Mapping[str, str] | None = None,
    time: datetime | None = None,
) -> Headers:
    """Kafka headers for `payload` in CloudEvents binary mode."""
    encoder = HeaderEncoder(time=time, extensions=extensions)
    return encoder.headers(payload, event_id=event_id, source=source, subject=subject)


def parse_headers(
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
) -> dict[str, str]:
    """Headers as a dict of text values (the last wins for repeated keys)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    return {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v or "" for k, v in pairs}


def decode(headers: Mapping[str, str], value: bytes) -> tuple[Attributes, Message]:
    """The attributes and the typed payload of a record; ValueError if unknown."""
    if headers.get("ce_specversion") != SPEC_VERSION:
        raise ValueError("not a CloudEvents record")
    if headers.get("content-type") != CONTENT_TYPE:
        raise ValueError(f"unsupported content-type {headers.get('content-type')!r}")
    schema = headers.get("ce_dataschema", "")
    cls = PAYLOADS.get(schema.removeprefix(SCHEMA_PREFIX))
    if cls is None:
        raise ValueError(f"unknown payload {schema!r}")
    payload = cls.FromString(value)
    attributes = Attributes(
        id=headers["ce_id"],
        type=headers["ce_type"],
        source=headers["ce_source"],
        time=datetime.fromisoformat(headers["ce_time"].replace("Z", "+00:00")),
        subject=headers.get("ce_subject", ""),
        dataschema=schema,
        extensions={k: v for k, v in headers.items() if k not in _STANDARD},
    )
    return attributes, payload
