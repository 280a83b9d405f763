"""Long-running analyses: start (also from a Flagger pre-rollout webhook), list, read, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from logcanary.api.auth import Auth, ReadAuth
from logcanary.api.deps import AnalysesDep, HttpSettingsDep
from logcanary.api.errors import responses
from logcanary.api.flagger import FlaggerWebhook, validated
from logcanary.schemas import PRIMARY_SUFFIX, AnalysisStatus
from logcanary.verification.models import AnalysisIn, AnalysisOut

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
    (metadata may set `service`, `canary`, `baseline`, `history`, `duration`, `sensitivity`, `fail_fast`, and
    `source: loki` with `canary_selector`/`baseline_selector` to judge the logs the configured Loki keeps); it
    replaces a running analysis of the same canary, as a new rollout makes the old one moot."""
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
    if "source" in meta:  # the configured log store only: a webhook (unauthenticated) never names a URL
        source = {"type": meta["source"]}
        source.update({key: meta[key] for key in ("canary_selector", "baseline_selector") if key in meta})
        data["source"] = source
    return validated(AnalysisIn, data)


@router.get(
    "/v1/analyses",
    summary="List analyses",
    response_model=list[AnalysisOut],
    responses=responses(401, 403),
    dependencies=[ReadAuth],
)
async def list_analyses(
    analyses: AnalysesDep,
    http: HttpSettingsDep,
    service: str | None = None,
    status_: Annotated[AnalysisStatus | None, Query(alias="status")] = None,
) -> list[AnalysisOut]:
    return [AnalysisOut.of(record, http.base_url) for record in await analyses.listed(service, status_)]


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
