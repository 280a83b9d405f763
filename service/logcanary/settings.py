"""Service settings: environment variables ``LOGCANARY_*``, or a dotenv-style file named by ``LOGCANARY_ENV_FILE``.

One flat set of variables for operators (the names never change), declared in sections — HTTP, Kafka, store,
analysis, limits, notifications — that the components are handed (``settings.kafka``, ``settings.store`` ...):
each component sees only its section's fields. Every check, the cross-field ones included (SASL, protected reads,
the topology), runs when a ``Settings`` is built, so one built by a test or the demo is validated as one read from
the environment; invalid values stop the service at start with a message naming the variable."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from logcanary.common.paths import clean_prefix
from logcanary.engine.caps import DEFAULT_CAPS, Caps
from logcanary.schemas import ENVIRONMENT_PATTERN, Sensitivity, VerdictName

MAX_ENVIRONMENTS = 50  # each is a value of the metrics' environment label


class SettingsError(Exception):
    """Settings that cannot work, worded for the operator."""


# -- notifications (logcanary.notify) ---------------------------------------------------------------------------
NotifyFormat = Literal["slack", "json"]
_WEBHOOK_SEPARATOR = re.compile(r"[\s,]+")
_FORMAT_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)=(.*)$")


class Webhook(BaseModel):
    """Where a notification goes, and in which shape: ``slack`` (``{"text", "blocks"}``) or ``json`` (generic)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    format: NotifyFormat = "json"

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value[:40]!r} is not an http:// or https:// URL")
        return value.strip()

    @property
    def where(self) -> str:
        """The URL without its path and query, for logs: a Slack webhook's path is its secret."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def parse_webhooks(value: object) -> list[Webhook]:
    """``slack=URL json=URL URL`` (commas or spaces between; a bare URL is ``json``), or a JSON list of
    ``{"url", "format"}``; raises ValueError naming the webhook that is wrong."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"not a JSON list of {{url, format}} objects: {exc}") from None
        else:
            items: list[object] = []
            for item in _WEBHOOK_SEPARATOR.split(text):
                prefixed = _FORMAT_PREFIX.match(item)
                if prefixed is None:
                    items.append({"url": item} if item else None)
                elif prefixed.group(1) in ("slack", "json"):
                    items.append({"url": prefixed.group(2), "format": prefixed.group(1)})
                else:
                    raise ValueError(
                        f"unknown format {prefixed.group(1)!r} in {item[:60]!r}: use slack=URL or json=URL"
                    )
            value = [item for item in items if item is not None]
    if not isinstance(value, list):
        raise ValueError("expected webhooks: 'slack=URL json=URL' or a JSON list of {url, format}")
    webhooks = []
    for number, item in enumerate(value, start=1):
        try:
            webhooks.append(item if isinstance(item, Webhook) else Webhook.model_validate(item))
        except ValidationError as exc:
            raise ValueError(f"webhook {number}: {exc.errors()[0]['msg']}") from None
    return webhooks


Mode = Literal["auto", "single", "scale-out"]


class HttpSettings(BaseModel):
    """The HTTP API: where it listens, who may call it, how people reach it."""

    host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Port of the HTTP API (0 = any free port).")
    api_token: SecretStr | None = Field(None, description="Bearer token required by mutating endpoints when set.")
    protect_reads: bool = Field(
        False,
        description="With api_token set, reads (verdicts, analyses, feedback, services, clusters) need it too: "
        "they return verbatim log lines. Health and metrics stay open.",
    )
    public_url: str | None = Field(
        None,
        description="Base URL of this service as people reach it, with its path prefix if any "
        "(https://tools.example.com/logcanary): the links of notifications and messages (default http://host:port).",
    )
    root_path: str = Field(
        "",
        description="Path prefix of a reverse proxy that passes the full path on (/logcanary): the URLs the "
        "service builds start with it. A proxy that strips its prefix says it in X-Forwarded-Prefix instead.",
    )

    @field_validator("root_path")
    @classmethod
    def _plain_prefix(cls, value: str) -> str:
        cleaned = clean_prefix(value)
        if cleaned is None:
            raise ValueError(f"{value[:60]!r} is not a path prefix such as /logcanary")
        return cleaned

    @model_validator(mode="after")
    def _reads_need_a_token(self) -> HttpSettings:
        if self.protect_reads and self.api_token is None:
            raise ValueError("LOGCANARY_PROTECT_READS=true needs LOGCANARY_API_TOKEN: there is no token to require")
        return self

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


class KafkaSettings(BaseModel):
    """Kafka ingestion: the cluster, the topics and group, dead letters, supervision, the repartition topic."""

    kafka_bootstrap_servers: str | None = Field(None, description="host:port[,host:port]; unset = no Kafka.")
    kafka_topics: Annotated[list[str], NoDecode] = Field(["logs"], description="Comma-separated topics to consume.")
    kafka_group_id: str = "logcanary"
    kafka_dead_letter_topic: str = "logs.dead-letter"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_max_batch_records: int = Field(
        500,
        ge=1,
        description="Records taken from Kafka per batch: each is parsed and counted with the loop busy, so a small "
        "batch keeps requests answered quickly; throughput hardly depends on it.",
    )
    kafka_session_timeout_ms: int = Field(10_000, ge=1000)
    kafka_dead_letter_max_bytes: int = Field(
        256 * 1024, ge=1024, description="Longer bad records are dead-lettered with their head only."
    )
    kafka_dead_letter_timeout_seconds: float = Field(
        30.0, gt=0, description="How long a batch retries its dead letters before counting and skipping them."
    )
    kafka_stall_seconds: float = Field(60.0, gt=0, description="No ingest progress this long = stalled.")
    kafka_restart_backoff_max_seconds: float = Field(30.0, gt=0, description="Longest wait between ingest restarts.")
    kafka_repartition_topic: str | None = Field(
        None,
        description="Scale-out (PostgreSQL store and Kafka): logcanary's own topic, keyed by service, through which "
        "every event reaches the replica owning its service; default <group id>.by-service (created if missing).",
    )
    kafka_repartition_partitions: int = Field(
        12,
        ge=1,
        le=10_000,
        description="Partitions of the repartition topic when logcanary creates it: the most replicas that share the "
        "work. Never change it afterwards (services are placed by hash modulo this count).",
    )
    kafka_required_for_ready: bool = Field(
        False, description="true: /readyz answers 503 while Kafka ingestion is not running (default: verdicts served)."
    )

    @field_validator("kafka_topics", mode="before")
    @classmethod
    def _split_topics(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("kafka_topics")
    @classmethod
    def _some_topic(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one topic")
        return value

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"LOGCANARY_KAFKA_SECURITY_PROTOCOL={protocol} needs LOGCANARY_KAFKA_SASL_MECHANISM, _USERNAME and "
                "_PASSWORD"
            )
        return self

    @property
    def repartition_topic(self) -> str:
        return self.kafka_repartition_topic or f"{self.kafka_group_id}.by-service"


class StoreSettings(BaseModel):
    """Where the state is kept, how often it is saved, and how long what is saved is kept."""

    state_dir: Path = Field(Path("state"), description="Folder of the SQLite state file.")
    store_url: str | None = Field(
        None,
        description="sqlite:///path/to/file.sqlite or postgresql://user[:password]@host[:port]/database; "
        "unset = the SQLite file in state_dir.",
    )
    store_schema: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="PostgreSQL schema holding logcanary's tables (created if missing); unset = the connection's "
        "default (search_path, usually public).",
    )
    checkpoint_interval_seconds: float = Field(5.0, gt=0, description="How often state and offsets are saved.")
    retention_deployments_days: float = Field(
        30.0,
        ge=0,
        description="Deployments with no event for this long are dropped, in memory and in the store (0 = never).",
    )
    retention_analyses_days: float = Field(
        90.0, ge=0, description="Completed and cancelled analyses are deleted this long after they ended (0 = never)."
    )
    retention_analyses_max: int = Field(
        20_000,
        ge=100,
        description="Completed and cancelled analyses kept at most (each holds its final verdict, a few KB to a few "
        "hundred): past it the oldest-ended are deleted first. Running ones are never deleted.",
    )
    store_maintenance_interval_seconds: float = Field(
        300.0, gt=0, description="How often retention runs and the state file is kept bounded (WAL, free pages)."
    )
    idempotency_ttl_seconds: float = Field(
        86_400.0, gt=0, description="How long an Idempotency-Key of POST /v1/events is remembered (durably)."
    )
    idempotency_max_keys: int = Field(
        100_000, ge=1, description="Idempotency keys remembered at most; the oldest are forgotten first."
    )

    @field_validator("store_url")
    @classmethod
    def _store_scheme(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if value.startswith("sqlite://"):
            if not value.removeprefix("sqlite://") or "?" in value:
                raise ValueError(
                    "sqlite:// needs a file path and no query, e.g. sqlite:///var/lib/logcanary/state.sqlite"
                )
        elif not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "must start with sqlite:// (e.g. sqlite:///var/lib/logcanary/state.sqlite) or postgresql:// "
                "(e.g. postgresql://logcanary@db:5432/logcanary)"
            )
        return value

    @property
    def shared(self) -> bool:
        """PostgreSQL: a store several replicas can share."""
        return (self.store_url or "").startswith(("postgresql://", "postgres://"))

    @property
    def identity(self) -> str:
        """Which store, without its host or credentials: replicas that share one must name it alike."""
        if not self.shared:
            return "sqlite"
        database = urlsplit(self.store_url or "").path.lstrip("/") or "(default database)"
        return f"postgresql database {database}, schema {self.store_schema or '(default)'}"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "logcanary.sqlite"


class AnalysisSettings(BaseModel):
    """How verdicts are asked and answered."""

    default_sensitivity: Sensitivity = "medium"
    verdict_max_age_seconds: float = Field(
        1.0,
        ge=0,
        le=60,
        description="An on-demand verdict may be answered from one computed at most this long ago for the same "
        "question (0: always computed afresh); its age is in the Logcanary-Verdict-Age header.",
    )
    max_running_analyses: int = Field(
        100, ge=1, description="Running analyses at most (each is one series of logcanary_analysis_risk)."
    )
    environments: Annotated[list[str], NoDecode] = Field(
        [],
        max_length=MAX_ENVIRONMENTS,
        description=f"The environments analyses may name, comma-separated (e.g. dev,qa,prod; at most "
        f"{MAX_ENVIRONMENTS}); any other is refused (422). Unset: any name of the environment rule, and the "
        "metrics count the first ones seen, then '(other)'.",
    )

    @field_validator("environments", mode="before")
    @classmethod
    def _split_environments(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("environments")
    @classmethod
    def _environment_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.match(ENVIRONMENT_PATTERN, name):
                raise ValueError(f"{name!r} is not an environment name ({ENVIRONMENT_PATTERN})")
        return value


class LimitSettings(BaseModel):
    """Bounds on what the engine holds and what one request, record or message may be."""

    # The engine's caps: defaults in logcanary.engine.caps, the one place they are defined.
    max_templates_per_service: int = Field(DEFAULT_CAPS.max_templates_per_service, ge=10)
    max_templates_per_deployment: int = Field(DEFAULT_CAPS.max_templates_per_deployment, ge=10)
    max_clusters_per_deployment: int = Field(DEFAULT_CAPS.max_clusters_per_deployment, ge=10)
    max_deployments_per_service: int = Field(
        DEFAULT_CAPS.max_deployments_per_service, ge=2, description="Least recently seen ones are dropped past it."
    )
    max_services: int = Field(
        DEFAULT_CAPS.max_services,
        ge=1,
        description="Services held at most; past it the least recently seen is dropped whole (and stored).",
    )
    memory_budget_bytes: int = Field(
        DEFAULT_CAPS.memory_budget_bytes,
        ge=16 * 1024 * 1024,
        description="The engine's state at most, estimated (templates, examples, counts, the miners' caches); near "
        "it the engine degrades in a fixed order, counted and named on the verdicts affected (README: Engine memory).",
    )
    mask_patterns: Annotated[list[str], NoDecode] = Field(
        [],
        description="Extra regular expressions to mask, separated by ';;': each runs on one whitespace-separated "
        "token at a time (^ and $ anchor the token), and only on tokens of at most 2,048 characters (longer ones are "
        "one value already).",
    )
    max_record_bytes: int = Field(1_048_576, ge=256, description="Larger Kafka records or NDJSON lines are rejected.")
    max_request_bytes: int = Field(16 * 1_048_576, ge=1024, description="Largest POST /v1/events body.")
    max_message_bytes: int = Field(
        64 * 1024, ge=1024, description="Longer messages keep their head (UTF-8 bytes), marked truncated, and count."
    )
    max_clock_skew_seconds: float = Field(
        300.0, ge=0, description="Events stamped further ahead of the receive time are clamped to it (and counted)."
    )
    metrics_max_services: int = Field(
        50, ge=0, description="Services with series of their own on /metrics (most events first); the rest add up."
    )
    metrics_max_deployments: int = Field(
        200, ge=0, description="Deployments with series of their own on /metrics (most events first); the rest add up."
    )
    ingest_chunk_events: int = Field(
        1000, ge=1, description="POST /v1/events applies its events in chunks of this many, yielding between them."
    )

    @field_validator("mask_patterns", mode="before")
    @classmethod
    def _split_patterns(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.split(";;") if part]
        return value

    @field_validator("mask_patterns")
    @classmethod
    def _compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return value

    @property
    def caps(self) -> Caps:
        return Caps(
            max_templates_per_service=self.max_templates_per_service,
            max_templates_per_deployment=self.max_templates_per_deployment,
            max_clusters_per_deployment=self.max_clusters_per_deployment,
            max_deployments_per_service=self.max_deployments_per_service,
            max_services=self.max_services,
            memory_budget_bytes=self.memory_budget_bytes,
        )


class LokiSettings(BaseModel):
    """The default log store analyses pull from (an analysis' ``source`` overrides any of these)."""

    loki_url: str | None = Field(
        None, description="Grafana Loki's base URL, e.g. http://loki-gateway:80; unset = none."
    )
    loki_tenant: str | None = Field(None, description="X-Scope-OrgID sent to Loki (multi-tenant installs).")
    loki_token_file: str | None = Field(None, description="A file holding a bearer token for Loki (a mounted Secret).")
    loki_username: str | None = Field(None, description="Basic auth user for Loki (with loki_password_file).")
    loki_password_file: str | None = Field(None, description="A file holding the basic auth password for Loki.")
    loki_canary_selector: str = Field(
        '{app="$service", version="$deployment"}',
        description="LogQL selector template of a canary's logs; $service and $deployment are replaced (escaped).",
    )
    loki_baseline_selector: str | None = Field(
        None, description="LogQL selector template of the baseline's logs; unset = the canary's."
    )
    loki_baseline_window_seconds: float = Field(
        1800.0, gt=0, description="The baseline's recent window pulled when an analysis starts."
    )
    loki_poll_seconds: float = Field(5.0, gt=0, description="How often a running analysis pulls what is new.")
    loki_lateness_seconds: float = Field(
        120.0, ge=0, description="Lines stamped up to this long before the newest pulled are still picked up, once."
    )
    loki_timeout_seconds: float = Field(30.0, gt=0, description="Time limit of one request to Loki.")
    loki_history_seconds: float = Field(
        7 * 86_400.0,
        gt=0,
        description="A history baseline from Loki: earlier deployments are looked for this far before the canary.",
    )
    loki_history_max_lines: int = Field(
        20_000, ge=100, description="A history baseline from Loki: lines pulled at most per earlier deployment."
    )

    @model_validator(mode="after")
    def _one_auth(self) -> LokiSettings:
        if self.loki_token_file and (self.loki_username or self.loki_password_file):
            raise ValueError("give LOGCANARY_LOKI_TOKEN_FILE or LOGCANARY_LOKI_USERNAME and _PASSWORD_FILE, not both")
        if bool(self.loki_username) != bool(self.loki_password_file):
            raise ValueError("LOGCANARY_LOKI_USERNAME and LOGCANARY_LOKI_PASSWORD_FILE go together")
        return self


class NotifySettings(BaseModel):
    """Webhooks told when an analysis ends (logcanary.notify)."""

    notify_webhooks: Annotated[list[Webhook], NoDecode] = Field(
        [],
        description="Webhooks told when an analysis ends with a verdict in notify_on: 'slack=URL' (Slack-compatible "
        "text and blocks) or 'json=URL' / 'URL' (generic JSON), separated by commas or spaces; or a JSON list of "
        "{url, format}. Unset: no notifications.",
    )
    notify_on: Annotated[list[VerdictName], NoDecode] = Field(
        ["fail"], description="Final verdicts that notify, comma-separated: fail, inconclusive, pass."
    )
    notify_timeout_seconds: float = Field(10.0, gt=0, le=300, description="Time limit of one webhook request.")
    notify_max_attempts: int = Field(
        5, ge=1, le=20, description="Tries per webhook and message (errors, timeouts, 429 and 5xx are retried)."
    )
    notify_backoff_seconds: float = Field(
        1.0, gt=0, le=300, description="Wait before the first retry; it doubles with each retry."
    )
    notify_backoff_max_seconds: float = Field(60.0, gt=0, le=3600, description="Longest wait between two tries.")
    notify_queue_size: int = Field(
        1000, ge=1, description="Messages waiting to be sent at most; past it new ones are dropped (and counted)."
    )

    @field_validator("notify_webhooks", mode="before")
    @classmethod
    def _parse_webhooks(cls, value: object) -> object:
        return parse_webhooks(value)

    @field_validator("notify_on", mode="before")
    @classmethod
    def _split_verdicts(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value


#: What every replica of a scale-out cluster must share: these change what is counted (topics, group, partitioning,
#: the record and clock bounds), how it is grouped (masking, the engine's caps, retention) or the verdicts
#: (sensitivity, the log store's default selectors and windows). Checked at start (logcanary.live.cluster).
CLUSTER_FIELDS = (
    "mode",
    "kafka_topics",
    "kafka_group_id",
    "kafka_repartition_topic",
    "kafka_repartition_partitions",
    "default_sensitivity",
    "mask_patterns",
    "max_templates_per_service",
    "max_templates_per_deployment",
    "max_clusters_per_deployment",
    "max_deployments_per_service",
    "max_services",
    "max_record_bytes",
    "max_message_bytes",
    "max_clock_skew_seconds",
    "retention_deployments_days",
    "loki_canary_selector",
    "loki_baseline_selector",
    "loki_baseline_window_seconds",
    "loki_lateness_seconds",
    "loki_history_seconds",
    "loki_history_max_lines",
)


class Settings(
    HttpSettings,
    KafkaSettings,
    StoreSettings,
    AnalysisSettings,
    LimitSettings,
    LokiSettings,
    NotifySettings,
    BaseSettings,
):
    """Everything an operator can set. Defaults run a single node with no Kafka (HTTP ingestion only)."""

    model_config = SettingsConfigDict(env_prefix="LOGCANARY_", extra="ignore")

    mode: Mode = Field(
        "auto",
        description="single: one process holds every service; scale-out: replicas share the services through Kafka "
        "and a PostgreSQL store; auto (default): scale-out when both Kafka and a PostgreSQL store are set.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout_seconds: float = Field(
        20.0, gt=0, description="SIGTERM to exit at most, broker reachable or not (state checkpointed first)."
    )

    @model_validator(mode="after")
    def _topology(self) -> Settings:
        """The mode, decided here once: ``auto`` becomes what the Kafka and store settings make it."""
        kafka, shared = bool(self.kafka_bootstrap_servers), self.shared
        if self.mode == "auto":
            self.mode = "scale-out" if kafka and shared else "single"
        elif self.mode == "scale-out" and not (kafka and shared):
            raise ValueError(
                "LOGCANARY_MODE=scale-out needs LOGCANARY_KAFKA_BOOTSTRAP_SERVERS and a postgresql:// "
                "LOGCANARY_STORE_URL: replicas share the state in PostgreSQL and the services through Kafka"
            )
        return self

    def cluster_settings(self) -> dict[str, object]:
        """The CLUSTER_FIELDS, by variable name, as this process resolved them (the repartition topic's default
        spelled out, so a replica that names it and one that does not agree)."""
        values: dict[str, object] = {name: getattr(self, name) for name in CLUSTER_FIELDS}
        values["kafka_repartition_topic"] = self.repartition_topic
        values["store"] = self.identity
        return {f"LOGCANARY_{name.upper()}": value for name, value in values.items()}

    # The sections, as the components are handed them.
    @property
    def http(self) -> HttpSettings:
        return self

    @property
    def kafka(self) -> KafkaSettings:
        return self

    @property
    def store(self) -> StoreSettings:
        return self

    @property
    def analysis(self) -> AnalysisSettings:
        return self

    @property
    def limits(self) -> LimitSettings:
        return self

    @property
    def loki(self) -> LokiSettings:
        return self

    @property
    def notify(self) -> NotifySettings:
        return self


def load_settings() -> Settings:
    """Settings from the environment (and LOGCANARY_ENV_FILE); raises SettingsError with readable reasons."""
    env_file = os.environ.get("LOGCANARY_ENV_FILE")
    if env_file and not Path(env_file).is_file():
        raise SettingsError(f"LOGCANARY_ENV_FILE={env_file}: no such file")
    try:
        return Settings(_env_file=env_file)
    except ValidationError as exc:
        raise SettingsError(f"invalid settings: {describe(exc)}") from exc


def describe(exc: ValidationError) -> str:
    """The problems, each naming its variable (a check across variables names them in its message)."""
    problems = []
    for error in exc.errors():
        where = "_".join(str(part) for part in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"LOGCANARY_{where}: {message}" if where else message)
    return "; ".join(problems)
