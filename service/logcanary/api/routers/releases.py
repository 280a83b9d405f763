"""Releases: the analyses sharing a release id, judged together (fail if any service fails)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from logcanary.api.auth import ReadAuth
from logcanary.api.deps import AnalysesDep, HistoryDep, HttpSettingsDep
from logcanary.api.errors import responses
from logcanary.api.routers.analyses import DEFAULT_PAGE, MAX_PAGE, FilterDep
from logcanary.schemas import RELEASE_PATTERN
from logcanary.verification.errors import UnknownRelease
from logcanary.verification.models import ReleaseOut
from logcanary.verification.releases import judge_release

router = APIRouter(tags=["releases"])


@router.get(
    "/v1/releases",
    summary="Releases, newest first",
    response_model=list[ReleaseOut],
    responses=responses(400, 401, 403, 422),
    dependencies=[ReadAuth],
)
async def list_releases(
    history: HistoryDep,
    http: HttpSettingsDep,
    query: FilterDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Response:
    """The newest `limit` releases with an analysis the filters let through (`verdict` filters the releases'
    combined verdicts), each with its combined verdict: what the overview page charts per day."""
    return Response(await history.releases(query, limit, http.base_url), media_type="application/json")


@router.get(
    "/v1/releases/{release}",
    summary="A release: the combined verdict of its services",
    response_model=ReleaseOut,
    responses=responses(401, 403, 404, 422),
    dependencies=[ReadAuth],
)
async def get_release(
    analyses: AnalysesDep, http: HttpSettingsDep, release: Annotated[str, Path(pattern=RELEASE_PATTERN)]
) -> ReleaseOut:
    """`fail` when any service's verdict is fail; else `inconclusive` when any is inconclusive, cancelled or not
    evaluated yet; else `pass`. Each service counts once, by its newest analysis in the release. `status` is
    `running` while any of them runs: the verdict is final once it is `completed`."""
    judged = judge_release(release, await analyses.release(release))
    if judged is None:
        raise UnknownRelease(f"no analysis of release {release!r}")
    return ReleaseOut.of(judged, http.base_url)
