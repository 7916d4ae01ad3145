"""The design floor of a small ingest: its backend requests alone, with no Pantheon code in the way.

A keyless small ingest makes, in this order and each waiting for the one
before (README, "Guarantees"): a conditional SSE PUT of the pending marker
(before the bytes: nothing stored goes unannounced), a conditional SSE PUT
of the object with its metadata headers, one event acknowledged by Kafka
(acks=all), and a conditional SSE PUT of the `ids/` entry (after the event:
nothing visible is unannounced). The benchmark issues exactly these from its
own threads, with the clients the services use (minio-py with a CRC32 in
place of its MD5, and an idempotent confluent-kafka producer with the
services' settings) and payloads of the real sizes. Pantheon's rows can then
be read against what this design costs with these clients on the same
machine, and the raw row against what the design itself costs beside one
PUT. (A leaner client than minio-py could go below it: about a third of the
floor's CPU is the client's.)

The floor is generous otherwise: it leaves out what Pantheon does besides
(the marker's removal, batched later; the request's checks; the gRPC and
REST hops), and each of its threads has a connection of its own where the
services share 16. Like the raw PUTs, it writes into the dev stack's
buckets under `bench/floor/`, where neither search nor the reconciler looks
and which `scripts/bench` empties when it ends. Its events go to the records
topic, as the raw record batches' do, so no consumer of DataStored hears of
an object that does not exist; a consumer of the records topic on the dev
stack sees them, from source `bench-floor`.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import KafkaException
from minio import Minio
from pantheon_api.events.v1 import events_pb2
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.config import KafkaSettings
from pantheon.events.cloudevents import headers_for
from pantheon.events.producer import new_producer
from pantheon.metadata.ulid import new_ulid
from pantheon.storage import minio_calls

log = logging.getLogger(__name__)

#: Sizes of a real keyless small ingest's writes (an 11-byte JSON document):
#: the `ids/` entry and the object's metadata headers, read off the dev
#: stack; the marker (the object's metadata, bucket and key: a keyless
#: object announces nothing more) estimated from the entry, which also holds
#: the digest, the ETag and the encryption.
ENTRY_BYTES = 530
MARKER_BYTES = 420
META_HEADER_BYTES = 300

_CONDITIONAL_SSE = {"X-Amz-Server-Side-Encryption": "AES256", "If-None-Match": "*"}


class DesignFloor:
    """Runs the backend requests of one small ingest per call of `ingest`, from any thread.

    After the first failure every call fails at once, so that a backend that
    is down ends the run instead of timing out every call queued behind it.
    """

    def __init__(self, s3: Minio, kafka: KafkaSettings) -> None:
        # `s3`: the services' client (minio_calls.Client), which sends a CRC32 instead of an MD5.
        self._s3 = s3
        self._producer = new_producer(kafka, error_cb=None)
        self._topic = kafka.records_topic
        self._ack_timeout_s = kafka.delivery_timeout_ms / 1000 + 5
        self._failed = threading.Event()
        self._stopped = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="floor-kafka", daemon=True)
        self._poller.start()
        meta = {f"X-Amz-Meta-F{n}": "x" * 20 for n in range(META_HEADER_BYTES // 30)}
        self._object_headers = {"Content-Type": "application/json", **meta, **_CONDITIONAL_SSE}
        self._index_headers = {"Content-Type": "application/octet-stream", **_CONDITIONAL_SSE}

    def _poll(self) -> None:
        # Delivery reports are served here, as the services' delivery thread does.
        while not self._stopped.is_set():
            try:
                self._producer.poll(0.05)
            except Exception:  # a callback's error must not stop the reports of every other call
                log.exception("serving the floor's delivery reports")

    def warm(self, threads: int) -> None:
        """As many calls at once as `threads`: every connection open, the producer's session up."""
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(self.ingest, range(threads)))

    def ingest(self, n: int) -> None:
        """Marker, object, acknowledged event, `ids/` entry: one after the other."""
        if self._failed.is_set():
            raise RuntimeError("an earlier call of the design floor failed")
        try:
            object_id = new_ulid()
            marker, entry = os.urandom(MARKER_BYTES), os.urandom(ENTRY_BYTES)
            document = b'{"pm10": %d}' % n
            self._put("pantheon-index", f"bench/floor/pending/{object_id}", marker, self._index_headers)
            self._put("pantheon-sensor", f"bench/floor/{object_id}.json", document, self._object_headers)
            self._publish(object_id)
            self._put("pantheon-index", f"bench/floor/ids/{object_id}", entry, self._index_headers)
        except BaseException:
            self._failed.set()
            raise

    def _put(self, bucket: str, key: str, data: bytes, headers: dict[str, str]) -> None:
        minio_calls.put_object(self._s3, bucket, key, data, headers)

    def _publish(self, object_id: str) -> None:
        meta = md.Metadata(
            id=object_id, data_type="sensor.air_quality", source="bench-floor", entity_id="floor"
        )
        event = events_pb2.RecordIngested(event_id=object_id, metadata=meta)
        acked = threading.Event()
        errors: list[object] = []

        def delivered(error: object, _message: object) -> None:
            errors.append(error)
            acked.set()

        self._producer.produce(
            self._topic,
            value=event.SerializeToString(),
            key=b"bench-floor",
            headers=headers_for(event, event_id=object_id, source="bench-floor"),
            on_delivery=delivered,
        )
        # The producer gives up at its delivery timeout and reports that; this waits a little longer.
        if not acked.wait(self._ack_timeout_s) or errors != [None]:
            raise KafkaException(errors[0] if errors else "no delivery report in time")

    def close(self) -> None:
        self._stopped.set()
        self._poller.join()
        self._producer.flush(10)
