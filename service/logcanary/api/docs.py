"""The API docs at ``/docs``: Swagger UI served from the package, so the page works with no network at all.

FastAPI's default ``/docs`` loads Swagger UI from a public CDN (and its favicon from another host): a blank
page behind a firewall. Here the files of ``swagger-ui-dist`` (``static/swagger-ui/``, with their licence and
``VERSION`` note) are package data, served by plain routes as the ``/ui`` page's are: ``include_router`` does
not carry mounts, and a fixed list of files leaves no path to traverse.

The page is FastAPI's own (``get_swagger_ui_html``), whose start-up script is inline. Its Content-Security-Policy
allows that one script by its hash, scripts and styles from this origin only, and requests to this origin only:
the page cannot load anything from elsewhere even by mistake. (Swagger UI sets some inline styles, hence
``style-src 'unsafe-inline'``; the ``/ui`` page keeps its own stricter policy.) The online validator badge is
turned off (``validatorUrl: null``) as it would call an external host.

No ``/docs/oauth2-redirect``: the API's only scheme is a bearer token (``HTTPBearer``), no OAuth2 flow. No
``/redoc``: one API browser is enough, and ReDoc's bundle (1 MB) would earn nothing Swagger UI lacks.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from logcanary.api.prefix import root_path
from logcanary.api.ui import packaged_file

SWAGGER_UI_VERSION = "5.35.0"
ASSETS_DIR = Path(__file__).resolve().parent / "static" / "swagger-ui"
ASSET_PREFIX = "/docs/static/"
OPENAPI_PATH = "/openapi.json"

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
    "swagger-ui-bundle.js.LICENSE.txt": "text/plain; charset=utf-8",
}

_ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

router = APIRouter(include_in_schema=False)


def content_security_policy(html: str) -> str:
    """The page's policy: its inline scripts by hash, everything else from this origin only."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for this API's OpenAPI document, every file from this service."""
    root = root_path(request.scope)
    static = f"{root}{ASSET_PREFIX}"
    page = get_swagger_ui_html(
        openapi_url=f"{root}{OPENAPI_PATH}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{static}swagger-ui-bundle.js",
        swagger_css_url=f"{static}swagger-ui.css",
        swagger_favicon_url=f"{static}favicon-32x32.png",
        oauth2_redirect_url=None,
        swagger_ui_parameters={"validatorUrl": None},
    )
    html = bytes(page.body).decode()
    page.headers["Content-Security-Policy"] = content_security_policy(html)
    page.headers["X-Content-Type-Options"] = "nosniff"
    page.headers["Referrer-Policy"] = "same-origin"
    page.headers["Cache-Control"] = "no-cache"
    return page


@router.get("/docs/static/{name}")
async def asset(name: str) -> FileResponse:
    """Swagger UI's script, style sheet, icon and licence."""
    return packaged_file("docs", ASSETS_DIR, ASSETS, name, _ASSET_HEADERS)
