"""Kafka ingestion: a consumer group, batches, dead letters and exactly-once counts.

Offsets are never trusted to Kafka: they are saved with the engine state in one
transaction (service.state), and on every assignment the consumer seeks to the
saved offsets. After a crash the records since the last checkpoint are read
again and counted once, because the state they had changed was not saved
either. Offsets are also committed to Kafka after each checkpoint, for lag
tooling only.

Within a batch nothing awaits between changing the engine and recording the
offsets, so a checkpoint can never see one without the other. Dead letters are
sent (and acknowledged) before either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from service.ingestion.records import decode_record
from service.settings import Settings
from service.state import LiveState

log = logging.getLogger(__name__)

HEADER_REASON = "logcanary-reason"
HEADER_DETAIL = "logcanary-detail"
HEADER_SOURCE = "logcanary-source"


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection and security options shared by the consumer and the producer."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
        "client_id": "logcanary",
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        password = settings.kafka_sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


class _SeekToSavedOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ingestor: KafkaIngestor) -> None:
        self._ingestor = ingestor

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._ingestor.state.checkpoint()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        offsets = self._ingestor.state.offsets
        consumer = self._ingestor.consumer
        assert consumer is not None
        for tp in assigned:
            saved = offsets.get((tp.topic, tp.partition))
            if saved is not None:
                consumer.seek(tp, saved)
            else:
                await consumer.seek_to_beginning(tp)
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned) or "nothing")


class KafkaIngestor:
    """Consumes log records into the live state until stopped."""

    def __init__(self, settings: Settings, state: LiveState) -> None:
        self.settings = settings
        self.state = state
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.reachable = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._checked_at = 0.0

    async def start(self) -> None:
        """Connects in the background: an unreachable cluster makes the service unready, not dead."""
        self._task = asyncio.create_task(self._connect_and_run(), name="kafka-ingest")

    async def _connect(self) -> None:
        options = client_options(self.settings)
        producer = AIOKafkaProducer(**options, linger_ms=20)
        consumer = AIOKafkaConsumer(
            **options,
            group_id=self.settings.kafka_group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.kafka_max_batch_records,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(100, self.settings.kafka_session_timeout_ms // 4),
        )
        try:
            await producer.start()
            await consumer.start()
        except BaseException:
            await producer.stop()
            await consumer.stop()
            raise
        self.producer, self.consumer = producer, consumer
        consumer.subscribe(self.settings.kafka_topics, listener=_SeekToSavedOffsets(self))
        self.reachable = True

    async def _connect_and_run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                await self._connect()
                break
            except KafkaError as exc:
                log.warning(
                    "cannot reach Kafka at %s (%s); retrying in %.1fs",
                    self.settings.kafka_bootstrap_servers,
                    exc,
                    backoff,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 10.0)
        if self.consumer is not None:
            await self._run()

    async def check_reachable(self, timeout: float = 2.0) -> bool:
        """Asks the cluster for metadata (at most every 5 s): the readiness probe's Kafka check."""
        if self.consumer is None:
            return False
        now = time.monotonic()
        if now - self._checked_at < 5.0:
            return self.reachable
        self._checked_at = now
        try:
            await asyncio.wait_for(self.consumer.topics(), timeout)
            self.reachable = True
        except (KafkaError, TimeoutError):
            self.reachable = False
        return self.reachable

    async def stop(self) -> None:
        """Finishes the batch in hand, checkpoints, leaves the group."""
        self._stopping.set()
        if self._task is not None:
            if self.consumer is None:  # still trying to connect: nothing to finish
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.state.checkpoint()
        await self._commit_to_kafka()
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def _run(self) -> None:
        assert self.consumer is not None
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                batch = await self.consumer.getmany(timeout_ms=200, max_records=self.settings.kafka_max_batch_records)
                self.reachable = True
                backoff = 0.5
            except KafkaError as exc:
                self.reachable = False
                log.warning("kafka poll failed (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if batch:
                await self.process(batch)
            if time.time() - self.state.last_checkpoint >= self.settings.checkpoint_interval_seconds:
                await self.state.checkpoint()
                await self._commit_to_kafka()

    async def process(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Decodes a batch, dead-letters bad records, then counts the good ones and moves the offsets."""
        started = time.perf_counter()
        metrics = self.state.metrics
        max_bytes = self.settings.max_record_bytes
        max_message_bytes = self.settings.max_message_bytes
        good = []
        reasons: Counter[str] = Counter()
        dead: list[Any] = []
        for records in batch.values():
            for record in records:
                decoded = decode_record(record.value or b"", max_bytes=max_bytes, max_message_bytes=max_message_bytes)
                good.extend(decoded.events)
                if decoded.rejections:
                    reasons.update(rejection.reason for rejection in decoded.rejections)
                    dead.append((record, decoded.rejections[0]))
        if dead:
            await self._dead_letter(dead)
        # From here to the offsets nothing awaits: the engine and the offsets move together.
        observe = self.state.observe
        for event in good:
            observe(event)
        offsets = self.state.offsets
        for tp, records in batch.items():
            if records:
                offsets[(tp.topic, tp.partition)] = records[-1].offset + 1
        metrics.ingested.labels("kafka").inc(len(good))
        self.state.count_rejections("kafka", reasons)
        metrics.batch_seconds.observe(time.perf_counter() - started)
        assert self.consumer is not None
        for tp in batch:
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - offsets.get((tp.topic, tp.partition), 0))
                metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    async def _dead_letter(self, dead: list[Any]) -> None:
        assert self.producer is not None
        topic = self.settings.kafka_dead_letter_topic
        sends = []
        for record, rejection in dead:
            headers = [
                (HEADER_REASON, rejection.reason.encode()),
                (HEADER_DETAIL, rejection.detail[:1000].encode("utf-8", "replace")),
                (HEADER_SOURCE, f"{record.topic}/{record.partition}/{record.offset}".encode()),
            ]
            sends.append(await self.producer.send(topic, value=record.value, key=record.key, headers=headers))
        await asyncio.gather(*sends)
        for _, rejection in dead:
            self.state.metrics.dead_lettered.labels(rejection.reason).inc()

    async def _commit_to_kafka(self) -> None:
        """Best effort, for lag tools: the truth is in the state store."""
        if self.consumer is None:
            return
        assignment = self.consumer.assignment()
        offsets = {
            tp: self.state.offsets[(tp.topic, tp.partition)]
            for tp in assignment
            if (tp.topic, tp.partition) in self.state.offsets
        }
        if offsets:
            with contextlib.suppress(KafkaError):
                await self.consumer.commit(offsets)
