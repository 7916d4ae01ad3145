"""FastAPI dependencies, as `Annotated` aliases the routes declare.

Collaborators live on `app.state` (set by `create_app` and its lifespan);
nothing here is a module-level global.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.auth import SCOPE_INGEST, SCOPE_READ, KeyStore, KeysUnavailable, Principal
from gateway.channel import Clients, call_metadata
from gateway.limits import ConcurrencyLimiter, LimitReached, RateLimiter, retry_after_header, too_many_uploads
from gateway.problems import Problem, request_id_of
from gateway.settings import GatewaySettings

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    bearerFormat="API key",
    description="An API key: `Authorization: Bearer <key>`. Each key belongs to one source.",
)

#: Seconds a caller is asked to wait while the keys file cannot be loaded.
KEYS_RETRY_AFTER_S = 5


async def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def get_clients(request: Request) -> Clients:
    clients: Clients | None = getattr(request.app.state, "clients", None)
    if clients is None:  # only between start-up and the lifespan hook
        raise Problem(
            503, "starting", "The gateway is starting; retry shortly.", headers={"Retry-After": "1"}
        )
    return clients


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller's principal, after its rate limit (429).

    No `Authorization: Bearer` header is 401 `missing_api_key` and an
    unknown key 401 `invalid_api_key`. While the keys file cannot be loaded
    (missing, unreadable or invalid since the last reload) every presented
    key is refused with 503 `keys_unavailable` and `Retry-After`, not 401:
    the caller's key may well be fine, and a client that drops its key on a
    401 must not do so because of the gateway's own configuration fault.
    """
    keys: KeyStore = request.app.state.keys
    if credentials is None:
        raise Problem(401, "missing_api_key", "Send an API key as `Authorization: Bearer <key>`.")
    try:
        principal = keys.authenticate(credentials.credentials)
    except KeysUnavailable:  # logged by the store, once, with the file and the problem
        raise Problem(
            503,
            "keys_unavailable",
            "The gateway cannot check API keys right now (its keys file is unavailable); "
            "this says nothing about your key. Retry later.",
            headers={"Retry-After": str(KEYS_RETRY_AFTER_S)},
        ) from None
    if principal is None:
        raise Problem(
            401,
            "invalid_api_key",
            "The API key is not valid.",
            headers={"WWW-Authenticate": 'Bearer realm="pantheon", error="invalid_token"'},
        )
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.acquire(principal.name)
    if wait > 0:
        raise Problem(
            429,
            "rate_limited",
            f"The rate limit of {limiter.rate:g} requests per second for this key is exceeded.",
            headers={"Retry-After": retry_after_header(wait)},
        )
    request.state.principal = principal.name
    return principal


async def ingest_principal(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if SCOPE_INGEST not in principal.scopes:
        raise Problem(403, "scope_missing", "This API key may not ingest data (no `ingest` scope).")
    return principal


async def read_principal(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if SCOPE_READ not in principal.scopes:
        raise Problem(403, "scope_missing", "This API key may not read data (no `read` scope).")
    return principal


async def get_call_metadata(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> tuple[tuple[str, str | bytes], ...]:
    """gRPC metadata of the request's calls: on behalf of the authenticated principal."""
    return call_metadata(request_id_of(request), principal)


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
ClientsDep = Annotated[Clients, Depends(get_clients)]
CallMetadataDep = Annotated[tuple[tuple[str, str | bytes], ...], Depends(get_call_metadata)]
IngestPrincipal = Annotated[Principal, Depends(ingest_principal)]
ReadPrincipal = Annotated[Principal, Depends(read_principal)]


async def upload_principal(request: Request, principal: IngestPrincipal) -> AsyncIterator[Principal]:
    """The ingesting principal, holding one of its upload slots (429
    `too_many_concurrent_uploads` with `Retry-After` when it has none free).

    Declared by the upload routes (POST /v1/objects, POST /v1/records). The
    slot is taken after authentication, the rate limit and the scope check,
    before a byte of the body is read, and is held until the response is
    sent: a slow body holds it all along. It is given back however the
    request ends: an answer, a problem, a failed handler, a client that went
    away (ClientDisconnect is raised into this generator) or a cancelled task.
    """
    limiter: ConcurrencyLimiter = request.app.state.upload_limiter
    try:
        slot = limiter.acquire(principal.name)
    except LimitReached as reached:
        raise too_many_uploads(reached) from None
    try:
        yield principal
    finally:
        limiter.release(slot)


UploadPrincipal = Annotated[Principal, Depends(upload_principal)]
