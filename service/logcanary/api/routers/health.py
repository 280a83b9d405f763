"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from logcanary.api.deps import RuntimeDep, StateDep
from logcanary.api.errors import json_response
from logcanary.api.prefix import root_path

router = APIRouter(tags=["health"])


@router.get("/", include_in_schema=False)
async def root(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{root_path(request.scope)}/docs")


@router.get("/healthz", summary="Liveness: the process serves requests and its ingest task lives")
async def healthz(rt: RuntimeDep) -> Response:
    dead = rt.dead_consumer()
    if dead is not None:  # it will never ingest again: let Kubernetes restart the pod
        return json_response({"status": "ingest_dead", "ingest": dead.status()}, 503)
    return json_response({"status": "ok"}, 200)


@router.get("/readyz", summary="Readiness: state loaded (verdicts can be served); ingest status")
async def readyz(rt: RuntimeDep) -> Response:
    ready, body = rt.readiness()
    return json_response(body, 200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
