"""Several gateway replicas behind one balancer: each enforces its share of
every per-key budget (PANTHEON_GATEWAY_REPLICAS), so together they allow
what the settings say, not N times it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.settings import ConfigError, GatewaySettings, ReplicaLimits
from tests.unit.test_gateway_admission import _gateway_env
from tests.unit.test_gateway_app import CITY, auth, keys, settings


@pytest.mark.parametrize(
    ("replicas", "expected"),
    [
        (1, ReplicaLimits(200.0, 400, 32)),
        (2, ReplicaLimits(100.0, 200, 16)),
        (3, ReplicaLimits(200.0 / 3, 133, 10)),
        # Never below one request or one upload at a time.
        (1000, ReplicaLimits(0.2, 1, 1)),
    ],
)
def test_each_replica_enforces_its_share_of_the_per_key_budgets(
    tmp_path: Path, replicas: int, expected: ReplicaLimits
) -> None:
    configured = settings(
        tmp_path, rate_per_s=200.0, rate_burst=400, max_concurrent_uploads=32, replicas=replicas
    )
    assert configured.per_replica() == expected


def test_the_app_builds_its_limiters_from_the_replica_share(tmp_path: Path) -> None:
    app = create_app(
        settings(tmp_path, rate_per_s=90.0, rate_burst=30, max_concurrent_uploads=8, replicas=3),
        keys=keys(),
    )
    assert app.state.replica_limits == ReplicaLimits(30.0, 10, 2)
    assert (app.state.rate_limiter.rate, app.state.rate_limiter.burst) == (30.0, 10)
    assert app.state.upload_limiter.limit == 2
    # The process's own capacity is not a per-key budget: it is not divided.
    assert app.state.settings.max_connections == 512


async def _allowed(app: FastAPI, requests: int) -> int:
    """How many of `requests` the key gets past the rate limit (a 400 is past it)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://gateway.test") as http:
            statuses = [
                (await http.get("/v1/objects/bad-id", headers=auth(CITY))).status_code
                for _ in range(requests)
            ]
    assert set(statuses) <= {400, 429}
    return statuses.count(400)


async def test_two_replicas_together_allow_the_configured_burst_not_twice_it(tmp_path: Path) -> None:
    # A rate so low that no token comes back during the test: only the burst counts.
    one = settings(tmp_path, rate_per_s=0.001, rate_burst=6)
    assert await _allowed(create_app(one, keys=keys()), 10) == 6
    two = settings(tmp_path, rate_per_s=0.001, rate_burst=6, replicas=2)
    replicas = [create_app(two, keys=keys()) for _ in range(2)]
    assert [await _allowed(app, 10) for app in replicas] == [3, 3]


def test_the_replicas_setting_is_a_whole_number_of_at_least_one(tmp_path: Path) -> None:
    assert GatewaySettings.from_env(_gateway_env(tmp_path)).replicas == 1
    assert GatewaySettings.from_env(_gateway_env(tmp_path, PANTHEON_GATEWAY_REPLICAS="3")).replicas == 3
    for bad in ("0", "-1", "1.5", "two", "1e3", "0x2", "\u00b2", "9" * 5000):
        with pytest.raises(ConfigError, match="PANTHEON_GATEWAY_REPLICAS"):
            GatewaySettings.from_env(_gateway_env(tmp_path, PANTHEON_GATEWAY_REPLICAS=bad))
    with pytest.raises(ConfigError, match="PANTHEON_GATEWAY_REPLICAS"):
        settings(tmp_path, replicas=0).check()
