"""What this process holds live — the engine, the positions of what it counted, their checkpoints — and how the
two topologies (:mod:`logcanary.live.single_node`, :mod:`logcanary.live.scale_out`) differ in holding it.

A checkpoint is a consistent cut: the engine rows that changed and the positions of the records that changed them
(Kafka offsets, origin offsets), taken in a worker thread holding the engine lock, written off the loop in one
transaction. A failed write (disk full, any store error) changes nothing that was remembered: the state stays
dirty, the failure is logged and counted, and the next attempt comes after a backoff (0.5 s doubling to 30 s), so
ingestion goes on and the state is saved once the store takes writes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable

from logcanary.common.backoff import Backoff
from logcanary.engine.model import Engine, ServiceModel
from logcanary.idempotency import IdempotencyKeys
from logcanary.live.engine import LiveEngine
from logcanary.live.rows import PendingRows, SavedRows
from logcanary.metrics import Metrics
from logcanary.settings import LimitSettings, StoreSettings
from logcanary.store.base import Checkpoint, CheckpointStore, Fenced

log = logging.getLogger(__name__)


class LiveState(ABC):
    """Engine + positions + checkpoints of one process; what differs by topology is abstract."""

    def __init__(self, config: StoreSettings, limits: LimitSettings, store: CheckpointStore) -> None:
        self.config = config
        self.store = store
        self.metrics = Metrics(
            lambda: self.live.engine,
            max_services=limits.metrics_max_services,
            max_deployments=limits.metrics_max_deployments,
        )
        self.live = LiveEngine(limits, on_clamp=self.metrics.timestamps_clamped.inc)
        self.idempotency = IdempotencyKeys(config.idempotency_ttl_seconds, config.idempotency_max_keys)
        self.rows = SavedRows()
        self.loaded = False
        self.last_checkpoint = 0.0
        self.checkpoint_failures = 0  # consecutive failed checkpoints (0 = the store holds the state)
        self._retry = Backoff(0.5, 30.0)
        self._retry_at = 0.0  # monotonic time before which a due checkpoint is not tried again
        # Held by a checkpoint, by an adoption (scale-out), and by POST /v1/events while it applies a body in
        # chunks: no checkpoint saves half a request, and none carries half an adoption.
        self.checkpoint_lock = asyncio.Lock()

    @property
    def engine(self) -> Engine:
        return self.live.engine

    # -- what the topology decides -------------------------------------------------------------------------------

    def load(self) -> None:
        """Restores what this process holds from the store (blocking; call at start)."""
        self.idempotency.load(self.store.load_idempotency_keys(self.idempotency.horizon()))
        self._restore()
        self.loaded = True

    @abstractmethod
    def _restore(self) -> None: ...

    @abstractmethod
    def owns(self, service: str) -> bool:
        """Whether this process counts the service's events (its model here is the live one)."""

    @abstractmethod
    async def read_services(self, names: Iterable[str]) -> dict[str, ServiceModel | None]:
        """The services to answer a read: the live model where this process owns one, else what the store holds."""

    @abstractmethod
    async def service_names(self) -> list[str]:
        """Every service known, here or (scale-out) to the store."""

    @abstractmethod
    def _positions(self, checkpoint: Checkpoint) -> None:
        """Adds the positions of what the engine counted (offsets, fences, origins) to a checkpoint."""

    @abstractmethod
    def _positions_moved(self, checkpoint: Checkpoint) -> bool:
        """Whether the checkpoint's positions differ from the saved ones."""

    @abstractmethod
    def _positions_saved(self, checkpoint: Checkpoint) -> None:
        """The checkpoint committed: its positions are the saved ones."""

    async def _fenced(self, exc: Fenced) -> None:
        """A checkpoint refused because another replica owns some of its partitions (scale-out only)."""
        raise exc

    # -- reads ---------------------------------------------------------------------------------------------------

    async def read_service(self, name: str) -> ServiceModel | None:
        return (await self.read_services([name]))[name]

    def is_live(self, model: ServiceModel) -> bool:
        """The model is the engine's own (a reader must hold the engine lock), not a snapshot of another replica's."""
        return self.engine.services.get(model.name) is model

    # -- checkpoints -----------------------------------------------------------------------------------------------

    def snapshot(self) -> tuple[Checkpoint, PendingRows]:
        """What changed since the last checkpoint, with the current positions. Run while nothing changes the
        engine (:meth:`checkpoint` runs it in a worker thread holding the engine lock): a consistent cut."""
        checkpoint = Checkpoint()
        self._positions(checkpoint)
        checkpoint.idempotency = self.idempotency.pending()  # saved with the events they counted
        checkpoint.idempotency_horizon = self.idempotency.horizon()
        checkpoint.idempotency_max_keys = self.idempotency.max_keys
        pending = self.rows.changes(self.engine, checkpoint)
        return checkpoint, pending

    async def checkpoint(self, *, force: bool = False) -> bool:
        """Writes changed state and positions durably, in one transaction; True once the store holds the state.

        Never raises for a store error: a failure is logged and counted, everything stays dirty, and the next
        attempt waits for a backoff, unless ``force`` (an HTTP request that must know, shutdown) asks anyway.
        """
        async with self.checkpoint_lock:
            if not force and time.monotonic() < self._retry_at:
                return False
            started = time.perf_counter()
            # Encoding what changed takes a while after a busy interval: the loop serves requests meanwhile.
            checkpoint, pending = await self.live.read_in_thread(self.snapshot)
            if checkpoint.is_empty() and not checkpoint.idempotency and not self._positions_moved(checkpoint):
                return True
            try:
                await asyncio.to_thread(self.store.write_checkpoint, checkpoint)
            except Fenced as exc:
                await self._fenced(exc)
                self.metrics.checkpoint_failures.inc()
                return False
            except Exception as exc:
                self.checkpoint_failures += 1
                delay = self._retry.next()
                self._retry_at = time.monotonic() + delay
                self.metrics.checkpoint_failures.inc()
                log.error(
                    "checkpoint failed (%s: %s), %d in a row; the state stays in memory, next try in %.1fs",
                    type(exc).__name__,
                    exc,
                    self.checkpoint_failures,
                    delay,
                    exc_info=self.checkpoint_failures == 1,
                )
                return False
            if self.checkpoint_failures:
                log.info("checkpoint succeeded again after %d failures", self.checkpoint_failures)
            self.checkpoint_failures = 0
            self._retry.reset()
            self._retry_at = 0.0
            self.rows.committed(self.engine, checkpoint, pending)
            self.idempotency.saved(checkpoint.idempotency)
            self._positions_saved(checkpoint)
            self.last_checkpoint = time.time()
            self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)
            return True

    async def ensure_saved(self) -> bool:
        """True when the store holds the state, trying a checkpoint now if the last one failed."""
        return self.checkpoint_failures == 0 or await self.checkpoint(force=True)

    def prune(self, now: float) -> list[tuple[str, str | None]]:
        """Retention: what saw no event within LOGCANARY_RETENTION_DEPLOYMENTS_DAYS goes. Hold the engine lock."""
        return self.live.prune(now, self.config.retention_deployments_days)

    def count_rejections(self, source: str, reasons: Counter[str]) -> None:
        for reason, count in reasons.items():
            self.metrics.rejected.labels(source, reason).inc(count)
