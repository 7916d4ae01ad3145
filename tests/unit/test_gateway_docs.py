"""`/docs` in process: the page and everything it loads come from the gateway, never a CDN.

The browser half (the page really renders with no network beyond the
gateway) is tests/integration/test_gateway_docs.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.docs import ASSETS, ASSETS_PATH, _inline_scripts, asset_file
from tests.unit.test_gateway_app import keys, settings

BASE_URL = "https://gateway.test"
_URL = re.compile(r"\b(?:https?:)?//[^\s\"'<>)]+", re.IGNORECASE)
_REFERENCE = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings(tmp_path), keys=keys())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            yield http


def _csp(response: httpx.Response) -> dict[str, list[str]]:
    directives = [part.split() for part in response.headers["content-security-policy"].split(";")]
    return {words[0]: words[1:] for words in directives if words}


async def test_the_docs_page_references_no_url_outside_the_gateway(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")  # no key: the docs stay public
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert (await client.head("/docs")).status_code == 200
    html = response.text
    # No absolute or protocol-relative URL at all: nothing names another host.
    assert [url for url in _URL.findall(html) if not url.startswith(f"{BASE_URL}/")] == []
    references = _REFERENCE.findall(html)
    assert sorted(references) == sorted(f"{ASSETS_PATH}/{name}" for name in ASSETS)
    assert "url: '/openapi.json'" in html


async def test_every_asset_the_page_loads_is_served_without_a_key(client: httpx.AsyncClient) -> None:
    html = (await client.get("/docs")).text
    for reference in _REFERENCE.findall(html):
        response = await client.get(reference)
        assert response.status_code == 200, reference
        name = reference.rsplit("/", 1)[1]
        assert response.headers["content-type"] == ASSETS[name]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.content == asset_file(name).read_bytes()
        assert (await client.head(reference)).status_code == 200, reference
    # FastAPI writes OpenAPI 3.1, which Swagger UI renders from version 5 on.
    bundle = (await client.get(f"{ASSETS_PATH}/swagger-ui-bundle.js")).text
    version = re.search(r'PACKAGE_VERSION:"(\d+)\.\d+\.\d+"', bundle)
    assert version and int(version[1]) >= 5
    assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.1.")
    redirect = await client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200 and _URL.findall(redirect.text) == []


async def test_the_content_security_policy_allows_the_gateway_and_nothing_else(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/docs")
    csp = _csp(response)
    assert csp["default-src"] == ["'none'"]
    sources = [source for values in csp.values() for source in values]
    assert not [s for s in sources if "*" in s or "://" in s or (s.endswith(":") and s != "data:")], sources
    assert "'unsafe-eval'" not in sources
    assert "'unsafe-inline'" not in csp["script-src"]
    assert csp["connect-src"] == ["'self'"]
    # The page's one inline script (the Swagger UI call) is allowed by its hash.
    scripts = _INLINE_SCRIPT.findall(response.text)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert csp["script-src"] == ["'self'", f"'sha256-{digest}'"]


async def test_only_swagger_ui_is_served_and_unknown_assets_are_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/redoc")).status_code == 404
    for path in (f"{ASSETS_PATH}/redoc.standalone.js", f"{ASSETS_PATH}/../app.py", f"{ASSETS_PATH}/"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
    spec = (await client.get("/openapi.json")).json()
    assert not [path for path in spec["paths"] if path.startswith("/docs")]


def test_inline_scripts_are_found_in_one_pass_even_in_a_hostile_page() -> None:
    page = "<p><script>one()</script><script>\ntwo()\n</script></p>"
    assert _inline_scripts(page) == ["one()", "\ntwo()\n"]
    # 100 KB of unclosed tags: a lazy `<script>(.*?)</script>` would rescan to the end from each.
    assert _inline_scripts("<script>" * 12_500) == []
    assert _inline_scripts("<script>a</script>" + "<script>" * 12_500) == ["a"]
