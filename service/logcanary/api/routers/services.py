"""Services: their deployments and counts, a deployment's clusters, and marking a deployment bad."""

from __future__ import annotations

from fastapi import APIRouter

from logcanary.api.auth import Auth, ReadAuth
from logcanary.api.deps import ReviewsDep
from logcanary.api.errors import responses
from logcanary.schemas import DeploymentMark, DeploymentMarkIn
from logcanary.verification.models import ClusterInfo, ServiceInfo

router = APIRouter(tags=["services"])


@router.get(
    "/v1/services",
    summary="Services, deployments and counts",
    response_model=list[ServiceInfo],
    responses=responses(401, 403),
    dependencies=[ReadAuth],
)
async def list_services(reviews: ReviewsDep) -> list[ServiceInfo]:
    return await reviews.services()


@router.get(
    "/v1/services/{service:path}/clusters",
    summary="Clusters of a deployment, with templates, counts and examples",
    response_model=list[ClusterInfo],
    responses=responses(401, 403, 404),
    dependencies=[ReadAuth],
)
async def list_clusters(reviews: ReviewsDep, service: str, deployment: str) -> list[ClusterInfo]:
    """`deployment` may be any of its identities (a version, a pod-template hash, ...)."""
    return await reviews.clusters(service, deployment)


@router.post(
    "/v1/services/{service:path}/deployments/{deployment:path}/mark",
    summary="Mark a deployment bad (never a history baseline) or not",
    response_model=DeploymentMark,
    responses=responses(401, 403, 404, 422),
    dependencies=[Auth],
)
async def mark_deployment(reviews: ReviewsDep, service: str, deployment: str, body: DeploymentMarkIn) -> DeploymentMark:
    """`{"bad": true, "author", "reason"}` keeps the deployment out of every history baseline; `{"bad": false}`
    lets it back in, even when an analysis failed it. `deployment` may be any of its identities; the mark is
    stored on its canonical name, replaces an earlier mark, and is listed in `/v1/services`."""
    return await reviews.mark(service, deployment, body)
