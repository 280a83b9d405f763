"""The live state of a running service: the engine, the offsets it reflects, and checkpoints.

Everything that changes the engine runs on the event loop thread, so a
checkpoint taken there is a consistent cut: the engine state and the offsets of
the records that produced it. The snapshot is encoded on the loop (fast) and
written off the loop in one transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from service.engine.model import Engine
from service.metrics import Metrics
from service.schemas import LogEvent
from service.settings import Settings
from service.store.base import Checkpoint, Store
from service.store.codec import encode_deployment, encode_miner, restore


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
        )
        self.metrics = Metrics(lambda: self.engine)
        self.offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset to process
        self.loaded = False
        self.last_checkpoint = 0.0
        self._saved_miner_versions: dict[str, int] = {}
        self._saved_events: dict[tuple[str, str], int] = {}
        self._saved_offsets: dict[tuple[str, int], int] = {}
        self._checkpoint_lock = asyncio.Lock()

    def load(self) -> None:
        """Restores the engine and offsets from the store (blocking; call at start)."""
        miners = self.store.load_miners()
        deployments = self.store.load_deployments()
        restore(self.engine, miners, deployments)
        self.offsets = self.store.load_offsets()
        self._saved_offsets = dict(self.offsets)
        for name, service in self.engine.services.items():
            self._saved_miner_versions[name] = service.miner.version
            for deployment, model in service.deployments.items():
                self._saved_events[(name, deployment)] = model.events
        self.loaded = True

    def observe(self, event: LogEvent) -> None:
        self.engine.observe(
            event.service,
            event.deployment,
            event.message,
            event.timestamp.timestamp(),
            event.host,
            event.level,
            event.identities,
        )

    def count_rejections(self, source: str, reasons: Counter[str]) -> None:
        for reason, count in reasons.items():
            self.metrics.rejected.labels(source, reason).inc(count)

    def snapshot(self) -> Checkpoint:
        """What changed since the last checkpoint, with the current offsets (on the loop thread)."""
        checkpoint = Checkpoint(offsets=dict(self.offsets), dropped=list(self.engine.evicted))
        for name, service in self.engine.services.items():
            if self._saved_miner_versions.get(name) != service.miner.version:
                checkpoint.miners[name] = encode_miner(service.miner)
            for deployment, model in service.deployments.items():
                if self._saved_events.get((name, deployment)) != model.events:
                    checkpoint.deployments[(name, deployment)] = encode_deployment(model)
        return checkpoint

    async def checkpoint(self) -> None:
        """Writes changed state and offsets durably, in one transaction."""
        async with self._checkpoint_lock:
            started = time.perf_counter()
            checkpoint = self.snapshot()
            versions = {name: s.miner.version for name, s in self.engine.services.items()}
            events = {(name, d): m.events for name, s in self.engine.services.items() for d, m in s.deployments.items()}
            if (
                not (checkpoint.miners or checkpoint.deployments or checkpoint.dropped)
                and checkpoint.offsets == self._saved_offsets
            ):
                return
            await asyncio.to_thread(self.store.write_checkpoint, checkpoint)
            # Mark what the snapshot held as saved (events that arrived during the write stay dirty).
            for name in checkpoint.miners:
                self._saved_miner_versions[name] = versions[name]
            for key in checkpoint.deployments:
                self._saved_events[key] = events[key]
            del self.engine.evicted[: len(checkpoint.dropped)]
            for key in checkpoint.dropped:
                if key not in events:
                    self._saved_events.pop(key, None)
            self._saved_offsets = checkpoint.offsets
            self.last_checkpoint = time.time()
            self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)
