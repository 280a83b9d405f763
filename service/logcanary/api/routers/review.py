"""What a reviewer needs beside the verdict: the cluster map of a canary and its baseline, and a service's history
(analyses with their risk over time, feedback rules with who gave them, deployment marks)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from logcanary.analyses import parse_duration
from logcanary.analysis.projection import PROJECTION, position
from logcanary.analysis.verdict import OVERFLOW_TEMPLATE
from logcanary.api.auth import ReadAuth
from logcanary.api.errors import responses
from logcanary.api.runtime import Runtime, RuntimeDep
from logcanary.engine.miner import OTHER, Template
from logcanary.engine.model import SEVERITY_NAMES, DeploymentModel, ServiceModel
from logcanary.schemas import DeploymentMark, Feedback, FeedbackAction, Sensitivity, Verdict, VerdictName, to_rfc3339
from logcanary.store.base import AnalysisRecord, AnalysisStatus

router = APIRouter(tags=["review"])

PointState = Literal["known", "anomalous", "vanished", "ignored"]
DEFAULT_MAX_POINTS = 1000
HISTORY_PREFIX = "history:"  # how a verdict names a history baseline deployment


class MapPoint(BaseModel):
    """One event type (template) of the canary or the baseline, placed on the map."""

    template_id: str = Field(description="Content-derived id; the same template has the same position on every map.")
    cluster_id: str = Field(description="Its cluster in the canary (or, for a baseline-only event, the baseline).")
    template: str
    x: float = Field(ge=0, le=1, description="Position, from the template's own words (stable projection).")
    y: float = Field(ge=0, le=1)
    state: PointState = Field(
        description="anomalous: part of an anomaly the verdict lists (its strongest ten; its anomaly_count says how "
        "many reached the fail score), a drop too (then in_canary is false); ignored: "
        "an anomaly a feedback rule silenced (ignore, or not_a_risk for this canary); vanished: logged by the "
        "baseline only; known: logged by the canary, not anomalous."
    )
    in_canary: bool = Field(description="The canary logged it in the window.")
    canary_count: int = Field(ge=0, description="Events in the canary within the window.")
    baseline_count: int = Field(ge=0, description="Events in the baseline deployments (history: all time).")
    level: str = Field(description="Highest level seen on either side.")
    finding: str | None = Field(
        None, description="For an anomaly: unknown, frequency (up), drop (down) or priority; null otherwise."
    )
    score: float | None = Field(None, description="The anomaly's score, for an anomalous point.")
    feedback_id: str | None = Field(None, description="The rule that silenced an ignored point.")
    feedback_action: FeedbackAction | None = None


class MapAnalysis(BaseModel):
    id: str
    status: AnalysisStatus
    started_at: datetime
    ends_at: datetime
    finished_at: datetime | None


class ClusterMap(BaseModel):
    """Every event type of a canary and its baseline as a point, with the verdict it was coloured by."""

    service: str
    canary: str = Field(description="The canary deployment (canonical name).")
    baseline: list[str] = Field(description="The baseline deployments, as the verdict names them.")
    window: str = Field(description="The look-back window asked for, or 'analysis' for an analysis' own window.")
    projection: str = Field(description="Version of the projection; positions only change when it changes.")
    analysis: MapAnalysis | None = Field(description="The analysis whose published verdict this is, if asked for.")
    verdict: Verdict = Field(description="The verdict the points are coloured by (an analysis': as it published it).")
    points: list[MapPoint] = Field(description="Anomalous first, then by volume.")
    omitted: int = Field(ge=0, description="Points left out past max_points (the smallest known ones).")


def _counts(dep: DeploymentModel, window: tuple[float, float] | None) -> dict[Template, tuple[int, int]]:
    """Events per live template within the window, with the highest severity (events past the caps as OTHER)."""
    out: dict[Template, tuple[int, int]] = {}
    for template, stats in [*dep.templates().items(), (OTHER, dep.other)]:
        count = stats.count if window is None else stats.count_between(*window)
        if count > 0:
            out[template] = (count, stats.max_severity)
    return out


def cluster_map(
    model: ServiceModel,
    verdict: Verdict,
    window: tuple[float, float] | None,
    feedback: list[Feedback],
    max_points: int = DEFAULT_MAX_POINTS,
) -> tuple[list[MapPoint], int]:
    """The points of the verdict's canary and baseline, coloured by the verdict; (points, how many were left out).

    Counts are taken as the verdict took them: the canary and control deployments within ``window``, history
    deployments over all time.
    """
    canary_dep = model.deployments.get(verdict.canary)
    canary = _counts(canary_dep, window) if canary_dep is not None else {}
    baseline: dict[Template, list[int]] = {}
    owner: dict[Template, DeploymentModel] = {}
    for name in verdict.baseline:
        history = name.startswith(HISTORY_PREFIX)
        dep = model.deployments.get(name.removeprefix(HISTORY_PREFIX) if history else name)
        if dep is None:
            continue
        for template, (count, level) in _counts(dep, None if history else window).items():
            entry = baseline.setdefault(template, [0, 0])
            entry[0] += count
            entry[1] = max(entry[1], level)
            owner.setdefault(template, dep)

    anomalous: dict[str, tuple[str, float]] = {}
    for anomaly in verdict.anomalies:
        finding = "drop" if anomaly.direction == "down" else anomaly.kind
        for template_id in anomaly.template_ids:
            anomalous.setdefault(template_id, (finding, anomaly.score))
    actions = {f.id: f.action for f in feedback}
    silenced = {s.template: s.feedback_id for s in verdict.suppressed}  # Suppressed names its template by text

    points = []
    for template in {*canary, *baseline}:
        in_canary = template in canary
        count, canary_level = canary.get(template, (0, 0))
        base_count, base_level = baseline.get(template, (0, 0))
        text = OVERFLOW_TEMPLATE if template is OTHER else template.text
        ids = {template.template_id, *template.aliases}
        hit = next((anomalous[i] for i in ids if i in anomalous), None)
        feedback_id = silenced.get(template.text) if in_canary else None
        state: PointState
        if hit is not None:
            state = "anomalous"
        elif feedback_id is not None:
            state = "ignored"
        elif in_canary:
            state = "known"
        else:
            state = "vanished"
        dep = canary_dep if in_canary and canary_dep is not None else owner[template]
        cluster = dep.clusterer.other if template is OTHER else dep.cluster_of(template)
        x, y = position(template)
        points.append(
            MapPoint(
                template_id=template.template_id,
                cluster_id=cluster.cluster_id,
                template=text,
                x=x,
                y=y,
                state=state,
                in_canary=in_canary,
                canary_count=count,
                baseline_count=base_count,
                level=SEVERITY_NAMES[max(canary_level, base_level)],
                finding=hit[0] if hit else None,
                score=hit[1] if hit else None,
                feedback_id=feedback_id,
                feedback_action=actions.get(feedback_id) if feedback_id else None,
            )
        )
    rank = {"anomalous": 0, "ignored": 1, "known": 2, "vanished": 2}
    points.sort(key=lambda p: (rank[p.state], -(p.canary_count + p.baseline_count), p.template_id))
    return points[:max_points], max(0, len(points) - max_points)


def _window(value: str) -> float | None:
    """Seconds of a look-back window ('all': None), 400 when it is not one."""
    if value == "all":
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc


async def _analysis_verdict(
    rt: Runtime, service: str, analysis_id: str
) -> tuple[AnalysisRecord, Verdict, tuple[float, float]]:
    record = await rt.analyses.find(analysis_id)
    if record is None or record.service != service:
        raise HTTPException(404, f"no analysis {analysis_id!r} of service {service!r}")
    if record.verdict is None:
        raise HTTPException(404, f"analysis {analysis_id!r} has published no verdict yet")
    return record, record.verdict, (record.started_at, record.ends_at)


@router.get(
    "/v1/services/{service}/map",
    summary="Cluster map: every event type of a canary and its baseline as a point in 2-D",
    response_model=ClusterMap,
    responses=responses(400, 401, 403, 404, 422),
    dependencies=[ReadAuth],
)
async def get_map(
    rt: RuntimeDep,
    service: str,
    canary: Annotated[str | None, Query(max_length=256, description="Canary deployment (any identity).")] = None,
    baseline: Annotated[str | None, Query(max_length=256, description="Control deployment; omit for history.")] = None,
    history: Annotated[bool, Query(description="Compare with earlier deployments too.")] = False,
    window: Annotated[str, Query(description="Look-back window such as 5m, 1h, or 'all' (as /v1/verdict).")] = "5m",
    sensitivity: Sensitivity | None = None,
    analysis: Annotated[
        str | None,
        Query(max_length=256, description="An analysis id: its published verdict and window instead of a live one."),
    ] = None,
    max_points: Annotated[int, Query(ge=1, le=10_000)] = DEFAULT_MAX_POINTS,
) -> ClusterMap:
    """Each template the canary or the baseline logged is a point: `x`, `y` in [0, 1] come from the template's own
    words by a fixed random projection, so similar events sit close together and a point never moves between
    refreshes, restarts or deployments of the service. Its state comes from the verdict asked for (the same
    question as `GET /v1/verdict` with these parameters, answered from the same cache), or, with `analysis`, from
    the verdict that analysis published."""
    model = await rt.state.read_service(service)
    found = None
    if analysis is not None:
        found = await _analysis_verdict(rt, service, analysis)
    if model is None and found is None:
        raise HTTPException(404, f"no events seen for service {service!r}")
    model = model or rt.state.engine.peek_service(service)
    if found is not None:
        record, verdict, span = found
        points, omitted = cluster_map(model, verdict, span, rt.analyses.feedback, max_points)
        return ClusterMap(
            service=service,
            canary=verdict.canary,
            baseline=verdict.baseline,
            window="analysis",
            projection=PROJECTION,
            analysis=MapAnalysis(
                id=record.id,
                status=record.status,
                started_at=to_rfc3339(record.started_at),
                ends_at=to_rfc3339(record.ends_at),
                finished_at=to_rfc3339(record.finished_at) if record.finished_at is not None else None,
            ),
            verdict=verdict,
            points=points,
            omitted=omitted,
        )
    if not canary:
        raise HTTPException(400, "give canary (a deployment of the service), or analysis")
    seconds = _window(window)
    baseline = baseline or None
    uses_history = history or baseline is None
    # GET /v1/verdict's question (not compact): both answer from one computation.
    answer = await rt.analyses.cached_verdict(model, canary, baseline, uses_history, sensitivity, seconds)
    verdict = answer.verdict
    counted = None if seconds is None else (answer.computed_at - seconds, math.inf)
    points, omitted = cluster_map(model, verdict, counted, rt.analyses.feedback, max_points)
    return ClusterMap(
        service=service,
        canary=verdict.canary,
        baseline=verdict.baseline,
        window=window,
        projection=PROJECTION,
        analysis=None,
        verdict=verdict,
        points=points,
        omitted=omitted,
    )


class RiskSample(BaseModel):
    at: datetime
    risk: float = Field(ge=0, le=100)


class AnalysisSummary(BaseModel):
    """An analysis of the service with the verdict it published and its risk over time."""

    id: str
    canary: str
    baseline: str | None = Field(description="Control deployment, if any.")
    history: bool = Field(description="Compared with earlier deployments too.")
    sensitivity: Sensitivity
    status: AnalysisStatus
    started_at: datetime
    ends_at: datetime
    finished_at: datetime | None
    verdict: VerdictName | None
    risk: float | None
    reason: str | None
    anomaly_count: int
    risk_history: list[RiskSample] = Field(description="Risk at each evaluation (at most 200, spread evenly).")


class ServiceHistory(BaseModel):
    service: str
    analyses: list[AnalysisSummary] = Field(description="Newest first.")
    feedback: list[Feedback] = Field(description="The service's feedback rules, newest first, with who gave them.")
    marks: list[DeploymentMark] = Field(description="Deployments people marked bad (or not), newest first.")


def _summary(record: AnalysisRecord) -> AnalysisSummary:
    request = record.request
    verdict = record.verdict
    return AnalysisSummary(
        id=record.id,
        canary=request.canary.deployment,
        baseline=request.baseline.deployment,
        history=request.baseline.history,
        sensitivity=request.sensitivity,
        status=record.status,
        started_at=to_rfc3339(record.started_at),
        ends_at=to_rfc3339(record.ends_at),
        finished_at=to_rfc3339(record.finished_at) if record.finished_at is not None else None,
        verdict=verdict.verdict if verdict else None,
        risk=verdict.risk if verdict else None,
        reason=verdict.reason if verdict else None,
        anomaly_count=verdict.anomaly_count if verdict else 0,
        risk_history=[RiskSample(at=to_rfc3339(at), risk=risk) for at, risk in record.risk_history],
    )


@router.get(
    "/v1/services/{service}/history",
    summary="A service's analyses with their risk over time, its feedback rules and deployment marks",
    response_model=ServiceHistory,
    responses=responses(401, 403, 404, 422),
    dependencies=[ReadAuth],
)
async def get_history(
    rt: RuntimeDep, service: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> ServiceHistory:
    """The newest `limit` analyses (running, completed or cancelled; kept LOGCANARY_RETENTION_ANALYSES_DAYS), the
    feedback rules (undo one with `DELETE /v1/feedback/{id}`) and the deployment marks. 404 when the service is
    neither known nor named by any of these."""
    await rt.analyses.refresh()  # scale-out: what another replica just added or judged
    records = sorted(
        (r for r in rt.analyses.records.values() if r.service == service), key=lambda r: r.started_at, reverse=True
    )
    feedback = sorted((f for f in rt.analyses.feedback if f.service == service), key=lambda f: f.created_at)
    marks = sorted((m for (name, _), m in rt.analyses.marks.items() if name == service), key=lambda m: m.marked_at)
    if not (records or feedback or marks) and await rt.state.read_service(service) is None:
        raise HTTPException(404, f"no events seen for service {service!r}")
    return ServiceHistory(
        service=service,
        analyses=[_summary(r) for r in records[:limit]],
        feedback=feedback[::-1],
        marks=marks[::-1],
    )
