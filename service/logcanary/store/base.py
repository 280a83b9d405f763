"""The store interface: what the service persists and how.

A checkpoint is written in ONE transaction: the engine state that changed and
the Kafka offsets that produced it. After a crash the service reloads both and
the consumer seeks to those offsets, so every event is counted exactly once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from logcanary.idempotency import IdempotencyRecord
from logcanary.schemas import (
    AnalysisMetadata,
    AnalysisSpec,
    AnalysisStatus,
    DeploymentMark,
    Feedback,
    FeedbackChange,
    Thresholds,
    Verdict,
)
from logcanary.settings import SettingsError
from logcanary.store.codec import StoredState


class StoreOpenError(SettingsError):
    """The store cannot be opened, written or migrated: worded for the operator, naming the setting."""


@dataclass(slots=True)
class Checkpoint:
    """What changed since the last checkpoint (blobs are opaque, encoded by logcanary.store.codec).

    A store applies it in one transaction, deletions first: dropped services, dropped deployments (header and
    template rows), the rows of replaced miners and deployments, templates gone; then the upserts.
    """

    miners: dict[str, bytes] = field(default_factory=dict)  # service -> miner header
    groups: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (service, group key) -> group and templates
    deployments: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (service, deployment) -> header
    templates: dict[tuple[str, str, str], bytes] = field(default_factory=dict)  # (service, deployment, id) -> stats
    templates_gone: list[tuple[str, str, str]] = field(default_factory=list)  # ids merged into others since
    miners_replaced: list[str] = field(default_factory=list)  # services whose group rows are all rewritten
    deployments_replaced: list[tuple[str, str]] = field(default_factory=list)  # template rows all rewritten
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> next offset
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (service, deployment) evicted by the caps
    dropped_services: list[str] = field(default_factory=list)  # services evicted (all their rows go)
    idempotency: list[IdempotencyRecord] = field(default_factory=list)  # POST /v1/events answers to remember
    idempotency_horizon: float = 0.0  # keys created before this time are forgotten
    idempotency_max_keys: int = 100_000  # and only the newest this many are kept
    # Scale-out only: (repartition topic, {partition: epoch}) the writer must still own, else nothing is written;
    # and (shard, origin topic, origin partition) -> next origin offset not counted (duplicates are dropped).
    fence: tuple[str, dict[int, int]] | None = None
    origins: dict[tuple[int, str, int], int] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (
            self.miners
            or self.groups
            or self.deployments
            or self.templates
            or self.templates_gone
            or self.miners_replaced
            or self.deployments_replaced
            or self.dropped
            or self.dropped_services
        )


class StoreUnavailable(Exception):
    """A read that needs the store (scale-out: another replica's service) could not reach it: a 503, retry."""


class Fenced(Exception):
    """A checkpoint refused: another replica now owns these partitions of the repartition topic."""

    def __init__(self, shards: list[int]) -> None:
        super().__init__(f"partitions {shards} now belong to another replica")
        self.shards = shards


MAX_RISK_SAMPLES = 200  # risk over time kept per analysis (the history page's chart)


@dataclass(slots=True)
class AnalysisRecord:
    """A long-running canary analysis as stored."""

    id: str
    service: str
    request: AnalysisSpec
    status: AnalysisStatus
    started_at: float
    ends_at: float
    verdict: Verdict | None = None  # the last one while running, the final one once completed
    finished_at: float | None = None
    risk_history: list[list[float]] = field(default_factory=list)  # [epoch seconds, risk] samples, oldest first
    measured: bool = False  # a deploy tool's on-demand verdicts kept for its release (the latest), not watched

    def to_json(self) -> bytes:
        """The stored body, the same for every store (the request and verdict as their JSON documents)."""
        body = {
            "id": self.id,
            "service": self.service,
            "request": _document(self.request),
            "status": self.status,
            "started_at": self.started_at,
            "ends_at": self.ends_at,
            "verdict": None if self.verdict is None else _document(self.verdict),
            "finished_at": self.finished_at,
            "risk_history": self.risk_history,
        }
        if self.measured:  # stored only when set: an analysis is stored as before
            body["measured"] = True
        return orjson.dumps(body)

    @classmethod
    def from_json(cls, body: bytes) -> AnalysisRecord:
        data = orjson.loads(body)
        data["request"] = AnalysisSpec.model_validate(data["request"])
        if data.get("verdict") is not None:
            data["verdict"] = Verdict.model_validate(data["verdict"])
        return cls(**data)

    def add_risk_sample(self, at: float, risk: float, last: bool = False) -> None:
        """Records the risk of an evaluation, keeping at most MAX_RISK_SAMPLES evenly spread over the analysis.

        When the list is full every other sample goes (the first stays) and samples are then taken half as often,
        so a long analysis keeps its whole course at a coarser step. The ``last`` (final) evaluation always counts.
        """
        samples = self.risk_history
        if len(samples) >= 2 and not last and at - samples[-1][0] < samples[1][0] - samples[0][0]:
            return
        if len(samples) >= MAX_RISK_SAMPLES:
            del samples[1::2]
        samples.append([at, risk])


_METADATA = AnalysisMetadata().model_dump()  # the metadata of an analysis stored before it had any


def _document(model: AnalysisSpec | Verdict) -> dict[str, object]:
    """A request or verdict as stored: without the fields added since that are unset (``source`` when it has none, a
    log store's; an analysis' ``canary_weight`` and metadata at its defaults (environment, release...); a verdict's
    ``page`` (an analysis has its own), its empty ``reworded`` and ``degraded``, its anomalies' unset ``steady`` and
    ``rate``, thresholds at their defaults), so what was stored before they existed is stored exactly as before."""
    exclude: dict[str, Any] = {}
    if model.source is None:
        exclude["source"] = True
    if isinstance(model, AnalysisSpec):
        if model.canary_weight is None:
            exclude["canary_weight"] = True
        exclude.update(
            {name: True for name in AnalysisMetadata.model_fields if getattr(model, name) == _METADATA[name]}
        )
    else:
        if model.page is None:
            exclude["page"] = True
        if not model.reworded:
            exclude["reworded"] = True
        if not model.degraded:
            exclude["degraded"] = True
        unset = {
            index: {name for name in ("steady", "rate") if getattr(anomaly, name) is None}
            for index, anomaly in enumerate(model.anomalies)
        }
        if any(unset.values()):
            exclude["anomalies"] = {index: names for index, names in unset.items() if names}
        defaults = {
            name
            for name in ("drop_max_ratio", "rate_max_ratio")
            if getattr(model.thresholds, name) == Thresholds.model_fields[name].default
        }
        if defaults:
            exclude["thresholds"] = defaults
    return model.model_dump(mode="json", exclude=exclude or None)


class CheckpointStore(Protocol):
    """Where the live state is checkpointed (engine rows, offsets, idempotency keys); every method is blocking
    (call it off the event loop)."""

    def load_state(self, services: Collection[str] | None = None) -> StoredState: ...  # None: every service's
    def service_names(self) -> list[str]: ...  # every service with engine rows, in order
    def load_offsets(self) -> dict[tuple[str, int], int]: ...
    def write_checkpoint(self, checkpoint: Checkpoint) -> None: ...
    def load_idempotency_keys(self, since: float) -> list[tuple[str, float, str]]: ...  # (key, created, sha256)
    def load_idempotency_result(self, key: str) -> tuple[int, bytes] | None: ...  # (status, body)
    def maintain(self) -> None: ...  # bound the file: WAL truncated, free pages returned
    def close(self) -> None: ...


class Repository(Protocol):
    """What people and deploy tools create: feedback rules and their audit trail, deployment marks, analyses, the
    cluster map's places (blocking calls)."""

    def add_feedback(self, feedback: Feedback) -> None: ...
    def list_feedback(self, service: str | None = None) -> list[Feedback]: ...
    def delete_feedback(self, feedback_id: str) -> bool: ...
    def change_feedback(self, change: FeedbackChange) -> bool: ...  # the rule and its audit entry, one transaction
    def list_feedback_changes(self, service: str | None = None) -> list[FeedbackChange]: ...

    def load_places(self, service: str) -> dict[str, tuple[float, float]]: ...  # the cluster map's, by template
    def save_places(self, service: str, places: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]: ...

    def save_mark(self, mark: DeploymentMark) -> None: ...
    def load_marks(self) -> list[DeploymentMark]: ...

    def save_analysis(self, record: AnalysisRecord) -> None: ...
    def load_analyses(self) -> list[AnalysisRecord]: ...
    def delete_analyses(self, ids: list[str]) -> None: ...


class Store(CheckpointStore, Repository, Protocol):
    """Both, as each backend (SQLite, PostgreSQL) implements them over one database."""


class SharedCheckpointStore(CheckpointStore, Protocol):
    """Scale-out (PostgreSQL): a replica loads only its services and claims its partitions, fenced."""

    def claim_shards(self, topic: str, shards: Collection[int], owner: str) -> dict[int, int]: ...
    def record_partitions(self, topic: str, partitions: int) -> int: ...
    def load_origin_offsets(self, shards: Collection[int]) -> dict[tuple[int, str, int], int]: ...
    def claim_idempotency_key(
        self, key: str, fingerprint: str, now: float, stale_before: float
    ) -> tuple[str, int, bytes] | None: ...
    def answer_idempotency_key(self, key: str, status: int, body: bytes) -> None: ...
    def release_idempotency_key(self, key: str) -> None: ...
    def join_cluster(self, fingerprint: str, body: str) -> tuple[str, str]: ...
    def load_cluster(self) -> tuple[str, str] | None: ...
    def adopt_cluster(self, fingerprint: str, body: str) -> None: ...


class SharedRepository(Repository, Protocol):
    """Scale-out (PostgreSQL): analyses read by id and leased to one replica at a time."""

    def load_analysis(self, analysis_id: str) -> AnalysisRecord | None: ...
    def load_release(self, release: str) -> list[AnalysisRecord]: ...
    def lease_analyses(self, owner: str, now: float, until: float) -> list[AnalysisRecord]: ...
    def save_leased_analysis(self, record: AnalysisRecord, owner: str) -> bool: ...


class SharedStore(Store, SharedCheckpointStore, SharedRepository, Protocol):
    """Everything scale-out needs of one store (PostgreSQL): what :func:`logcanary.store.factory.open_shared_store`
    returns, so a replica holds its store by what it is, never through a cast."""
