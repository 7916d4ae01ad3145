"""`create_app(settings)`: the FastAPI application of the REST edge.

Everything the routes use is built here and put on `app.state`: the keys,
the rate limiter and the per-key upload limiter (this replica's share of the
per-key budgets), the metrics, and (in the lifespan hook) the one long-lived
gRPC channel with its stubs. Request bodies pass the body timeout
(gateway/slow_clients.py) on their way in.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from gateway.auth import KeyStore
from gateway.channel import Clients, open_channel
from gateway.docs import router as docs_router
from gateway.limits import ConcurrencyLimiter, RateLimiter
from gateway.metrics import Metrics
from gateway.middleware import EdgeMiddleware
from gateway.problems import FieldError, ProblemDetails, install_handlers
from gateway.routes import downloads, health, records, search, uploads
from gateway.schemas import LocationIn, ObjectMetadataIn, RecordBatchIn, RecordIn
from gateway.settings import GatewaySettings
from gateway.slow_clients import BodyTimeoutMiddleware

log = logging.getLogger(__name__)

VERSION = "1.0.0"
DESCRIPTION = """\
The HTTPS edge of the Pantheon data backbone: upload objects and record
batches, download and search what is stored.

Every call except `/healthz`, `/readyz`, `/metrics` and the documentation
needs an API key (`Authorization: Bearer <key>`). A key belongs to one
source: it ingests only as that source, and reads only the data types its
scopes allow. Errors are RFC 9457 `application/problem+json` documents with
a stable `type` (`urn:pantheon:problem:<reason>`), field-level `errors` and
the `request_id` (also in the `X-Request-Id` header, which callers may set).
"""

#: Models referenced from hand-written request bodies and error responses.
_EXTRA_SCHEMAS: tuple[tuple[type[BaseModel], str], ...] = (
    (ProblemDetails, "serialization"),
    (FieldError, "serialization"),
    (ObjectMetadataIn, "validation"),
    (RecordBatchIn, "validation"),
    (RecordIn, "validation"),
    (LocationIn, "validation"),
)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=[
            {"name": "objects", "description": "Upload, download, describe and search stored objects."},
            {"name": "records", "description": "Batches of small records."},
            {"name": "health", "description": "Liveness, readiness and metrics (no API key needed)."},
        ],
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model, mode in _EXTRA_SCHEMAS:
        found = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)  # type: ignore[arg-type]
        for name, definition in found.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components.setdefault(model.__name__, found)
    app.openapi_schema = schema
    return schema


def create_app(settings: GatewaySettings, *, keys: KeyStore | None = None) -> FastAPI:
    """The gateway app; `keys` defaults to the settings' keys file."""
    store = keys if keys is not None else KeyStore.load(settings.api_keys_file)
    if not len(store):
        log.warning("no API keys are configured: every authenticated route will answer 401")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        channel = open_channel(settings)
        app.state.clients = Clients.on(channel)
        log.info("gateway ready; services at %s", settings.grpc_target)
        try:
            yield
        finally:
            app.state.clients = None
            await channel.close(grace=5.0)

    app = FastAPI(
        title="Pantheon REST API",
        version=VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        # /docs comes from gateway/docs.py: Swagger UI from local files, no CDN.
        docs_url=None,
        redoc_url=None,
        # An API answers a wrong path with a 404 problem, not a redirect.
        redirect_slashes=False,
        # FastAPI's own OpenTelemetry spans would continue an external
        # caller's trace as given; the edge span is EdgeMiddleware's (a new
        # trace, linked: gateway/tracing.py). Its metrics are /metrics', and
        # its logs would export exception texts.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.keys = store
    # Per-key budgets are this replica's share (PANTHEON_GATEWAY_REPLICAS).
    limits = settings.per_replica()
    if settings.replicas > 1:
        log.info(
            "one of %d gateway replicas: per key %g requests/s, bursts of %d, %d concurrent uploads",
            settings.replicas,
            limits.rate_per_s,
            limits.rate_burst,
            limits.max_concurrent_uploads,
        )
    app.state.replica_limits = limits
    app.state.rate_limiter = RateLimiter(limits.rate_per_s, limits.rate_burst)
    app.state.upload_limiter = ConcurrencyLimiter(limits.max_concurrent_uploads)
    app.state.metrics = Metrics()
    app.state.clients = None
    install_handlers(app)
    app.include_router(uploads.router)
    app.include_router(downloads.router)
    app.include_router(search.router)
    app.include_router(records.router)
    app.include_router(health.router)
    app.include_router(docs_router)
    # Added first, so it runs inside EdgeMiddleware: its 408 carries the request id.
    app.add_middleware(
        BodyTimeoutMiddleware, timeout_s=settings.body_timeout_s, min_rate_bps=settings.body_min_rate_bps
    )
    app.add_middleware(EdgeMiddleware, metrics=app.state.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
