"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from logcanary.api.errors import json_response
from logcanary.api.runtime import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/docs")


@router.get("/healthz", summary="Liveness: the process serves requests and its ingest task lives")
async def healthz(rt: RuntimeDep) -> Response:
    for kafka in (rt.kafka, rt.router):
        if kafka is not None and kafka.dead:  # it will never ingest again: let Kubernetes restart the pod
            return json_response({"status": "ingest_dead", "ingest": kafka.status()}, 503)
    return json_response({"status": "ok"}, 200)


@router.get("/readyz", summary="Readiness: state loaded (verdicts can be served); ingest status")
async def readyz(rt: RuntimeDep) -> Response:
    kafka = None if rt.kafka is None else rt.kafka.reachable  # checked in the background: never waits
    ingest = None if rt.kafka is None else rt.kafka.status()
    ready = rt.state.loaded
    if ingest is not None and rt.settings.kafka_required_for_ready:
        ready = ready and ingest["state"] == "running" and kafka is True
    body: dict[str, object] = {"ready": ready, "state_loaded": rt.state.loaded, "kafka": kafka, "ingest": ingest}
    if rt.router is not None:  # scale-out: the routing consumer, and the services' partitions held here
        body["routing"] = rt.router.status()
        body["owned_partitions"] = sorted(rt.state.owned or ())
    return json_response(body, 200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(rt: RuntimeDep) -> Response:
    return Response(generate_latest(rt.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
