"""Record batches over REST: the query's batch fields as protobuf enums, and
every record's outcome back as JSON.

The body itself is not parsed here: the ingestion service parses and types
record documents (pantheon/ingest/record_document.py), so there is one rule
set for records, and the gateway's event loop never parses a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.rpc import code_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md

from gateway.problems import read_status

CLASSIFICATIONS: Mapping[str, md.Classification.ValueType] = {
    "public": md.CLASSIFICATION_PUBLIC,
    "internal": md.CLASSIFICATION_INTERNAL,
    "restricted": md.CLASSIFICATION_RESTRICTED,
}
BATCH_FORMATS: Mapping[str, pb.BatchFormat.ValueType] = {
    "ndjson": pb.BATCH_FORMAT_NDJSON,
    "csv": pb.BATCH_FORMAT_CSV,
}


def outcomes(
    response: pb.IngestRecordsResponse, rename: Callable[[str], str] = lambda path: path
) -> list[dict[str, Any]]:
    """Every record's outcome, in request order (field paths passed through `rename`)."""
    found = []
    for result in response.results:
        if result.status.code == code_pb2.OK:
            found.append(
                {"index": result.index, "id": result.id, "status": "accepted", "reason": None, "errors": []}
            )
            continue
        rich = read_status(result.status)
        found.append(
            {
                "index": result.index,
                "id": None,
                "status": "rejected",
                "reason": rich.reason or "invalid_record",
                "errors": [{**e.model_dump(), "field": rename(e.field)} for e in rich.errors],
            }
        )
    return found
