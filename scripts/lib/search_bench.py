"""`scripts/bench --only search`: search latency as the data grows, against raw listings.

Three data sets, each under a data type of its own so they never mix:
1,000 objects from 1 source (`sensor.bench_search_1k`), 10,000 from 10
(`..._10k`) and 100,000 from 100 (`..._100k`), all observed on one fixed day
(24 hourly prefixes per source), spread evenly over the hours and sources
and at random over a 0.5 x 0.8 degree region around Vienna (about 200
geohash-5 cells). `--quick` uses the 1k set only.

Loading 100k objects through the ingestion API would take over ten minutes
here, so the loader writes what PutObject + CommitObject leave behind, with
the storage layer's own code in-process (S3ObjectStore, Index): the object
under its v1 key with its user metadata and SSE, then its `ids/<id>` index
entry (pending markers are written and removed on that path, so they are
left out). Ids and places come from a seed, so a load that was interrupted
resumes where it stopped (writes are create-only; an object already there is
stat-ed, not rewritten). A marker, `bench/search/<data_type>.json` in
`pantheon-sensor` (outside `v1/`, so no search lists it), says a set is
complete: later runs reuse it. The sets stay until `scripts/stack down
--purge` (the storage key may not delete objects).

Each query runs through the running services' gRPC SearchObjects (the dev
client's identity, which holds the restricted grant, so both the domain's
bucket and its restricted twin are searched):

- `type`: the data type, the whole day;
- `type+source`: one source, the whole day;
- `type+bbox`: a 0.04 x 0.04 degree box (at most four cells), the whole day;
- `type+time`: one hour (12:00 to 13:00).

A search keeps the index entries it read in per-hour manifests
(pantheon.storage.manifests), so each set's manifests are emptied first
(written empty: the storage key may not delete them) and every figure comes
twice, cold and warm (before each query the manifests are emptied, once
the services have finished writing them). First page: the first one (`cold`, no manifests),
then the p50 of a few more (page size 100), which read the manifests the
first one left. Full scan: every page at page size 1000, tokens followed
to the end (what the first pages left aside, cold), then again (`rescan`). The raw
figure is minio-py `list_objects` over the same prefixes, one call after
another, newest hour first, sources in order (the cells of a small box only),
names filtered as search filters them (time, cell), stopping at 100 names
for the first page: the listing a client with raw S3 access would do, with
no metadata read. `vs raw` is Pantheon's time divided by the raw one.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from minio import Minio
from minio.sse import SseS3
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as pb
from pantheon_api.storage.v1 import storage_service_pb2_grpc as pb_grpc

from pantheon.config import ClientIdentity, S3Settings
from pantheon.errors import AlreadyExists, NotFound
from pantheon.metadata import geohash
from pantheon.metadata.naming import MEDIA_TYPES, hour_prefixes, object_key, parse_key, source_prefix
from pantheon.metadata.ulid import ulid_from_key
from pantheon.server import secure_channel
from pantheon.storage.buckets import INDEX_BUCKET, bucket_for
from pantheon.storage.index import Index
from pantheon.storage.manifests import MANIFEST_PREFIX
from pantheon.storage.s3 import S3ObjectStore
from pantheon.storage.service import user_metadata

#: The day every set is observed on (fixed, so sets are reused across runs).
DAY = datetime(2026, 11, 2, tzinfo=UTC)
#: (objects, sources) of each set.
SETS = ((1_000, 1), (10_000, 10), (100_000, 100))
#: Where the objects are: (south, west, north, east).
REGION = (48.0, 16.0, 48.5, 16.8)
#: The small box of `type+bbox`: (south, west, north, east).
BOX = (48.19, 16.35, 48.23, 16.39)
LOAD_CONCURRENCY = 48
FIRST_PAGE = 100
FULL_PAGE = 1000
_LAYOUT = 1  # bump when the generated layout changes: sets are then reloaded


def data_type(objects: int) -> str:
    return f"sensor.bench_search_{objects // 1000}k"


def source_name(i: int) -> str:
    return f"bench-s{i:03d}"


def _metadata(dt: str, sources: int, i: int) -> md.Metadata:
    """The metadata of object `i` of a set (the same on every run)."""
    rng = random.Random(f"{dt}/{i}")
    hour = (i // sources) % 24
    observed = DAY + timedelta(hours=hour, seconds=rng.randrange(3600), microseconds=rng.randrange(10**6))
    s, w, n, e = REGION
    lat, lon = round(rng.uniform(s, n), 6), round(rng.uniform(w, e), 6)
    meta = md.Metadata(
        id=ulid_from_key(int(observed.timestamp() * 1000), f"{dt}/{i}".encode()),
        data_type=dt,
        source=source_name(i % sources),
        entity_id=f"station-{i % 50}",
        format=md.FORMAT_JSON,
        media_type=MEDIA_TYPES[md.FORMAT_JSON],
        classification=md.CLASSIFICATION_INTERNAL,
        location=md.GeoPoint(latitude=lat, longitude=lon),
        geohash=geohash.encode(lat, lon),
    )
    meta.observed_at.FromDatetime(observed)
    meta.ingested_at.FromDatetime(observed + timedelta(seconds=2))
    return meta


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


class Loader:
    """Writes a set as PutObject + CommitObject would, with bounded concurrency."""

    def __init__(self, env: dict[str, str]) -> None:
        settings = S3Settings.from_env({**env, "PANTHEON_S3_THREADS": str(LOAD_CONCURRENCY)})
        self.store = S3ObjectStore(settings)
        self.index = Index(self.store)

    async def _put(self, meta: md.Metadata, i: int) -> None:
        bucket, key = bucket_for(meta.data_type, meta.classification), object_key(meta)
        body = b'{"pm10": %d}' % i
        try:
            stored = await self.store.put_stream(
                bucket, key, _one_chunk(body), meta.media_type, user_metadata(meta)
            )
            etag, version, encryption = stored.etag, stored.version_id, stored.encryption
            sha256 = stored.sha256
        except AlreadyExists:  # a resumed load: stored before, perhaps not indexed
            stat = await self.store.stat(bucket, key)
            etag, version, encryption = stat.etag, stat.version_id, stat.encryption
            sha256 = hashlib.sha256(body).hexdigest()
        meta.sha256, meta.size_bytes = sha256, len(body)
        ref = md.ObjectRef(
            bucket=bucket, key=key, version_id=version, sha256=sha256, size_bytes=len(body), etag=etag
        )
        await self.index.put_object_info(
            pb.StatObjectResponse(object=ref, metadata=meta, encryption=encryption)
        )

    async def ensure(self, objects: int, sources: int) -> bool:
        """Load the set unless its marker says it is there; True when it was loaded now."""
        dt = data_type(objects)
        marker = f"bench/search/{dt}.json"
        wanted = {"objects": objects, "sources": sources, "day": DAY.isoformat(), "layout": _LAYOUT}
        bucket = bucket_for(dt, md.CLASSIFICATION_INTERNAL)
        try:
            if json.loads(await self.store.get_bytes(bucket, marker)) == wanted:
                return False
        except NotFound:
            pass
        slots = asyncio.Semaphore(LOAD_CONCURRENCY)
        done = 0
        started = time.perf_counter()

        async def one(i: int) -> None:
            nonlocal done
            async with slots:
                await self._put(_metadata(dt, sources, i), i)
            done += 1
            if done % 10_000 == 0:
                rate = done / (time.perf_counter() - started)
                print(f"search bench: {dt}: {done}/{objects} loaded ({rate:.0f}/s)", file=sys.stderr)

        # In slices, so a set of 100k is never 100k tasks at once.
        for start in range(0, objects, 5_000):
            await asyncio.gather(*(one(i) for i in range(start, min(objects, start + 5_000))))
        await self.store.put_bytes(bucket, marker, json.dumps(wanted).encode(), if_absent=False)
        rate = objects / (time.perf_counter() - started)
        print(f"search bench: {dt}: {objects} objects loaded at {rate:.0f}/s", file=sys.stderr)
        return True


@dataclass(frozen=True)
class Query:
    name: str
    source: str = ""
    bbox: tuple[float, float, float, float] | None = None
    hours: tuple[int, int] = (0, 24)

    def window(self) -> tuple[datetime, datetime]:
        return DAY + timedelta(hours=self.hours[0]), DAY + timedelta(hours=self.hours[1])

    def request(self, dt: str, page_size: int) -> pb.SearchObjectsRequest:
        req = pb.SearchObjectsRequest(data_type=dt, source=self.source, page_size=page_size)
        after, before = self.window()
        req.observed_after.FromDatetime(after)
        req.observed_before.FromDatetime(before)
        if self.bbox is not None:
            s, w, n, e = self.bbox
            req.bbox.CopyFrom(
                md.BoundingBox(min_latitude=s, min_longitude=w, max_latitude=n, max_longitude=e)
            )
        return req


QUERIES = (
    Query("type"),
    Query("type+source", source=source_name(0)),
    Query("type+bbox", bbox=BOX),
    Query("type+time", hours=(12, 13)),
)


@dataclass
class Row:
    objects: int
    sources: int
    query: str
    first_page_cold_ms: float
    first_page_ms: float
    first_page_found: int
    raw_first_ms: float
    full_scan_s: float
    full_scan_found: int
    pages: int
    rescan_s: float
    raw_full_s: float

    @property
    def first_vs_raw(self) -> float:
        return round(self.first_page_ms / self.raw_first_ms, 2)

    @property
    def full_vs_raw(self) -> float:
        return round(self.full_scan_s / self.raw_full_s, 2)

    @property
    def rescan_vs_raw(self) -> float:
        return round(self.rescan_s / self.raw_full_s, 2)


def _manifests(minio: Minio, dt: str) -> dict[str, str]:
    """The non-empty manifests of `dt`, with their ETags."""
    listed = minio.list_objects(INDEX_BUCKET, prefix=f"{MANIFEST_PREFIX}v1/{dt}/", recursive=True)
    return {o.object_name: o.etag or "" for o in listed if o.size and o.object_name}


def _forget_manifests(minio: Minio, dt: str) -> int:
    """Empty every manifest of `dt` (an empty one holds nothing, as a missing one); how many."""
    names = _manifests(minio, dt)
    for name in names:
        minio.put_object(INDEX_BUCKET, name, io.BytesIO(b""), 0, sse=SseS3())
    return len(names)


async def _settled(minio: Minio, dt: str) -> int:
    """Wait (up to a minute) until the services stop writing manifests of
    `dt` (written off the search's path: none changed for a second); how many there are."""
    seen: dict[str, str] | None = None
    for _ in range(60):
        now = await asyncio.to_thread(_manifests, minio, dt)
        if now == seen:
            return len(now)
        seen = now
        await asyncio.sleep(1)
    print(f"search bench: manifests of {dt} still changing after a minute", file=sys.stderr)
    return len(seen or {})


class RawLister:
    """The same prefixes listed with minio-py, one call after another."""

    def __init__(self, minio: Minio) -> None:
        self.minio = minio

    def scan(self, dt: str, query: Query, limit: int | None) -> tuple[float, int]:
        """Seconds to list the names a search would consider (up to `limit` matching), and how many."""
        started = time.perf_counter()
        bucket = bucket_for(dt, md.CLASSIFICATION_INTERNAL)
        if query.source:
            sources = [query.source]
        else:
            root = source_prefix(dt)
            listed = self.minio.list_objects(bucket, prefix=root, recursive=False)
            sources = sorted(o.object_name[len(root) :].rstrip("/") for o in listed if o.is_dir)
        after, before = query.window()
        cells: list[str] | None = None
        if query.bbox is not None:
            s, w, n, e = query.bbox
            cells = geohash.cells_covering(s, w, n, e, 5, limit=8)
        by_hour: dict[str, list[str]] = {}
        for source in sources:
            for prefix in hour_prefixes(dt, source, after, before):
                by_hour.setdefault(prefix.split("/", 3)[3], []).append(prefix)
        found = 0
        for hour in sorted(by_hour, reverse=True):
            for prefix in sorted(by_hour[hour]):
                for under in [prefix] if cells is None else [f"{prefix}{c}/" for c in cells]:
                    for item in self.minio.list_objects(bucket, prefix=under, recursive=True):
                        parsed = parse_key(item.object_name or "")
                        if after <= parsed.observed_at < before:
                            found += 1
                            if limit is not None and found >= limit:
                                return time.perf_counter() - started, found
        return time.perf_counter() - started, found


async def _first_page(stub: pb_grpc.StorageServiceStub, req: pb.SearchObjectsRequest) -> tuple[float, int]:
    started = time.perf_counter()
    page = await stub.SearchObjects(req, timeout=60)
    return (time.perf_counter() - started) * 1000, len(page.objects)


async def _full_scan(
    stub: pb_grpc.StorageServiceStub, req: pb.SearchObjectsRequest
) -> tuple[float, int, int]:
    started = time.perf_counter()
    found = pages = 0
    while True:
        page = await stub.SearchObjects(req, timeout=60)
        pages += 1
        found += len(page.objects)
        if not page.next_page_token:
            return time.perf_counter() - started, found, pages
        req = pb.SearchObjectsRequest(
            data_type=req.data_type,
            source=req.source,
            bbox=req.bbox if req.HasField("bbox") else None,
            page_size=req.page_size,
            page_token=page.next_page_token,
        )


async def run(env: dict[str, str], minio: Minio, quick: bool, repeats: int = 5) -> list[dict[str, Any]]:
    sets = SETS[:1] if quick else SETS
    loader = Loader(env)
    for objects, sources in sets:
        await loader.ensure(objects, sources)
    raw = RawLister(minio)
    rows: list[Row] = []
    channel = secure_channel(
        env["PANTHEON_GRPC_TARGET"], env["PANTHEON_CA_FILE"], ClientIdentity.from_env(env)
    )
    async with channel:
        stub = pb_grpc.StorageServiceStub(channel)
        for objects, sources in sets:
            dt = data_type(objects)
            for query in QUERIES:
                # Each query starts cold: no manifest an earlier query left.
                await _settled(minio, dt)
                await asyncio.to_thread(_forget_manifests, minio, dt)
                cold_ms, _ = await _first_page(stub, query.request(dt, FIRST_PAGE))
                firsts = [await _first_page(stub, query.request(dt, FIRST_PAGE)) for _ in range(repeats)]
                raw_firsts = [
                    (await asyncio.to_thread(raw.scan, dt, query, FIRST_PAGE))[0] * 1000
                    for _ in range(repeats)
                ]
                full_s, full_found, pages = await _full_scan(stub, query.request(dt, FULL_PAGE))
                written = await _settled(minio, dt)
                print(f"search bench: {objects} objects, {query.name}: {written} manifests", file=sys.stderr)
                rescan_s, again_found, _ = await _full_scan(stub, query.request(dt, FULL_PAGE))
                if again_found != full_found:
                    raise RuntimeError(f"{dt} {query.name}: a rescan found {again_found}, not {full_found}")
                raw_full_s, _ = await asyncio.to_thread(raw.scan, dt, query, None)
                row = Row(
                    objects=objects,
                    sources=sources,
                    query=query.name,
                    first_page_cold_ms=round(cold_ms, 1),
                    first_page_ms=round(statistics.median(ms for ms, _ in firsts), 1),
                    first_page_found=firsts[0][1],
                    raw_first_ms=round(statistics.median(raw_firsts), 1),
                    full_scan_s=round(full_s, 2),
                    full_scan_found=full_found,
                    pages=pages,
                    rescan_s=round(rescan_s, 2),
                    raw_full_s=round(raw_full_s, 3),
                )
                print(f"search bench: {objects} objects, {query.name}: done", file=sys.stderr)
                rows.append(row)
    return [
        {
            **asdict(r),
            "first_vs_raw": r.first_vs_raw,
            "full_vs_raw": r.full_vs_raw,
            "rescan_vs_raw": r.rescan_vs_raw,
        }
        for r in rows
    ]


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'objects':>8} {'sources':>7} {'query':<12} {'first page cold':>16} {'p50':>9} {'found':>6}"
        f" {'raw':>9} {'vs raw':>7}"
        f" {'full scan':>10} {'found':>7} {'pages':>6} {'rescan':>9} {'raw':>8} {'vs raw':>7} {'rescan':>7}"
    )
    for r in rows:
        print(
            f"{r['objects']:>8} {r['sources']:>7} {r['query']:<12} {r['first_page_cold_ms']:>13.1f} ms"
            f" {r['first_page_ms']:>6.1f} ms {r['first_page_found']:>6}"
            f" {r['raw_first_ms']:>6.1f} ms {r['first_vs_raw']:>7} {r['full_scan_s']:>8.2f} s"
            f" {r['full_scan_found']:>7} {r['pages']:>6} {r['rescan_s']:>7.2f} s {r['raw_full_s']:>6.2f} s"
            f" {r['full_vs_raw']:>7} {r['rescan_vs_raw']:>7}"
        )
