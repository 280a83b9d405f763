"""The FastAPI application: lifespan (load state, start Kafka and the analysis loop), middleware, routes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from logcanary.api import docs, errors, ui
from logcanary.api.routers import ROUTERS
from logcanary.api.runtime import Runtime
from logcanary.ingestion.kafka import KafkaIngestor
from logcanary.metrics import Metrics
from logcanary.notify import Notifier
from logcanary.settings import Settings
from logcanary.state import LiveState

log = logging.getLogger(__name__)

DESCRIPTION = """
logcanary watches the logs of a canary deployment and tells deploy tooling whether it is safe.

* **Ingest** log events from Kafka or `POST /v1/events`.
* **Ask** for a verdict: `GET /v1/verdict` (one URL, for Argo Rollouts' web provider), or start an
  analysis with `POST /v1/analyses` and poll it.
* **Teach** it: `POST /v1/feedback` with `ignore` or `priority`.
* **Look**: the web page [/ui](/ui) shows a canary's verdict and clusters, with verbatim examples.

Mutating endpoints need `Authorization: Bearer <token>` when `LOGCANARY_API_TOKEN` is set.
Errors are JSON: `{"error": ..., "detail": ...}`.
"""


def create_app(settings: Settings) -> FastAPI:
    runtime = Runtime(settings)
    notifier = Notifier(settings, runtime.state.metrics.registry)  # webhooks told of ended analyses
    runtime.analyses.on_end = notifier.analysis_ended

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await notifier.start()  # first: analyses that ended while the service was down are told of at load
        await asyncio.to_thread(runtime.state.load)
        await asyncio.to_thread(runtime.analyses.load)
        if settings.scale_out:  # this replica counts the services Kafka gives it, and routes every log record
            runtime.kafka = KafkaIngestor(settings, runtime.state, "owner")
            runtime.router = KafkaIngestor(settings, runtime.state, "router", metrics=runtime.kafka.metrics)
            await runtime.kafka.start()
            await runtime.router.start()
        elif settings.kafka_bootstrap_servers:
            runtime.kafka = KafkaIngestor(settings, runtime.state)
            await runtime.kafka.start()
        loops = [
            asyncio.create_task(runtime.analyses.run(), name="analyses"),
            asyncio.create_task(_loop_lag_monitor(runtime.state), name="loop-lag"),
            asyncio.create_task(_gc_loop(), name="gc-freeze"),
        ]
        if runtime.kafka is None:
            loops.append(asyncio.create_task(_checkpoint_loop(runtime.state), name="checkpoints"))
        loops.append(asyncio.create_task(_maintenance_loop(runtime), name="store-maintenance"))
        try:
            yield
        finally:
            for task in loops:
                task.cancel()
            if runtime.router is not None:
                await runtime.router.stop()
            if runtime.kafka is not None:
                await runtime.kafka.stop()
            await runtime.state.checkpoint(force=True)
            await notifier.stop(grace=min(5.0, settings.shutdown_timeout_seconds / 4))  # queued messages, briefly
            await asyncio.to_thread(runtime.analyses.close)  # its pending store calls, before the store closes
            runtime.store.close()
            gc.unfreeze()  # what the service froze may be garbage now (an app stopped within a longer process)

    app = FastAPI(
        title="logcanary",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by logcanary.api.docs from the package, not from a CDN
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.runtime = runtime
    _document_log_event(app)
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(ui.router)
    app.include_router(docs.router)

    app.add_middleware(RequestMetrics, metrics=runtime.state.metrics)

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
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.http_requests.labels(path, scope["method"], str(status)).inc()
            self.metrics.http_seconds.labels(path).observe(time.perf_counter() - started)


LOOP_LAG_PERIOD = 0.1


async def _loop_lag_monitor(state: LiveState) -> None:
    """Sleeps 100 ms again and again; how late each wake-up comes is the time the loop was blocked."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(LOOP_LAG_PERIOD)
        state.metrics.loop_lag.observe(max(0.0, loop.time() - started - LOOP_LAG_PERIOD))


GC_FREEZE_SECONDS = 10.0
GC_FULL_SECONDS = 3600.0


async def _gc_loop() -> None:
    """Keeps the garbage collector's full passes short: they stop the whole process, loop included.

    The engine's state is millions of long-lived objects, and CPython's full (generation 2) collection walks
    every one of them: with 5 services of 400 templates that took 80-100 ms, every second or two while
    ingesting 10,000 events/s, and every request waiting then (bench/bench_verdicts.py). Every 10 s the young
    garbage is collected (cheap) and what survives is frozen (``gc.freeze``: never walked again), so a full
    pass only walks what is younger than 10 s. Frozen objects freed by reference counting go as always; only
    cyclic garbage among them waits for the hourly ``unfreeze`` and full collection (one such pause an hour).
    """
    last_full = time.monotonic()
    while True:
        await asyncio.sleep(GC_FREEZE_SECONDS)
        if time.monotonic() - last_full >= GC_FULL_SECONDS:
            gc.unfreeze()
            gc.collect()
            last_full = time.monotonic()
        else:
            gc.collect(1)
        gc.freeze()


async def maintain(runtime: Runtime) -> None:
    """Retention, then a bounded file: old deployments and analyses go, the WAL is truncated, free pages returned."""
    now = time.time()
    async with runtime.state.engine_lock:
        runtime.state.prune(now)  # dropped through the engine's eviction; the checkpoint deletes their rows
    forgotten = runtime.analyses.prune(now)
    await runtime.state.checkpoint()
    if forgotten:
        await asyncio.to_thread(runtime.store.delete_analyses, forgotten)
    await asyncio.to_thread(runtime.store.maintain)


async def _maintenance_loop(runtime: Runtime) -> None:
    while True:
        await asyncio.sleep(runtime.settings.store_maintenance_interval_seconds)
        try:
            await maintain(runtime)
        except Exception:
            log.exception("store maintenance failed")


async def _checkpoint_loop(state: LiveState) -> None:
    while True:
        await asyncio.sleep(state.settings.checkpoint_interval_seconds)
        try:
            await state.checkpoint()
        except Exception:
            log.exception("checkpoint failed")


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
