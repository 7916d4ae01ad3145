"""Builds the gRPC server that hosts the ingestion and storage services.

One TLS server hosts both services, the standard health service and server
reflection (so `grpcurl` can list and call them). The ingestion service
always reaches storage through its gRPC contract: in-process by default
(`PANTHEON_STORAGE_TARGET=local`, the same messages without the network
hop), or over TLS to a remote storage service (`host:port`), so the two
scale apart without code changes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pantheon_api.ingest.v1 import ingest_service_pb2, ingest_service_pb2_grpc
from pantheon_api.storage.v1 import storage_service_pb2, storage_service_pb2_grpc

from pantheon import faults, tracing
from pantheon.client_channel import channel_options
from pantheon.config import ClientIdentity, ServiceSettings, TLSSettings
from pantheon.errors import PantheonError
from pantheon.events.producer import EventPublisher, KafkaPublisher
from pantheon.ingest.reconciler import Reconciler
from pantheon.ingest.service import STREAM_DEADLINE_S, IngestionServicer
from pantheon.interceptors import EdgeInterceptor
from pantheon.policy import PolicyFile
from pantheon.storage.buckets import INDEX_BUCKET
from pantheon.storage.local import LocalStorageStub
from pantheon.storage.object_store import ObjectStore
from pantheon.storage.page_tokens import PageTokens, new_key
from pantheon.storage.s3 import S3ObjectStore
from pantheon.storage.service import StorageServicer

log = logging.getLogger(__name__)

#: Largest message accepted: a 10000-record batch fits, anything bigger is
#: refused by gRPC with RESOURCE_EXHAUSTED before it is parsed.
MAX_MESSAGE_BYTES = 16 * 2**20

_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]
_SERVICES = (
    ingest_service_pb2.DESCRIPTOR.services_by_name["IngestionService"].full_name,
    storage_service_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name,
)


def server_credentials(tls: TLSSettings) -> grpc.ServerCredentials:
    """Mutual TLS: a caller without a certificate of the deployment's CA
    cannot complete the handshake, whatever it calls."""
    return grpc.ssl_server_credentials(
        [(Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes())],
        root_certificates=Path(tls.ca_file).read_bytes(),
        require_client_auth=True,
    )


def channel_credentials(ca_file: str, identity: ClientIdentity) -> grpc.ChannelCredentials:
    """TLS to a Pantheon service, presenting `identity`'s client certificate."""
    return grpc.ssl_channel_credentials(
        Path(ca_file).read_bytes(),
        private_key=Path(identity.key_file).read_bytes(),
        certificate_chain=Path(identity.cert_file).read_bytes(),
    )


def secure_channel(
    target: str, ca_file: str, identity: ClientIdentity, *, authority: str | None = None
) -> grpc.aio.Channel:
    """A long-lived mutual-TLS channel with keepalive and the message size
    limit, balanced over the target's replicas with health checks and
    retries of idempotent calls (pantheon/client_channel.py). `authority`
    (`PANTHEON_GRPC_AUTHORITY`) names the services' certificate when the
    target does not."""
    credentials = channel_credentials(ca_file, identity)
    options = [
        *_KEEPALIVE,
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        *channel_options(target, authority),
    ]
    return grpc.aio.secure_channel(
        target, credentials, options=options, interceptors=tracing.client_interceptors()
    )


#: Calls the admission limit does not count (health watches, reflection)
#: that gRPC's own backstop still lets in on top of it.
UNCOUNTED_RPCS = 64
#: How long a stopping replica keeps serving after it reports NOT_SERVING.
DRAIN_S = 1.0


@dataclass
class Running:
    """A started server and what must be closed with it."""

    server: grpc.aio.Server
    port: int
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    publisher: EventPublisher | None = None
    health: health.aio.HealthServicer | None = None
    watcher: asyncio.Task[None] | None = None
    reconciling: asyncio.Task[None] | None = None
    storage: StorageServicer | None = None

    async def stop(self, grace_s: float = 5.0) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
        if self.reconciling is not None:
            self.reconciling.cancel()
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
            # Clients watching the health service send their next calls to
            # other replicas within a moment (client_channel.py); only then
            # stop taking calls, so that a rolling restart refuses none.
            await asyncio.sleep(min(DRAIN_S, grace_s))
        await self.server.stop(grace_s)
        if self.storage is not None:
            await self.storage.close()
        for channel in self.channels:
            await channel.close()
        if isinstance(self.publisher, KafkaPublisher):
            await asyncio.to_thread(self.publisher.close)


#: Health-check names of the backends; "" is SERVING only when both are.
KAFKA_HEALTH = "pantheon.backend.kafka"
OBJECT_STORE_HEALTH = "pantheon.backend.objectstore"


async def _watch_backends(
    checker: health.aio.HealthServicer,
    publisher: EventPublisher,
    store: ObjectStore,
    every_s: float = 5.0,
) -> None:
    """Keep the health service's backend entries current."""
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    while True:
        kafka_ok = await publisher.probe()
        try:
            await store.list(INDEX_BUCKET, "health/", limit=1)
            store_ok = True
        except PantheonError:
            store_ok = False
        await checker.set(KAFKA_HEALTH, serving if kafka_ok else not_serving)
        await checker.set(OBJECT_STORE_HEALTH, serving if store_ok else not_serving)
        await checker.set("", serving if kafka_ok and store_ok else not_serving)
        await asyncio.sleep(every_s)


async def create_server(
    settings: ServiceSettings,
    *,
    store: ObjectStore | None = None,
    publisher: EventPublisher | None = None,
) -> Running:
    """Start the server on `settings.listen`; collaborators may be handed in."""
    server = grpc.aio.server(
        # Admission control of the Pantheon calls is the interceptor's
        # (interceptors.Admission: health checks are not counted) ...
        interceptors=[EdgeInterceptor(PolicyFile(Path(settings.policy_file)), settings.max_concurrent_rpcs)],
        # ... and gRPC's own limit a backstop for everything, health watches
        # (one per client channel) and reflection included: past it, gRPC
        # refuses a call with RESOURCE_EXHAUSTED before anything runs.
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs + UNCOUNTED_RPCS,
        options=[
            *_KEEPALIVE,
            ("grpc.http2.bdp_probe", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    port = server.add_secure_port(settings.listen, server_credentials(settings.tls))
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen}")
    running = Running(server, port)

    tokens = PageTokens(settings.page_token_key or new_key())
    storage_servicer = running.storage = StorageServicer(store or S3ObjectStore(settings.s3), tokens)
    storage_service_pb2_grpc.add_StorageServiceServicer_to_server(storage_servicer, server)

    storage: storage_service_pb2_grpc.StorageServiceAsyncStub
    if settings.storage_target == "local":
        # Same calls and messages as the generated stub, without the network.
        storage = cast("storage_service_pb2_grpc.StorageServiceAsyncStub", LocalStorageStub(storage_servicer))
    else:
        assert settings.identity is not None  # required with a remote storage target
        channel = secure_channel(
            settings.storage_target,
            settings.tls.ca_file,
            settings.identity,
            authority=settings.grpc_authority,
        )
        running.channels.append(channel)
        storage = storage_service_pb2_grpc.StorageServiceStub(channel)
    running.publisher = publisher or KafkaPublisher(settings.kafka)
    if settings.fault_injection:  # test stacks only: SIGUSR1 and crash points (pantheon/faults.py)
        faults.install(running.publisher, crash_after_store=settings.crash_before_publish)
    reconciler = Reconciler(
        storage,
        running.publisher,
        settings.kafka,
        after=timedelta(seconds=settings.reconcile_after_s),
        # The longest upload, and a margin for clocks and slow stores.
        discard_after=timedelta(seconds=STREAM_DEADLINE_S + 600),
        deadline_s=settings.backend_deadline_s,
        read_deadline_s=STREAM_DEADLINE_S,
        stale_claim=timedelta(seconds=settings.stale_claim_s),
    )
    ingest_service_pb2_grpc.add_IngestionServiceServicer_to_server(
        IngestionServicer(
            storage,
            running.publisher,
            settings.kafka,
            max_object_bytes=settings.max_object_bytes,
            max_document_bytes=settings.max_record_document_bytes,
            deadline_s=settings.backend_deadline_s,
            stale_claim=timedelta(seconds=settings.stale_claim_s),
            reconciler=reconciler,
        ),
        server,
    )

    running.health = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(running.health, server)
    for name in _SERVICES:
        await running.health.set(name, health_pb2.HealthCheckResponse.SERVING)
    running.watcher = asyncio.create_task(
        _watch_backends(running.health, running.publisher, storage_servicer.store)
    )
    running.reconciling = asyncio.create_task(reconciler.run(settings.reconcile_interval_s))
    reflection.enable_server_reflection((*_SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    await server.start()
    log.info("gRPC services listening on %s (storage: %s)", settings.listen, settings.storage_target)
    return running
