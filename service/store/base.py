"""The store interface: what the service persists and how.

A checkpoint is written in ONE transaction: the engine state that changed and
the Kafka offsets that produced it. After a crash the service reloads both and
the consumer seeks to those offsets, so every event is counted exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from service.schemas import DeploymentMark, Feedback


@dataclass(slots=True)
class Checkpoint:
    """What changed since the last checkpoint (blobs are opaque, encoded by service.store.codec)."""

    miners: dict[str, bytes] = field(default_factory=dict)  # service -> miner state
    deployments: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (service, deployment) -> stats
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> next offset
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (service, deployment) evicted by the caps


@dataclass(slots=True)
class AnalysisRecord:
    """A long-running canary analysis as stored."""

    id: str
    service: str
    request: dict[str, Any]  # the creation request, as JSON data
    status: str  # running | completed | cancelled
    started_at: float
    ends_at: float
    verdict: dict[str, Any] | None = None
    finished_at: float | None = None


class Store(Protocol):
    """Persistence used by the service; every method is blocking (call it off the event loop)."""

    def load_miners(self) -> dict[str, bytes]: ...
    def load_deployments(self) -> dict[tuple[str, str], bytes]: ...
    def load_offsets(self) -> dict[tuple[str, int], int]: ...
    def write_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    def add_feedback(self, feedback: Feedback) -> None: ...
    def list_feedback(self, service: str | None = None) -> list[Feedback]: ...
    def delete_feedback(self, feedback_id: str) -> bool: ...

    def save_mark(self, mark: DeploymentMark) -> None: ...
    def load_marks(self) -> list[DeploymentMark]: ...

    def save_analysis(self, record: AnalysisRecord) -> None: ...
    def load_analyses(self) -> list[AnalysisRecord]: ...

    def close(self) -> None: ...
