"""The FastAPI application: the runtime started and stopped by its lifespan, middleware, routes."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

import orjson
from fastapi import FastAPI, Request, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from logcanary.api import docs, errors, ui
from logcanary.api.docs import OPENAPI_PATH
from logcanary.api.prefix import ForwardedPrefix, root_path
from logcanary.api.routers import ROUTERS
from logcanary.metrics import Metrics
from logcanary.runtime import Runtime
from logcanary.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """
logcanary watches the logs of a canary deployment and tells deploy tooling whether it is safe.

* **Ingest** log events from Kafka or `POST /v1/events`.
* **Ask** for a verdict: `GET /v1/verdict` (one URL, a read), or `POST /v1/verdict` to also keep a deploy tool's
  measurement as its release's analysis (Argo Rollouts' web provider with `method: POST`), or start an
  analysis with `POST /v1/analyses` and poll it.
* **Teach** it: `POST /v1/feedback` with `ignore` or `priority`.
* **Look**: the web page [/ui](/ui) shows a canary's verdict and clusters, with verbatim examples.

Mutating endpoints need `Authorization: Bearer <token>` when `LOGCANARY_API_TOKEN` is set.
Errors are JSON: `{"error": ..., "detail": ...}`.
"""


def create_app(settings: Settings) -> FastAPI:
    runtime = Runtime(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="logcanary",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by logcanary.api.docs from the package, not from a CDN
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_url=None,  # served below, with this request's prefix as its server
        root_path=settings.root_path,
    )
    app.state.runtime = runtime
    _document_log_event(app)
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(ui.router)
    app.include_router(docs.router)

    app.add_middleware(RequestMetrics, metrics=runtime.state.metrics)
    app.add_middleware(ForwardedPrefix)  # outermost: every layer below sees the request's prefix

    return app


class RequestMetrics:
    """Counts and times every request by route, method and status: plain ASGI, because Starlette's
    ``BaseHTTPMiddleware`` runs each request through a task group and memory streams, which cost more loop
    time than a cached verdict itself (bench/bench_verdicts.py)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response started: the server answers 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", None) or _route_path(scope)
            self.metrics.http_requests.labels(path, scope["method"], str(status)).inc()
            self.metrics.http_seconds.labels(path).observe(time.perf_counter() - started)


def _route_path(scope: Scope) -> str:
    """The route template of a request the routes answered (read from the router, as the middleware runs outside
    the routing that names it in the scope), or ``unmatched`` (a 404: never a path of the caller's choosing)."""
    router = getattr(scope.get("app"), "router", None)
    for route in getattr(router, "routes", ()):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


def _document_log_event(app: FastAPI) -> None:
    """Adds the LogEvent schema (what may be sent: schemas/log-event.schema.json) to OpenAPI: POST /v1/events reads its
    body itself (JSON or NDJSON)."""
    from fastapi.openapi.utils import get_openapi

    from logcanary.schemas import LogEventIn

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["LogEvent"] = LogEventIn.model_json_schema(ref_template="#/components/schemas/{model}")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get(OPENAPI_PATH, include_in_schema=False)
    async def openapi_document(request: Request) -> Response:
        """The OpenAPI document; behind a path prefix its server is that prefix, so that Swagger UI's "Try it
        out" calls the API where the caller reaches it (FastAPI's own route keeps the first prefix ever seen)."""
        root = root_path(request.scope)
        document = app.openapi()
        body = {**document, "servers": [{"url": root}]} if root else document
        return Response(orjson.dumps(body), media_type="application/json")
