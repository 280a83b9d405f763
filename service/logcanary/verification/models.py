"""The use cases' request and answer models. The analysis models derive from the shapes in ``logcanary.schemas``
(:class:`~logcanary.schemas.AnalysisFields`: what every form of an analysis says; :class:`AnalysisLife`: what every
view of one shows), so a field is declared once."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from logcanary.analysis.cluster_map import MapCluster, MapPoint
from logcanary.common.durations import Duration
from logcanary.common.links import analysis_page, release_page
from logcanary.common.times import utc
from logcanary.schemas import (
    AnalysisFields,
    AnalysisLife,
    AnalysisMetadata,
    Anomaly,
    DeploymentMark,
    Feedback,
    FeedbackChange,
    Sensitivity,
    Verdict,
    VerdictName,
)
from logcanary.store.base import AnalysisRecord
from logcanary.verification.history import Counts, SummaryBy
from logcanary.verification.releases import ReleaseJudgement, ReleaseStatus, service_verdict


def metadata(record: AnalysisRecord) -> dict[str, object]:
    """The :class:`AnalysisMetadata` fields of a stored analysis (none for one stored before it had them)."""
    return {name: getattr(record.request, name) for name in AnalysisMetadata.model_fields}


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
    measured: bool = Field(
        False,
        description="A deploy tool's on-demand verdicts kept for its release (the latest measurement: POST /v1/verdict "
        "with a release), not an analysis logcanary watched.",
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
            measured=record.measured,
            **metadata(record),
        )


class RiskSample(BaseModel):
    at: datetime
    risk: float = Field(ge=0, le=100)


class AnalysisSummary(AnalysisLife, AnalysisMetadata):
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
            **metadata(record),
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


class TopAnomaly(BaseModel):
    """The strongest anomaly of a verdict, in a line: what a release shows of each service."""

    kind: str
    direction: str | None
    cluster_id: str
    template: str
    level: str
    canary_count: int
    example: str | None = Field(description="One verbatim message (for a drop: the baseline's).")

    @classmethod
    def of(cls, anomaly: Anomaly) -> TopAnomaly:
        examples = anomaly.baseline_examples if anomaly.direction == "down" else anomaly.examples
        return cls(
            kind=anomaly.kind,
            direction=anomaly.direction,
            cluster_id=anomaly.cluster_id,
            template=anomaly.template,
            level=anomaly.level,
            canary_count=anomaly.canary_count,
            example=examples[0] if examples else None,
        )


class ReleaseService(BaseModel):
    """One service of a release: its counted analysis (the newest) and the verdict it gives the release."""

    service: str
    analysis_id: str
    status: str
    verdict: VerdictName = Field(description="Its part in the release: cancelled or not evaluated is inconclusive.")
    risk: float | None
    reason: str | None
    canary: str
    baseline: str | None
    environment: str | None
    requested_by: str
    top_anomaly: TopAnomaly | None
    page: str | None = Field(description="The analysis' page as it published its verdict, its top anomaly open.")

    @classmethod
    def of(cls, record: AnalysisRecord, base_url: str | None) -> ReleaseService:
        verdict = record.verdict
        top = verdict.anomalies[0] if verdict and verdict.anomalies else None
        return cls(
            service=record.service,
            analysis_id=record.id,
            status=record.status,
            verdict=service_verdict(record),
            risk=verdict.risk if verdict else None,
            reason=verdict.reason if verdict else None,
            canary=record.request.canary.deployment,
            baseline=record.request.baseline.deployment,
            environment=record.request.environment,
            requested_by=record.request.requested_by,
            top_anomaly=TopAnomaly.of(top) if top else None,
            page=analysis_page(base_url, record.id, top.cluster_id if top else None) if base_url else None,
        )


class ReleaseOut(BaseModel):
    """A release: the combined verdict of its services' analyses (fail if any fails; see the rules in the README,
    "Releases"), each service's verdict and top anomaly, and its time span."""

    release: str
    verdict: VerdictName
    status: ReleaseStatus = Field(description="running while any service's analysis runs; then completed (final).")
    reason: str
    environments: list[str] = Field(description="The environments its analyses name (usually one).")
    started_at: datetime = Field(description="The first analysis' start.")
    finished_at: datetime | None = Field(description="The last analysis' end, once none runs.")
    services: list[ReleaseService] = Field(description="One per service (its newest analysis), by service name.")
    page: str | None = Field(None, description="The overview page of this release.")

    @classmethod
    def of(cls, judged: ReleaseJudgement, base_url: str | None) -> ReleaseOut:
        records = judged.analyses
        ends = [r.finished_at for r in records if r.finished_at is not None]
        return cls(
            release=judged.release,
            verdict=judged.verdict,
            status=judged.status,
            reason=judged.reason,
            environments=sorted({r.request.environment for r in records if r.request.environment}),
            started_at=utc(min(r.started_at for r in records)),
            finished_at=utc(max(ends)) if judged.status == "completed" and ends else None,
            services=[ReleaseService.of(r, base_url) for r in records],
            page=release_page(base_url, judged.release) if base_url else None,
        )


class SummaryGroup(BaseModel):
    """Analyses of one day, environment or service, counted by the verdict they published."""

    key: str = Field(description="The day (UTC, 2026-12-07), the environment ('(none)': none named) or the service.")
    analyses: int
    passed: int
    failed: int
    inconclusive: int
    running: int
    cancelled: int
    success_rate: float | None = Field(
        description="passed / (passed + failed + inconclusive): of the completed ones; null when none completed."
    )

    @classmethod
    def of(cls, counts: Counts) -> SummaryGroup:
        return cls(
            key=counts.key,
            analyses=counts.analyses,
            passed=counts.passed,
            failed=counts.failed,
            inconclusive=counts.inconclusive,
            running=counts.running,
            cancelled=counts.cancelled,
            success_rate=counts.success_rate,
        )


class AnalysesSummary(BaseModel):
    """Counts and success rates of the analyses a filter lets through, grouped by day, environment or service."""

    by: SummaryBy
    groups: list[SummaryGroup] = Field(description="Days oldest first; environments and services most analyses first.")
    total: SummaryGroup = Field(description="Every group together (key 'all').")
