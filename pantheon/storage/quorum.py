"""Whether the object store can take writes right now: MinIO's cluster health.

A distributed MinIO that has lost its write quorum (two of four nodes away)
refuses writes with 503 once it notices, but for the first seconds, and for
conditional writes that wait on locks, a PUT may hang until the client's
read timeout. Callers deserve a fast, retryable refusal instead: from the
first write on, the store asks `GET /minio/health/cluster` (no credentials;
200 with write quorum, 503 without) once a second in the background, and
refuses writes at once with UNAVAILABLE while the last answer was no. A
write never waits for the question: it goes by the last answer, so a slow
or hung probe (its own thread and connection) delays nobody. Reads are not
gated: a cluster without write quorum still serves them.

A store that answers anything else (AWS S3, a balancer's error page) keeps
the last answer, writable at first, and is asked only once a minute.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import urllib3

from pantheon.errors import Unavailable

log = logging.getLogger(__name__)

CLUSTER_HEALTH = "/minio/health/cluster"
#: How often the store is asked.
FRESH_S = 1.0
#: The same for a store that does not answer the question.
UNKNOWN_S = 60.0


class WriteQuorum:
    """The last answer to "may I write?", kept current by a background watch through `fetch`."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[int | None]],
        fresh_s: float = FRESH_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._fetch = fetch
        self._fresh_s = fresh_s
        self._sleep = sleep
        self._writable = True
        self._known = True
        self._watch: asyncio.Task[None] | None = None

    def require(self) -> None:
        """Return if writes may go ahead; raise Unavailable (retryable) if the cluster last said no.

        Must be called on the event loop: the first call starts the watch there.
        """
        if self._watch is None or self._watch.done():
            self._watch = asyncio.get_running_loop().create_task(self._watching())
        if not self._writable:
            raise Unavailable("the object store has no write quorum, retry later", reason="store_degraded")

    async def _watching(self) -> None:
        # Asked on a clock, not when writes come: writes that hang on a
        # cluster that just lost its quorum would otherwise keep the next
        # question from being asked.
        while True:
            await self.refresh()
            await self._sleep(self._fresh_s if self._known else UNKNOWN_S)

    async def refresh(self) -> None:
        """Ask once and remember the answer."""
        try:
            status = await self._fetch()
        except Exception as exc:  # a probe must never take the store down with it
            log.warning("could not ask the object store for its write quorum: %s", exc)
            status = None
        if status not in (200, 503, None):
            if self._known:
                log.info(
                    "the object store does not answer %s (HTTP %s): writes go by the last answer",
                    CLUSTER_HEALTH,
                    status,
                )
            self._known = False
            return
        self._known = True
        # None: not reachable at all. A write would fail anyway; fail it now.
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
