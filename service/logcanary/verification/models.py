"""The use cases' request and answer models. The analysis models derive from the shapes in ``logcanary.schemas``
(:class:`~logcanary.schemas.AnalysisFields`: what every form of an analysis says; :class:`AnalysisLife`: what every
view of one shows), so a field is declared once."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from logcanary.analysis.cluster_map import MapCluster, MapPoint
from logcanary.common.durations import Duration
from logcanary.common.links import analysis_page
from logcanary.common.times import utc
from logcanary.schemas import (
    AnalysisFields,
    AnalysisLife,
    DeploymentMark,
    Feedback,
    FeedbackChange,
    Sensitivity,
    Verdict,
    VerdictName,
)
from logcanary.store.base import AnalysisRecord


def life(record: AnalysisRecord) -> dict[str, object]:
    """The :class:`AnalysisLife` fields of a stored analysis."""
    return {
        "id": record.id,
        "status": record.status,
        "started_at": utc(record.started_at),
        "ends_at": utc(record.ends_at),
        "finished_at": utc(record.finished_at) if record.finished_at is not None else None,
    }


class AnalysisIn(AnalysisFields):
    """Start watching a canary."""

    model_config = ConfigDict(extra="forbid")
    duration: Duration = Field(600.0, description="How long to watch, in seconds or like '10m'.")
    sensitivity: Sensitivity | None = Field(None, description="Default: the service's LOGCANARY_DEFAULT_SENSITIVITY.")


class AnalysisOut(AnalysisLife, AnalysisFields):
    """An analysis and its current (or final) verdict."""

    sensitivity: Sensitivity
    verdict: Verdict | None = Field(description="Current verdict while running; final once completed.")
    page: str | None = Field(
        None,
        description="The web page of this analysis' verdict as it publishes it (/ui?analysis=<id>, the top anomaly "
        "open, under LOGCANARY_PUBLIC_URL): the link for people, right whenever it is opened.",
    )

    @classmethod
    def of(cls, record: AnalysisRecord, base_url: str | None = None) -> AnalysisOut:
        request = record.request
        verdict = record.verdict
        cluster = verdict.anomalies[0].cluster_id if verdict and verdict.anomalies else None
        return cls(
            page=analysis_page(base_url, record.id, cluster) if base_url else None,
            **life(record),
            service=record.service,
            canary=request.canary,
            baseline=request.baseline,
            sensitivity=request.sensitivity,
            fail_fast=request.fail_fast,
            source=request.source,
            verdict=record.verdict,
        )


class RiskSample(BaseModel):
    at: datetime
    risk: float = Field(ge=0, le=100)


class AnalysisSummary(AnalysisLife):
    """An analysis of the service with the verdict it published and its risk over time."""

    canary: str
    baseline: str | None = Field(description="Control deployment, if any.")
    history: bool = Field(description="Compared with earlier deployments too.")
    sensitivity: Sensitivity
    verdict: VerdictName | None
    risk: float | None
    reason: str | None
    anomaly_count: int
    top_cluster_id: str | None = Field(
        None, description="The cluster of the published verdict's first anomaly (its page opens it: expand=)."
    )
    risk_history: list[RiskSample] = Field(description="Risk at each evaluation (at most 200, spread evenly).")

    @classmethod
    def of(cls, record: AnalysisRecord) -> AnalysisSummary:
        request = record.request
        verdict = record.verdict
        return cls(
            **life(record),
            canary=request.canary.deployment,
            baseline=request.baseline.deployment,
            history=request.baseline.history,
            sensitivity=request.sensitivity,
            verdict=verdict.verdict if verdict else None,
            risk=verdict.risk if verdict else None,
            reason=verdict.reason if verdict else None,
            anomaly_count=verdict.anomaly_count if verdict else 0,
            top_cluster_id=verdict.anomalies[0].cluster_id if verdict and verdict.anomalies else None,
            risk_history=[RiskSample(at=utc(at), risk=risk) for at, risk in record.risk_history],
        )


class ServiceHistory(BaseModel):
    service: str
    analyses: list[AnalysisSummary] = Field(description="Newest first.")
    feedback: list[Feedback] = Field(description="The service's feedback rules, newest first, with who gave them.")
    feedback_changes: list[FeedbackChange] = Field(
        default_factory=list,
        description="The rules' audit trail, newest first: each rule created, changed or undone, by whom, when, why.",
    )
    marks: list[DeploymentMark] = Field(description="Deployments people marked bad (or not), newest first.")


class MapAnalysis(AnalysisLife):
    """The analysis whose published verdict a map shows."""


class ClusterMap(BaseModel):
    """Every event type of a canary and its baseline as a point, with the verdict it was coloured by."""

    service: str
    canary: str = Field(description="The canary deployment (canonical name).")
    baseline: list[str] = Field(description="The baseline deployments, as the verdict names them.")
    window: str = Field(description="The look-back window asked for, or 'analysis' for an analysis' own window.")
    projection: str = Field(
        description="The layout: places are given by similarity when a template is first shown, then kept."
    )
    analysis: MapAnalysis | None = Field(description="The analysis whose published verdict this is, if asked for.")
    verdict: Verdict = Field(description="The verdict the points are coloured by (an analysis': as it published it).")
    points: list[MapPoint] = Field(description="Anomalous first, then by volume.")
    omitted: int = Field(ge=0, description="Points left out past max_points (the smallest known ones).")
    clusters: list[MapCluster] = Field(
        default_factory=list,
        description="The canary's clusters counted over the verdict's own scope (its window): the page's table, so "
        "every row, dot and finding comes from this one verdict. Most events in the window first.",
    )


class DeploymentInfo(BaseModel):
    deployment: str
    identities: list[str] = Field(
        description="Other names its records carried (version labels, pod-template hashes, OTLP service.version); "
        "a query by any of them means this deployment."
    )
    mark: DeploymentMark | None = Field(description="A person's mark (bad or not), if any.")
    excluded_from_history: bool = Field(
        description="Never part of a history baseline: marked bad, or the canary of an analysis that failed."
    )
    events: int
    templates: int
    clusters: int
    first_seen: float | None = Field(description="Epoch seconds of the first event.")
    last_seen: float | None = Field(description="Epoch seconds of the last event.")


class ServiceInfo(BaseModel):
    service: str
    events: int
    templates: int
    deployments: list[DeploymentInfo]
    last_seen: float | None


class TemplateInfo(BaseModel):
    template_id: str
    template: str
    count: int
    level: str
    hosts: list[str]
    examples: list[str]
    first_seen: float | None
    last_seen: float | None


class ClusterInfo(BaseModel):
    cluster_id: str
    count: int
    templates: list[TemplateInfo]
