"""Scale-out owner: counts the repartition partitions Kafka assigns this replica, each origin record once.

An assignment claims the partitions in the store (fencing their former owner), restores their services and seeks
to the offsets saved with them (:meth:`logcanary.live.scale_out.ScaleOut.adopt`); a revocation saves the state
first. A partition's records are counted without a gap: logcanary's own topic has none, so records past the next
expected offset were fetched from another position and the partition is read again from there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from logcanary.ingestion.kafka import repartition
from logcanary.ingestion.kafka.consumer import Batch, SupervisedConsumer
from logcanary.ingestion.kafka.metrics import IngestMetrics
from logcanary.ingestion.sink import Write
from logcanary.live.scale_out import ScaleOut
from logcanary.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Tally:
    counted: int = 0
    skipped: int = 0
    duplicates: int = 0
    from_http: int = 0


class _AdoptAssignedShards(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: Owner, consumer: AIOKafkaConsumer) -> None:
        self._owner = owner
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._owner.node.checkpoint(force=True)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        node = self._owner.node
        await node.adopt(tp.partition for tp in assigned)
        self._owner.sought.clear()  # every partition is positioned afresh: no earlier seek is pending
        for tp in assigned:
            self._consumer.seek(tp, self._owner.positioned(tp.partition))
        log.info("owning %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned) or "nothing")


class Owner(SupervisedConsumer):
    def __init__(
        self,
        config: KafkaSettings,
        state: ScaleOut,
        metrics: IngestMetrics,
        checkpoint_interval: float,
        shutdown_timeout: float,
    ) -> None:
        super().__init__(config, state, metrics, checkpoint_interval, shutdown_timeout)
        self.node = state
        self.sought: dict[tuple[str, int], int] = {}  # repartition partitions sent back to their expected offset

    def group_id(self) -> str:
        return f"{self.config.kafka_group_id}.owners"

    async def prepare(self, options: dict[str, Any]) -> None:
        await repartition.ensure_repartition_topic(self.config, options, self.node)

    def subscribe(self, consumer: AIOKafkaConsumer) -> None:
        consumer.subscribe([self.config.repartition_topic], listener=_AdoptAssignedShards(self, consumer))

    def position(self, tp: TopicPartition) -> int | None:
        shard = self.node.shards.get(tp.partition)
        return None if shard is None else shard.offset

    def positioned(self, partition: int) -> int:
        """The offset to seek an owned partition to: the one saved with its state (0 when none was)."""
        shard = self.node.shards[partition]
        if shard.offset is None:
            shard.offset = 0
        return shard.offset

    async def after_batch(self) -> None:
        await super().after_batch()
        if self.node.fenced:
            await self._reclaim()

    async def _reclaim(self) -> None:
        """A checkpoint found partitions claimed by another replica while Kafka still assigns them here (a
        member that rejoined, a stale assignment): claim them again, restore what the store holds and seek.
        Two replicas alternate at most until the group settles; each write is fenced, so the store only ever
        holds one owner's consistent state and offsets."""
        consumer = self.consumer
        assert consumer is not None
        node = self.node
        fenced, node.fenced = node.fenced, set()
        assigned = {tp.partition: tp for tp in consumer.assignment()}
        back = fenced & set(assigned)
        if not back:
            return
        log.warning("partitions %s are still assigned here: claiming them again", sorted(back))
        await node.adopt(assigned)
        for partition in back:
            tp = assigned[partition]
            self.sought.pop((tp.topic, tp.partition), None)
            consumer.seek(tp, self.positioned(partition))

    async def process(self, batch: Batch) -> None:
        """Counts the events routers sent to this replica's partitions, each origin record once, in slices: between
        two slices an adoption may move a partition, so each slice finds its shard again."""
        started = time.perf_counter()
        tally = _Tally()
        async with self.node.live.writing() as write:
            for tp, records in batch.items():
                index = 0
                while index < len(records):
                    index = self._apply(tp, records, index, tally, write)
                    if index < len(records):
                        await write.pause()
        if tally.skipped:
            self.metrics.below_offset.inc(tally.skipped)
        if tally.duplicates:
            self.metrics.duplicates.inc(tally.duplicates)
        metrics = self.node.metrics
        metrics.ingested.labels("kafka").inc(tally.counted)
        if tally.from_http:
            metrics.ingested.labels("http").inc(tally.from_http)
        metrics.batch_seconds.observe(time.perf_counter() - started)
        self.record_lag(batch)

    def _apply(self, tp: TopicPartition, records: list[Any], start: int, tally: _Tally, write: Write) -> int:
        """Counts ``records[start:]`` of one partition until the slice is used up; returns where it stopped (no
        await: the shard's offset and origins always hold exactly what was counted)."""
        shard = self.node.shards.get(tp.partition)
        if shard is None or shard.offset is None:  # not ours (any more), or not positioned yet
            tally.skipped += len(records) - start
            return len(records)
        observe_many = self.node.live.observe_many
        key = (tp.topic, tp.partition)
        expected = shard.offset
        for index in range(start, len(records)):
            record = records[index]
            if record.offset < expected:
                tally.skipped += 1
                continue
            if record.offset > expected:
                if self._fetched_elsewhere(tp, expected, record.offset):
                    tally.skipped += len(records) - index
                    return len(records)
            elif self.sought:
                self.sought.pop(key, None)  # back on track where it was sent
            shard.offset = expected = record.offset + 1
            source = repartition.origin_of(record.headers)
            if source is not None:
                okey, origin = source
                if origin < shard.origins.get(okey, 0):
                    tally.duplicates += 1
                    continue
                shard.origins[okey] = origin + 1
            values = repartition.decode(record.value)
            observe_many(values, 0, len(values))
            if source is None:
                tally.from_http += len(values)
            else:
                tally.counted += len(values)
            if write.due():
                return index + 1
        return len(records)

    def _fetched_elsewhere(self, tp: TopicPartition, expected: int, offset: int) -> bool:
        """True when a repartition partition's records jump past the next expected offset: logcanary's own topic
        has no gaps, so they were fetched from another position (a batch in hand while a restore moved the
        partition back). Nothing is counted and the consumer goes back to ``expected``. The same jump found again
        right after that seek is real (retention deleted records no owner had counted): it is logged, counted in
        ``logcanary_repartition_records_lost_total``, and passed."""
        key = (tp.topic, tp.partition)
        if self.sought.pop(key, None) == expected:
            self.metrics.lost.inc(offset - expected)
            log.error(
                "%s[%d] no longer holds offsets %d to %d (deleted by retention before they were counted): "
                "their events are lost; raise the repartition topic's retention",
                tp.topic,
                tp.partition,
                expected,
                offset - 1,
            )
            return False
        consumer = self.consumer
        if consumer is None or tp not in consumer.assignment():
            return True  # no longer this consumer's: its next owner positions it
        consumer.seek(tp, expected)
        self.sought[key] = expected
        log.info("%s[%d] fetched from %d, %d expected: read again from there", tp.topic, tp.partition, offset, expected)
        return True
