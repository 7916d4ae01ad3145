"""Protobuf messages of the services as the REST API's JSON, and query values as protobuf."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from google.protobuf import json_format, timestamp_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb

from gateway.batches import CLASSIFICATIONS
from gateway.problems import FieldError, request_invalid
from gateway.schemas import ObjectMetadataIn


def metadata_json(meta: md.Metadata) -> dict[str, Any]:
    """Metadata in the protobuf JSON mapping, with the proto field names."""
    return json_format.MessageToDict(meta, preserving_proto_field_name=True)


def stored_object(meta: md.Metadata, ref: md.ObjectRef) -> dict[str, Any]:
    return {
        "id": meta.id,
        "bucket": ref.bucket,
        "key": ref.key,
        "sha256": ref.sha256,
        "size": ref.size_bytes,
        "etag": ref.etag,
        "media_type": meta.media_type,
    }


def object_created(response: pb.IngestObjectResponse) -> dict[str, Any]:
    return {
        **stored_object(response.metadata, response.object),
        "event_id": response.event_id,
        "replayed": response.replayed,
        "metadata": metadata_json(response.metadata),
    }


def object_info(info: spb.StatObjectResponse) -> dict[str, Any]:
    return {
        **stored_object(info.metadata, info.object),
        "encryption": info.encryption,
        "metadata": metadata_json(info.metadata),
    }


def etag_of(info: spb.StatObjectResponse) -> str:
    """The HTTP entity tag of an object: its quoted SHA-256 (strong: it names the bytes)."""
    return f'"{info.object.sha256}"'


def parse_labels(values: Iterable[str]) -> dict[str, str]:
    """`k=v,k2=v2` (or the parameter repeated) as a map; keys and values are checked by the services."""
    labels: dict[str, str] = {}
    errors: list[FieldError] = []
    for value in values:
        for item in value.split(","):
            if not item:
                continue
            key, sep, val = item.partition("=")
            if not sep or not key:
                errors.append(
                    FieldError(
                        field="labels",
                        reason="format",
                        description="Labels are key=value pairs, comma-separated.",
                    )
                )
                continue
            labels[key] = val
    if errors:
        raise request_invalid(errors[:1])
    return labels


def object_metadata(given: ObjectMetadataIn, source: str) -> md.Metadata:
    """The Metadata an upload declares (output-only fields are left to the services)."""
    meta = md.Metadata(
        data_type=given.data_type,
        source=source,
        location=md.GeoPoint(latitude=given.lat, longitude=given.lon),
        entity_id=given.entity_id or "",
        provider=given.provider or "",
        labels=given.labels,
        schema_ref=given.schema_ref or "",
    )
    if given.alt is not None:
        meta.location.altitude_m = given.alt
    if given.classification:
        meta.classification = CLASSIFICATIONS[given.classification]
    set_time(meta.observed_at, given.observed_at, "observed_at")
    return meta


def set_time(field: timestamp_pb2.Timestamp, value: datetime, name: str) -> None:
    """`field` = `value`; a time with no UTC form (0001-01-01T00:00:00+14:00) is 422."""
    try:
        field.FromDatetime(value)
    except (OverflowError, ValueError):
        raise request_invalid(
            [
                FieldError(
                    field=name, reason="out_of_range", description="the time has no UTC form in years 1-9999"
                )
            ]
        ) from None


_OBJECT_FIELDS = {
    "location.latitude": "lat",
    "location.longitude": "lon",
    "location.altitude_m": "alt",
    "idempotency_key": "Idempotency-Key",
}
_RECORD_FIELDS = (
    (".location.latitude", ".location.lat"),
    (".location.longitude", ".location.lon"),
    (".location.altitude_m", ".location.alt"),
)


def object_field(path: str) -> str:
    """A field path of the ingestion contract as the REST name of an upload parameter."""
    path = path.removeprefix("header.").removeprefix("metadata.")
    return _OBJECT_FIELDS.get(path, path)


def record_field(path: str) -> str:
    """A field path of a record batch with the REST names of the location fields."""
    for proto, rest in _RECORD_FIELDS:
        if path.endswith(proto):
            return path[: -len(proto)] + rest
    return path


def renamed(errors: Iterable[FieldError], rename: Callable[[str], str]) -> list[FieldError]:
    return [e.model_copy(update={"field": rename(e.field)}) for e in errors]
