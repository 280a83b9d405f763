"""Verdicts on demand: GET /v1/verdict (one URL to poll, a read) and POST /v1/verdict (JSON body, Flagger webhooks, or
the query in the URL; with a ``release``, the one way a deploy tool's measurement is kept)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from logcanary.api.auth import ReadAuth
from logcanary.api.deps import AnalysesDep, VerdictsDep
from logcanary.api.errors import error, responses
from logcanary.api.flagger import FlaggerWebhook, validated
from logcanary.common.durations import parse_window
from logcanary.common.times import utc
from logcanary.schemas import (
    MAX_LABELS,
    PRIMARY_SUFFIX,
    AnalysisPlace,
    LabelKey,
    LabelValue,
    Name,
    OptionalName,
    Sensitivity,
    Verdict,
    labels_of,
)
from logcanary.verification.analyses import Analyses
from logcanary.verification.errors import BadQuestion
from logcanary.verification.question import DEFAULT_WINDOW, PulledFrom, VerdictQuestion
from logcanary.verification.verdicts import Verdicts, answered_within

router = APIRouter(tags=["verdicts"])


class VerdictQuery(AnalysisPlace):
    """A verdict over the last ``window`` of event time; POSTed with a ``release``, kept as that release's analysis of
    the service (an Argo Rollouts measurement, a Flagger check: see `GET /v1/releases/{release}`)."""

    model_config = ConfigDict(extra="forbid")
    service: Name
    canary: Name = Field(description="Canary deployment (version or pod-template hash).")
    baseline: OptionalName = Field(None, description="Control deployment; omit to use history.")
    history: bool = Field(False, description="Compare with earlier deployments too (implied without baseline).")
    window: str = Field(DEFAULT_WINDOW, description="Look-back window such as 90s, 5m, 1h, or 'all'.")
    sensitivity: Sensitivity | None = None
    canary_weight: float | None = Field(
        None,
        gt=0,
        lt=100,
        description="The canary's share of traffic in percent, when a router splits it (Argo Rollouts' setWeight, "
        "Flagger's canaryWeight): its events per second are then expected at weight / (100 - weight) of the "
        "control's. Unset: each canary host is expected to log as many as a baseline host.",
    )
    fail_status: int | None = Field(
        None,
        ge=400,
        le=499,
        description="HTTP status (4xx) to answer with when the verdict is fail (e.g. 412 for Flagger).",
    )
    source: Literal["loki"] | None = Field(
        None,
        description="Judge the logs the configured log store holds (LOGCANARY_LOKI_URL) instead of the events sent "
        "to logcanary; its queries are canary_selector and baseline_selector (defaults: LOGCANARY_LOKI_*).",
    )
    canary_selector: str | None = Field(
        None,
        max_length=4096,
        description='LogQL template of the canary\'s logs, e.g. {app="$service", version="$deployment"}.',
    )
    baseline_selector: str | None = Field(None, max_length=4096, description="LogQL template of the baseline's logs.")
    until: datetime | None = Field(
        None,
        description="The window's end (RFC 3339): the window is the `window` before it. Default: now, open-ended. A "
        "verdict's `page` fixes it, so the page shows the window a deploy tool asked about whenever it is opened.",
    )
    labels: str | None = Field(
        None,
        max_length=4096,
        description="POST with a release: the analysis' labels, as team=payments,tier=1.",
    )
    compact: bool = Field(
        False,
        description="Answer a bounded verdict (about 3 KB at most) for tools that store it, such as Argo Rollouts' "
        "web provider: verdict, risk, reason, reason_code, counts and thresholds unchanged; at most 3 anomalies "
        "with one example each, 3 vanished and 3 suppressed entries; texts cut to 200 characters.",
    )

    def question(self) -> VerdictQuestion:
        """The question asked (400 for a window that is not one)."""
        try:
            window = parse_window(self.window)
        except ValueError as exc:
            raise BadQuestion(str(exc)) from exc
        return VerdictQuestion(
            service=self.service,
            canary=self.canary,
            baseline=self.baseline,
            history=self.history,
            sensitivity=self.sensitivity,
            window=window,
            compact=self.compact,
            source=None if self.source is None else PulledFrom(self.canary_selector, self.baseline_selector),
            until=None if self.until is None else self.until.timestamp(),
            canary_weight=self.canary_weight,
        )


def _labels(text: str | None) -> dict[str, str]:
    """The labels of a query string, validated as an analysis' (422 like any invalid query)."""
    if not text:
        return {}
    return validated(LabelsOnly, {"labels": labels_of(text)}).labels


class LabelsOnly(BaseModel):
    labels: dict[LabelKey, LabelValue] = Field(max_length=MAX_LABELS)


# What only a recording says: where a kept measurement belongs. GET /v1/verdict is a read and refuses them.
RECORDING_FIELDS = frozenset(AnalysisPlace.model_fields) | {"labels"}
RECORDING_NEEDS_POST = "recording_needs_post"


COMPUTED_AT_HEADER = "Logcanary-Computed-At"  # when the verdict was computed (RFC 3339)
AGE_HEADER = "Logcanary-Verdict-Age"  # seconds since then: at most LOGCANARY_VERDICT_MAX_AGE_SECONDS


async def _verdict(
    verdicts: Verdicts, query: VerdictQuery, keeping: Analyses | None = None, inconclusive_fails: bool = False
) -> Response:
    """The verdict as an HTTP answer: ``fail_status`` for a fail (and, with ``inconclusive_fails``, for an
    inconclusive verdict too), else 200. The same question asked again within LOGCANARY_VERDICT_MAX_AGE_SECONDS
    gets the same verdict; the headers say when it was computed. Given ``keeping`` (a POST), a verdict with a
    ``release`` is kept as that release's analysis of the service (422 for labels or an environment an analysis may
    not have); without it (a GET) nothing is kept."""
    labels = _labels(query.labels)
    question = query.question()
    if query.source is None:
        model = await verdicts.model(query.service)  # an unknown service is a 404 whatever else is wrong
        answer = await verdicts.answer(question, model)
    else:
        answer = await verdicts.answer(question)
    verdict = answer.value.judgement.verdict
    if keeping is not None and query.release is not None:
        await keeping.record_measurement(query.release, query, labels, question, verdict, answer.loaded_at)
    failing = verdict.verdict == "fail" or (inconclusive_fails and verdict.verdict == "inconclusive")
    code = query.fail_status if (query.fail_status and failing) else 200
    response = Response(answer.value.body, code, media_type="application/json")
    response.headers[COMPUTED_AT_HEADER] = utc(answer.loaded_at).isoformat(timespec="milliseconds")
    response.headers[AGE_HEADER] = f"{answered_within(answer):.3f}"
    return response


@router.get(
    "/v1/verdict",
    summary="Verdict over the last window (one URL to poll)",
    response_model=Verdict,
    responses=responses(400, 401, 403, 404, 412, 422),
    dependencies=[ReadAuth],
)
async def get_verdict(verdicts: VerdictsDep, query: Annotated[VerdictQuery, Query()]) -> Response:
    """For tools that poll one URL, e.g. Argo Rollouts' `web` metric provider with `compact=true`,
    `successCondition: result.verdict == 'pass'` and `failureCondition: result.verdict == 'fail'` (an
    inconclusive verdict then pauses the rollout). Always 200 unless `fail_status` is given; 404 for a service
    never seen.

    A read: it keeps nothing and changes no metric. `release`, `environment`, `labels`, `pipeline_url` and
    `requested_by` describe a measurement to keep, so a GET naming any of them (even empty) is refused with 422
    `recording_needs_post`: send the same URL as `POST /v1/verdict` (Argo Rollouts: `method: POST`)."""
    recording = sorted(query.model_fields_set & RECORDING_FIELDS)
    if recording:
        return error(
            422,
            RECORDING_NEEDS_POST,
            f"GET /v1/verdict is a read and keeps nothing; to keep the measurement ({', '.join(recording)}), send "
            "the same query as POST /v1/verdict (Argo Rollouts' web provider: method: POST)",
        )
    return await _verdict(verdicts, query)


FLAGGER_FAIL_STATUS = 412  # Flagger fails a check on any status above 202


def _query_from_hook(hook: FlaggerWebhook) -> VerdictQuery:
    """The query of a Flagger webhook. Without metadata it judges the canary ``<name>`` (the service's newest
    deployment that is not the primary) against ``<name>-primary``, and a fail answers 412. Metadata keys
    override these; keys that are not query fields are ignored, as Flagger users add their own."""
    defaults = {
        "service": hook.name,
        "canary": hook.name,
        "baseline": hook.name + PRIMARY_SUFFIX,
        "fail_status": FLAGGER_FAIL_STATUS,
        "requested_by": "flagger",
    }
    given = {key: value for key, value in hook.metadata.items() if key in VerdictQuery.model_fields}
    return validated(VerdictQuery, {**defaults, **given})


@router.post(
    "/v1/verdict",
    summary="Verdict over the last window (JSON body or query; Flagger webhooks too); with a release, kept",
    response_model=Verdict,
    responses=responses(400, 401, 403, 404, 412, 422),
    dependencies=[ReadAuth],
)
async def post_verdict(
    request: Request,
    verdicts: VerdictsDep,
    analyses: AnalysesDep,
    body: Annotated[
        VerdictQuery | FlaggerWebhook | None,
        Body(description="Flat query or Flagger webhook; none to take the query from the URL"),
    ] = None,
) -> Response:
    """Same as GET, with the fields in a JSON body, or, with no body, in the query string as GET has them (Argo
    Rollouts' web provider with `method: POST`); a body and a query string together are a 422. Flagger webhooks send
    `{"name", "namespace", "phase", "checksum", "metadata": {...}}` and fail the check on any status above 202.
    For them a `fail` **and** an `inconclusive` verdict answer `fail_status` (default 412): Flagger has no
    'inconclusive', and too little data must not pass. With no metadata, the canary `<name>` is judged
    against the primary `<name>-primary`; metadata (strings) may set any query field, other keys are ignored.

    With `release` (and `environment`, `labels`, `pipeline_url`, `requested_by=argo` or `flagger`), each answer is
    also kept as that release's analysis of the service, holding the latest measurement: the release and its
    services then show in `GET /v1/releases/{release}`, the history and the overview page. This is the only request
    that keeps a measurement: `GET /v1/verdict` is a read."""
    if isinstance(body, FlaggerWebhook):
        _no_query_with(request)
        return await _verdict(verdicts, _query_from_hook(body), analyses, inconclusive_fails=True)
    if body is None:
        return await _verdict(verdicts, validated(VerdictQuery, dict(request.query_params)), analyses)
    _no_query_with(request)
    return await _verdict(verdicts, body, analyses)


def _no_query_with(request: Request) -> None:
    """A question is in the body or in the URL, not half in each (422)."""
    if request.query_params:
        raise RequestValidationError(
            [
                {
                    "loc": ("query",),
                    "msg": "give the question in the JSON body or in the query string, not both",
                    "type": "query_and_body",
                }
            ]
        )
