"""The public contracts: log events in, verdicts out, feedback. JSON Schemas in
``schemas/`` are generated from these models (``make schemas``)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

Sensitivity = Literal["low", "medium", "high"]
VerdictName = Literal["pass", "fail", "inconclusive"]
AnomalyKind = Literal["unknown", "frequency", "priority"]
# Why a verdict is what it is, for machines: the inconclusive ones say which data was missing.
ReasonCode = Literal[
    "anomalies",  # fail: at least one anomaly reached the fail score
    "no_anomaly",  # pass: enough data on both sides, nothing reached the fail score
    "unknown_canary",  # inconclusive: the service never logged under this deployment
    "no_canary_events",  # inconclusive: the canary is known but logged nothing in the window
    "no_baseline",  # inconclusive: no baseline deployment known (unknown name, none given and no history)
    "no_baseline_events",  # inconclusive: the baseline logged nothing in the window
    "canary_is_baseline",  # inconclusive: the canary was named as its own baseline
    "too_few_events",  # inconclusive: a side logged fewer events than the sensitivity's minimum
    "source_unavailable",  # inconclusive: the log store could not be reached (or kept failing) for the window
    "source_error",  # inconclusive: the log store refused a query or a limit kept part of the window out
    "source_empty",  # inconclusive: the log store holds no line for a side's query in the window
    "source_pending",  # inconclusive: the window is still being pulled from the log store (a first pull, a slow store)
]
# ignore: never an anomaly again (any deployment); not_a_risk: accepted in one canary only; priority: always fails.
FeedbackAction = Literal["ignore", "not_a_risk", "priority"]

MAX_MESSAGE_CHARS = 64 * 1024  # feedback templates; a log message longer than its limit is truncated, not refused
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024  # LOGCANARY_MAX_MESSAGE_BYTES
TRUNCATED_ATTRIBUTE = "logcanary.truncated_bytes"  # set on an event whose message lost its tail
PRIMARY_SUFFIX = "-primary"  # Flagger's primary of target <name> is <name>-primary, and so is its pods' app label

# Service and deployment names (and identities): 1-253 characters of A-Z a-z 0-9 . _ : @ + -, in segments separated
# by single slashes (``team/api``), none of them empty, '.' or '..'. So no NUL, control characters, spaces or
# '../../etc/passwd'; every Kubernetes name, label value, version and hash fits; and every name is a URL path that
# no client or proxy rewrites, so every route that takes a name in its path reaches every name accepted.
NAME_MAX_LENGTH = 253
NAME_PATTERN = r"^[A-Za-z0-9._:@+-]+(/[A-Za-z0-9._:@+-]+)*$"
NAME_RULE = (
    "1-253 characters of A-Z a-z 0-9 . _ : @ + -, in segments separated by single slashes, none of them '.' or '..'"
)


def _no_dot_segment(value: str) -> str:
    if any(segment in (".", "..") for segment in value.split("/")):
        raise ValueError("a '.' or '..' path segment is not allowed in a name")
    return value


def valid_name(value: object) -> bool:
    """True for a service or deployment name that :data:`Name` accepts."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= NAME_MAX_LENGTH
        and _NAME_RE.match(value) is not None
        and all(segment not in (".", "..") for segment in value.split("/"))
    )


_NAME_RE = re.compile(NAME_PATTERN)
Name = Annotated[
    str,
    Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN),
    AfterValidator(_no_dot_segment),
]


def _empty_is_none(value: object) -> object:
    return None if value == "" else value


OptionalName = Annotated[Name | None, BeforeValidator(_empty_is_none)]
"""A name that may be left out: absent, null or empty."""


Message = Annotated[
    str,
    Field(
        min_length=1,
        description="The raw message; may span lines. Longer than LOGCANARY_MAX_MESSAGE_BYTES (64 KiB) of "
        "UTF-8, it keeps its head, ends with ' …[truncated N bytes]' and is judged like any event.",
    ),
]


class LogEvent(BaseModel):
    """One log event of one deployment (version) of one service."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, title="LogEvent")

    timestamp: datetime = Field(description="When the event happened (RFC 3339); without a zone it is UTC.")
    service: Annotated[Name, Field(description=f"Service name, e.g. 'checkout': {NAME_RULE}.")]
    deployment: Annotated[Name, Field(description=f"Deployment / version / pod-template hash, e.g. 'v2': {NAME_RULE}.")]
    host: Annotated[str, Field(max_length=256, description="Host or pod that emitted the event.")] = "unknown"
    level: Annotated[str, Field(max_length=32, description="Log level (debug, info, warn, error, fatal ...).")] = "info"
    message: Message
    attributes: dict[str, Any] = Field(default_factory=dict, description="Free-form extra fields.")
    identities: list[Name] = Field(
        default_factory=list,
        max_length=16,
        description="Other names of the deployment (version labels, pod-template hashes, OTLP service.version); "
        "a verdict asked for any of them judges this deployment.",
    )

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_DOT_SEGMENT = r"(^|/)\.\.?(/|$)"  # what NAME_PATTERN cannot say: no '.' or '..' path segment


def _published_log_event(schema: dict[str, Any]) -> None:
    """The schema of :class:`LogEventIn` as published: its description, and names refusing '.' and '..' segments."""
    schema["description"] = (
        "One log event of one deployment (version) of one service, as sent to logcanary (Kafka record or HTTP). "
        "Only service and message are required. Keys not named here are kept: they go into attributes. Shipper "
        "records (Fluent Bit, Vector, OpenTelemetry OTLP/JSON, rsyslog) are mapped to this shape, see "
        "docs/shippers.md."
    )
    properties = schema["properties"]
    for name in (properties["service"], properties["deployment"]["anyOf"][0], properties["identities"]["items"]):
        name["not"] = {"pattern": _DOT_SEGMENT}


class LogEventIn(BaseModel):
    """The published contract of a log event as it may be sent (``schemas/log-event.schema.json``): only
    ``service`` and ``message`` are required, and keys it does not name are kept in ``attributes``. Never used to
    validate: ``logcanary.ingestion.records`` reads records (also Fluent Bit, Vector, OTLP and rsyslog shapes, see
    docs/shippers.md) into a :class:`LogEvent`; tests check that what this schema accepts, the service counts."""

    model_config = ConfigDict(
        extra="allow",
        title="LogEvent",
        json_schema_extra=_published_log_event,
    )

    timestamp: datetime | float | None = Field(
        None,
        description="When the event happened: RFC 3339 text (without a zone it is UTC), or an epoch number in "
        "seconds, milliseconds, microseconds (>= 1e15) or nanoseconds (>= 1e18). Absent or null: the time it is "
        "received.",
    )
    service: Annotated[Name, Field(description=f"Service name, e.g. 'checkout': {NAME_RULE}.")]
    deployment: Annotated[
        Name | None,
        Field(
            description=f"Deployment / version / pod-template hash, e.g. 'v2': {NAME_RULE}. Absent or null: 'unknown'."
        ),
    ] = None
    host: Annotated[str, Field(max_length=256, description="Host or pod that emitted the event.")] = "unknown"
    level: Annotated[
        Annotated[str, Field(max_length=32)] | int,
        Field(
            description="Log level as text (debug, info, warn, error, fatal ...; any case), or a number: 0-7 syslog "
            "severities, 10-60 pino/bunyan levels."
        ),
    ] = "info"
    message: Message
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Free-form extra fields (other top-level keys are added to them)."
    )
    identities: list[Name] = Field(
        default_factory=list,
        max_length=16,
        description="Other names of the deployment (version labels, pod-template hashes, OTLP service.version); "
        "a verdict asked for any of them judges this deployment.",
    )


class RateEvidence(BaseModel):
    """Why a canary's event rate is judged too low: its rate against the baseline's, slice by slice."""

    unit: str = Field(
        description="What was compared: 'per host' (the canary's hosts against the baseline's, each side's rate "
        "divided by its hosts), 'host <name>' (one host both sides share), or 'all hosts' (totals, with the "
        "canary's traffic weight)."
    )
    canary_per_second: float = Field(ge=0, description="The canary's events per second (per host for 'per host').")
    baseline_per_second: float = Field(ge=0, description="The baseline's, likewise.")
    expected_ratio: float = Field(
        gt=0, description="The canary's rate the traffic split leads one to expect, as a share of the baseline's."
    )
    canary_weight: float | None = Field(
        None, description="The canary's share of traffic in percent, as the deploy tool said (null: not given)."
    )
    canary_hosts: int = Field(ge=0)
    baseline_hosts: int = Field(ge=0)
    canary_slices: int = Field(ge=0, description="Time slices of the canary's active time compared.")
    baseline_slices: int = Field(ge=0, description="Time slices of the baseline's.")
    slice_seconds: float = Field(gt=0)


class Anomaly(BaseModel):
    """A canary cluster that is new or far more frequent than in the baseline."""

    kind: AnomalyKind = Field(
        description="unknown: no similar event in the baseline; frequency: share far from the baseline's "
        "(see direction), or, with rate set, events per second far below what the baseline leads one to expect (per "
        "host, or as the traffic weight says); priority: a 'priority' feedback rule covers it."
    )
    direction: Literal["up", "down"] | None = Field(
        default=None,
        description="For frequency: up = far more frequent than in the baseline; down = an established baseline "
        "event that fell far below its share or vanished (a drop; its examples are in baseline_examples). "
        "A rate (rate set) is always down.",
    )
    cluster_id: str = Field(description="Content-derived id of the canary cluster.")
    template: str = Field(description="Template of the most significant event type, `<*>` marking values.")
    template_ids: list[str] = Field(description="Ids of the anomalous templates in this cluster.")
    examples: list[str] = Field(description="Up to 5 verbatim canary messages.")
    baseline_count: int = Field(ge=0, description="Occurrences in the baseline (of the matched events).")
    canary_count: int = Field(ge=0, description="Occurrences in the canary.")
    baseline_share: float = Field(ge=0, description="Share of baseline traffic.")
    canary_share: float = Field(ge=0, description="Share of canary traffic.")
    ratio: float | None = Field(description="canary_share / baseline_share (smoothed); null for unknown events.")
    p_value: float | None = Field(description="One-sided binomial test of the canary count; null for unknown.")
    level: str = Field(description="Highest level seen: debug, info, warn, error or fatal.")
    hosts: list[str] = Field(description="Canary hosts that logged it (at most 64).")
    first_seen: datetime | None = Field(description="First occurrence in the canary.")
    score: float = Field(ge=0, description="Weighted evidence; the verdict fails when a score reaches the threshold.")
    priority: bool = Field(default=False, description="Raised by a 'priority' feedback rule.")
    baseline_examples: list[str] = Field(
        default_factory=list, description="For a drop (direction down): up to 5 verbatim baseline messages."
    )
    steady: bool | None = Field(
        None,
        description="For a drop: whether the baseline showed the event steady over its own time slices (then it "
        "fails alone; a bursty event drops with others). Null for other kinds.",
    )
    rate: RateEvidence | None = Field(
        None,
        description="Set when the frequency judged is the canary's rate of events (per second, per host), not one "
        "event's share: the rates compared. Such an anomaly names no event type (template_ids and examples empty).",
    )


class VanishedCluster(BaseModel):
    """A baseline event type absent from the canary: reported, never a reason to fail."""

    cluster_id: str
    template: str
    baseline_count: int = Field(ge=0)


class Reworded(BaseModel):
    """A canary event that a baseline event logs in other spelling: the same words under case folding and punctuation
    (``SUCCESS:`` / ``Success:``, ``user:`` / ``user=``). Known, never an anomaly: listed so a person sees the
    change."""

    template: str = Field(description="The canary's template.")
    template_id: str
    baseline_template: str = Field(description="The baseline template it rewords.")
    baseline_template_id: str
    canary_count: int = Field(ge=0)


class Suppressed(BaseModel):
    """An anomaly that an 'ignore' rule (or a 'not_a_risk' rule given for this canary) silenced."""

    cluster_id: str
    template: str
    canary_count: int = Field(ge=0)
    feedback_id: str


class Thresholds(BaseModel):
    """The numbers a sensitivity stands for (see README, 'Sensitivity')."""

    sensitivity: Sensitivity
    fail_score: float
    min_canary_events: int
    min_baseline_events: int
    frequency_min_ratio: float
    frequency_max_p: float
    frequency_min_count: int
    drop_max_ratio: float = Field(
        0.6,
        description="A steady baseline event whose canary share (scaled by the canary's steady traffic) is at most "
        "this many times its baseline share has dropped, and fails alone.",
    )
    rate_max_ratio: float = Field(
        0.75,
        description="A canary whose events per second are at most this many times what the baseline leads one to "
        "expect has a rate anomaly (with the test over time slices).",
    )


class SourceProblem(BaseModel):
    """Why a log store could not give the whole window."""

    code: str = Field(description="source_unavailable, source_query_invalid, source_unauthorized, ...")
    message: str
    store_message: str | None = Field(None, description="The store's own words (Loki's error body), clipped.")


class VerdictSource(BaseModel):
    """Where a verdict's events came from when logcanary pulled them from a log store."""

    type: Literal["loki"]
    url: str = Field(description="The store, without credentials.")
    canary_query: str
    baseline_query: str | None = Field(None, description="The control deployment's query (none: history only).")
    lines: dict[str, int] = Field(description="Lines pulled per side: canary, baseline, history.")
    through: datetime | None = Field(
        description="Every line stamped before this was pulled (null: nothing pulled yet)."
    )
    notices: list[str] = Field(default_factory=list, description="What the store made the pull do (split ranges).")
    problem: SourceProblem | None = Field(None, description="Why part of the window is missing, if it is.")


class Verdict(BaseModel):
    """The answer for deploy tooling: pass, fail or inconclusive, with the evidence."""

    verdict: VerdictName
    risk: float = Field(ge=0, le=100, description="0 = nothing unusual, 50 = at the fail threshold, 100 = certain.")
    reason: str = Field(description="One sentence saying why.")
    reason_code: ReasonCode = Field(
        description="Why, for machines: anomalies (fail), no_anomaly (pass), or which data an inconclusive "
        "verdict lacked: unknown_canary, no_canary_events, no_baseline, no_baseline_events, "
        "canary_is_baseline, too_few_events; or, for events pulled from a log store, why the store could not give "
        "them: source_unavailable, source_error, source_empty, source_pending."
    )
    service: str
    canary: str
    baseline: list[str] = Field(description="Baseline deployments compared against (control and/or history).")
    window_start: datetime | None = Field(
        default=None, description="Start of the event-time window the canary and control were counted in; null: all."
    )
    window_end: datetime | None = Field(default=None, description="End of that window; null: open-ended (now).")
    canary_events: int = Field(ge=0)
    baseline_events: float = Field(ge=0, description="Baseline events (history is time-decayed, so may be fractional).")
    anomalies: list[Anomaly] = Field(
        description="The strongest anomalies (at most max_anomalies): by evidence class first (priority, stack traces "
        "and errors, warnings, info), highest score first within one; the reason names the first."
    )
    anomaly_count: int = Field(ge=0, description="How many anomalies reached the fail score, listed or not.")
    vanished: list[VanishedCluster] = Field(default_factory=list)
    reworded: list[Reworded] = Field(
        default_factory=list, description="Canary events that baseline events log in other spelling: known, not new."
    )
    suppressed: list[Suppressed] = Field(default_factory=list)
    degraded: list[str] = Field(
        default_factory=list,
        description="What the memory budget (LOGCANARY_MEMORY_BUDGET_BYTES) took from the service or the deployments "
        "compared, one sentence each: examples shortened, deployments summarised or dropped, new event types counted "
        "as other. Empty when nothing was: the verdict saw all the detail there was.",
    )
    thresholds: Thresholds
    source: VerdictSource | None = Field(
        None, description="The log store the events were pulled from; null when they were sent to logcanary."
    )
    page: str | None = Field(
        None,
        description="The web page of this verdict, for people (an AnalysisRun's measurement, a webhook's answer): the "
        "question with its window's end fixed (until=), so opened later it shows this window, not the last minutes "
        "then; the top anomaly open. Null in an analysis' verdict: the analysis has its page (/ui?analysis=<id>).",
    )


class CanaryRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    deployment: Name = Field(description="Canary deployment / version / pod hash.")


class BaselineRef(BaseModel):
    """A control deployment, the service's history, or both."""

    model_config = ConfigDict(extra="forbid")
    deployment: OptionalName = Field(None, description="Control (stable) deployment.")
    history: bool = Field(False, description="Also compare with earlier deployments (time-decayed).")

    @model_validator(mode="after")
    def _something(self) -> BaselineRef:
        if self.deployment is None and not self.history:
            raise ValueError("give a baseline deployment, or history: true, or both")
        return self


class SourceAuth(BaseModel):
    """Credentials for a log store, named, never written inline: a file (a mounted Secret) or an environment
    variable of logcanary's, so an analysis that is stored and listed never holds one."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["bearer", "basic"]
    token_file: str | None = Field(None, description="bearer: a file holding the token (re-read when it changes).")
    token_env: str | None = Field(None, description="bearer: an environment variable holding the token.")
    username: str | None = Field(None, description="basic: the user (Grafana Cloud: the stack's id).")
    password_file: str | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> SourceAuth:
        if self.type == "bearer" and not (self.token_file or self.token_env):
            raise ValueError("bearer auth needs token_file or token_env")
        if self.type == "basic" and not (self.username and (self.password_file or self.password_env)):
            raise ValueError("basic auth needs username, and password_file or password_env")
        return self


class SourceSpec(BaseModel):
    """Where an analysis' logs are kept, to be pulled instead of sent: a Grafana Loki and two LogQL selector
    templates (``$service`` and ``$deployment`` are replaced, escaped). Unset fields take LOGCANARY_LOKI_*."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["loki"] = "loki"
    url: str | None = Field(None, description="Loki's base URL, e.g. http://loki:3100 (default LOGCANARY_LOKI_URL).")
    tenant: str | None = Field(None, description="X-Scope-OrgID (default LOGCANARY_LOKI_TENANT).")
    auth: SourceAuth | None = Field(
        None, description="Default: LOGCANARY_LOKI_TOKEN_FILE / _USERNAME + _PASSWORD_FILE."
    )
    canary_selector: str | None = Field(
        None,
        description='The canary\'s query, e.g. {app="$service", version="$deployment"} (a line filter may follow).',
    )
    baseline_selector: str | None = Field(None, description="The control deployment's query (default: the canary's).")
    baseline_window: float | None = Field(
        None, gt=0, description="Seconds of the baseline pulled before the analysis starts (default 1800)."
    )


# An analysis' place among the others: which environment, which release, labels, who asked and from which
# pipeline run. Environments and releases appear in URLs (/v1/releases/{release}, the page's filters) and as the
# `environment` label of a metric, so they are short names; labels are few and short, as Kubernetes' are.
ENVIRONMENT_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
RELEASE_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._:@+-]{0,126}[A-Za-z0-9])?$"
LABEL_KEY_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$"
MAX_LABELS = 16
MAX_LABEL_VALUE_CHARS = 128
MAX_PIPELINE_URL_CHARS = 2048
Requester = Literal["api", "argo", "flagger", "gate"]

Environment = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        pattern=ENVIRONMENT_PATTERN,
        description="1-63 characters of A-Z a-z 0-9 . _ -, starting and ending with a letter or digit (e.g. dev, "
        "qa, prod-eu). LOGCANARY_ENVIRONMENTS may restrict it to a set.",
    ),
]
Release = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=RELEASE_PATTERN,
        description="An id shared by the analyses of one release (several services deployed together): 1-128 "
        "characters of A-Z a-z 0-9 . _ : @ + -, starting and ending with a letter or digit (e.g. 2026.12.07-3, "
        "gitlab-8812).",
    ),
]
LabelKey = Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, Field(max_length=MAX_LABEL_VALUE_CHARS, pattern=r"^[^\x00-\x1f\x7f]*$")]


def _pipeline_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("a pipeline_url starts with http:// or https://")
    return value


def labels_of(text: str) -> dict[str, str]:
    """Labels written on one line, as query strings and Flagger's metadata (strings only) carry them:
    ``team=payments,tier=1``."""
    pairs = (pair.partition("=") for pair in text.split(",") if pair.strip())
    return {key.strip(): value.strip() for key, _, value in pairs}


class AnalysisPlace(BaseModel):
    """Where an analysis belongs, but its labels: what a query string says as it is (see :class:`AnalysisMetadata`)."""

    environment: Annotated[Environment | None, BeforeValidator(_empty_is_none)] = Field(
        None, description="The environment deployed to (dev, qa, prod...); empty is none."
    )
    release: Annotated[Release | None, BeforeValidator(_empty_is_none)] = Field(
        None,
        description="The release this analysis belongs to: GET /v1/releases/{release} combines its analyses; empty is "
        "none.",
    )
    requested_by: Requester = Field(
        "api",
        description="Who asked: api (a person or script), argo (an Argo Rollouts measurement), flagger (a Flagger "
        "webhook) or gate (logcanary gate). (`source` names a log store the logs are pulled from.)",
    )
    pipeline_url: Annotated[
        str | None,
        Field(max_length=MAX_PIPELINE_URL_CHARS),
        BeforeValidator(_empty_is_none),
        AfterValidator(_pipeline_url),
    ] = Field(None, description="The pipeline run that asked (CI_PIPELINE_URL, a GitHub Actions run...).")


class AnalysisMetadata(AnalysisPlace):
    """Where an analysis belongs: environment, release, labels, who asked for it and the pipeline run that did.
    Nothing here changes the verdict; it is what history, releases and the overview are filtered and grouped by."""

    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        max_length=MAX_LABELS,
        description=f"At most {MAX_LABELS} labels: keys as Kubernetes label names (1-63 characters), values up to "
        f"{MAX_LABEL_VALUE_CHARS} characters.",
    )


class AnalysisFields(AnalysisMetadata):
    """What every form of an analysis says: which canary, against what, whether to stop at the first fail, and where
    it belongs (:class:`AnalysisMetadata`)."""

    service: Name
    canary: CanaryRef
    baseline: BaselineRef
    fail_fast: bool = Field(False, description="Complete with 'fail' as soon as the verdict fails.")
    canary_weight: float | None = Field(
        None,
        gt=0,
        lt=100,
        description="The canary's share of traffic in percent (the deploy tool's setWeight / canaryWeight), when "
        "traffic is split by a router rather than by replica counts: the canary is then expected to log "
        "weight / (100 - weight) as many events per second as the control deployment. Unset: each canary host "
        "is expected to log as many as a baseline host.",
    )
    source: SourceSpec | None = Field(
        None, description="Pull the logs from this log store instead of judging the events sent to logcanary."
    )


class AnalysisSpec(AnalysisFields):
    """What an analysis watches, stored with it: its creation request, with the sensitivity resolved."""

    duration: float = Field(gt=0, description="Seconds.")
    sensitivity: Sensitivity


AnalysisStatus = Literal["running", "completed", "cancelled"]


class AnalysisLife(BaseModel):
    """An analysis' identity and course: what every view of one shows."""

    id: str
    status: AnalysisStatus = Field(description="running, completed or cancelled.")
    started_at: datetime
    ends_at: datetime
    finished_at: datetime | None


class FeedbackIn(BaseModel):
    """A person's judgement on a cluster of a service."""

    model_config = ConfigDict(extra="forbid")

    service: Name
    action: FeedbackAction = Field(
        description="ignore: never an anomaly again, in any deployment of the service; not_a_risk: accepted in the "
        "canary named by `deployment` only (verdicts on other deployments judge it as usual); priority: always "
        "fail when seen."
    )
    template: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_MESSAGE_CHARS,
            description="The template (or an example message). May be left out when template_id is given: "
            "the service's template of that id is used.",
        ),
    ] = None
    template_id: Annotated[str | None, Field(min_length=1, max_length=256)] = Field(
        default=None, description="Template id from a verdict (template_ids of an anomaly)."
    )
    author: Annotated[str, Field(max_length=256)] = "unknown"
    reason: Annotated[str, Field(max_length=4096)] = ""
    deployment: Name | None = Field(
        default=None,
        description="The canary the judgement was made on (any of its identities). Required for not_a_risk, which "
        "applies to verdicts on this deployment only; ignore and priority apply to every deployment and only "
        "record it.",
    )

    @model_validator(mode="after")
    def _names_a_template(self) -> FeedbackIn:
        if self.template is None and self.template_id is None:
            raise ValueError("give template_id (from a verdict's anomaly), or template, or both")
        if self.action == "not_a_risk" and self.deployment is None:
            raise ValueError("not_a_risk needs the canary it was judged on: give deployment")
        return self


class Feedback(FeedbackIn):
    """A stored feedback rule."""

    template: Annotated[str, Field(min_length=1, description="The template the rule was given, or looked up.")]
    id: str
    created_at: datetime


class FeedbackUpdate(BaseModel):
    """A change of a stored rule's judgement or reason, by a person (the audit trail keeps who, when and why)."""

    model_config = ConfigDict(extra="forbid")

    action: FeedbackAction | None = Field(None, description="The new judgement; omit to keep it.")
    deployment: Name | None = Field(
        None, description="The canary a not_a_risk judgement applies to (needed when changing to not_a_risk)."
    )
    author: Annotated[str, Field(max_length=256)] = "unknown"
    reason: Annotated[str, Field(max_length=4096)] = Field("", description="Why it changed (kept in the trail).")


FeedbackChangeKind = Literal["created", "changed", "undone"]


class FeedbackChange(BaseModel):
    """One entry of the feedback rules' audit trail: a rule created, changed or undone, by whom, when and why."""

    id: str
    service: str
    change: FeedbackChangeKind
    at: datetime
    author: str = Field(description="Who made the change (for created: the rule's author).")
    reason: str = Field(description="Why (for created: the rule's reason).")
    rule: Feedback = Field(description="The rule after the change; for undone, as it was when it was removed.")
    previous: Feedback | None = Field(None, description="For changed: the rule before the change.")


class DeploymentMarkIn(BaseModel):
    """A person's judgement of a deployment: one marked bad is never part of a history baseline."""

    model_config = ConfigDict(extra="forbid")

    bad: bool = Field(
        True, description="true: keep it out of history baselines; false: let it back in, even after a failed analysis."
    )
    author: Annotated[str, Field(max_length=256)] = "unknown"
    reason: Annotated[str, Field(max_length=4096)] = ""


class DeploymentMark(DeploymentMarkIn):
    """A stored mark, on the deployment's canonical name."""

    service: str
    deployment: str
    marked_at: datetime


SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_DOCUMENTS: dict[str, type[BaseModel]] = {
    "log-event.schema.json": LogEventIn,  # what may be sent; LogEvent is what records are read into
    "verdict.schema.json": Verdict,
    "feedback.schema.json": FeedbackIn,
}


def schema_documents() -> dict[str, str]:
    """File name -> JSON Schema (2020-12) text for each public contract."""
    documents = {}
    for name, model in _DOCUMENTS.items():
        schema = {"$schema": SCHEMA_DIALECT, "$id": f"https://logcanary.dev/schemas/{name}"}
        schema.update(model.model_json_schema(mode="validation" if model is not Verdict else "serialization"))
        documents[name] = json.dumps(schema, indent=2, sort_keys=False) + "\n"
    return documents
