"""Load fairness: a key flooding at ten times its rate limit is refused with
429, while another key's latency stays within twice its unloaded value
(a ratio measured in the test, on this machine)."""

from __future__ import annotations

import ssl
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.integration.gateway_support import own_gateway

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
RATE = 20


def _client(url: str, ca: str, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=url,
        verify=ssl.create_default_context(cafile=ca),
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _ingest(client: httpx.Client, data_type: str) -> httpx.Response:
    observed = (datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return client.post(
        "/v1/objects",
        params={"data_type": data_type, "lat": 38.0, "lon": 23.7, "observed_at": observed},
        content=b'{"wind_kmh": 41}',
        headers={"Content-Type": "application/json"},
    )


def _p99_ms(client: httpx.Client, count: int, spacing_s: float) -> float:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        assert _ingest(client, "weather.observation").status_code == 201
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(spacing_s)
    latencies.sort()
    return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


def test_a_flooding_key_gets_429_and_another_key_keeps_its_latency(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    limits = {"PANTHEON_GATEWAY_RATE_PER_S": str(RATE), "PANTHEON_GATEWAY_RATE_BURST": str(RATE)}
    with own_gateway(stack_env, tmp_path, **limits) as gw:
        ca = stack_env["PANTHEON_CA_FILE"]
        calm = _client(gw.url, ca, stack_env["PANTHEON_API_KEY_B"])
        _p99_ms(calm, 5, 0.05)  # warm up connections and caches
        unloaded = _p99_ms(calm, 40, 0.05)

        statuses: list[int] = []
        stop = threading.Event()

        def flood() -> None:
            # Ten times the key's rate in all: 200 requests/s over 4 threads.
            with _client(gw.url, ca, stack_env["PANTHEON_API_KEY"]) as noisy:
                while not stop.is_set():
                    started = time.perf_counter()
                    statuses.append(_ingest(noisy, "sensor.air_quality").status_code)
                    time.sleep(max(0.0, 4 / (10 * RATE) - (time.perf_counter() - started)))

        threads = [threading.Thread(target=flood) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # let the flood exhaust its burst
        try:
            loaded = _p99_ms(calm, 40, 0.05)
        finally:
            stop.set()
            for t in threads:
                t.join()
        calm.close()

    refused = statuses.count(429)
    assert refused > len(statuses) / 2, f"{refused} of {len(statuses)} refused"
    assert set(statuses) <= {201, 429}
    assert loaded <= 2 * unloaded, f"p99 {loaded:.1f} ms under load vs {unloaded:.1f} ms unloaded"
