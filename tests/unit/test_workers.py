"""Normaliser work in bounded pools: same results as inline, refusals when full, never a stalled loop."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import threading
from collections.abc import Iterator

import pytest

from pantheon.envconfig import heap
from pantheon.errors import Unavailable
from pantheon.ingest import workers
from pantheon.ingest.formats.base import InvalidContent, Normaliser
from pantheon.ingest.normalise import open_normaliser
from pantheon.ingest.workers import NormaliserPool
from tests.samples import make_jpeg, make_png

CHUNK = 65536


@pytest.fixture(scope="module")
def shared() -> Iterator[NormaliserPool]:
    pool = NormaliserPool()
    yield pool
    pool.close()


def pieces(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def direct(media_type: str, data: bytes) -> tuple[bytes, int]:
    normaliser = open_normaliser(media_type, data[:CHUNK])
    out = b"".join(normaliser.feed(chunk) for chunk in pieces(data)) + normaliser.finish()
    return out, normaliser.record_count


async def pooled(pool: NormaliserPool, media_type: str, data: bytes) -> tuple[bytes, int, Normaliser]:
    normaliser = open_normaliser(media_type, data[:CHUNK])
    out = b""
    for chunk in pieces(data):
        out += await pool.feed(normaliser, chunk)
    out += await pool.finish(normaliser)
    return out, normaliser.record_count, normaliser


def big_json(records: int) -> bytes:
    return json.dumps(
        [{"id": i, "v": [i / 3, True, None], "s": "é" * (i % 5)} for i in range(records)]
    ).encode()


CASES = {
    "small json (inline)": ("application/json", b'{"pm10": 17}'),
    "medium json (thread)": ("application/json", big_json(1_000)),
    "large json (process)": ("application/json", big_json(20_000)),
    "large geojson (process)": (
        "application/geo+json",
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"n": i},
                        "geometry": {"type": "Point", "coordinates": [i % 180, 0]},
                    }
                    for i in range(10_000)
                ],
            }
        ).encode(),
    ),
    "csv": ("text/csv", b"id,t,ok\n" + b"".join(b"%d,%d.5,true\n" % (i, i) for i in range(50_000))),
    "ndjson": ("application/x-ndjson", b"".join(b'{"i": %d}\n' % i for i in range(50_000))),
    "png": ("image/png", make_png()),
    "jpeg": ("image/jpeg", make_jpeg()),
}


@pytest.mark.parametrize("case", CASES)
async def test_pooled_results_are_the_inline_results(shared: NormaliserPool, case: str) -> None:
    media_type, data = CASES[case]
    out, count, _ = await pooled(shared, media_type, data)
    assert (out, count) == direct(media_type, data)


async def test_the_size_of_a_document_picks_its_lane(shared: NormaliserPool) -> None:
    assert len(CASES["small json (inline)"][1]) <= shared.inline_max_bytes
    assert shared.inline_max_bytes < len(CASES["medium json (thread)"][1]) <= shared.thread_max_document_bytes
    assert len(CASES["large json (process)"][1]) > shared.thread_max_document_bytes


@pytest.mark.parametrize(
    ("media_type", "data", "reason"),
    [
        ("application/json", b"[" + b"1," * 200_000 + b"[" * 100 + b"]" * 100 + b"]", "json_too_deep"),
        ("application/json", b"[" + b"1," * 200_000 + b"]", "invalid_json"),  # trailing comma
        (
            "application/geo+json",
            b'{"type":"Point","coordinates":[999' + b",0" * 200_000 + b"]}",
            "invalid_geojson",
        ),
        ("text/csv", b"a,b\n" + b"1,2\n" * 50_000 + b"3\n", "invalid_csv"),
    ],
)
async def test_refusals_come_back_from_the_workers_as_they_are(
    shared: NormaliserPool, media_type: str, data: bytes, reason: str
) -> None:
    with pytest.raises(InvalidContent) as caught:
        await pooled(shared, media_type, data)
    assert caught.value.reason == reason
    with pytest.raises(InvalidContent) as inline:
        direct(media_type, data)
    assert caught.value.message == inline.value.message


async def test_the_loop_keeps_running_while_a_large_document_is_parsed(shared: NormaliserPool) -> None:
    data = big_json(50_000)
    normaliser = open_normaliser("application/json", data[:CHUNK])
    for chunk in pieces(data):
        await shared.feed(normaliser, chunk)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    out = await shared.finish(normaliser)
    during = ticks - before
    task.cancel()
    # Parsed inline, `finish` would return without the ticker running once.
    assert during > 1
    assert out == direct("application/json", data)[0]


class Gate:
    """A function that holds a worker until it is opened."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self) -> str:
        self.entered.set()
        self.opened.wait(60)
        return "done"


async def test_a_full_thread_pool_refuses_with_busy_instead_of_queueing() -> None:
    pool = NormaliserPool(thread_workers=1, thread_queue=1)
    gate = Gate()
    try:
        first = asyncio.ensure_future(pool.run_in_thread(gate))
        queued = asyncio.ensure_future(pool.run_in_thread(lambda: "queued"))
        await asyncio.to_thread(gate.entered.wait, 60)
        with pytest.raises(Unavailable) as caught:
            await pool.run_in_thread(lambda: "one too many")
        assert caught.value.reason == "busy"
        assert caught.value.http_status == 503
        assert caught.value.retry_after_s == workers.BUSY_RETRY_AFTER_S
        gate.opened.set()
        assert await first == "done"
        assert await queued == "queued"
        assert await pool.run_in_thread(lambda: "again") == "again"
        assert pool.threads.held == 0
    finally:
        gate.opened.set()
        pool.close()


async def test_small_uploads_run_inline_and_large_ones_need_a_thread() -> None:
    pool = NormaliserPool(thread_workers=1, thread_queue=0)
    gate = Gate()
    try:
        blocker = asyncio.ensure_future(pool.run_in_thread(gate))
        await asyncio.to_thread(gate.entered.wait, 60)
        # The only thread is taken: a small upload still goes through, inline.
        small = open_normaliser("text/csv", b"a")
        assert await pool.feed(small, b"a,b\n1,2\n") == b"a,b\n1,2\n"
        assert await pool.finish(small) == b""
        # A large one is refused rather than queued.
        large = open_normaliser("text/csv", b"a")
        with pytest.raises(Unavailable) as caught:
            await pool.feed(large, b"a,b\n" + b"1,2\n" * 10_000)
        assert caught.value.reason == "busy"
        gate.opened.set()
        assert await blocker == "done"
    finally:
        gate.opened.set()
        pool.close()


async def test_a_cancelled_call_holds_its_slot_until_the_work_ends() -> None:
    pool = NormaliserPool(thread_workers=1, thread_queue=0)
    gate = Gate()
    try:
        call = asyncio.ensure_future(pool.run_in_thread(gate))
        await asyncio.to_thread(gate.entered.wait, 60)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert pool.threads.held == 1  # the work still runs: no room for more
        with pytest.raises(Unavailable):
            await pool.run_in_thread(lambda: None)
        gate.opened.set()
        for _ in range(1000):
            if pool.threads.held == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.threads.held == 0
        assert await pool.run_in_thread(lambda: "free") == "free"
    finally:
        gate.opened.set()
        pool.close()


async def test_a_dead_worker_process_is_a_retryable_error_and_the_pool_recovers() -> None:
    pool = NormaliserPool(process_workers=1)
    try:
        with pytest.raises(Unavailable) as caught:
            await pool.run_in_process(os._exit, 3)
        assert caught.value.reason == "worker_lost"
        assert await pool.run_in_process(sum, [1, 2, 3]) == 6
        assert pool.processes.held == 0
    finally:
        pool.close()


def _collector() -> tuple[tuple[int, int, int], int]:
    return gc.get_threshold(), gc.get_freeze_count()


async def test_a_worker_process_sets_its_collector_as_the_servers_do(shared: NormaliserPool) -> None:
    threshold, frozen = await shared.run_in_process(_collector)
    assert threshold[0] == heap.YOUNG_OBJECTS
    assert frozen > 1000  # what it imported to start


async def test_the_process_wide_pool_can_be_configured_and_shut_down() -> None:
    try:
        configured = workers.configure(thread_workers=1, thread_queue=0)
        assert workers.pool() is configured
        normaliser = open_normaliser("application/x-ndjson", b"{")
        assert await workers.feed(normaliser, b'{"b": 1, "a": 2}\n') == b'{"a":2,"b":1}\n'
        assert await workers.finish(normaliser) == b""
    finally:
        workers.shutdown()
    assert workers.pool() is not configured
    workers.shutdown()
