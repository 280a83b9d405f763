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
import os
import socket
import time
import uuid
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from logcanary.engine.miner import TemplateMiner
from logcanary.engine.model import DeploymentModel, Engine, ServiceModel
from logcanary.idempotency import IdempotencyKeys
from logcanary.metrics import Metrics
from logcanary.schemas import LogEvent
from logcanary.settings import Settings
from logcanary.store.base import Checkpoint, CheckpointStore, Fenced, SharedCheckpointStore, StoreUnavailable
from logcanary.store.codec import (
    Restored,
    encode_deployment_header,
    encode_group,
    encode_miner_header,
    encode_template_stats,
    group_fingerprint,
    miner_groups,
    restore,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

SNAPSHOTS_KEPT = 256  # services of other replicas held for reads
# Of an answer's bound (a verdict's max age, a snapshot's checkpoint interval): past it, the answer is still served
# while one fresh computation or load runs in the background, so a steady poller never waits for one.
REFRESH_AFTER = 0.75

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


class EngineWrite:
    """The engine lock held by a write done in chunks; :meth:`pause` lets the loop, and a reader waiting for the
    lock, run between two chunks (the lock is released on exit only if it is held, even after a cancellation)."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self.lock = lock
        self.held = False

    async def __aenter__(self) -> EngineWrite:
        await self.lock.acquire()
        self.held = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.held:
            self.lock.release()
            self.held = False

    async def pause(self) -> None:
        self.lock.release()
        self.held = False
        await asyncio.sleep(0)
        await self.lock.acquire()
        self.held = True


class LiveState:
    """Engine + store + offsets, with dirty tracking so a checkpoint writes only what changed."""

    def __init__(self, settings: Settings, store: CheckpointStore) -> None:
        self.settings = settings
        self.store = store
        self.engine = self.new_engine()
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
        # Held by whatever changes the engine (ingestion, retention, restores) and by verdicts computed in worker
        # threads (:meth:`read_in_thread`): a reader never sees the engine change under it. Reads themselves
        # never change the engine (merged templates are folded by the writer that merged them).
        self.engine_lock = asyncio.Lock()
        self.idempotency = IdempotencyKeys(settings.idempotency_ttl_seconds, settings.idempotency_max_keys)
        # Scale-out (logcanary.ingestion.scale_out): the repartition topic's partitions ("shards") this replica
        # owns, with their fencing epochs; None = one process holds every service.
        self.owned: set[int] | None = set() if settings.scale_out else None
        self.epochs: dict[int, int] = {}
        self.fenced: set[int] = set()  # released after a fenced checkpoint: the consumer claims them again
        self.partitions = settings.kafka_repartition_partitions  # the topic's real count once Kafka told it
        self.origins: dict[tuple[int, str, int], int] = {}  # (shard, origin topic, partition) -> next origin offset
        self._saved_origins: dict[tuple[int, str, int], int] = {}
        self.replica_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._snapshots: OrderedDict[str, tuple[float, ServiceModel | None]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[dict[str, ServiceModel | None]]] = {}

    def writing(self) -> EngineWrite:
        """``async with state.writing() as write``: a change of the engine, in chunks (``await write.pause()``)."""
        return EngineWrite(self.engine_lock)

    async def read_in_thread(self, read: Callable[[], T], live: bool = True) -> T:
        """``read()`` in a worker thread, so the loop goes on serving while it runs; with ``live`` (it reads the
        live engine, not a snapshot of another replica's services) ingestion waits until it is done. The lock is
        held until the thread returns, even if the caller is cancelled meanwhile."""
        if not live:
            return await asyncio.to_thread(read)
        await self.engine_lock.acquire()
        try:
            future = asyncio.get_running_loop().run_in_executor(None, read)
        except BaseException:
            self.engine_lock.release()
            raise
        future.add_done_callback(lambda _: self.engine_lock.release())
        return await asyncio.shield(future)

    def new_engine(self) -> Engine:
        """An engine with the service's caps (the live one, or one to read a service another replica owns)."""
        return Engine(tuple(self.settings.mask_patterns), self.settings.caps)

    def load(self) -> None:
        """Restores the engine and offsets from the store (blocking; call at start). In scale-out, a replica
        holds nothing until Kafka assigns it partitions (:meth:`adopt`)."""
        self.idempotency.load(self.store.load_idempotency_keys(self.idempotency.horizon()))
        if self.owned is None:
            rewrite = restore(self.engine, self.store.load_state())
            self.offsets = self.store.load_offsets()
            self._saved_offsets = dict(self.offsets)
            self._remember_restored(self.engine.services, rewrite)
        self.loaded = True

    def _remember_restored(self, names: Iterable[str], rewrite: Restored) -> None:
        """Records restored services as saved (except what must be rewritten whole)."""
        for name in names:
            service = self.engine.services.get(name)
            if service is None:
                continue
            if name not in rewrite.services:  # else unknown: rewritten whole at the next checkpoint
                self._saved_miners[name] = self._saved_miner(service.miner)
            for deployment, model in service.deployments.items():
                if (name, deployment) not in rewrite.deployments:
                    self._saved_deployments[(name, deployment)] = self._saved_deployment(model)

    # -- scale-out: the services of the partitions Kafka assigned ----------------------------------------------

    def shard_of(self, service: str) -> int:
        """The partition of the repartition topic that carries (and the replica that owns) a service."""
        return zlib.crc32(service.encode("utf-8", "surrogatepass")) % self.partitions

    def owns(self, service: str) -> bool:
        return self.owned is None or self.shard_of(service) in self.owned

    def release(self, shards: Iterable[int]) -> None:
        """Forgets, in memory only, the services of partitions this replica no longer owns (nothing is deleted
        from the store: their next owner restores them from it)."""
        gone = set(shards)
        if self.owned is None or not gone:
            return
        for name in [name for name in self.engine.services if self.shard_of(name) in gone]:
            self.engine.release(name)
            self._saved_miners.pop(name, None)
        for dkey in [dkey for dkey in self._saved_deployments if self.shard_of(dkey[0]) in gone]:
            del self._saved_deployments[dkey]
        topic = self.settings.repartition_topic
        for offsets in (self.offsets, self._saved_offsets):
            for key in [key for key in offsets if key[0] == topic and key[1] in gone]:
                del offsets[key]
        for origins in (self.origins, self._saved_origins):
            for okey in [okey for okey in origins if okey[0] in gone]:
                del origins[okey]
        for shard in gone:
            self.epochs.pop(shard, None)
        self.owned -= gone
        log.info("released partitions %s of %s", sorted(gone), topic)

    async def adopt(self, shards: Iterable[int]) -> None:
        """Takes the partitions Kafka just assigned: claims them in the store (fencing the former owner), keeps
        in memory those it held without anyone else in between, releases the others, and restores the new ones
        with their offsets (the consumer then seeks there)."""
        # Under the checkpoint lock: no checkpoint is taken with half-updated epochs (it would fence this replica
        # out of a partition it keeps), and two adoptions (a rebalance, a reclaim) never interleave.
        async with self._checkpoint_lock:
            assert self.owned is not None
            store = cast(SharedCheckpointStore, self.store)
            topic = self.settings.repartition_topic
            wanted = set(shards)
            epochs = await asyncio.to_thread(store.claim_shards, topic, wanted, self.replica_id)
            kept = {s for s in wanted & self.owned if epochs[s] == self.epochs.get(s, -1) + 1}
            async with self.engine_lock:  # a verdict may be reading the engine in a worker thread
                self.release(self.owned - kept)
            gained = wanted - kept
            if gained:
                names = [n for n in await asyncio.to_thread(store.service_names) if self.shard_of(n) in gained]
                stored = await asyncio.to_thread(store.load_state, names)
                origins = await asyncio.to_thread(store.load_origin_offsets, gained)
                offsets = {
                    key: value
                    for key, value in (await asyncio.to_thread(store.load_offsets)).items()
                    if key[0] == topic and key[1] in gained
                }
                async with self.engine_lock:  # no await from here on: ingestion sees the restored services whole
                    rewrite = restore(self.engine, stored)
                    self._remember_restored(names, rewrite)
                    self.offsets.update(offsets)
                    self._saved_offsets.update(offsets)
                    self.origins.update(origins)
                    self._saved_origins.update(origins)
                log.info("adopted partitions %s of %s: %d services restored", sorted(gained), topic, len(names))
            self.epochs.update(epochs)
            self.owned = wanted
            self.fenced -= wanted  # claimed again: nothing left for a reclaim to do

    async def read_service(self, name: str) -> ServiceModel | None:
        """A service to answer a read: the live model where this replica owns it (or holds everything), else
        the one its owner last checkpointed, read from the store at most one checkpoint interval ago."""
        return (await self.read_services([name]))[name]

    async def read_services(self, names: Iterable[str]) -> dict[str, ServiceModel | None]:
        """:meth:`read_service` for many: those another replica owns are read from the store in one go, and
        concurrent reads of one service (twenty gates polling a canary) share one load. A snapshot past 3/4 of
        its checkpoint interval is still answered while it is read again in the background, so a gate polling
        steadily never waits for a load; an asker that gives up never cancels a load others wait for."""
        now = time.monotonic()
        interval = self.settings.checkpoint_interval_seconds
        found: dict[str, ServiceModel | None] = {}
        waiting: dict[str, asyncio.Future[dict[str, ServiceModel | None]]] = {}
        missing: list[str] = []
        stale: list[str] = []
        for name in names:
            if self.owns(name):
                found[name] = self.engine.services.get(name)
            elif (cached := self._snapshots.get(name)) and (age := now - cached[0]) < interval:
                found[name] = cached[1]
                if age > interval * REFRESH_AFTER and name not in self._loading:
                    stale.append(name)
            elif name in self._loading:
                waiting[name] = self._loading[name]
            else:
                missing.append(name)
        if missing:
            load = self._load_snapshots_soon(missing)
            waiting.update(dict.fromkeys(missing, load))
        if stale:
            self._load_snapshots_soon(stale)  # in the background: the answers above are within their bound
        for name, future in waiting.items():
            found[name] = (await asyncio.shield(future))[name]
        return found

    def _load_snapshots_soon(self, names: list[str]) -> asyncio.Future[dict[str, ServiceModel | None]]:
        """Starts one load of ``names`` from the store; when it ends, its snapshots are kept, stamped with the
        time the load started (never fresher than they are)."""
        started = time.monotonic()
        load = asyncio.ensure_future(self._load_or_unavailable(names))
        for name in names:
            self._loading[name] = load

        def done(future: asyncio.Future[dict[str, ServiceModel | None]]) -> None:
            for name in names:
                if self._loading.get(name) is future:
                    del self._loading[name]
            if future.cancelled() or future.exception() is not None:  # the askers get the error (a 503)
                return
            for name, model in future.result().items():
                self._snapshots[name] = (started, model)
                self._snapshots.move_to_end(name)
            while len(self._snapshots) > SNAPSHOTS_KEPT:
                self._snapshots.popitem(last=False)

        load.add_done_callback(done)
        return load

    async def _load_or_unavailable(self, names: list[str]) -> dict[str, ServiceModel | None]:
        try:
            return await asyncio.to_thread(self._load_snapshots, names)
        except Exception as exc:
            log.warning("reading %s from the store failed: %s", names[:5], exc)
            detail = f"the services of other replicas are read from the store, unreachable now ({exc})"
            raise StoreUnavailable(detail) from exc

    def _load_snapshots(self, names: list[str]) -> dict[str, ServiceModel | None]:
        store = cast(SharedCheckpointStore, self.store)
        engine = self.new_engine()
        restore(engine, store.load_state(names))
        return {name: engine.services.get(name) for name in names}

    async def service_names(self) -> list[str]:
        """Every service known: this replica's and, in scale-out, those the store holds for the others."""
        names = set(self.engine.services)
        if self.owned is not None:
            store = cast(SharedCheckpointStore, self.store)
            names.update(n for n in await asyncio.to_thread(store.service_names) if not self.owns(n))
        return sorted(names)

    @staticmethod
    def _saved_miner(miner: TemplateMiner) -> _SavedMiner:
        groups = {key: group_fingerprint(group) for key, group in miner_groups(miner)}
        return _SavedMiner(miner, miner.version, miner.overflow, groups)

    @staticmethod
    def _saved_deployment(model: DeploymentModel) -> _SavedDeployment:
        counts = {template.template_id: stats.count for template, stats in model.templates().items()}
        return _SavedDeployment(model, model.events, counts)

    def observe(self, event: LogEvent) -> None:
        self.observe_values(
            event.service,
            event.deployment,
            event.message,
            event.timestamp.timestamp(),
            event.host,
            event.level,
            event.identities,
        )

    def observe_values(
        self,
        service: str,
        deployment: str,
        message: str,
        timestamp: float,
        host: str,
        level: str,
        identities: Sequence[str],
    ) -> None:
        """One event, as its fields (what the repartition topic carries)."""
        received = time.time()
        if timestamp > received + self.settings.max_clock_skew_seconds:
            # A stamp from the future (a wrong clock, 2099) would sit in every "last N minutes" window for ever.
            timestamp = received
            self.metrics.timestamps_clamped.inc()
        self.engine.observe(service, deployment, message, timestamp, host, level, identities)

    def count_rejections(self, source: str, reasons: Counter[str]) -> None:
        for reason, count in reasons.items():
            self.metrics.rejected.labels(source, reason).inc(count)

    def snapshot(self) -> tuple[Checkpoint, _Pending]:
        """What changed since the last checkpoint, with the current offsets. Run while nothing changes the engine
        (:meth:`checkpoint` runs it in a worker thread holding the engine lock): a consistent cut."""
        checkpoint = Checkpoint(offsets=dict(self.offsets))
        if self.owned is not None:
            checkpoint.fence = (self.settings.repartition_topic, dict(self.epochs))
            checkpoint.origins = {
                key: value for key, value in self.origins.items() if self._saved_origins.get(key) != value
            }
        checkpoint.idempotency = self.idempotency.pending()  # saved with the events they counted
        checkpoint.idempotency_horizon = self.idempotency.horizon()
        checkpoint.idempotency_max_keys = self.idempotency.max_keys
        pending = _Pending(evicted=len(self.engine.evicted))
        for name, service in list(self.engine.services.items()):  # one C call: a rebalance may release services
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
            # Encoding what changed takes a while after a busy interval: the loop serves requests meanwhile.
            checkpoint, pending = await self.read_in_thread(self.snapshot)
            if checkpoint.is_empty() and not checkpoint.idempotency and checkpoint.offsets == self._saved_offsets:
                return True
            try:
                await asyncio.to_thread(self.store.write_checkpoint, checkpoint)
            except Fenced as exc:
                # Kafka gave these partitions to another replica (this one missed the rebalance: a pause, a
                # partition from the group): its state is the truth now. Drop ours; the rest is saved next time.
                log.warning("checkpoint fenced: %s; dropping them here", exc)
                async with self.engine_lock:  # a verdict may be reading the engine in a worker thread
                    self.release(exc.shards)
                self.fenced.update(exc.shards)
                self.metrics.checkpoint_failures.inc()
                return False
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
            self._saved_origins.update(checkpoint.origins)
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
