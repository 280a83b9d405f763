"""Serving under a path prefix (``https://tools.example.com/logcanary/``): where the URLs the service builds start.

A reverse proxy either strips its prefix and says which it was in ``X-Forwarded-Prefix`` (Traefik's StripPrefix,
ingress-nginx's ``x-forwarded-prefix`` annotation, an nginx ``proxy_set_header``), or passes the full path on:
then ``LOGCANARY_ROOT_PATH`` names the prefix. Either way the prefix becomes the ASGI ``root_path``, from which
every absolute URL the service builds starts (the docs page, the OpenAPI document's server, the root redirect);
the page's own URLs are relative. Routing is unchanged: Starlette matches a path without a prefix it does not
start with, and strips one it does.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from logcanary.common.paths import clean_prefix


class ForwardedPrefix:
    """Plain ASGI (no per-request task): an ``X-Forwarded-Prefix`` header sets the request's ``root_path``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-forwarded-prefix":
                    prefix = clean_prefix(value.decode("latin-1"))
                    if prefix is not None:
                        scope = {**scope, "root_path": prefix}
                    break
        await self.app(scope, receive, send)


def root_path(scope: Scope) -> str:
    """Where this request's absolute URLs start ("" at the host's root)."""
    return str(scope.get("root_path", "")).rstrip("/")
