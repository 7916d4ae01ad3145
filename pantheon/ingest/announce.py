"""The events that announce what an ingest call stored, built one way for the
call and for the reconciler.

An object is announced by one DataStored event. A record batch is announced
by a RecordIngested event per accepted record, its DataStored event, and a
DeadLetter event per rejected record. Event ids are deterministic: the
object id, the record ids (derived from the batch id and each record's
position), and `<batch id>-rejected-<index>`. A second announcement, by a
retry or by the reconciler, therefore repeats the ids, and consumers drop
the copies.

A call builds its events before anything is stored, against a placeholder
reference as large as any real one, and checks their size, so that no
event can be refused after the object is stored. Once the object is stored,
`with_stored` fills the real reference in. The call's *announcement* (the
record batch's request, or nothing for an object) travels with the object
into its pending marker, so the reconciler can rebuild the same events from
it and the stored object (`rebuild`) when the call died before announcing,
and the call's answer (`object_result`, `batch_result`), which it records
under the call's idempotency key when the call died before recording it.

A batch's announcement (`BatchAnnouncement`) keeps the call's decision on
each record with the request, because a record's checks depend on the time
(`observed_at` at most five minutes ahead): checked again later, a record
rejected by the call could pass and change the batch, its key and its
events. The reconciler, and a retry that resumes the call under its id,
apply the recorded decision instead (`decided`).
"""

from __future__ import annotations

import asyncio
import zlib

from google.protobuf import any_pb2
from google.rpc import code_pb2, status_pb2
from pantheon_api.events.v1 import events_pb2
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb

from pantheon.config import KafkaSettings
from pantheon.errors import InvalidArgument
from pantheon.events.producer import Event
from pantheon.events.topics import for_classification
from pantheon.ingest import records as batch
from pantheon.ingest import workers

#: Largest event (value, key and headers) a call may produce. librdkafka's
#: producer refuses messages over its `message.max.bytes`, 1000000 by
#: default, and the broker's default limit is 1048588.
MAX_EVENT_BYTES = 1_000_000
#: Room counted for an event's CloudEvents headers (ids, type, source,
#: request id, traceparent: a few hundred bytes in practice).
HEADER_ALLOWANCE = 4096
#: Requests compressed on the event loop up to this size; larger ones in a
#: thread (zlib releases the GIL).
_INLINE_COMPRESS = 256 * 1024


def placeholder() -> md.ObjectRef:
    """A reference at least as large, encoded, as any real one (S3 bucket
    names are at most 63 bytes, keys at most 1024)."""
    return md.ObjectRef(
        bucket="b" * 63,
        key="k" * 1024,
        version_id="v" * 64,
        sha256="0" * 64,
        size_bytes=2**63 - 1,
        etag="e" * 64,
    )


def object_events(topics: KafkaSettings, meta: md.Metadata, ref: md.ObjectRef) -> list[Event]:
    """The announcement of a stored object (or record batch): its DataStored event."""
    # RESTRICTED data is announced only on the restricted topics.
    topic = for_classification(
        topics.events_topic, meta.classification, restricted=topics.restricted_events_topic
    )
    event = events_pb2.DataStored(event_id=meta.id, metadata=meta, object=ref)
    return [Event(topic, meta.source, event, meta.id, meta.source, subject=meta.id)]


def batch_events(
    topics: KafkaSettings,
    meta: md.Metadata,
    ref: md.ObjectRef,
    accepted: list[batch.Accepted],
    rejected: list[batch.Rejected],
) -> list[Event]:
    """The announcement of a record batch, in the order it is published."""
    return (
        _record_events(topics, meta, ref, accepted)
        + object_events(topics, meta, ref)
        + [_dead_letter(topics, meta, item) for item in rejected]
    )


def check_sizes(events: list[Event]) -> None:
    """Refuse, before anything is stored, a call with an event Kafka would refuse."""
    for event in events:
        if event.payload.ByteSize() + len(event.key.encode()) + HEADER_ALLOWANCE > MAX_EVENT_BYTES:
            raise InvalidArgument(
                f"an event of this call would exceed {MAX_EVENT_BYTES} bytes; send less metadata",
                reason="event_too_large",
            )


def with_stored(events: list[Event], stored: spb.PutObjectResponse) -> None:
    """Fill the stored object's reference (and its final metadata) into
    events built against the placeholder."""
    for event in events:
        payload = event.payload
        if isinstance(payload, events_pb2.DataStored):
            payload.metadata.CopyFrom(stored.metadata)
            payload.object.CopyFrom(stored.object)
        elif isinstance(payload, events_pb2.RecordIngested):
            payload.batch_object.CopyFrom(stored.object)


async def of_batch(request: pb.IngestRecordsRequest, rejected: list[batch.Rejected]) -> any_pb2.Any:
    """A record batch's announcement: its request and the call's decision."""
    # Deterministic, as the whole announcement: a call that resumes this one
    # rebuilds it byte for byte (storage compares them, Index.put_pending).
    data = request.SerializeToString(deterministic=True)
    level = 1  # fast: the announcement is written once and rarely read
    compressed = (
        zlib.compress(data, level)
        if len(data) <= _INLINE_COMPRESS
        else await asyncio.to_thread(zlib.compress, data, level)
    )
    packed = any_pb2.Any()
    packed.Pack(
        pb.BatchAnnouncement(request_zlib=compressed, rejected=[batch.rejection(item) for item in rejected]),
        deterministic=True,
    )
    return packed


async def decided(
    announcement: any_pb2.Any,
) -> tuple[pb.IngestRecordsRequest, list[batch.Accepted], list[batch.Rejected]]:
    """The request of a batch's announcement, split as its call decided."""
    found = pb.BatchAnnouncement()
    if not announcement.Unpack(found):
        raise ValueError(f"not a batch announcement: {announcement.type_url}")
    data = await asyncio.to_thread(zlib.decompress, found.request_zlib)
    request = pb.IngestRecordsRequest.FromString(data)
    accepted, rejected = batch.split(request.records, found.rejected)
    return request, accepted, rejected


def object_result(meta: md.Metadata, ref: md.ObjectRef) -> pb.IngestObjectResponse:
    """What an object's call answers, once it is stored and announced."""
    return pb.IngestObjectResponse(metadata=meta, object=ref, event_id=meta.id)


def batch_result(
    meta: md.Metadata, ref: md.ObjectRef, accepted: list[batch.Accepted], rejected: list[batch.Rejected]
) -> pb.IngestRecordsResponse:
    """What a record batch's call answers: a result per record, in the request's order."""
    ok = status_pb2.Status(code=code_pb2.OK)
    results = [pb.RecordResult(index=i.index, id=i.id, event_id=i.id, status=ok) for i in accepted]
    results += [batch.rejection(r) for r in rejected]
    results.sort(key=lambda r: r.index)
    return pb.IngestRecordsResponse(
        metadata=meta,
        object=ref,
        results=results,
        accepted_count=len(accepted),
        rejected_count=len(rejected),
        event_id=meta.id,
    )


async def rebuild(
    topics: KafkaSettings, announcement: any_pb2.Any, info: spb.StatObjectResponse
) -> list[Event]:
    """The events of a stored object from its call's announcement, as the call built them."""
    meta, ref = info.metadata, info.object
    records = await _recalled(announcement, meta)
    if records is None:
        return object_events(topics, meta, ref)
    return batch_events(topics, meta, ref, *records)


async def rebuild_result(
    announcement: any_pb2.Any, info: spb.StatObjectResponse
) -> pb.IngestObjectResponse | pb.IngestRecordsResponse:
    """The answer of a stored object's call from its announcement, as the call built it."""
    meta, ref = info.metadata, info.object
    records = await _recalled(announcement, meta)
    if records is None:
        return object_result(meta, ref)
    return batch_result(meta, ref, *records)


async def _recalled(
    announcement: any_pb2.Any, meta: md.Metadata
) -> tuple[list[batch.Accepted], list[batch.Rejected]] | None:
    """A batch call's decision, its records named after the batch (None for an object's call)."""
    if not announcement.type_url:
        return None
    _, accepted, rejected = await decided(announcement)
    return batch.identify(meta.id, accepted), rejected


async def decide(
    request: pb.IngestRecordsRequest, batch_id: str
) -> tuple[list[batch.Accepted], list[batch.Rejected], bytes]:
    """The call's decision on each record, the valid ones with their ids, and
    the batch object's bytes (`batch.decide`); a large batch is done in one
    worker call, so its request is sent to a worker and parsed there once."""
    if len(request.records) <= batch.INLINE_MAX_RECORDS:
        return batch.decide(request, batch_id)
    decided = await workers.pool().run_in_process(
        batch.decide_serialized, request.SerializeToString(), batch_id
    )
    return batch.applied(request, decided)


def _record_events(
    topics: KafkaSettings, meta: md.Metadata, ref: md.ObjectRef, accepted: list[batch.Accepted]
) -> list[Event]:
    topic = for_classification(
        topics.records_topic, meta.classification, restricted=topics.restricted_records_topic
    )
    inherited = batch.RecordMetadata(meta)
    events = []
    for item in accepted:
        # Filled in place: building each part apart and copying it in cost twice as much.
        payload = events_pb2.RecordIngested(event_id=item.id, batch_index=item.index)
        inherited.fill(payload.metadata, item)
        payload.payload.CopyFrom(item.record.payload)
        payload.batch_object.CopyFrom(ref)
        key = f"{meta.source}/{item.record.entity_id}"
        events.append(Event(topic, key, payload, item.id, meta.source, subject=item.id))
    return events


def _dead_letter(topics: KafkaSettings, meta: md.Metadata, item: batch.Rejected) -> Event:
    event_id = f"{meta.id}-rejected-{item.index}"
    status = batch.rejection(item).status
    letter = events_pb2.DeadLetter(
        event_id=event_id,
        reason="invalid_record",
        status=status,
        metadata=md.Metadata(
            data_type=meta.data_type,
            source=meta.source,
            entity_id=item.record.entity_id,
            lineage=meta.lineage,
        ),
        original=item.record.SerializeToString()[: batch.MAX_RECORD_BYTES],
    )
    return Event(
        # The rejected record itself is in `original`: keep it with its batch's readers.
        for_classification(topics.dlq_topic, meta.classification, restricted=topics.restricted_dlq_topic),
        meta.source,
        letter,
        event_id,
        meta.source,
        extra_headers=(("pantheon_reason", "invalid_record"),),
    )
