"""Services: their deployments and counts, a deployment's clusters, and marking a deployment bad."""

from __future__ import annotations

import math

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from logcanary.api.auth import Auth, ReadAuth
from logcanary.api.errors import responses
from logcanary.api.runtime import Runtime, RuntimeDep
from logcanary.engine.model import SEVERITY_NAMES, DeploymentModel
from logcanary.schemas import DeploymentMark, DeploymentMarkIn

router = APIRouter(tags=["services"])


async def _deployment(rt: Runtime, service: str, name: str) -> DeploymentModel:
    """The deployment of ``service`` that ``name`` (any of its identities) means; 404 when there is none."""
    model = await rt.state.read_service(service)
    if model is None:
        raise HTTPException(404, f"no events seen for service {service!r}")
    canonical = model.resolve(name)
    if canonical is None:
        raise HTTPException(404, f"no deployment {name!r} of service {service!r}")
    return model.deployments[canonical]


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


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@router.get(
    "/v1/services",
    summary="Services, deployments and counts",
    response_model=list[ServiceInfo],
    responses=responses(401, 403),
    dependencies=[ReadAuth],
)
async def list_services(rt: RuntimeDep) -> list[ServiceInfo]:
    out = []
    names = await rt.state.service_names()
    services = await rt.state.read_services(names)
    for name in names:
        service = services[name]
        if service is None:  # dropped since it was listed
            continue
        excluded = rt.analyses.excluded_from_history(name)
        deployments = [
            DeploymentInfo(
                deployment=d,
                identities=list(m.identities),
                mark=rt.analyses.marks.get((name, d)),
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


@router.get(
    "/v1/services/{service}/clusters",
    summary="Clusters of a deployment, with templates, counts and examples",
    response_model=list[ClusterInfo],
    responses=responses(401, 403, 404),
    dependencies=[ReadAuth],
)
async def list_clusters(rt: RuntimeDep, service: str, deployment: str) -> list[ClusterInfo]:
    """`deployment` may be any of its identities (a version, a pod-template hash, ...)."""
    dep = await _deployment(rt, service, deployment)
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


@router.post(
    "/v1/services/{service}/deployments/{deployment}/mark",
    summary="Mark a deployment bad (never a history baseline) or not",
    response_model=DeploymentMark,
    responses=responses(401, 403, 404, 422),
    dependencies=[Auth],
)
async def mark_deployment(rt: RuntimeDep, service: str, deployment: str, body: DeploymentMarkIn) -> DeploymentMark:
    """`{"bad": true, "author", "reason"}` keeps the deployment out of every history baseline; `{"bad": false}`
    lets it back in, even when an analysis failed it. `deployment` may be any of its identities; the mark is
    stored on its canonical name, replaces an earlier mark, and is listed in `/v1/services`."""
    dep = await _deployment(rt, service, deployment)
    return await rt.analyses.mark(service, dep.deployment, body)
