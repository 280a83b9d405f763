"""Long-running analyses: start (also from a Flagger pre-rollout webhook), list, read, cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from logcanary.api.auth import Auth, ReadAuth
from logcanary.api.deps import AnalysesDep, HistoryDep, HttpSettingsDep
from logcanary.api.errors import responses
from logcanary.api.flagger import FlaggerWebhook, validated
from logcanary.schemas import PRIMARY_SUFFIX, AnalysisStatus, VerdictName, labels_of
from logcanary.verification.history import AnalysisFilter, SummaryBy, parse_labels
from logcanary.verification.models import AnalysesSummary, AnalysisIn, AnalysisOut

DEFAULT_PAGE = 100
MAX_PAGE = 1000

router = APIRouter(tags=["analyses"])


@router.post(
    "/v1/analyses",
    summary="Start watching a canary",
    status_code=201,
    response_model=AnalysisOut,
    responses=responses(401, 403, 404, 422, 429),
    dependencies=[Auth],
)
async def create_analysis(
    analyses: AnalysesDep,
    http: HttpSettingsDep,
    body: Annotated[AnalysisIn | FlaggerWebhook, Body(description="An analysis, or a Flagger pre-rollout webhook")],
) -> AnalysisOut:
    """Its `logcanary_analysis_risk` and `logcanary_analysis_verdict` series exist from now until it ends.
    404 for a service never seen (as `/v1/verdict`); 429 past `LOGCANARY_MAX_RUNNING_ANALYSES`.

    A Flagger `pre-rollout` webhook body starts an analysis of the canary `<name>` against `<name>-primary`
    (metadata may set `service`, `canary`, `baseline`, `history`, `duration`, `sensitivity`, `fail_fast`,
    `environment`, `release`, `pipeline_url`, `labels` as `k=v,k2=v2`, and `source: loki` with
    `canary_selector`/`baseline_selector` to judge the logs the configured Loki keeps); it replaces a running
    analysis of the same canary, as a new rollout makes the old one moot. Its `requested_by` is `flagger`."""
    if isinstance(body, FlaggerWebhook):
        return AnalysisOut.of(await analyses.create(_analysis_from_hook(body), replace=True), http.base_url)
    return AnalysisOut.of(await analyses.create(body), http.base_url)


def _analysis_from_hook(hook: FlaggerWebhook) -> AnalysisIn:
    """The analysis a Flagger webhook asks for; metadata keys that are not analysis fields are ignored."""
    meta = hook.metadata
    baseline: dict[str, object] = {"deployment": meta.get("baseline", hook.name + PRIMARY_SUFFIX)}
    if "history" in meta:
        baseline["history"] = meta["history"]
    data: dict[str, object] = {
        "service": meta.get("service", hook.name),
        "canary": {"deployment": meta.get("canary", hook.name)},
        "baseline": baseline,
        **{key: meta[key] for key in ("duration", "sensitivity", "fail_fast") if key in meta},
    }
    data.update({key: meta[key] for key in ("environment", "release", "pipeline_url") if key in meta})
    if "labels" in meta:  # Flagger's metadata is strings only: "team=payments,tier=1"
        data["labels"] = labels_of(meta["labels"])
    data["requested_by"] = "flagger"
    if "source" in meta:  # the configured log store only: a webhook (unauthenticated) never names a URL
        source = {"type": meta["source"]}
        source.update({key: meta[key] for key in ("canary_selector", "baseline_selector") if key in meta})
        data["source"] = source
    return validated(AnalysisIn, data)


def analysis_filter(
    environment: Annotated[str | None, Query(description="Analyses of this environment.")] = None,
    service: Annotated[str | None, Query(description="Of this service.")] = None,
    release: Annotated[str | None, Query(description="Of this release.")] = None,
    verdict: Annotated[
        VerdictName | None, Query(description="That published this verdict (current if running).")
    ] = None,
    status_: Annotated[AnalysisStatus | None, Query(alias="status")] = None,
    label: Annotated[list[str], Query(description="key=value, repeatable: every one must match.")] = [],  # noqa: B006
    since: Annotated[datetime | None, Query(description="Started at or after (RFC 3339).")] = None,
    until: Annotated[datetime | None, Query(description="Started before (RFC 3339).")] = None,
) -> AnalysisFilter:
    """The history filter a list, a summary and the releases list share."""
    return AnalysisFilter(
        environment=environment,
        service=service,
        release=release,
        verdict=verdict,
        status=status_,
        labels=parse_labels(label),
        since=since.timestamp() if since else None,
        until=until.timestamp() if until else None,
    )


FilterDep = Annotated[AnalysisFilter, Depends(analysis_filter)]


@router.get(
    "/v1/analyses",
    summary="List analyses",
    response_model=list[AnalysisOut],
    responses=responses(400, 401, 403, 422),
    dependencies=[ReadAuth],
)
async def list_analyses(
    history: HistoryDep,
    http: HttpSettingsDep,
    request: Request,
    query: FilterDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None, Query(description="From the Logcanary-Next-Cursor header of the page before.")
    ] = None,
) -> Response:
    """Newest first, `limit` at a time. When more match, the answer's `Logcanary-Next-Cursor` header holds the
    cursor of the next page, and its `Link` header (rel="next") the next page's URL: an analysis created meanwhile
    never shifts a page."""
    body, following = await history.page(query, limit, cursor, http.base_url)
    response = Response(body, media_type="application/json")
    if following is not None:
        response.headers["Logcanary-Next-Cursor"] = following
        response.headers["Link"] = f'<{request.url.include_query_params(cursor=following)}>; rel="next"'
    return response


@router.get(
    "/v1/analyses/summary",
    summary="Analyses counted by day, environment or service",
    response_model=AnalysesSummary,
    responses=responses(400, 401, 403, 422),
    dependencies=[ReadAuth],
)
async def summarize_analyses(
    history: HistoryDep, query: FilterDep, by: Annotated[SummaryBy, Query()] = "day"
) -> Response:
    """The analyses the filters let through (as `GET /v1/analyses`), counted by the verdict they published, with the
    success rate of the completed ones, per day (UTC, of their start), environment or service."""
    return Response(await history.summary(query, by), media_type="application/json")


@router.get(
    "/v1/analyses/{analysis_id}",
    summary="An analysis with its current verdict",
    response_model=AnalysisOut,
    responses=responses(401, 403, 404),
    dependencies=[ReadAuth],
)
async def get_analysis(analyses: AnalysesDep, http: HttpSettingsDep, analysis_id: str) -> AnalysisOut:
    """The verdict as the analysis last evaluated it (every 2 s while it runs, final once it ends).
    Reading never evaluates, completes or counts anything: only the analysis loop does."""
    return AnalysisOut.of(await analyses.find(analysis_id), http.base_url)


@router.delete(
    "/v1/analyses/{analysis_id}",
    summary="Cancel an analysis",
    response_model=AnalysisOut,
    responses=responses(401, 403, 404, 409),
    dependencies=[Auth],
)
async def cancel_analysis(analyses: AnalysesDep, http: HttpSettingsDep, analysis_id: str) -> AnalysisOut:
    """Stops a running analysis and removes its metric series. 409 when it already completed."""
    record = await analyses.find(analysis_id)
    await analyses.cancel(record)
    return AnalysisOut.of(record, http.base_url)
