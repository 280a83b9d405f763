"""What a reviewer reads beside a verdict: the services and their deployments, a deployment's clusters, the cluster
map of a canary (live, or as an analysis published it), and a service's history."""

from __future__ import annotations

import math

from logcanary.analysis.cluster_map import ClusterMapData, cluster_map
from logcanary.analysis.layout import LAYOUT
from logcanary.analysis.verdict import Scope
from logcanary.engine.model import SEVERITY_NAMES, DeploymentModel, ServiceModel
from logcanary.live.state import LiveState
from logcanary.schemas import DeploymentMark, DeploymentMarkIn, Verdict
from logcanary.verification.analyses import Analyses, question_of
from logcanary.verification.errors import UnknownAnalysis, UnknownDeployment, UnknownService
from logcanary.verification.history import AnalysisFilter
from logcanary.verification.models import (
    AnalysisSummary,
    ClusterInfo,
    ClusterMap,
    DeploymentInfo,
    MapAnalysis,
    ServiceHistory,
    ServiceInfo,
    TemplateInfo,
    life,
)
from logcanary.verification.places import Places
from logcanary.verification.question import VerdictQuestion
from logcanary.verification.rules import Rules
from logcanary.verification.verdicts import Verdicts


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class Reviews:
    def __init__(self, state: LiveState, verdicts: Verdicts, analyses: Analyses, rules: Rules, places: Places) -> None:
        self.state = state
        self.verdicts = verdicts
        self.analyses = analyses
        self.rules = rules
        self.places = places

    async def services(self) -> list[ServiceInfo]:
        out = []
        names = await self.state.service_names()
        services = await self.state.read_services(names)
        for name in names:
            service = services[name]
            if service is None:  # dropped since it was listed
                continue
            excluded = self.rules.excluded_from_history(name)
            deployments = [
                DeploymentInfo(
                    deployment=d,
                    identities=list(m.identities),
                    mark=self.rules.marks.get((name, d)),
                    excluded_from_history=d in excluded,
                    events=m.events,
                    templates=len(m.stats),
                    clusters=len(m.clusterer),
                    first_seen=_finite(m.first_seen),
                    last_seen=_finite(m.last_seen),
                )
                for d, m in sorted(service.deployments.items())
            ]
            last = max((d.last_seen for d in deployments if d.last_seen is not None), default=None)
            out.append(
                ServiceInfo(
                    service=name,
                    events=sum(d.events for d in deployments),
                    templates=len(service.miner),
                    deployments=deployments,
                    last_seen=last,
                )
            )
        return out

    async def deployment(self, service: str, name: str) -> DeploymentModel:
        """The deployment of ``service`` that ``name`` (any of its identities) means."""
        model = await self.verdicts.model(service)
        canonical = model.resolve(name)
        if canonical is None:
            raise UnknownDeployment(service, name)
        return model.deployments[canonical]

    async def clusters(self, service: str, deployment: str) -> list[ClusterInfo]:
        dep = await self.deployment(service, deployment)
        clusters: dict[str, ClusterInfo] = {}
        for template, stats in dep.templates().items():
            cluster = dep.cluster_of(template)
            info = clusters.setdefault(
                cluster.cluster_id, ClusterInfo(cluster_id=cluster.cluster_id, count=0, templates=[])
            )
            info.count += stats.count
            info.templates.append(
                TemplateInfo(
                    template_id=template.template_id,
                    template=template.text,
                    count=stats.count,
                    level=SEVERITY_NAMES[stats.max_severity],
                    hosts=sorted(stats.hosts),
                    examples=stats.examples,
                    first_seen=_finite(stats.first_seen),
                    last_seen=_finite(stats.last_seen),
                )
            )
        return sorted(clusters.values(), key=lambda c: c.count, reverse=True)

    async def mark(self, service: str, deployment: str, entry: DeploymentMarkIn) -> DeploymentMark:
        """Marks a deployment (any of its identities) on its canonical name."""
        dep = await self.deployment(service, deployment)
        return await self.rules.mark(service, dep.deployment, entry)

    async def live_map(self, question: VerdictQuestion, window_text: str, max_points: int) -> ClusterMap:
        """The map of the verdict ``GET /v1/verdict`` answers for the same question (one computation for both), with
        the canary's clusters counted over the same scope: one page, one verdict."""
        model = await self.verdicts.model(question.service)
        answer = await self.verdicts.answer(question.full(), model)
        judgement = answer.value.judgement
        verdict = judgement.verdict
        data = cluster_map(model, verdict, judgement.scope, self.rules.feedback, judgement.novel, max_points)
        return await self._map(model, data, verdict, window_text, None)

    async def analysis_map(self, service: str, analysis_id: str, max_points: int) -> ClusterMap:
        """The map of the verdict an analysis published, over the analysis' own window."""
        try:
            record = await self.analyses.find(analysis_id)
        except UnknownAnalysis:
            record = None
        if record is None or record.service != service:
            raise UnknownAnalysis(f"no analysis {analysis_id!r} of service {service!r}")
        verdict = record.verdict
        if verdict is None:
            raise UnknownAnalysis(f"analysis {analysis_id!r} has published no verdict yet")
        model = await self.state.read_service(service) or self.state.engine.peek_service(service)
        window = (record.started_at, record.ends_at)
        scope = Scope.of(verdict, window)
        novel = None  # the published verdict kept its anomalies, not its judgement of every template: judge again
        if record.request.source is None and verdict.reason_code in ("anomalies", "no_anomaly"):
            novel = (await self.verdicts.compute(model, question_of(record), window)).novel
        data = cluster_map(model, verdict, scope, self.rules.feedback, novel, max_points)
        return await self._map(model, data, verdict, "analysis", MapAnalysis.model_validate(life(record)))

    async def _map(
        self, model: ServiceModel, data: ClusterMapData, verdict: Verdict, window: str, analysis: MapAnalysis | None
    ) -> ClusterMap:
        places = await self.places.of(model, data.templates)
        return ClusterMap(
            service=model.name,
            canary=verdict.canary,
            baseline=verdict.baseline,
            window=window,
            projection=LAYOUT,
            analysis=analysis,
            verdict=verdict,
            points=data.points(places),
            omitted=data.omitted,
            clusters=data.clusters,
        )

    async def history(self, service: str, limit: int) -> ServiceHistory:
        """The newest ``limit`` analyses of the service, its feedback rules, their newest ``limit`` changes and its
        marks (newest first)."""
        records = await self.analyses.listed(AnalysisFilter(service=service))
        feedback, marks = self.rules.of_service(service)
        changes = await self.rules.changes(service)
        if not (records or feedback or marks or changes) and await self.state.read_service(service) is None:
            raise UnknownService(service)
        return ServiceHistory(
            service=service,
            analyses=[AnalysisSummary.of(r) for r in records[:limit]],
            feedback=feedback[::-1],
            feedback_changes=changes[:limit],
            marks=marks[::-1],
        )
