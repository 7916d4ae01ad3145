"""The JSON shapes of the REST API (documented in OpenAPI from these models).

Input models check shape only (types, required fields, RFC 3339 times);
the rules on values (ranges, patterns, the future limit on times) belong to
the services, which answer field violations the gateway passes on.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.problems import FieldError

Classification = Literal["public", "internal", "restricted"]
BatchFormat = Literal["ndjson", "csv"]

_METADATA_EXAMPLE: dict[str, Any] = {
    "id": "01JD5Q3W6Z8K4T2M9N7P5R3S1V",
    "idempotency_key": "station-42-2024-11-20T10:00Z",
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "size_bytes": "1234",
    "data_type": "sensor.air_quality",
    "format": "FORMAT_JSON",
    "media_type": "application/json",
    "location": {"latitude": 48.2082, "longitude": 16.3738},
    "geohash": "u2edk8x4v5j7",
    "observed_at": "2024-11-20T10:00:00Z",
    "ingested_at": "2024-11-20T10:00:01.250Z",
    "source": "demo-city",
    "entity_id": "station-42",
    "lineage": {"request_id": "3f0c2b9a6f7e4d8c9b1a2e3d4c5b6a79"},
    "classification": "CLASSIFICATION_INTERNAL",
    "labels": {"district": "07"},
}

_METADATA_DOC = (
    "The complete stored metadata (the unified metadata standard), in the protobuf JSON "
    "mapping with the proto field names (`data_type`, `observed_at`, ...); 64-bit integers "
    "are strings and enums are their names."
)


class ObjectMetadataIn(BaseModel):
    """Metadata of an uploaded object: the query parameters of a raw upload, or the
    `metadata` part of a multipart upload."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "data_type": "sensor.air_quality",
                "observed_at": "2024-11-20T10:00:00Z",
                "lat": 48.2082,
                "lon": 16.3738,
                "entity_id": "station-42",
                "labels": {"district": "07"},
            }
        },
    )

    data_type: str = Field(description="Registered dotted data type, such as `sensor.air_quality`.")
    observed_at: AwareDatetime = Field(description="When the data was observed (RFC 3339, with offset).")
    lat: float = Field(allow_inf_nan=False, description="WGS84 latitude in degrees.")
    lon: float = Field(allow_inf_nan=False, description="WGS84 longitude in degrees.")
    alt: float | None = Field(None, allow_inf_nan=False, description="Altitude in metres, if known.")
    entity_id: str | None = Field(None, description="Device, sensor or entity the data is about.")
    source: str | None = Field(None, description="Must equal the API key's source; defaults to it.")
    provider: str | None = Field(None, description="Organisation that provides the data.")
    classification: Classification | None = Field(None, description="Who may read it; default internal.")
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form labels.")
    schema_ref: str | None = Field(None, description="URI of the schema the content follows.")


class StoredObject(BaseModel):
    """Where an object is stored and what it is."""

    id: str = Field(description="The object's id (a ULID).", examples=["01JD5Q3W6Z8K4T2M9N7P5R3S1V"])
    bucket: str = Field(examples=["pantheon-sensor"])
    key: str = Field(
        description="Object key under the v1 naming scheme.",
        examples=[
            "v1/sensor.air_quality/demo-city/2024/11/20/10/u2edk/20241120T100000Z_01JD5Q3W6Z8K4T2M9N7P5R3S1V.json"
        ],
    )
    sha256: str = Field(description="Lower-case hex SHA-256 of the stored bytes.")
    size: int = Field(description="Size of the stored bytes.")
    etag: str = Field(description="Entity tag reported by the object store.")
    media_type: str = Field(description="Media type of the stored bytes.", examples=["application/json"])


class ObjectCreated(StoredObject):
    """The result of an upload."""

    event_id: str = Field(description="Id of the `DataStored` event that announced the object.")
    replayed: bool = Field(description="True when this is the stored result of an earlier call with the key.")
    metadata: dict[str, Any] = Field(description=_METADATA_DOC, examples=[_METADATA_EXAMPLE])


class ObjectInfo(StoredObject):
    """A stored object's reference and metadata."""

    encryption: str = Field(description="Server-side encryption reported by the store.", examples=["AES256"])
    metadata: dict[str, Any] = Field(description=_METADATA_DOC, examples=[_METADATA_EXAMPLE])


class SearchPage(BaseModel):
    """One page of search results, newest hour first."""

    objects: list[ObjectInfo]
    next_page_token: str | None = Field(
        description="Pass as `page_token` (with the same filters) for the next page; null on the last page."
    )


class LocationIn(BaseModel):
    """A WGS84 position."""

    model_config = ConfigDict(extra="forbid")

    lat: float = Field(allow_inf_nan=False, description="Latitude in degrees, -90 to 90.")
    lon: float = Field(allow_inf_nan=False, description="Longitude in degrees, -180 to 180.")
    alt: float | None = Field(None, allow_inf_nan=False, description="Altitude in metres.")


class RecordIn(BaseModel):
    """One small observation."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "entity_id": "station-42",
                "observed_at": "2024-11-20T10:00:00Z",
                "location": {"lat": 48.2082, "lon": 16.3738},
                "payload": {"pm10": 17.5, "pm2_5": 9.1},
                "labels": {"district": "07"},
            }
        },
    )

    entity_id: str = Field(description="Device, sensor or entity the record is about.")
    observed_at: AwareDatetime = Field(description="When it was observed (RFC 3339, with offset).")
    location: LocationIn
    payload: dict[str, Any] = Field(default_factory=dict, description="The observed values (a JSON object).")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of this record.")


class RecordBatchIn(BaseModel):
    """A batch of records of one data type (the JSON body of POST /v1/records)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "data_type": "sensor.air_quality",
                "records": [
                    {
                        "entity_id": "station-42",
                        "observed_at": "2024-11-20T10:00:00Z",
                        "location": {"lat": 48.2082, "lon": 16.3738},
                        "payload": {"pm10": 17.5},
                    }
                ],
            }
        },
    )

    data_type: str | None = Field(
        None, description="Data type of every record (or the `data_type` parameter)."
    )
    records: list[RecordIn] = Field(description="The records, 1 to the batch limit (10000 by default).")
    batch_format: BatchFormat | None = Field(None, description="How the batch is stored; default ndjson.")
    source: str | None = Field(None, description="Must equal the API key's source; defaults to it.")
    provider: str | None = None
    classification: Classification | None = None
    labels: dict[str, str] = Field(default_factory=dict, description="Labels for the whole batch.")
    schema_ref: str | None = Field(None, description="URI of the schema the payloads follow.")


class RecordOutcome(BaseModel):
    """The fate of one record of a batch."""

    index: int = Field(description="Position of the record in the request, from 0.")
    id: str | None = Field(description="Id of an accepted record.")
    status: Literal["accepted", "rejected"]
    reason: str | None = Field(description="Stable reason of a rejection.")
    errors: list[FieldError] = Field(description="Field violations of a rejected record.")


class RecordsResult(BaseModel):
    """The result of a batch: the batch object and every record's outcome."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "01JD5Q3W6Z8K4T2M9N7P5R3S1V",
                "bucket": "pantheon-sensor",
                "key": "v1/sensor.air_quality/demo-city/2024/11/20/10/u2edk/"
                "20241120T100000Z_01JD5Q3W6Z8K4T2M9N7P5R3S1V.ndjson",
                "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "size": 181,
                "etag": "5d41402abc4b2a76b9719d911017c592",
                "media_type": "application/x-ndjson",
                "event_id": "01JD5Q3W6Z8K4T2M9N7P5R3S1V",
                "replayed": False,
                "accepted": 1,
                "rejected": 1,
                "results": [
                    {
                        "index": 0,
                        "id": "01JD5Q3W6Z0000000000000000",
                        "status": "accepted",
                        "reason": None,
                        "errors": [],
                    },
                    {
                        "index": 1,
                        "id": None,
                        "status": "rejected",
                        "reason": "validation_failed",
                        "errors": [
                            {
                                "field": "records[1].location.latitude",
                                "reason": "double.gte_lte",
                                "description": "value must be greater than or equal to -90 and less than "
                                "or equal to 90",
                            }
                        ],
                    },
                ],
                "metadata": _METADATA_EXAMPLE,
            }
        }
    )

    id: str = Field(description="Id of the batch object.")
    bucket: str
    key: str
    sha256: str
    size: int
    etag: str
    media_type: str
    event_id: str = Field(description="Id of the batch's `DataStored` event.")
    replayed: bool
    accepted: int
    rejected: int
    results: list[RecordOutcome]
    metadata: dict[str, Any] = Field(description=_METADATA_DOC)


class Health(BaseModel):
    """The process is up."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Readiness of the services, their backends (gRPC health statuses) and
    the gateway's API keys file (NOT_SERVING while it cannot be loaded)."""

    status: Literal["ready"]
    checks: dict[str, str] = Field(
        examples=[
            {"services": "SERVING", "kafka": "SERVING", "objectstore": "SERVING", "api_keys": "SERVING"}
        ]
    )
