"""The log topics as shippers write them: records fetched, decoded, bad ones dead-lettered — what the direct
consumer and the scale-out router share before one counts the events and the other routes them.

Records below the next expected offset of their partition are dropped on sight, and records of a partition the
rebalance listener has not positioned yet are never handled: a batch fetched before a seek cannot count twice, and
the offsets never move backwards.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections import Counter
from typing import Any

from aiokafka import TopicPartition

from logcanary.ingestion.kafka.consumer import Batch, SupervisedConsumer
from logcanary.ingestion.kafka.dead_letters import DeadLetters
from logcanary.ingestion.kafka.metrics import IngestMetrics
from logcanary.ingestion.records import LOOP_RECORD_BYTES, Decoded, DecodedBatch, decode_batch
from logcanary.live.engine import SLICE_SECONDS
from logcanary.live.state import LiveState
from logcanary.settings import KafkaSettings, LimitSettings

Fetched = list[tuple[tuple[str, int], Any]]  # (partition, record) not handled yet, in order


class RawLogConsumer(SupervisedConsumer):
    """Consumes the log topics: fetched records decoded, bad ones dead-lettered, then :meth:`handle`."""

    #: Decoding in slices lets the loop serve others between them; a router decodes a batch whole (see Router).
    decode_in_slices = True

    def __init__(
        self,
        config: KafkaSettings,
        limits: LimitSettings,
        state: LiveState,
        metrics: IngestMetrics,
        checkpoint_interval: float,
        shutdown_timeout: float,
    ) -> None:
        super().__init__(config, state, metrics, checkpoint_interval, shutdown_timeout)
        self.limits = limits
        self.dead_letters = DeadLetters(
            config, metrics, state.metrics.dead_lettered, self._stopping, unreachable=self.unreachable
        )

    @property
    @abstractmethod
    def offsets(self) -> dict[tuple[str, int], int]:
        """The next offset to handle per (topic, partition)."""

    @abstractmethod
    async def handle(self, fetched: Fetched, decoded: DecodedBatch) -> int:
        """Counts or routes what was fetched (``decoded``: record by record, as :func:`decode_batch` says); returns
        the records skipped."""

    def position(self, tp: TopicPartition) -> int | None:
        return self.offsets.get((tp.topic, tp.partition))

    def group_id(self) -> str:
        return self.config.kafka_group_id

    async def process(self, batch: Batch) -> None:
        started = time.perf_counter()
        offsets = self.offsets
        fetched: Fetched = []
        skipped = 0
        for tp, records in batch.items():
            key = (tp.topic, tp.partition)
            expected = offsets.get(key)
            if expected is None:  # not positioned yet: the listener's seek fetches these again
                skipped += len(records)
                continue
            for record in records:
                if record.offset < expected:  # fetched again (a seek after a fetch): handled already
                    skipped += 1
                    continue
                fetched.append((key, record))
        decoded = await self._decode([record.value or b"" for _, record in fetched])
        reasons: Counter[str] = Counter()
        dead: list[tuple[Any, Decoded]] = []
        for index, outcome in decoded.rejected.items():
            reasons.update(rejection.reason for rejection in outcome.rejections)
            dead.append((fetched[index][1], outcome))
        if dead:
            assert self.producer is not None
            await self.dead_letters.send(self.producer, dead)
        skipped += await self.handle(fetched, decoded)
        if skipped:
            self.metrics.below_offset.inc(skipped)
        if reasons:
            self.state.count_rejections("kafka", reasons)
        self.state.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.record_lag(batch)

    async def _decode(self, values: list[bytes]) -> DecodedBatch:
        """Decodes on the loop, in slices of SLICE_SECONDS: a worker thread would not run beside the loop (the
        GIL), and handing each batch over and back costs two thread wake-ups, which a busy machine delays. A
        batch holding a record longer than LOOP_RECORD_BYTES is decoded in a worker thread."""
        limit, message_limit = self.limits.max_record_bytes, self.limits.max_message_bytes
        if not self.decode_in_slices:
            return decode_batch(values, limit, max_message_bytes=message_limit)
        if values and max(map(len, values)) > LOOP_RECORD_BYTES:
            return await asyncio.to_thread(decode_batch, values, limit, max_message_bytes=message_limit)
        decoded = DecodedBatch()
        while len(decoded.ends) < len(values):
            await asyncio.sleep(0)  # each slice of decoding between two of whatever else the loop runs (counting)
            until = time.perf_counter() + SLICE_SECONDS
            decode_batch(values, limit, max_message_bytes=message_limit, into=decoded, until=until)
        await asyncio.sleep(0)
        return decoded
