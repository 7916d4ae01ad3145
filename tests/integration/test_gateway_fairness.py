"""Fairness between keys, as far as it is deterministic: a key over its burst
is refused with 429 and a real `Retry-After`, and another key is not refused
meanwhile.

The latency side (a calm key's p99 while another floods, as a ratio to its
unloaded p99) is a timing measurement; it is in the calm-client report,
scripts/lib/calm_client.py (`fairness`), run by `scripts/reliability
--hostile`, not here.
"""

from __future__ import annotations

import ssl
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.integration.gateway_support import own_gateway

pytestmark = pytest.mark.timeout(180)

#: A burst, and a rate so low that no token comes back during the test.
BURST = 5
RATE_PER_S = 0.01


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


def test_a_key_over_its_burst_gets_429_with_retry_after_and_another_key_is_not_refused(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    limits = {"PANTHEON_GATEWAY_RATE_PER_S": str(RATE_PER_S), "PANTHEON_GATEWAY_RATE_BURST": str(BURST)}
    ca = stack_env["PANTHEON_CA_FILE"]
    with (
        own_gateway(stack_env, tmp_path, **limits) as gw,
        _client(gw.url, ca, stack_env["PANTHEON_API_KEY"]) as flood,
        _client(gw.url, ca, stack_env["PANTHEON_API_KEY_B"]) as calm,
        ThreadPoolExecutor(max_workers=4) as pool,
    ):
        # The flooding key sends four times its burst, four at a time, while
        # the calm key ingests (fewer than its own burst).
        flooded = [pool.submit(_ingest, flood, "sensor.air_quality") for _ in range(4 * BURST)]
        calm_statuses = [_ingest(calm, "weather.observation").status_code for _ in range(BURST - 1)]
        responses = [f.result() for f in flooded]

    assert calm_statuses == [201] * (BURST - 1)
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == BURST, statuses
    refused = [r for r in responses if r.status_code != 201]
    assert len(refused) == 3 * BURST
    for response in refused:
        assert response.status_code == 429, response.text
        assert response.json()["reason"] == "rate_limited"
        # A real wait: the time until the next token, far more than a second here.
        assert int(response.headers["retry-after"]) > 1
