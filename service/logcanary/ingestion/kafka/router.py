"""Scale-out router: the log topics' events sent on to the repartition partition of their service.

At least once: a router commits its raw offsets to Kafka only after the repartition topic acknowledged the events;
the owners drop what a restarted router sends twice by its origin offset (:mod:`logcanary.ingestion.kafka.owner`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    MessageSizeTooLargeError,
    RebalanceInProgressError,
)

from logcanary.ingestion.kafka import repartition
from logcanary.ingestion.kafka.clients import KafkaUnavailable
from logcanary.ingestion.kafka.metrics import IngestMetrics
from logcanary.ingestion.kafka.raw import Fetched, RawLogConsumer
from logcanary.ingestion.records import DecodedBatch
from logcanary.ingestion.sink import EventValues
from logcanary.live.scale_out import ScaleOut
from logcanary.settings import KafkaSettings, LimitSettings

log = logging.getLogger(__name__)


class _SeekToCommittedOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    """Raw topics are read from the offsets committed to Kafka (after their events reached the repartition
    topic); the owners' origin offsets drop what a restarted router sends twice."""

    def __init__(self, router: Router, consumer: AIOKafkaConsumer) -> None:
        self._router = router
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self._router.offsets.pop((tp.topic, tp.partition), None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            committed = await self._consumer.committed(tp)
            self._router.offsets[(tp.topic, tp.partition)] = committed or 0
            self._consumer.seek(tp, committed or 0)
        log.info("routing %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned) or "nothing")


class Router(RawLogConsumer):
    """Routes this replica's share of the log topics; :meth:`forward` does the same for HTTP bodies."""

    counts = False  # its offsets are committed to Kafka after each batch reached the repartition topic
    # A router decodes a batch whole: it must send what it fetched before a rebalance can move the partition.
    decode_in_slices = False

    def __init__(
        self,
        config: KafkaSettings,
        limits: LimitSettings,
        state: ScaleOut,
        metrics: IngestMetrics,
        checkpoint_interval: float,
        shutdown_timeout: float,
    ) -> None:
        super().__init__(config, limits, state, metrics, checkpoint_interval, shutdown_timeout)
        self.node = state
        self._offsets: dict[tuple[str, int], int] = {}  # committed to Kafka, never saved with the state

    @property
    def offsets(self) -> dict[tuple[str, int], int]:
        return self._offsets

    async def prepare(self, options: dict[str, Any]) -> None:
        await repartition.ensure_repartition_topic(self.config, options, self.node)

    def subscribe(self, consumer: AIOKafkaConsumer) -> None:
        consumer.subscribe(self.config.kafka_topics, listener=_SeekToCommittedOffsets(self, consumer))

    async def handle(self, fetched: Fetched, decoded: DecodedBatch) -> int:
        fresh = {key: record.offset + 1 for key, record in fetched}  # partition -> next offset (in order)
        await self._route(fetched, decoded, fresh)
        return 0

    async def _route(self, fetched: Fetched, decoded: DecodedBatch, fresh: dict[tuple[str, int], int]) -> None:
        """Sends each record's events to the partitions of their services, then commits the raw offsets: at
        least once, and the owners drop what comes twice by its origin offset."""
        consumer = self.consumer
        assert consumer is not None
        by_shard: dict[int, list[tuple[bytes, list[tuple[str, bytes]]]]] = {}
        shards: dict[str, int] = {}  # service -> its partition, for this batch
        events, ends = decoded.events, decoded.ends
        start = 0
        for index, end in enumerate(ends):
            if end == start:
                continue
            record = fetched[index][1]
            headers = [(repartition.HEADER_ORIGIN, repartition.origin(record.topic, record.partition, record.offset))]
            if end - start == 1:  # one event, one partition (nearly every record)
                service = events[start][0]
                shard = shards.get(service)
                if shard is None:
                    shard = shards[service] = self.node.shard_of(service)
                by_shard.setdefault(shard, []).append((repartition.encode(events[start:end]), headers))
            else:
                for shard, value in repartition.encode_by_shard(events[start:end], self.node.shard_of).items():
                    by_shard.setdefault(shard, []).append((value, headers))
            start = end
        # A failure restarts the loop and the raw records are read again from the committed offsets.
        await asyncio.gather(*(self._send_in_order(shard, messages) for shard, messages in by_shard.items()))
        if fresh:
            try:
                await consumer.commit({TopicPartition(t, p): offset for (t, p), offset in fresh.items()})
            except (CommitFailedError, IllegalGenerationError, RebalanceInProgressError) as exc:
                # A rebalance moved these partitions: their next router sends the records again from the
                # last committed offset, and the owners drop what they already counted.
                log.info("raw offsets not committed during a rebalance (%s); sent again by the next router", exc)
                return
            for key, next_offset in fresh.items():
                self._offsets[key] = max(self._offsets.get(key, 0), next_offset)

    async def _send_in_order(self, shard: int, messages: list[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
        """Sends one partition's messages batch after batch, each acknowledged before the next is sent: after a
        failure nothing later reaches the partition, so the origin offsets an owner sees never skip a record
        (the producer would otherwise send the next batch once a failed one gave up: a gap, then a duplicate
        dropped as already counted)."""
        producer = self.producer
        assert producer is not None
        batch = producer.create_batch()
        for value, headers in messages:
            while batch.append(timestamp=None, key=None, value=value, headers=headers) is None:
                if not batch.record_count():
                    raise MessageSizeTooLargeError(f"a repartition record of {len(value)} bytes fits no batch")
                await self._send_batch(batch, shard)
                batch = producer.create_batch()
        if batch.record_count():
            await self._send_batch(batch, shard)

    async def _send_batch(self, batch: Any, shard: int) -> None:
        """Sends a batch and waits for its acknowledgement. The batch is closed first: an open one waits for the
        producer's linger (20 ms) before it leaves, and a router waits for every batch it sends (about 20 ms per
        fetched batch, a router's whole rate at 500 records a batch)."""
        assert self.producer is not None
        batch.close()
        await (await self.producer.send_batch(batch, self.config.repartition_topic, partition=shard))

    async def forward(self, events: list[EventValues]) -> None:
        """Scale-out HTTP ingestion: sends events to the partitions of their services (no origin: a retry of the
        request, with an Idempotency-Key, is what keeps it once). Raises KafkaUnavailable when it cannot."""
        if self.producer is None:
            raise KafkaUnavailable("not connected to Kafka: events cannot reach the replicas owning their services")
        values = repartition.encode_by_shard(events, self.node.shard_of)
        try:
            await asyncio.gather(*(self._send_in_order(shard, [(value, [])]) for shard, value in values.items()))
        except KafkaError as exc:
            raise KafkaUnavailable(f"Kafka did not take the events ({exc})") from exc
