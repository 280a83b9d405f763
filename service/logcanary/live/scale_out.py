"""Scale-out: replicas share the services, each holding the partitions of the repartition topic Kafka assigns it.

Each owned partition is a :class:`Shard`: its fencing epoch, the next repartition offset to count, and the origin
offsets of the raw records its state has counted (so a record a restarted router sends twice is dropped). A shard
is claimed in the store when Kafka assigns it (the epoch goes up, fencing the former owner's checkpoints), its
services are restored from the store, and it is released in memory only when Kafka takes it away: its next owner
restores it from what this replica saved. Services this replica does not own are read from the store, as their
owner last checkpointed them, at most one checkpoint interval ago.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from logcanary.common.caching import RefreshAheadCache
from logcanary.engine.model import ServiceModel
from logcanary.live.restoring import batches, restore_batch, restore_streaming
from logcanary.live.state import LiveState
from logcanary.settings import KafkaSettings, LimitSettings, StoreSettings
from logcanary.store.base import Checkpoint, Fenced, SharedStore, StoreUnavailable
from logcanary.store.codec import Restored

log = logging.getLogger(__name__)

SNAPSHOTS_KEPT = 256  # services of other replicas held for reads


class RepartitionCountChanged(RuntimeError):
    """The repartition topic's partition count differs from the one the stored state was built with."""


@dataclass(slots=True)
class Shard:
    """A partition of the repartition topic this replica owns: its services are counted here."""

    partition: int
    epoch: int  # claimed in the store; a checkpoint is refused once another replica claimed it since
    offset: int | None = None  # next repartition offset to count (None: not positioned yet: start at 0)
    saved_offset: int | None = None
    origins: dict[tuple[str, int], int] = field(default_factory=dict)  # raw (topic, partition) -> next offset
    saved_origins: dict[tuple[str, int], int] = field(default_factory=dict)


class ScaleOut(LiveState):
    def __init__(self, config: StoreSettings, limits: LimitSettings, kafka: KafkaSettings, store: SharedStore) -> None:
        super().__init__(config, limits, store)
        self.store: SharedStore = store
        self.topic = kafka.repartition_topic
        self.partitions = kafka.kafka_repartition_partitions  # the topic's real count once Kafka told it
        self.replica_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.shards: dict[int, Shard] = {}
        self.fenced: set[int] = set()  # released after a fenced checkpoint: the consumer claims them again
        self._snapshots: RefreshAheadCache[str, ServiceModel | None] = RefreshAheadCache(
            config.checkpoint_interval_seconds, SNAPSHOTS_KEPT, what="services of other replicas"
        )

    def _restore(self) -> None:
        """Nothing until Kafka assigns partitions (:meth:`adopt`)."""

    # -- placement ---------------------------------------------------------------------------------------------

    def shard_of(self, service: str) -> int:
        """The partition of the repartition topic that carries (and the replica that owns) a service."""
        return zlib.crc32(service.encode("utf-8", "surrogatepass")) % self.partitions

    def owns(self, service: str) -> bool:
        return self.shard_of(service) in self.shards

    @property
    def owned(self) -> set[int]:
        return set(self.shards)

    def built_with(self, partitions: int, recorded: int) -> None:
        """The repartition topic has ``partitions``; the stored state was built with ``recorded``: refuse a change
        (services would move to partitions whose stored state and offsets are not theirs)."""
        if recorded != partitions:
            raise RepartitionCountChanged(
                f"the repartition topic {self.topic} has {partitions} partitions, but the state in the store was "
                f"built with {recorded}: services map to partitions by that count, so their stored state and offsets "
                f"would no longer match what each partition carries. Recreate the topic with {recorded} partitions, "
                "or start a new state (another LOGCANARY_KAFKA_REPARTITION_TOPIC and an empty store schema)"
            )
        if partitions != self.partitions:
            if self.shards:
                raise RuntimeError(
                    f"the repartition topic {self.topic} now has {partitions} partitions, {self.partitions} before: "
                    "services would move between partitions; restore its partition count"
                )
            log.info("the repartition topic %s has %d partitions", self.topic, partitions)
            self.partitions = partitions

    # -- ownership ---------------------------------------------------------------------------------------------

    def release(self, partitions: Iterable[int]) -> None:
        """Forgets, in memory only, the services of partitions this replica no longer owns (nothing is deleted
        from the store: their next owner restores them from it). Hold the engine lock."""
        gone = set(partitions) & set(self.shards)
        if not gone:
            return
        for name in [name for name in self.engine.services if self.shard_of(name) in gone]:
            self.engine.release(name)
        self.rows.forget(lambda name: self.shard_of(name) in gone)
        for partition in gone:
            del self.shards[partition]
        log.info("released partitions %s of %s", sorted(gone), self.topic)

    async def adopt(self, partitions: Iterable[int]) -> None:
        """Takes the partitions Kafka just assigned: claims them in the store (fencing the former owner), keeps
        in memory those it held without anyone else in between, releases the others, and restores the new ones
        with their offsets (the consumer then seeks there)."""
        # Under the checkpoint lock: no checkpoint is taken with half-updated epochs (it would fence this replica
        # out of a partition it keeps), and two adoptions (a rebalance, a reclaim) never interleave.
        async with self.checkpoint_lock:
            store = self.store
            wanted = set(partitions)
            epochs = await asyncio.to_thread(store.claim_shards, self.topic, wanted, self.replica_id)
            kept = {p for p in wanted & set(self.shards) if epochs[p] == self.shards[p].epoch + 1}
            async with self.live.lock:  # a verdict may be reading the engine in a worker thread
                self.release(set(self.shards) - kept)
            for partition in kept:
                self.shards[partition].epoch = epochs[partition]
            gained = wanted - kept
            if gained:
                names = [n for n in await asyncio.to_thread(store.service_names) if self.shard_of(n) in gained]
                rewrite = Restored()
                for batch in batches(names):  # a few services at a time, under the memory budget
                    stored = await asyncio.to_thread(store.load_state, batch)
                    async with self.live.lock:  # no one counts these services before their shards are added below
                        restore_batch(self.engine, stored, rewrite)
                    del stored
                origins = await asyncio.to_thread(store.load_origin_offsets, gained)
                offsets = await asyncio.to_thread(store.load_offsets)
                shards = {p: Shard(p, epochs[p]) for p in gained}
                for (topic, partition), offset in offsets.items():
                    if topic == self.topic and partition in shards:
                        shards[partition].offset = shards[partition].saved_offset = offset
                for (partition, topic, raw), offset in origins.items():
                    shards[partition].origins[(topic, raw)] = shards[partition].saved_origins[(topic, raw)] = offset
                async with self.live.lock:  # no await from here on: ingestion sees the restored services whole
                    self.rows.restored(self.engine, names, rewrite)
                    self.shards.update(shards)
                log.info("adopted partitions %s of %s: %d services restored", sorted(gained), self.topic, len(names))
            self.fenced -= wanted  # claimed again: nothing left for a reclaim to do

    async def _fenced(self, exc: Fenced) -> None:
        # Kafka gave these partitions to another replica (this one missed the rebalance: a pause, a partition
        # from the group): its state is the truth now. Drop ours; the rest is saved next time.
        log.warning("checkpoint fenced: %s; dropping them here", exc)
        async with self.live.lock:  # a verdict may be reading the engine in a worker thread
            self.release(exc.shards)
        self.fenced.update(exc.shards)

    # -- positions ---------------------------------------------------------------------------------------------

    def _positions(self, checkpoint: Checkpoint) -> None:
        shards = list(self.shards.values())
        checkpoint.offsets = {(self.topic, s.partition): s.offset for s in shards if s.offset is not None}
        checkpoint.fence = (self.topic, {s.partition: s.epoch for s in shards})
        checkpoint.origins = {
            (s.partition, topic, raw): offset
            for s in shards
            for (topic, raw), offset in s.origins.items()
            if s.saved_origins.get((topic, raw)) != offset
        }

    def _positions_moved(self, checkpoint: Checkpoint) -> bool:
        saved = {(self.topic, s.partition): s.saved_offset for s in self.shards.values() if s.saved_offset is not None}
        return checkpoint.offsets != saved

    def _positions_saved(self, checkpoint: Checkpoint) -> None:
        for (_, partition), offset in checkpoint.offsets.items():
            if (shard := self.shards.get(partition)) is not None:
                shard.saved_offset = offset
        for (partition, topic, raw), offset in checkpoint.origins.items():
            if (shard := self.shards.get(partition)) is not None:
                shard.saved_origins[(topic, raw)] = offset

    # -- reads -------------------------------------------------------------------------------------------------

    async def read_services(self, names: Iterable[str]) -> dict[str, ServiceModel | None]:
        """Owned services from memory; the others as their owner last checkpointed them (one store read for all
        that are missing, shared by concurrent askers, refreshed ahead of its bound)."""
        found: dict[str, ServiceModel | None] = {}
        others: list[str] = []
        for name in names:
            if self.owns(name):
                found[name] = self.engine.services.get(name)
            else:
                others.append(name)
        if others:
            snapshots = await self._snapshots.get_many(others, self._load_or_unavailable)
            found.update((name, entry.value) for name, entry in snapshots.items())
        return found

    async def _load_or_unavailable(self, names: list[str]) -> dict[str, ServiceModel | None]:
        try:
            return await asyncio.to_thread(self._load_snapshots, names)
        except Exception as exc:
            log.warning("reading %s from the store failed: %s", names[:5], exc)
            detail = f"the services of other replicas are read from the store, unreachable now ({exc})"
            raise StoreUnavailable(detail) from exc

    def _load_snapshots(self, names: list[str]) -> dict[str, ServiceModel | None]:
        engine = self.live.new_engine()
        restore_streaming(engine, self.store.load_state, names)
        return {name: engine.services.get(name) for name in names}

    async def service_names(self) -> list[str]:
        names = set(self.engine.services)
        names.update(n for n in await asyncio.to_thread(self.store.service_names) if not self.owns(n))
        return sorted(names)
