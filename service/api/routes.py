"""HTTP endpoints (OpenAPI at /docs)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import time
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar, cast

import orjson
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.analyses import (
    AnalysisFinished,
    AnalysisIn,
    AnalysisOut,
    TooManyAnalyses,
    UnknownTemplate,
    parse_duration,
)
from service.api.compact import compact
from service.api.errors import json_response, responses
from service.engine.model import SEVERITY_NAMES, DeploymentModel
from service.idempotency import IdempotencyRecord, valid_key
from service.ingestion import http as ingest_http
from service.schemas import (
    PRIMARY_SUFFIX,
    DeploymentMark,
    DeploymentMarkIn,
    Feedback,
    FeedbackIn,
    Sensitivity,
    Verdict,
    to_rfc3339,
)

if TYPE_CHECKING:
    from service.api.app import Runtime
    from service.store.base import AnalysisRecord

router = APIRouter()
_Model = TypeVar("_Model", bound=BaseModel)


def runtime(request: Request) -> Runtime:
    return cast("Runtime", request.app.state.runtime)


def require_token(request: Request) -> None:
    """Mutating endpoints need the bearer token when LOGCANARY_API_TOKEN is set (constant-time compare)."""
    token = runtime(request).settings.api_token
    if token is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPException(401, "send Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise HTTPException(403, "wrong token")


Auth = Depends(require_token)


def require_token_to_read(request: Request) -> None:
    """Reads return verbatim log lines: with LOGCANARY_PROTECT_READS=true they need the token as well."""
    if runtime(request).settings.protect_reads:
        require_token(request)


ReadAuth = Depends(require_token_to_read)


# -- health --------------------------------------------------------------------------------------


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/docs")


@router.get("/healthz", tags=["health"], summary="Liveness: the process serves requests and its ingest task lives")
async def healthz(request: Request) -> Response:
    kafka = runtime(request).kafka
    if kafka is not None and kafka.dead:  # it will never ingest again: let Kubernetes restart the pod
        return json_response({"status": "ingest_dead", "ingest": kafka.status()}, 503)
    return json_response({"status": "ok"}, 200)


@router.get("/readyz", tags=["health"], summary="Readiness: state loaded (verdicts can be served); ingest status")
async def readyz(request: Request) -> Response:
    rt = runtime(request)
    kafka = None if rt.kafka is None else rt.kafka.reachable  # checked in the background: never waits
    ingest = None if rt.kafka is None else rt.kafka.status()
    ready = rt.state.loaded
    if ingest is not None and rt.settings.kafka_required_for_ready:
        ready = ready and ingest["state"] == "running" and kafka is True
    body = {"ready": ready, "state_loaded": rt.state.loaded, "kafka": kafka, "ingest": ingest}
    return json_response(body, 200 if ready else 503)


@router.get("/metrics", tags=["health"], summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(runtime(request).state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# -- ingestion -------------------------------------------------------------------------------------


class RejectedRecord(BaseModel):
    index: int = Field(description="0-based position of the record (array element or NDJSON line).")
    reason: str
    detail: str


class PartialRecord(BaseModel):
    index: int = Field(description="0-based position of a record (an OTLP batch, ...) only partly counted.")
    accepted: int = Field(description="Its events that were counted (never rejected, never dead-lettered).")
    rejected: int = Field(description="Its events or parts that were rejected (listed in errors).")


class IngestResult(BaseModel):
    accepted: int = Field(description="Events counted (and durably saved before this response).")
    rejected: int
    errors: list[RejectedRecord] = Field(description="The first 100 rejections.")
    partial: list[PartialRecord] = Field(
        default_factory=list, description="The first 100 records of which some events were counted and some rejected."
    )


IDEMPOTENCY_HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
SAVED_HEADER = "Logcanary-Saved"  # "false": counted and kept in memory, saved by the next successful checkpoint


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body over {limit} bytes; split it into several requests")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body over {limit} bytes; split it into several requests")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/v1/events",
    tags=["ingestion"],
    summary="Send log events (JSON array or NDJSON)",
    status_code=202,
    response_model=IngestResult,
    responses=responses(400, 401, 403, 413),
    dependencies=[Auth],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/LogEvent"}}},
                "application/x-ndjson": {"schema": {"type": "string", "description": "One event per line."}},
            },
        }
    },
)
async def post_events(request: Request) -> Response:
    """Accepts a JSON array of events, or one event (or shipper record) per line (NDJSON).

    Shipper shapes (Fluent Bit, Vector, OpenTelemetry OTLP/JSON, rsyslog) are mapped as for Kafka.
    Events are saved durably before the answer. A body with no valid event is a 400.

    With an `Idempotency-Key` header (1-255 printable ASCII characters), a retry of the same body with the same key
    (after a timeout or a restart) counts nothing again and gets the original answer, with
    `Idempotent-Replayed: true`; the same key with another body is a 422.
    """
    rt = runtime(request)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not valid_key(key):
        raise HTTPException(400, "Idempotency-Key: 1-255 printable ASCII characters")
    body = await _read_body(request, rt.settings.max_request_bytes)
    if key is None:
        return await _ingest(rt, body, None)
    keys = rt.state.idempotency
    fingerprint = await asyncio.to_thread(lambda: hashlib.sha256(body).hexdigest())
    async with keys.exclusive(key):  # a retry racing the first attempt waits for its answer
        known = keys.lookup(key)
        if known is None:
            return await _ingest(rt, body, (key, fingerprint))
        known_fingerprint, unsaved = known
        if known_fingerprint != fingerprint:
            return json_response(
                {"error": "idempotency_key_reused", "detail": "this Idempotency-Key was used with another body"}, 422
            )
        if unsaved is not None:  # counted, not yet durable (a failed checkpoint): save it before answering
            if not await rt.state.checkpoint(force=True):
                return _not_saved()
            answer: tuple[int, bytes] | None = (unsaved.status, unsaved.body)
        else:
            answer = await asyncio.to_thread(rt.store.load_idempotency_result, key)
        if answer is None:  # forgotten in between (its TTL passed): a new request
            return await _ingest(rt, body, (key, fingerprint))
        rt.state.metrics.idempotent_replays.inc()
        status_code, content = answer
        return Response(content, status_code, media_type="application/json", headers={REPLAYED_HEADER: "true"})


async def _ingest(rt: Runtime, body: bytes, idempotency: tuple[str, str] | None) -> Response:
    if not await rt.state.ensure_saved():  # the store takes no writes (disk full): apply nothing; a retry counts once
        return _store_unavailable()
    answer: list[tuple[int, bytes]] = []

    def applied(outcome: ingest_http.Outcome) -> None:
        # Runs before any checkpoint can see the events: the key is saved in the same transaction as they are.
        answer.append(_answer(outcome))
        if idempotency is not None:
            key, fingerprint = idempotency
            record = IdempotencyRecord(key, time.time(), fingerprint, *answer[0])
            rt.state.idempotency.remember(record)

    # Shielded: a client that disconnects mid-body must not leave half of it counted without its key.
    work = asyncio.ensure_future(ingest_http.ingest(rt.state, body, applied))
    try:
        outcome = await asyncio.shield(work)
    except ingest_http.BadBody as exc:
        raise HTTPException(400, str(exc)) from exc
    saved = True
    if outcome.accepted or idempotency is not None:
        # Counted events are never answered with an error: a retry without a key would count them twice. If this
        # write fails they stay in memory, dirty, and the retried checkpoint saves them once the store takes writes.
        saved = await rt.state.checkpoint(force=True)
    status_code, content = answer[0]
    response = Response(content, status_code, media_type="application/json")
    if not saved:
        response.headers[SAVED_HEADER] = "false"
    return response


def _store_unavailable() -> Response:
    response = json_response(
        {
            "error": "store_unavailable",
            "detail": "the state cannot be saved (disk full? see the logs): nothing of this request was counted; "
            "retry later",
        },
        503,
    )
    response.headers["Retry-After"] = "5"
    return response


def _not_saved() -> Response:
    return json_response(
        {
            "error": "not_saved",
            "detail": "the events are counted and kept in memory, but the state could not be saved yet (see the "
            "logs); a retry with the same Idempotency-Key counts nothing twice and answers once they are saved",
        },
        503,
    )


def _answer(outcome: ingest_http.Outcome) -> tuple[int, bytes]:
    result = IngestResult(
        accepted=outcome.accepted,
        rejected=outcome.rejected,
        errors=[RejectedRecord(index=e.index, reason=e.reason, detail=e.detail) for e in outcome.errors],
        partial=[PartialRecord(index=p.index, accepted=p.accepted, rejected=p.rejected) for p in outcome.partial],
    )
    data = result.model_dump(exclude=None if result.partial else {"partial"})  # listed when there are some
    if not outcome.accepted and (outcome.rejected or not outcome.records):
        return 400, orjson.dumps({"error": "no_valid_event", "detail": data})
    return 202, orjson.dumps(data)


# -- verdicts ---------------------------------------------------------------------------------------


class VerdictQuery(BaseModel):
    """A verdict over the last ``window`` of event time."""

    model_config = ConfigDict(extra="forbid")
    service: str = Field(min_length=1, max_length=256)
    canary: str = Field(min_length=1, max_length=256, description="Canary deployment (version or pod-template hash).")
    baseline: str | None = Field(None, max_length=256, description="Control deployment; omit to use history.")
    history: bool = Field(False, description="Compare with earlier deployments too (implied without baseline).")
    window: str = Field("5m", description="Look-back window such as 90s, 5m, 1h, or 'all'.")
    sensitivity: Sensitivity | None = None
    fail_status: int | None = Field(
        None,
        ge=400,
        le=499,
        description="HTTP status (4xx) to answer with when the verdict is fail (e.g. 412 for Flagger).",
    )
    compact: bool = Field(
        False,
        description="Answer a bounded verdict (about 3 KB at most) for tools that store it, such as Argo Rollouts' "
        "web provider: verdict, risk, reason, reason_code, counts and thresholds unchanged; at most 3 anomalies "
        "with one example each, 3 vanished and 3 suppressed entries; texts cut to 200 characters.",
    )


COMPUTED_AT_HEADER = "Logcanary-Computed-At"  # when the verdict was computed (RFC 3339)
AGE_HEADER = "Logcanary-Verdict-Age"  # seconds since then: at most LOGCANARY_VERDICT_MAX_AGE_SECONDS


def _verdict(request: Request, query: VerdictQuery, inconclusive_fails: bool = False) -> Response:
    """The verdict as an HTTP answer: ``fail_status`` for a fail (and, with ``inconclusive_fails``, for an
    inconclusive verdict too), else 200. The same question asked again within LOGCANARY_VERDICT_MAX_AGE_SECONDS
    gets the same verdict (``Analyses.cached_verdict``); the headers say when it was computed."""
    rt = runtime(request)
    if query.service not in rt.state.engine.services:
        raise HTTPException(404, f"no events seen for service {query.service!r}")
    seconds: float | None = None  # look-back of the window; None: all events
    if query.window != "all":
        try:
            seconds = parse_duration(query.window)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc

    def compute() -> Verdict:
        # The window ends at the time of computing: events stamped ahead of this clock (skew) still count.
        window = None if seconds is None else (time.time() - seconds, math.inf)
        verdict: Verdict = rt.analyses.verdict(
            query.service,
            query.canary,
            query.baseline,
            query.history or query.baseline is None,
            query.sensitivity,
            window,
        )
        return compact(verdict) if query.compact else verdict

    history = query.history or query.baseline is None
    key = (query.service, query.canary, query.baseline, history, query.sensitivity, seconds, query.compact)
    answer = rt.analyses.cached_verdict(key, compute)
    verdict = answer.verdict
    failing = verdict.verdict == "fail" or (inconclusive_fails and verdict.verdict == "inconclusive")
    code = query.fail_status if (query.fail_status and failing) else 200
    response = json_response(answer.body, code)
    response.headers[COMPUTED_AT_HEADER] = to_rfc3339(answer.computed_at).isoformat(timespec="milliseconds")
    response.headers[AGE_HEADER] = f"{max(0.0, time.time() - answer.computed_at):.3f}"
    return response


@router.get(
    "/v1/verdict",
    tags=["verdicts"],
    summary="Verdict over the last window (one URL to poll)",
    response_model=Verdict,
    responses=responses(400, 401, 403, 404, 412, 422),
    dependencies=[ReadAuth],
)
async def get_verdict(request: Request, query: Annotated[VerdictQuery, Query()]) -> Response:
    """For tools that poll one URL, e.g. Argo Rollouts' `web` metric provider with `compact=true`,
    `successCondition: result.verdict == 'pass'` and `failureCondition: result.verdict == 'fail'` (an
    inconclusive verdict then pauses the rollout). Always 200 unless `fail_status` is given; 404 for a service
    never seen."""
    return _verdict(request, query)


FLAGGER_FAIL_STATUS = 412  # Flagger fails a check on any status above 202


class FlaggerWebhook(BaseModel):
    """The body Flagger sends to a webhook (``checksum`` and other keys are ignored); the query's fields,
    all optional, come as strings in ``metadata``."""

    name: str = Field(min_length=1, max_length=256, description="The Canary's target: the service's name.")
    namespace: str | None = None
    phase: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


def _query_from_hook(hook: FlaggerWebhook) -> VerdictQuery:
    """The query of a Flagger webhook. Without metadata it judges the canary ``<name>`` (the service's newest
    deployment that is not the primary) against ``<name>-primary``, and a fail answers 412. Metadata keys
    override these; keys that are not query fields are ignored, as Flagger users add their own."""
    defaults = {
        "service": hook.name,
        "canary": hook.name,
        "baseline": hook.name + PRIMARY_SUFFIX,
        "fail_status": FLAGGER_FAIL_STATUS,
    }
    given = {key: value for key, value in hook.metadata.items() if key in VerdictQuery.model_fields}
    return _validated(VerdictQuery, {**defaults, **given})


def _validated(model: type[_Model], data: dict[str, object]) -> _Model:
    """``data`` as ``model``; invalid webhook metadata answers 422 like any invalid body."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


@router.post(
    "/v1/verdict",
    tags=["verdicts"],
    summary="Verdict over the last window (JSON body; Flagger webhooks too)",
    response_model=Verdict,
    responses=responses(400, 401, 403, 404, 412, 422),
    dependencies=[ReadAuth],
)
async def post_verdict(
    request: Request, body: Annotated[VerdictQuery | FlaggerWebhook, Body(description="Flat query or Flagger webhook")]
) -> Response:
    """Same as GET, with the fields in a JSON body. Flagger webhooks send
    `{"name", "namespace", "phase", "checksum", "metadata": {...}}` and fail the check on any status above 202.
    For them a `fail` **and** an `inconclusive` verdict answer `fail_status` (default 412): Flagger has no
    'inconclusive', and too little data must not pass. With no metadata, the canary `<name>` is judged
    against the primary `<name>-primary`; metadata (strings) may set any query field, other keys are ignored."""
    if isinstance(body, FlaggerWebhook):
        return _verdict(request, _query_from_hook(body), inconclusive_fails=True)
    return _verdict(request, body)


# -- analyses ---------------------------------------------------------------------------------------


@router.post(
    "/v1/analyses",
    tags=["analyses"],
    summary="Start watching a canary",
    status_code=201,
    response_model=AnalysisOut,
    responses=responses(401, 403, 404, 422, 429),
    dependencies=[Auth],
)
async def create_analysis(
    request: Request,
    body: Annotated[AnalysisIn | FlaggerWebhook, Body(description="An analysis, or a Flagger pre-rollout webhook")],
) -> AnalysisOut:
    """Its `logcanary_analysis_risk` and `logcanary_analysis_verdict` series exist from now until it ends.
    404 for a service never seen (as `/v1/verdict`); 429 past `LOGCANARY_MAX_RUNNING_ANALYSES`.

    A Flagger `pre-rollout` webhook body starts an analysis of the canary `<name>` against `<name>-primary`
    (metadata may set `service`, `canary`, `baseline`, `history`, `duration`, `sensitivity`, `fail_fast`); it
    replaces a running analysis of the same canary, as a new rollout makes the old one moot."""
    rt = runtime(request)
    replace = isinstance(body, FlaggerWebhook)
    analysis = _analysis_from_hook(body) if isinstance(body, FlaggerWebhook) else body
    if analysis.service not in rt.state.engine.services:
        raise HTTPException(404, f"no events seen for service {analysis.service!r}")
    try:
        return rt.analyses.view(await rt.analyses.create(analysis, replace=replace))
    except TooManyAnalyses as exc:
        raise HTTPException(429, str(exc)) from exc


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
    return _validated(AnalysisIn, data)


@router.get(
    "/v1/analyses",
    tags=["analyses"],
    summary="List analyses",
    response_model=list[AnalysisOut],
    responses=responses(401, 403),
    dependencies=[ReadAuth],
)
async def list_analyses(
    request: Request,
    service: str | None = None,
    status_: Annotated[Literal["running", "completed", "cancelled"] | None, Query(alias="status")] = None,
) -> list[AnalysisOut]:
    rt = runtime(request)
    records = sorted(rt.analyses.records.values(), key=lambda r: r.started_at, reverse=True)
    return [
        rt.analyses.view(r)
        for r in records
        if (service is None or r.service == service) and (status_ is None or r.status == status_)
    ]


def _analysis(request: Request, analysis_id: str) -> AnalysisRecord:
    record = runtime(request).analyses.records.get(analysis_id)
    if record is None:
        raise HTTPException(404, f"no analysis {analysis_id!r}")
    return record


@router.get(
    "/v1/analyses/{analysis_id}",
    tags=["analyses"],
    summary="An analysis with its current verdict",
    response_model=AnalysisOut,
    responses=responses(401, 403, 404),
    dependencies=[ReadAuth],
)
async def get_analysis(request: Request, analysis_id: str) -> AnalysisOut:
    """The verdict as the analysis last evaluated it (every 2 s while it runs, final once it ends).
    Reading never evaluates, completes or counts anything: only the analysis loop does."""
    rt = runtime(request)
    return rt.analyses.view(_analysis(request, analysis_id))


@router.delete(
    "/v1/analyses/{analysis_id}",
    tags=["analyses"],
    summary="Cancel an analysis",
    response_model=AnalysisOut,
    responses=responses(401, 403, 404, 409),
    dependencies=[Auth],
)
async def cancel_analysis(request: Request, analysis_id: str) -> AnalysisOut:
    """Stops a running analysis and removes its metric series. 409 when it already completed."""
    rt = runtime(request)
    record = _analysis(request, analysis_id)
    try:
        await rt.analyses.cancel(record)
    except AnalysisFinished as exc:
        raise HTTPException(409, str(exc)) from exc
    return rt.analyses.view(record)


# -- feedback ---------------------------------------------------------------------------------------


@router.post(
    "/v1/feedback",
    tags=["feedback"],
    summary="Mark a cluster ignore or priority",
    status_code=201,
    response_model=Feedback,
    responses=responses(401, 403, 404, 422),
    dependencies=[Auth],
)
async def add_feedback(request: Request, body: FeedbackIn) -> Feedback:
    """`ignore`: events like this template are never anomalies again for this service.
    `priority`: they always fail a canary when seen. Give the `template_id` from a verdict's anomaly, the
    `template` text, or both; a `template_id` alone that the service does not know is a 404."""
    try:
        return await runtime(request).analyses.add_feedback(body)
    except UnknownTemplate as exc:
        raise HTTPException(404, str(exc)) from exc


@router.get(
    "/v1/feedback",
    tags=["feedback"],
    summary="List feedback",
    response_model=list[Feedback],
    responses=responses(401, 403),
    dependencies=[ReadAuth],
)
async def list_feedback(request: Request, service: str | None = None) -> list[Feedback]:
    return [f for f in runtime(request).analyses.feedback if service is None or f.service == service]


@router.delete(
    "/v1/feedback/{feedback_id}",
    tags=["feedback"],
    summary="Remove feedback",
    status_code=204,
    responses=responses(401, 403, 404),
    dependencies=[Auth],
)
async def delete_feedback(request: Request, feedback_id: str) -> Response:
    if not await runtime(request).analyses.delete_feedback(feedback_id):
        raise HTTPException(404, f"no feedback {feedback_id!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- services ---------------------------------------------------------------------------------------


def _deployment(request: Request, service: str, name: str) -> DeploymentModel:
    """The deployment of ``service`` that ``name`` (any of its identities) means; 404 when there is none."""
    model = runtime(request).state.engine.services.get(service)
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
    tags=["services"],
    summary="Services, deployments and counts",
    response_model=list[ServiceInfo],
    responses=responses(401, 403),
    dependencies=[ReadAuth],
)
async def list_services(request: Request) -> list[ServiceInfo]:
    rt = runtime(request)
    out = []
    for name, service in sorted(rt.state.engine.services.items()):
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
    tags=["services"],
    summary="Clusters of a deployment, with templates, counts and examples",
    response_model=list[ClusterInfo],
    responses=responses(401, 403, 404),
    dependencies=[ReadAuth],
)
async def list_clusters(request: Request, service: str, deployment: str) -> list[ClusterInfo]:
    """`deployment` may be any of its identities (a version, a pod-template hash, ...)."""
    dep = _deployment(request, service, deployment)
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
    tags=["services"],
    summary="Mark a deployment bad (never a history baseline) or not",
    response_model=DeploymentMark,
    responses=responses(401, 403, 404, 422),
    dependencies=[Auth],
)
async def mark_deployment(request: Request, service: str, deployment: str, body: DeploymentMarkIn) -> DeploymentMark:
    """`{"bad": true, "author", "reason"}` keeps the deployment out of every history baseline; `{"bad": false}`
    lets it back in, even when an analysis failed it. `deployment` may be any of its identities; the mark is
    stored on its canonical name, replaces an earlier mark, and is listed in `/v1/services`."""
    dep = _deployment(request, service, deployment)
    return await runtime(request).analyses.mark(service, dep.deployment, body)
