"""Single node: the log topics' events are counted here, each record with its offset, saved with the engine."""

from __future__ import annotations

import bisect
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from logcanary.ingestion.kafka.metrics import IngestMetrics
from logcanary.ingestion.kafka.raw import Fetched, RawLogConsumer
from logcanary.ingestion.records import DecodedBatch
from logcanary.ingestion.sink import EventSink
from logcanary.live.single_node import SingleNode
from logcanary.settings import KafkaSettings, LimitSettings

log = logging.getLogger(__name__)


class _SeekToSavedOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    """Positions every assigned partition at its live offset, without awaiting between assignment and seek."""

    def __init__(self, direct: DirectConsumer, consumer: AIOKafkaConsumer) -> None:
        self._direct = direct
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._direct.state.checkpoint(force=True)  # the next owner starts from what is saved: try now

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        offsets = self._direct.offsets
        for tp in assigned:
            # A partition never seen starts at offset 0; if its log starts later, the consumer's
            # auto_offset_reset=earliest moves to the real start (records above the expected offset count).
            # seek() is synchronous: no batch can be counted between the assignment and the seek.
            self._consumer.seek(tp, offsets.setdefault((tp.topic, tp.partition), 0))
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned) or "nothing")


class DirectConsumer(RawLogConsumer):
    """Counts the log topics into a single node's engine.

    Within a chunk nothing awaits between changing the engine and recording the offsets, so a checkpoint can never
    see one without the other. Dead letters are sent (and acknowledged, or given up after a bounded time) before
    either.
    """

    def __init__(
        self,
        config: KafkaSettings,
        limits: LimitSettings,
        state: SingleNode,
        metrics: IngestMetrics,
        checkpoint_interval: float,
        shutdown_timeout: float,
    ) -> None:
        super().__init__(config, limits, state, metrics, checkpoint_interval, shutdown_timeout)
        self.node = state

    @property
    def offsets(self) -> dict[tuple[str, int], int]:
        return self.node.offsets  # saved with the engine

    def subscribe(self, consumer: AIOKafkaConsumer) -> None:
        consumer.subscribe(self.config.kafka_topics, listener=_SeekToSavedOffsets(self, consumer))

    async def handle(self, fetched: Fetched, decoded: DecodedBatch) -> int:
        """Counts the records' events, a partition's run of records in one go, moving its offset past every
        record counted (so a checkpoint in between is a consistent cut), in slices of the engine lock, yielding
        between them; returns the records skipped. A slice ends between two records (one that is half counted
        when the slice is used up is finished first). Nothing awaits within a slice, so a partition's expected
        offset is read again only after a pause (a rebalance may have sought it elsewhere meanwhile, or while the
        batch decoded); a run's offsets only grow."""
        sink: EventSink = self.state.live
        offsets = self.offsets
        events, ends = decoded.events, decoded.ends
        ingested = self.state.metrics.ingested.labels("kafka")
        skipped = pending = index = 0
        total = len(fetched)
        try:
            async with sink.writing() as write:
                while index < total:
                    key, record = fetched[index]
                    expected = offsets.get(key)
                    if expected is None or record.offset < expected:  # sought elsewhere meanwhile
                        skipped += 1
                        index += 1
                        continue
                    run = index + 1
                    while run < total and fetched[run][0] is key:
                        run += 1
                    start = ends[index - 1] if index else 0
                    stop = sink.observe_many(events, start, ends[run - 1], write.due)
                    done = bisect.bisect_right(ends, stop, index, run)  # records [index, done) are counted whole
                    if done < run and stop > (ends[done - 1] if done else 0):  # one half counted: finish it
                        stop = sink.observe_many(events, stop, ends[done])
                        done += 1
                    pending += stop - start
                    offsets[key] = fetched[done - 1][1].offset + 1
                    index = done
                    if write.due():  # between two records: the offsets hold what was counted
                        ingested.inc(pending)
                        pending = 0
                        await write.pause()
        finally:
            ingested.inc(pending)
        return skipped
