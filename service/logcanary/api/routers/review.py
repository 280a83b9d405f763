"""What a reviewer needs beside the verdict: the cluster map of a canary and its baseline, and a service's history
(analyses with their risk over time, feedback rules with who gave them, deployment marks)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from logcanary.analysis.cluster_map import DEFAULT_MAX_POINTS
from logcanary.api.auth import ReadAuth
from logcanary.api.deps import ReviewsDep, VerdictsDep
from logcanary.api.errors import responses
from logcanary.common.durations import parse_window
from logcanary.schemas import OptionalName, Sensitivity
from logcanary.verification.errors import BadQuestion
from logcanary.verification.models import ClusterMap, ServiceHistory
from logcanary.verification.question import DEFAULT_WINDOW, VerdictQuestion

router = APIRouter(tags=["review"])


@router.get(
    "/v1/services/{service:path}/map",
    summary="Cluster map: every event type of a canary and its baseline as a point in 2-D",
    response_model=ClusterMap,
    responses=responses(400, 401, 403, 404, 422),
    dependencies=[ReadAuth],
)
async def get_map(
    reviews: ReviewsDep,
    verdicts: VerdictsDep,
    service: str,
    canary: Annotated[OptionalName, Query(description="Canary deployment (any identity).")] = None,
    baseline: Annotated[OptionalName, Query(description="Control deployment; omit for history.")] = None,
    history: Annotated[bool, Query(description="Compare with earlier deployments too.")] = False,
    window: Annotated[
        str, Query(description="Look-back window such as 5m, 1h, or 'all' (as /v1/verdict).")
    ] = DEFAULT_WINDOW,
    sensitivity: Sensitivity | None = None,
    analysis: Annotated[
        str | None,
        Query(max_length=256, description="An analysis id: its published verdict and window instead of a live one."),
    ] = None,
    max_points: Annotated[int, Query(ge=1, le=10_000)] = DEFAULT_MAX_POINTS,
    until: Annotated[datetime | None, Query(description="The window's end (as /v1/verdict); default: now.")] = None,
) -> ClusterMap:
    """Each template the canary or the baseline logged is a point: `x`, `y` in [0, 1] are given the first time a map
    shows the template, by a layout over the similarity of the templates' words among those placed before (similar
    events sit close together), and kept in the store: a point never moves between refreshes, restarts, replicas
    or deployments of the service. Its state comes from the verdict asked for (the same question as
    `GET /v1/verdict` with these parameters, answered from the same cache), or, with `analysis`, from the verdict
    that analysis published; `clusters` are the canary's clusters counted over that verdict's own window."""
    if analysis is not None:
        return await reviews.analysis_map(service, analysis, max_points)
    await verdicts.model(service)  # an unknown service is a 404 first
    if not canary:
        raise BadQuestion("give canary (a deployment of the service), or analysis")
    try:
        seconds = parse_window(window)
    except ValueError as exc:
        raise BadQuestion(str(exc)) from exc
    end = None if until is None else until.timestamp()
    question = VerdictQuestion(service, canary, baseline, history, sensitivity, seconds, until=end)
    return await reviews.live_map(question, window, max_points)


@router.get(
    "/v1/services/{service:path}/history",
    summary="A service's analyses with their risk over time, its feedback rules and deployment marks",
    response_model=ServiceHistory,
    responses=responses(401, 403, 404, 422),
    dependencies=[ReadAuth],
)
async def get_history(
    reviews: ReviewsDep, service: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> ServiceHistory:
    """The newest `limit` analyses (running, completed or cancelled; kept LOGCANARY_RETENTION_ANALYSES_DAYS), the
    feedback rules (undo one with `DELETE /v1/feedback/{id}`) and the deployment marks. 404 when the service is
    neither known nor named by any of these."""
    return await reviews.history(service, limit)
