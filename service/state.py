"""The live state of a running service: the engine, the offsets it reflects, and checkpoints.

Everything that changes the engine runs on the event loop thread, so a
checkpoint taken there is a consistent cut: the engine state and the offsets of
the records that produced it. The snapshot is encoded on the loop (fast) and
written off the loop in one transaction.

Only what changed is written: a miner's Drain groups whose fingerprint moved, a deployment's header and the
stats of the templates whose count moved. What was saved is remembered per *object* (the miner, the
deployment model), so a deployment or service evicted and re-created between two checkpoints is rewritten
whole, never mistaken for the saved one. A failed write (disk full, any SQLite error) changes nothing that
was remembered: the state stays dirty, the failure is logged and counted, and the next attempt comes after
a backoff (0.5 s doubling to 30 s), so ingestion goes on and the state is saved once space returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from service.engine.miner import TemplateMiner
from service.engine.model import DeploymentModel, Engine
from service.idempotency import IdempotencyKeys
from service.metrics import Metrics
from service.schemas import LogEvent
from service.settings import Settings
from service.store.base import Checkpoint, Store
from service.store.codec import (
    encode_deployment_header,
    encode_group,
    encode_miner_header,
    encode_template_stats,
    group_fingerprint,
    miner_groups,
    restore,
)

log = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
DAY = 86_400.0


@dataclass(slots=True)
class _SavedMiner:
    miner: TemplateMiner  # the object saved: a re-created service has another one
    version: int
    overflow: int
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)  # group key -> fingerprint


@dataclass(slots=True)
class _SavedDeployment:
    model: DeploymentModel  # the object saved: a deployment evicted and re-created has another one
    events: int
    counts: dict[str, int] = field(default_factory=dict)  # template id -> count


@dataclass(slots=True)
class _Pending:
    """What the store will hold once a checkpoint commits."""

    miners: dict[str, _SavedMiner] = field(default_factory=dict)
    deployments: dict[tuple[str, str], _SavedDeployment] = field(default_factory=dict)
    evicted: int = 0  # entries of engine.evicted covered


class LiveState:
    """Engine + store + offsets, with dirty tracking so a checkpoint writes only what changed."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.engine = Engine(
            extra_patterns=tuple(settings.mask_patterns),
            max_templates_per_service=settings.max_templates_per_service,
            max_templates_per_deployment=settings.max_templates_per_deployment,
            max_clusters_per_deployment=settings.max_clusters_per_deployment,
            max_deployments_per_service=settings.max_deployments_per_service,
            max_services=settings.max_services,
        )
        self.metrics = Metrics(
            lambda: self.engine,
            max_services=settings.metrics_max_services,
            max_deployments=settings.metrics_max_deployments,
        )
        self.offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset to process
        self.loaded = False
        self.last_checkpoint = 0.0
        self._saved_miners: dict[str, _SavedMiner] = {}
        self._saved_deployments: dict[tuple[str, str], _SavedDeployment] = {}
        self._saved_offsets: dict[tuple[str, int], int] = {}
        self.checkpoint_failures = 0  # consecutive failed checkpoints (0 = the store holds the state)
        self._retry_at = 0.0  # monotonic time before which a due checkpoint is not tried again
        self._checkpoint_lock = asyncio.Lock()
        # Held by POST /v1/events while it applies a body in chunks: no checkpoint saves half a request.
        self.applying = self._checkpoint_lock
        self.idempotency = IdempotencyKeys(settings.idempotency_ttl_seconds, settings.idempotency_max_keys)

    def load(self) -> None:
        """Restores the engine and offsets from the store (blocking; call at start)."""
        rewrite = restore(self.engine, self.store.load_state())
        self.offsets = self.store.load_offsets()
        self._saved_offsets = dict(self.offsets)
        self.idempotency.load(self.store.load_idempotency_keys(self.idempotency.horizon()))
        for name, service in self.engine.services.items():
            if name not in rewrite.services:  # else unknown: rewritten whole at the next checkpoint
                self._saved_miners[name] = self._saved_miner(service.miner)
            for deployment, model in service.deployments.items():
                if (name, deployment) not in rewrite.deployments:
                    self._saved_deployments[(name, deployment)] = self._saved_deployment(model)
        self.loaded = True

    @staticmethod
    def _saved_miner(miner: TemplateMiner) -> _SavedMiner:
        groups = {key: group_fingerprint(group) for key, group in miner_groups(miner)}
        return _SavedMiner(miner, miner.version, miner.overflow, groups)

    @staticmethod
    def _saved_deployment(model: DeploymentModel) -> _SavedDeployment:
        counts = {template.template_id: stats.count for template, stats in model.templates().items()}
        return _SavedDeployment(model, model.events, counts)

    def observe(self, event: LogEvent) -> None:
        timestamp = event.timestamp.timestamp()
        received = time.time()
        if timestamp > received + self.settings.max_clock_skew_seconds:
            # A stamp from the future (a wrong clock, 2099) would sit in every "last N minutes" window for ever.
            timestamp = received
            self.metrics.timestamps_clamped.inc()
        self.engine.observe(
            event.service,
            event.deployment,
            event.message,
            timestamp,
            event.host,
            event.level,
            event.identities,
        )

    def count_rejections(self, source: str, reasons: Counter[str]) -> None:
        for reason, count in reasons.items():
            self.metrics.rejected.labels(source, reason).inc(count)

    def snapshot(self) -> tuple[Checkpoint, _Pending]:
        """What changed since the last checkpoint, with the current offsets (on the loop thread)."""
        checkpoint = Checkpoint(offsets=dict(self.offsets))
        checkpoint.idempotency = self.idempotency.pending()  # saved with the events they counted
        checkpoint.idempotency_horizon = self.idempotency.horizon()
        checkpoint.idempotency_max_keys = self.idempotency.max_keys
        pending = _Pending(evicted=len(self.engine.evicted))
        for name, service in self.engine.services.items():
            miner = service.miner
            saved = self._saved_miners.get(name)
            if saved is not None and saved.miner is not miner:
                saved = None  # the service was evicted and re-created
            if saved is None:  # new, re-created, or not known to match the store: its rows are rewritten
                checkpoint.miners_replaced.append(name)
            if saved is None or saved.version != miner.version or saved.overflow != miner.overflow:
                fresh = _SavedMiner(miner, miner.version, miner.overflow)
                for key, group in miner_groups(miner):
                    fingerprint = fresh.groups[key] = group_fingerprint(group)
                    if saved is None or saved.groups.get(key) != fingerprint:
                        checkpoint.groups[(name, key)] = encode_group(group.signature, group)
                checkpoint.miners[name] = encode_miner_header(miner)
                pending.miners[name] = fresh
            for deployment, model in service.deployments.items():
                dkey = (name, deployment)
                known = self._saved_deployments.get(dkey)
                if known is None or known.model is not model:
                    checkpoint.deployments_replaced.append(dkey)
                    known = None
                elif known.events == model.events:
                    continue
                current = self._saved_deployment(model)
                for template, stats in model.templates().items():
                    if known is None or known.counts.get(template.template_id) != stats.count:
                        checkpoint.templates[(name, deployment, template.template_id)] = encode_template_stats(stats)
                if known is not None:
                    checkpoint.templates_gone += [
                        (name, deployment, template_id)
                        for template_id in known.counts
                        if template_id not in current.counts
                    ]
                checkpoint.deployments[dkey] = encode_deployment_header(model)
                pending.deployments[dkey] = current
        for name in self._saved_miners:
            if name not in self.engine.services:
                checkpoint.dropped_services.append(name)
        for service_name, deployment in self._saved_deployments:
            live = self.engine.services.get(service_name)
            if live is None or deployment not in live.deployments:
                checkpoint.dropped.append((service_name, deployment))
        return checkpoint, pending

    async def checkpoint(self, *, force: bool = False) -> bool:
        """Writes changed state and offsets durably, in one transaction; True once the store holds the state.

        Never raises for a store error: a failure is logged and counted, everything stays dirty, and the next
        attempt waits for a backoff, unless ``force`` (an HTTP request that must know, shutdown) asks anyway.
        """
        async with self._checkpoint_lock:
            if not force and time.monotonic() < self._retry_at:
                return False
            started = time.perf_counter()
            checkpoint, pending = self.snapshot()
            if checkpoint.is_empty() and not checkpoint.idempotency and checkpoint.offsets == self._saved_offsets:
                return True
            try:
                await asyncio.to_thread(self.store.write_checkpoint, checkpoint)
            except Exception as exc:
                self.checkpoint_failures += 1
                delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (self.checkpoint_failures - 1))
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
            self._retry_at = 0.0
            # Remember what the snapshot held as saved (events that arrived during the write stay dirty).
            self._saved_miners.update(pending.miners)
            self._saved_deployments.update(pending.deployments)
            for name in checkpoint.dropped_services:
                self._saved_miners.pop(name, None)
            for key in checkpoint.dropped:
                self._saved_deployments.pop(key, None)
            del self.engine.evicted[: pending.evicted]
            self.idempotency.saved(checkpoint.idempotency)
            self._saved_offsets = checkpoint.offsets
            self.last_checkpoint = time.time()
            self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)
            return True

    async def ensure_saved(self) -> bool:
        """True when the store holds the state, trying a checkpoint now if the last one failed."""
        return self.checkpoint_failures == 0 or await self.checkpoint(force=True)

    def prune(self, now: float) -> list[tuple[str, str | None]]:
        """Drops what saw no event within LOGCANARY_RETENTION_DEPLOYMENTS_DAYS, through the engine's eviction:
        whole services (``(service, None)``), else single deployments. The next checkpoint deletes their rows."""
        days = self.settings.retention_deployments_days
        if days <= 0:
            return []
        cutoff = now - days * DAY
        old: list[tuple[str, str | None]] = []
        for name, service in list(self.engine.services.items()):
            if service.last_seen < cutoff:  # every deployment is old (or none is left): the miner goes too
                self.engine.evict_service(name)
                old.append((name, None))
                continue
            for deployment, model in list(service.deployments.items()):
                if model.last_seen < cutoff:
                    self.engine.evict(name, deployment)
                    old.append((name, deployment))
        return old
