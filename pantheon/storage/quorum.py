"""Whether the object store can take writes right now: MinIO's cluster health.

A distributed MinIO that has lost its write quorum (two of four nodes away)
refuses writes with 503 once it notices, but for the first seconds, and for
conditional writes that wait on locks, a PUT may hang until the client's
read timeout. Callers deserve a fast, retryable refusal instead: before a
write, the store asks `GET /minio/health/cluster` (no credentials; 200 when
the cluster has write quorum, 503 when not), at most once a second, and
refuses the write at once with UNAVAILABLE while the answer is no. Reads are
not gated: a cluster without write quorum still serves them.

A store that does not know the endpoint (AWS S3, or anything answering
neither 200 nor 503) is taken as always writable: the check turns itself off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import urllib3

from pantheon.errors import Unavailable

log = logging.getLogger(__name__)

CLUSTER_HEALTH = "/minio/health/cluster"
#: A fresh answer is reused this long: the check costs at most one small
#: request a second, whatever the write rate.
FRESH_S = 1.0


class WriteQuorum:
    """The cached answer to "may I write?", asked through `fetch` (run off the event loop)."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[int | None]],
        fresh_s: float = FRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._fresh_s = fresh_s
        self._clock = clock
        self._checked = float("-inf")
        self._writable = True
        self._supported = True
        self._lock = asyncio.Lock()

    async def require(self) -> None:
        """Return if writes may go ahead; raise Unavailable (retryable) if the cluster says no."""
        if not self._supported:
            return
        if self._clock() - self._checked >= self._fresh_s:
            async with self._lock:  # one request at a time, whoever waits reuses its answer
                if self._clock() - self._checked >= self._fresh_s:
                    await self._refresh()
        if not self._writable:
            raise Unavailable("the object store has no write quorum, retry later", reason="store_degraded")

    async def _refresh(self) -> None:
        status = await self._fetch()
        self._checked = self._clock()
        if status not in (200, 503, None):
            log.info(
                "the object store has no %s endpoint (HTTP %s): writes are not gated", CLUSTER_HEALTH, status
            )
            self._supported = False
            return
        # None: not reachable at all. The write would fail anyway; fail it now.
        writable = status == 200
        if writable != self._writable:
            if writable:
                log.info("the object store has its write quorum again")
            else:
                log.warning("the object store reports no write quorum: refusing writes until it does")
        self._writable = writable


def cluster_health(http: urllib3.PoolManager, endpoint: str, timeout_s: float = 2.0) -> int | None:
    """The HTTP status of the store's cluster health endpoint, or None if it cannot be reached."""
    try:
        response = http.request(
            "GET",
            endpoint.rstrip("/") + CLUSTER_HEALTH,
            timeout=timeout_s,
            retries=False,
            preload_content=True,
        )
    except urllib3.exceptions.HTTPError:
        return None
    return int(response.status)
