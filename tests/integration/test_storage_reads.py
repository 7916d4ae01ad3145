"""Reading back through the storage service: stat, ranged gets, search by
data type, source, time and area with paging; reflection and health."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from minio import Minio
from minio.error import S3Error
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as spb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as spb_grpc

from pantheon.client_channel import authority_options
from pantheon.config import ClientIdentity
from pantheon.server import channel_credentials, secure_channel
from pantheon.storage.buckets import INDEX_BUCKET
from tests.integration.support import ingest, ingest_stub, metadata, unique_source

pytestmark = pytest.mark.timeout(120)

VIENNA, ATHENS = (48.2082, 16.3738), (37.9838, 23.7275)


async def _seed(env: dict[str, str], source: str) -> tuple[list[md.Metadata], datetime]:
    """Five objects: three in Vienna, two in Athens, an hour apart each."""
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    stored = []
    channel, stub = ingest_stub(env)
    async with channel:
        for i, (lat, lon) in enumerate([VIENNA, ATHENS, VIENNA, ATHENS, VIENNA]):
            meta = metadata(source, "weather.observation", location=md.GeoPoint(latitude=lat, longitude=lon))
            meta.observed_at.FromDatetime(base + timedelta(hours=i, minutes=10))
            result = await ingest(stub, meta, b'{"i": %d}' % i, "application/json")
            stored.append(result.metadata)
    return stored, base


def _query(source: str, after: datetime, before: datetime, **extra: object) -> spb.SearchObjectsRequest:
    q = spb.SearchObjectsRequest(data_type="weather.observation", source=source, **extra)  # type: ignore[arg-type]
    q.observed_after.FromDatetime(after)
    q.observed_before.FromDatetime(before)
    return q


async def test_search_pages_filters_and_reads_back(stack_env: dict[str, str]) -> None:
    source = unique_source()
    stored, base = await _seed(stack_env, source)
    channel = secure_channel(
        stack_env["PANTHEON_GRPC_TARGET"], stack_env["PANTHEON_CA_FILE"], ClientIdentity.from_env(stack_env)
    )
    async with channel:
        storage = spb_grpc.StorageServiceStub(channel)
        everything = _query(source, base, base + timedelta(hours=6), page_size=2)
        pages, ids = 0, []
        while True:
            page = await storage.SearchObjects(everything, timeout=10)
            pages += 1
            ids += [o.metadata.id for o in page.objects]
            if not page.next_page_token:
                break
            everything.page_token = page.next_page_token
        # Newest hour first, every object once, three pages of at most two.
        assert ids == [m.id for m in reversed(stored)]
        assert pages == 3

        vienna = md.BoundingBox(min_latitude=48.0, min_longitude=16.0, max_latitude=48.5, max_longitude=16.6)
        in_vienna = await storage.SearchObjects(_query(source, base, base + timedelta(hours=6), bbox=vienna))
        assert [o.metadata.id for o in in_vienna.objects] == [stored[4].id, stored[2].id, stored[0].id]

        window = await storage.SearchObjects(
            _query(source, base + timedelta(hours=1), base + timedelta(hours=3))
        )
        assert [o.metadata.id for o in window.objects] == [stored[2].id, stored[1].id]

        info = await storage.StatObject(spb.StatObjectRequest(id=stored[0].id))
        assert info.encryption == "AES256" and info.metadata.sha256 == stored[0].sha256
        parts = [
            p async for p in storage.GetObject(spb.GetObjectRequest(id=stored[0].id, offset=1, length=4))
        ]
        assert parts[0].HasField("info")
        assert b"".join(p.chunk for p in parts[1:]) == b'{"i":0}\n'[1:5]

        bad_token = _query(source, base, base + timedelta(hours=6), page_token="bm90LWEtdG9rZW4")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await storage.SearchObjects(bad_token)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        too_long = _query(source, base - timedelta(days=40), base)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await storage.SearchObjects(too_long)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await storage.StatObject(spb.StatObjectRequest(id="01ARZ3NDEKTSV4RRFFQ69G5FAV"))
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await storage.GetObject(spb.GetObjectRequest(id="../../etc/passwd")).read()
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_search_leaves_a_manifest_and_answers_the_same_from_it(
    stack_env: dict[str, str], minio_client: Minio
) -> None:
    """Against real MinIO (SSE on): ten objects in one hour, searched; the
    hour's manifest appears (encrypted, holding exactly their entries); the
    next search answers the same; an object committed later is found too."""
    source = unique_source()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    channel, stub = ingest_stub(stack_env)
    stored = []
    async with channel:
        for i in range(10):
            meta = metadata(
                source, "weather.observation", location=md.GeoPoint(latitude=VIENNA[0], longitude=VIENNA[1])
            )
            meta.observed_at.FromDatetime(hour + timedelta(minutes=i))
            stored.append((await ingest(stub, meta, b'{"i": %d}' % i, "application/json")).metadata.id)
    name = f"manifests/v1/weather.observation/{source}/{hour:%Y/%m/%d/%H}"
    query = _query(source, hour, hour + timedelta(hours=1), page_size=100)
    search = secure_channel(
        stack_env["PANTHEON_GRPC_TARGET"], stack_env["PANTHEON_CA_FILE"], ClientIdentity.from_env(stack_env)
    )
    async with search:
        storage = spb_grpc.StorageServiceStub(search)
        first = [o.metadata.id for o in (await storage.SearchObjects(query, timeout=10)).objects]
        assert sorted(first) == sorted(stored)
        # Written off the search's path: wait for it (a bounded poll, not a timing claim).
        for _ in range(300):
            try:
                data = minio_client.get_object(INDEX_BUCKET, name).read()
                break
            except S3Error:
                await asyncio.sleep(0.1)
        else:
            pytest.fail(f"no manifest {name}")
        manifest = spb.HourManifest.FromString(data)
        assert sorted(e.metadata.id for e in manifest.objects) == sorted(stored)
        assert (
            minio_client.stat_object(INDEX_BUCKET, name).metadata.get("X-Amz-Server-Side-Encryption")
            == "AES256"
        )
        again = [o.metadata.id for o in (await storage.SearchObjects(query, timeout=10)).objects]
        assert again == first
        channel, stub = ingest_stub(stack_env)
        async with channel:
            meta = metadata(
                source, "weather.observation", location=md.GeoPoint(latitude=VIENNA[0], longitude=VIENNA[1])
            )
            meta.observed_at.FromDatetime(hour + timedelta(minutes=30))
            late = (await ingest(stub, meta, b'{"i": 10}', "application/json")).metadata.id
        found = [o.metadata.id for o in (await storage.SearchObjects(query, timeout=10)).objects]
        assert sorted(found) == sorted([*stored, late])


def test_health_and_reflection_need_only_an_identity(stack_env: dict[str, str]) -> None:
    credentials = channel_credentials(stack_env["PANTHEON_CA_FILE"], ClientIdentity.from_env(stack_env))
    target = stack_env["PANTHEON_GRPC_TARGET"]  # an ipv4: list of replicas needs the authority
    with grpc.secure_channel(target, credentials, authority_options(target)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "pantheon.backend.kafka", "pantheon.backend.objectstore"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "pantheon_api.ingest.v1.IngestionService" in services
    assert "pantheon_api.storage.v1.StorageService" in services


def test_plaintext_grpc_is_refused(stack_env: dict[str, str]) -> None:
    with (
        grpc.insecure_channel(stack_env["PANTHEON_GRPC_TARGET"]) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_services_serve_prometheus_metrics_over_https(stack_env: dict[str, str]) -> None:
    import httpx

    identity = ClientIdentity.from_env(stack_env)
    with pytest.raises(httpx.HTTPError):  # no client certificate, no metrics
        httpx.get(stack_env["PANTHEON_METRICS_URL"], verify=stack_env["PANTHEON_CA_FILE"], timeout=10)
    scraper = ssl.create_default_context(cafile=stack_env["PANTHEON_CA_FILE"])
    scraper.load_cert_chain(identity.cert_file, identity.key_file)
    body = httpx.get(stack_env["PANTHEON_METRICS_URL"], verify=scraper, timeout=10).text
    assert "pantheon_rpc_requests_total" in body
    assert "pantheon_event_delivery_seconds_bucket" in body
    with pytest.raises(httpx.HTTPError):
        httpx.get(stack_env["PANTHEON_METRICS_URL"].replace("https://", "http://"), timeout=5)
