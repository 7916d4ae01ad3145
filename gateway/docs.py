"""`/docs` without the internet: Swagger UI served by the gateway itself.

FastAPI's built-in `/docs` page loads Swagger UI from a CDN, so on a city
network cut off from the internet it stays blank. This router serves the
same page (FastAPI's `get_swagger_ui_html`) with the Swagger UI files that
the `fastapi-offline` package ships (pinned in pyproject.toml; Swagger UI is
Apache-2.0, the package and FastAPI's favicon MIT) under `/docs/assets/`, and
a Content-Security-Policy that lets the page load nothing from anywhere
else. ReDoc is not served. Like FastAPI's pages, these routes need no key.
"""

from __future__ import annotations

import base64
import hashlib
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
#: The files the page needs, by name under ASSETS_PATH, with their media types.
ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
_ASSET_DIR = Path(str(files("fastapi_offline") / "static"))

# GET and HEAD, as FastAPI's own documentation routes answer.
router = APIRouter(include_in_schema=False)


def asset_file(name: str) -> Path:
    """Where the package keeps one of ASSETS."""
    return _ASSET_DIR / name


def swagger_ui_html(title: str, openapi_url: str, oauth2_redirect_url: str | None, root: str = "") -> str:
    """FastAPI's Swagger UI page, pointing at the gateway's own copies of the assets."""
    response = get_swagger_ui_html(
        openapi_url=f"{root}{openapi_url}",
        title=f"{title} - Swagger UI",
        oauth2_redirect_url=oauth2_redirect_url,
        swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
    )
    return bytes(response.body).decode()


def _inline_scripts(html: str) -> list[str]:
    """The bodies of the page's `<script>...</script>` elements, in one linear pass."""
    found, at = [], 0
    while (start := html.find("<script>", at)) != -1:
        end = html.find("</script>", start)
        if end == -1:
            break
        found.append(html[start + len("<script>") : end])
        at = end + len("</script>")
    return found


def content_security_policy(html: str) -> str:
    """Same origin only; the page's inline scripts are allowed by their hashes, nothing else inline."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _inline_scripts(html)
    )
    return (
        "default-src 'none'; "
        f"script-src 'self' {hashes}; "
        # Swagger UI sets style attributes and draws its icons as data: URLs.
        "style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; "
        "font-src 'self' data:; "
        "connect-src 'self'; "
        "base-uri 'none'; "
        "form-action 'self'; "
        "frame-ancestors 'none'"
    )


@router.api_route(DOCS_PATH, methods=["GET", "HEAD"])
async def swagger_ui(request: Request) -> HTMLResponse:
    app = request.app
    html = swagger_ui_html(
        app.title, app.openapi_url, app.swagger_ui_oauth2_redirect_url, request.scope.get("root_path", "")
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": content_security_policy(html)})


@router.api_route(f"{DOCS_PATH}/oauth2-redirect", methods=["GET", "HEAD"])
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


def _asset_route(name: str, media_type: str) -> None:
    async def asset() -> FileResponse:
        return FileResponse(
            asset_file(name),
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    router.add_api_route(f"{ASSETS_PATH}/{name}", asset, methods=["GET", "HEAD"], name=f"docs_asset:{name}")


for _name, _media_type in ASSETS.items():
    _asset_route(_name, _media_type)
