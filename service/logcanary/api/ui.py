"""The web page at ``/ui``: static HTML, JS and CSS that read the JSON API (no dependency, no CDN).

Served by plain routes rather than a ``StaticFiles`` mount: ``include_router`` does not carry mounts,
and a fixed list of files leaves no path to traverse. The page is left out of the OpenAPI schema.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent / "static"

_ASSETS = {
    "ui.js": "text/javascript; charset=utf-8",
    "overview.js": "text/javascript; charset=utf-8",
    "ui.css": "text/css; charset=utf-8",
}
OVERVIEW_VIEWS = {"overview", "release"}

# Defence in depth: log text is only ever set with textContent, and no inline script could run anyway.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def packaged_file(
    what: str, directory: Path, media_types: dict[str, str], name: str, headers: dict[str, str]
) -> FileResponse:
    """One of a fixed list of package files (``/ui``'s and ``/docs``'s): any other name is a 404, so no path
    can be traversed."""
    media_type = media_types.get(name)
    if media_type is None:
        raise HTTPException(404, f"no {what} file {name!r}")
    return FileResponse(directory / name, media_type=media_type, headers=headers)


@router.get("/ui")
async def page(request: Request) -> FileResponse:
    """The overview (the entry point: ``/ui`` alone, ``?view=overview`` with its filters, ``?view=release&release=``),
    or the verdict page: pick a service, canary and baseline (``?service=&canary=&baseline=``, ``?analysis=``,
    ``?view=verdict``, ``?view=history``)."""
    query = request.query_params
    overview = not query or query.get("view") in OVERVIEW_VIEWS
    name = "overview.html" if overview else "index.html"
    return FileResponse(STATIC / name, media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/ui/static/{name}")
async def asset(name: str) -> FileResponse:
    """The page's script and style sheet."""
    return packaged_file("UI", STATIC, _ASSETS, name, _HEADERS)
