"""The design floor of a small ingest: its backend requests alone, with no Pantheon code.

A keyless small ingest makes, in this order and each waiting for the one
before (README, "Guarantees"): a conditional SSE PUT of the pending marker
(before the bytes: nothing stored goes unannounced), a conditional SSE PUT
of the object with its metadata headers, one event acknowledged by Kafka
(acks=all), and a conditional SSE PUT of the `ids/` entry (after the event:
nothing visible is unannounced). The benchmark issues exactly these from
its own threads, with the services' S3 client and Kafka settings and
payloads of the real sizes, so that Pantheon's rows can be read against what
any implementation of this design would cost on the same machine, and the
raw row against what the design itself costs.

The floor is generous: it leaves out what Pantheon does besides (the marker's
removal, batched later; the request's checks; the gRPC and REST hops). Like
the raw PUTs (under `bench/raw/`), it writes into the dev stack's buckets
under `bench/floor/`, where neither search nor the reconciler looks.
Its event goes to the records topic, as the raw record batches' do, so no
consumer of DataStored hears of an object that does not exist.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Mapping

import urllib3
from confluent_kafka import KafkaException, Producer
from pantheon_api.events.v1 import events_pb2
from pantheon_api.metadata.v1 import metadata_pb2 as md

from pantheon.events.cloudevents import headers_for
from pantheon.metadata.ulid import new_ulid
from pantheon.storage import minio_calls

#: Sizes of a real keyless small ingest's writes (a 11-byte JSON document),
#: read off the dev stack: the `ids/` entry, the marker (the entry's
#: metadata plus the encoded announcement) and the object's metadata headers.
ENTRY_BYTES = 530
MARKER_BYTES = 1200
META_HEADER_BYTES = 300

_CONDITIONAL_SSE = {"X-Amz-Server-Side-Encryption": "AES256", "If-None-Match": "*"}
_ACK_TIMEOUT_S = 30.0


class DesignFloor:
    """Runs the backend requests of one small ingest per call of `ingest`, from any thread."""

    def __init__(self, env: Mapping[str, str], kafka_config: Mapping[str, object], threads: int) -> None:
        self._s3 = minio_calls.Client(
            env["PANTHEON_S3_ENDPOINT"].removeprefix("https://"),
            access_key=env["PANTHEON_S3_ACCESS_KEY"],
            secret_key=env["PANTHEON_S3_SECRET_KEY"],
            secure=True,
            http_client=urllib3.PoolManager(
                ssl_context=ssl.create_default_context(cafile=env["PANTHEON_CA_FILE"]), maxsize=threads
            ),
        )
        # One idempotent producer for all threads, as the services have.
        self._producer = Producer({**kafka_config, "enable.idempotence": True, "acks": "all", "linger.ms": 0})
        self._topic = env.get("PANTHEON_RECORDS_TOPIC", "pantheon.records.v1")
        self._stopped = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="floor-kafka", daemon=True)
        self._poller.start()
        meta = {f"X-Amz-Meta-F{n}": "x" * 20 for n in range(META_HEADER_BYTES // 30)}
        self._object_headers = {"Content-Type": "application/json", **meta, **_CONDITIONAL_SSE}
        self._index_headers = {"Content-Type": "application/octet-stream", **_CONDITIONAL_SSE}

    def _poll(self) -> None:
        # Delivery reports are served here, as the services' delivery thread does.
        while not self._stopped.is_set():
            self._producer.poll(0.05)

    def ingest(self, n: int) -> None:
        """Marker, object, acknowledged event, `ids/` entry: one after the other."""
        object_id = new_ulid()
        root = f"bench/floor/{object_id}"
        minio_calls.put_object(
            self._s3, "pantheon-index", f"{root}/pending", os.urandom(MARKER_BYTES), self._index_headers
        )
        minio_calls.put_object(
            self._s3, "pantheon-sensor", f"{root}.json", b'{"pm10": %d}' % n, self._object_headers
        )
        self._publish(object_id)
        minio_calls.put_object(
            self._s3, "pantheon-index", f"{root}/id", os.urandom(ENTRY_BYTES), self._index_headers
        )

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
        if not acked.wait(_ACK_TIMEOUT_S) or errors != [None]:
            raise KafkaException(errors[0] if errors else "no acknowledgement in time")

    def close(self) -> None:
        self._stopped.set()
        self._poller.join()
        self._producer.flush(10)
