"""`/healthz` (the process is up), `/readyz` (API keys loaded, services and backends serving), `/metrics`.

None of them needs an API key: orchestrators and scrapers call them, and
they reveal nothing but up/down states and request counts.
"""

from __future__ import annotations

import asyncio

import grpc
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.auth import KeyStore
from gateway.deps import ClientsDep, SettingsDep
from gateway.metrics import Metrics
from gateway.problems import Problem, documented
from gateway.schemas import Health, Readiness

router = APIRouter(tags=["health"])

#: gRPC health-check names: the services overall, then each backend.
HEALTH_NAMES = {
    "services": "",
    "kafka": "pantheon.backend.kafka",
    "objectstore": "pantheon.backend.objectstore",
}
_CHECK_TIMEOUT_S = 2.0
#: The check that the API keys file is loaded (the gateway's own, not a gRPC health name).
API_KEYS_CHECK = "api_keys"
SERVING, NOT_SERVING = "SERVING", "NOT_SERVING"


@router.get(
    "/healthz",
    operation_id="getHealth",
    summary="Liveness: the gateway process answers",
    response_model=Health,
)
async def health() -> Response:
    return JSONResponse({"status": "ok"})


async def _check(clients: ClientsDep, name: str, timeout: float) -> str:
    try:
        reply = await clients.health.Check(health_pb2.HealthCheckRequest(service=name), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return "UNKNOWN" if exc.code() is grpc.StatusCode.NOT_FOUND else "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


@router.get(
    "/readyz",
    operation_id="getReadiness",
    summary="Readiness: API keys loaded; the services, Kafka and the object store are serving",
    response_model=Readiness,
    responses={
        **documented(503),
    },
)
async def readiness(request: Request, clients: ClientsDep, settings: SettingsDep) -> Response:
    """Ready when the services and both backends are SERVING and the API keys file is loaded.

    `checks.api_keys` is NOT_SERVING while the keys file is missing or
    invalid (every authenticated request then gets 503 `keys_unavailable`);
    asking re-checks the file, so readiness returns as soon as it is fixed.
    """
    keys: KeyStore = request.app.state.keys
    keys_state = SERVING if keys.problem() is None else NOT_SERVING
    timeout = min(_CHECK_TIMEOUT_S, settings.read_deadline_s)
    states = await asyncio.gather(*(_check(clients, name, timeout) for name in HEALTH_NAMES.values()))
    checks = {**dict(zip(HEALTH_NAMES, states, strict=True)), API_KEYS_CHECK: keys_state}
    if all(state == SERVING for state in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    raise Problem(
        503,
        "not_ready",
        "Not ready: " + ", ".join(f"{k} is {v}" for k, v in checks.items() if v != SERVING) + ".",
        headers={"Retry-After": "5"},
        extensions={"checks": checks},
    )


@router.get(
    "/metrics",
    operation_id="getMetrics",
    summary="Prometheus metrics of the gateway",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
