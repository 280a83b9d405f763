"""Kafka ingestion: a consumer group, batches, dead letters and exactly-once counts.

Offsets are never trusted to Kafka: they are saved with the engine state in one
transaction (logcanary.state), and on every assignment the consumer seeks to the
saved offsets. After a crash the records since the last checkpoint are read
again and counted once, because the state they had changed was not saved
either. Offsets are also committed to Kafka after each checkpoint, for lag
tooling only.

Within a batch nothing awaits between changing the engine and recording the
offsets, so a checkpoint can never see one without the other. Dead letters are
sent (and acknowledged, or given up after a bounded time) before either.

Records below the next expected offset of their partition are dropped on sight,
and records of a partition the rebalance listener has not positioned yet are
never counted: a batch fetched before a seek cannot count twice, and the
offsets never move backwards.

The consume loop is supervised: an unexpected exception is logged with its
traceback, counted (``logcanary_ingest_restarts_total``), and the loop starts
again with a new consumer after a capped exponential backoff, resuming from the
live offsets. ``status()`` tells readiness and liveness how ingestion is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    MessageSizeTooLargeError,
    RebalanceInProgressError,
)
from aiokafka.helpers import create_ssl_context
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge

from logcanary.ingestion import scale_out
from logcanary.ingestion.records import Decoded, decode_record
from logcanary.schemas import LogEvent
from logcanary.settings import Settings
from logcanary.state import LiveState

log = logging.getLogger(__name__)

KAFKA_APPLY_CHUNK = 250  # events counted between two yields to the loop (about 5-10 ms on a slow core)

HEADER_REASON = "logcanary-reason"
HEADER_DETAIL = "logcanary-detail"
HEADER_SOURCE = "logcanary-source"
HEADER_ORIGINAL_BYTES = "logcanary-original-bytes"
# A record of several events, some counted and some rejected, is dead-lettered whole with these counts, so
# that whoever replays it knows how many of its events logcanary already counted.
HEADER_ACCEPTED = "logcanary-accepted-events"
HEADER_REJECTED = "logcanary-rejected-events"

#: Largest batch the producer builds (a router's batches to the repartition topic; above any record).
MAX_BATCH_BYTES = 2 * 1024 * 1024
#: Head kept of a dead letter the producer or the broker refused even once truncated.
SMALL_HEAD_BYTES = 1024
#: Longest dead-letter key kept (a key is only used for partitioning).
MAX_KEY_BYTES = 1024
#: How often the cluster's reachability is checked in the background, and how long one check may take.
PROBE_INTERVAL_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 1.5
#: Longest wait to connect, and to close clients that cannot reach the broker.
CONNECT_TIMEOUT_SECONDS = 30.0
CLOSE_TIMEOUT_SECONDS = 5.0


Role = Literal["direct", "router", "owner"]
"""direct: one process consumes the log topics and counts; in scale-out every replica runs a router (log topics
to the repartition topic, by service) and an owner (counts the repartition partitions Kafka assigns it)."""


class KafkaUnavailable(Exception):
    """Scale-out HTTP ingestion could not hand events to Kafka."""


class _Stopping(Exception):
    """Raised inside a batch when the service stops before the batch's dead letters were sent."""


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
    """Positions every assigned partition at its live offset, without awaiting between assignment and seek."""

    def __init__(self, ingestor: KafkaIngestor, consumer: AIOKafkaConsumer) -> None:
        self._ingestor = ingestor
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._ingestor.state.checkpoint(force=True)  # the next owner starts from what is saved: try now

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        offsets = self._ingestor.state.offsets
        for tp in assigned:
            # A partition never seen starts at offset 0; if its log starts later, the consumer's
            # auto_offset_reset=earliest moves to the real start (records above the expected offset count).
            # seek() is synchronous: no batch can be counted between the assignment and the seek.
            self._consumer.seek(tp, offsets.setdefault((tp.topic, tp.partition), 0))
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned) or "nothing")


class _SeekToCommittedOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    """Router: raw topics are read from the offsets committed to Kafka (after their events reached the
    repartition topic); the owners' origin offsets drop what a restarted router sends twice."""

    def __init__(self, ingestor: KafkaIngestor, consumer: AIOKafkaConsumer) -> None:
        self._ingestor = ingestor
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self._ingestor.offsets.pop((tp.topic, tp.partition), None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            committed = await self._consumer.committed(tp)
            self._ingestor.offsets[(tp.topic, tp.partition)] = committed or 0
            self._consumer.seek(tp, committed or 0)
        log.info("routing %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned) or "nothing")


class _AdoptAssignedShards(ConsumerRebalanceListener):  # type: ignore[misc]
    """Owner: a revocation saves the state first; an assignment claims the partitions in the store (fencing
    their former owner), restores their services and seeks to the offsets saved with them."""

    def __init__(self, ingestor: KafkaIngestor, consumer: AIOKafkaConsumer) -> None:
        self._ingestor = ingestor
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._ingestor.state.checkpoint(force=True)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        state = self._ingestor.state
        await state.adopt(tp.partition for tp in assigned)
        self._ingestor._sought.clear()  # every partition is positioned afresh: no earlier seek is pending
        for tp in assigned:
            self._consumer.seek(tp, state.offsets.setdefault((tp.topic, tp.partition), 0))
        log.info("owning %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned) or "nothing")


class IngestMetrics:
    """The consume loop's health, registered in the service's registry."""

    def __init__(self, ingestor: KafkaIngestor) -> None:
        r = ingestor.state.metrics.registry
        self.restarts = PromCounter(
            "logcanary_ingest_restarts",
            "Restarts of the Kafka consume loop after an unexpected error.",
            registry=r,
        )
        self.last_progress = Gauge(
            "logcanary_ingest_last_progress_timestamp_seconds",
            "Unix time of the last poll that reached the broker and processed its batch.",
            registry=r,
        )
        self.stalled = Gauge(
            "logcanary_ingest_stalled",
            "1 when Kafka ingestion made no progress for LOGCANARY_KAFKA_STALL_SECONDS (or its task died).",
            registry=r,
        )
        self.stalled.set_function(lambda: 1.0 if ingestor.status()["state"] in ("stalled", "dead") else 0.0)
        self.dead_letter_truncated = PromCounter(
            "logcanary_dead_letters_truncated",
            "Records dead-lettered with only their head (original size in the logcanary-original-bytes header).",
            ["reason"],
            registry=r,
        )
        self.dead_letter_failed = PromCounter(
            "logcanary_dead_letters_failed",
            "Bad records that could not be dead-lettered in time: logged and skipped.",
            ["reason"],
            registry=r,
        )
        self.duplicates = PromCounter(
            "logcanary_repartition_duplicates",
            "Records of the repartition topic a restarted router sent again: dropped, never counted.",
            registry=r,
        )
        self.below_offset = PromCounter(
            "logcanary_ingest_records_skipped",
            "Records fetched again below the next expected offset (or before their partition was positioned, or "
            "past a repartition offset not counted yet): dropped, never counted.",
            registry=r,
        )
        self.lost = PromCounter(
            "logcanary_repartition_records_lost",
            "Records of the repartition topic deleted by retention before their owner counted them.",
            registry=r,
        )


class KafkaIngestor:
    """Consumes log records into the live state until stopped, restarting its loop after any failure."""

    def __init__(
        self, settings: Settings, state: LiveState, role: Role = "direct", metrics: IngestMetrics | None = None
    ) -> None:
        self.settings = settings
        self.state = state
        self.role = role
        # The next offset to read per (topic, partition): the state's own (saved with it) when this consumer
        # counts events; the router's are committed to Kafka instead.
        self.offsets: dict[tuple[str, int], int] = {} if role == "router" else state.offsets
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.reachable = False
        self.restarts = 0
        self.phase = "connecting"  # connecting | running | backing_off | stopped
        self.last_error: str | None = None
        self._last_progress = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._sought: dict[tuple[str, int], int] = {}  # repartition partitions sent back to their expected offset
        self.metrics = metrics or IngestMetrics(self)

    async def start(self) -> None:
        """Connects in the background: an unreachable cluster never stops the service."""
        self._task = asyncio.create_task(self._supervise(), name="kafka-ingest")
        self._probe = asyncio.create_task(self._probe_loop(), name="kafka-probe")

    # -- health --------------------------------------------------------------------------------------

    @property
    def dead(self) -> bool:
        """The ingest task ended while the service is not stopping: it will never ingest again."""
        return self._task is not None and self._task.done() and not self._stopping.is_set()

    def status(self) -> dict[str, Any]:
        """``state``: running, connecting, backing_off, stalled (no progress for KAFKA_STALL_SECONDS), dead."""
        age = time.monotonic() - self._last_progress
        if self.dead:
            state = "dead"
        elif self.phase != "stopped" and age > self.settings.kafka_stall_seconds:
            state = "stalled"
        else:
            state = self.phase
        return {
            "state": state,
            "last_progress_age_seconds": round(age, 3),
            "restarts": self.restarts,
            "last_error": self.last_error,
        }

    def _progressed(self) -> None:
        self._last_progress = time.monotonic()
        self.metrics.last_progress.set(time.time())

    async def _probe_loop(self) -> None:
        """Keeps ``reachable`` fresh (metadata request, bounded): readiness reads it without waiting."""
        while not self._stopping.is_set():
            consumer = self.consumer
            if consumer is not None:
                try:
                    await asyncio.wait_for(consumer.topics(), PROBE_TIMEOUT_SECONDS)
                    self.reachable = True
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.reachable = False
            else:
                self.reachable = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), PROBE_INTERVAL_SECONDS)

    async def check_reachable(self) -> bool:
        """The cached result of the background check (never waits on the broker)."""
        return self.reachable

    # -- supervision ---------------------------------------------------------------------------------

    async def _connect(self) -> None:
        options = client_options(self.settings)
        if self.role != "direct":
            await scale_out.ensure_repartition_topic(self.settings, options, self.state)
        producer = AIOKafkaProducer(**options, linger_ms=20, max_batch_size=MAX_BATCH_BYTES)
        group = self.settings.kafka_group_id
        consumer = AIOKafkaConsumer(
            **options,
            group_id=f"{group}.owners" if self.role == "owner" else group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.kafka_max_batch_records,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(100, self.settings.kafka_session_timeout_ms // 4),
        )
        try:
            await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_SECONDS)
            await asyncio.wait_for(consumer.start(), CONNECT_TIMEOUT_SECONDS)
        except BaseException:
            await _bounded(producer.stop(), CLOSE_TIMEOUT_SECONDS)
            await _bounded(consumer.stop(), CLOSE_TIMEOUT_SECONDS)
            raise
        self.producer, self.consumer = producer, consumer
        if self.role == "owner":
            consumer.subscribe([self.settings.repartition_topic], listener=_AdoptAssignedShards(self, consumer))
        elif self.role == "router":
            consumer.subscribe(self.settings.kafka_topics, listener=_SeekToCommittedOffsets(self, consumer))
        else:
            consumer.subscribe(self.settings.kafka_topics, listener=_SeekToSavedOffsets(self, consumer))
        self.reachable = True

    async def _close_clients(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        consumer, producer = self.consumer, self.producer
        self.consumer = self.producer = None
        if consumer is not None:
            await _bounded(consumer.stop(), timeout)
        if producer is not None:
            await _bounded(producer.stop(), timeout)

    async def _supervise(self) -> None:
        """Connects and runs the consume loop; after any failure, closes the clients and starts again."""
        backoff = 0.5
        cap = self.settings.kafka_restart_backoff_max_seconds
        while not self._stopping.is_set():
            self.phase = "connecting"
            connected = False
            started = time.monotonic()
            try:
                await self._connect()
                connected = True
                self.phase = "running"
                await self._run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping.is_set():
                    return
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.reachable = False
                if not connected and isinstance(exc, KafkaError | TimeoutError):
                    log.warning(
                        "cannot reach Kafka at %s (%s); retrying in %.1fs",
                        self.settings.kafka_bootstrap_servers,
                        self.last_error,
                        backoff,
                    )
                else:
                    self.restarts += 1
                    self.metrics.restarts.inc()
                    log.exception("Kafka ingestion failed (restart %d in %.1fs)", self.restarts, backoff)
            await self._close_clients()
            if time.monotonic() - started > 60:  # it ran well for a while: a new failure starts small again
                backoff = 0.5
            self.phase = "backing_off"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, cap)

    async def stop(self) -> None:
        """Finishes the batch in hand, checkpoints, leaves the group: within LOGCANARY_SHUTDOWN_TIMEOUT_SECONDS.

        The state is checkpointed to the store whatever happens; committing offsets to Kafka (for lag tools)
        and leaving the group are skipped when the broker does not answer in time.
        """
        deadline = time.monotonic() + self.settings.shutdown_timeout_seconds
        self._stopping.set()
        for task, share in ((self._task, 0.25), (self._probe, 0.05)):
            if task is None:
                continue
            _, pending = await asyncio.wait({task}, timeout=max(0.1, (deadline - time.monotonic()) * share))
            if pending:
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
        self.phase = "stopped"
        if self.role != "router":
            await self.state.checkpoint(force=True)  # the last chance before exit, whatever the retry backoff
        remaining = deadline - time.monotonic()
        await _bounded(self._commit_to_kafka(), max(0.1, min(5.0, remaining / 3)))
        await self._close_clients(timeout=max(0.1, (deadline - time.monotonic()) / 2))

    # -- the consume loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=self.settings.kafka_max_batch_records)
            except KafkaError as exc:
                self.reachable = False
                log.warning("kafka poll failed (%s); retrying in %.1fs", exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            if batch:
                try:
                    await self.process(batch)
                except _Stopping:
                    return  # the batch was not counted: it is read again after the restart
                self.reachable = True
                self._progressed()
            elif self.reachable:
                self._progressed()
            if (
                self.role != "router"
                and time.time() - self.state.last_checkpoint >= self.settings.checkpoint_interval_seconds
            ):
                await self.state.checkpoint()
                await _bounded(self._commit_to_kafka(), 5.0)
            if self.state.fenced:
                await self._reclaim()

    async def _reclaim(self) -> None:
        """A checkpoint found partitions claimed by another replica while Kafka still assigns them here (a
        member that rejoined, a stale assignment): claim them again, restore what the store holds and seek.
        Two replicas alternate at most until the group settles; each write is fenced, so the store only ever
        holds one owner's consistent state and offsets."""
        consumer = self.consumer
        assert consumer is not None
        fenced, self.state.fenced = self.state.fenced, set()
        assigned = {tp.partition: tp for tp in consumer.assignment()}
        back = fenced & set(assigned)
        if not back:
            return
        log.warning("partitions %s are still assigned here: claiming them again", sorted(back))
        await self.state.adopt(assigned)
        for shard in back:
            tp = assigned[shard]
            self._sought.pop((tp.topic, tp.partition), None)
            consumer.seek(tp, self.state.offsets.setdefault((tp.topic, tp.partition), 0))

    async def process(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Decodes a batch (direct: in a worker thread; a router: on the loop), dead-letters bad records, then counts
        the good ones and moves the offsets (a router sends them on to the repartition topic instead; an owner
        counts what routers sent)."""
        if self.role == "owner":
            async with self.state.engine_lock:
                self._apply_routed(batch)
            return
        started = time.perf_counter()
        metrics = self.state.metrics
        offsets = self.offsets
        fetched: list[tuple[tuple[str, int], Any]] = []  # (partition, record) not counted yet, in order
        skipped = 0
        for tp, records in batch.items():
            key = (tp.topic, tp.partition)
            expected = offsets.get(key)
            if expected is None:  # not positioned yet: the listener's seek fetches these again
                skipped += len(records)
                continue
            for record in records:
                if record.offset < expected:  # fetched again (a seek after a fetch): counted already
                    skipped += 1
                    continue
                fetched.append((key, record))
        values = [record.value or b"" for _, record in fetched]
        # A router decodes on the loop: it must send what it fetched before a rebalance can move the partition.
        decoded = self._decode(values) if self.role == "router" else await asyncio.to_thread(self._decode, values)
        good: list[tuple[Any, list[LogEvent]]] = []  # (record, its events)
        reasons: Counter[str] = Counter()
        dead: list[tuple[Any, Decoded]] = []
        for (_, record), outcome in zip(fetched, decoded, strict=True):
            if outcome.events:
                good.append((record, outcome.events))
            if outcome.rejections:
                reasons.update(rejection.reason for rejection in outcome.rejections)
                dead.append((record, outcome))
        if dead:
            await self._dead_letter(dead)
        if self.role == "router":
            fresh = {key: record.offset + 1 for key, record in fetched}  # partition -> next offset (in order)
            await self._route(good, fresh)
        else:
            skipped += await self._count(fetched, decoded)
        if skipped:
            self.metrics.below_offset.inc(skipped)
        self.state.count_rejections("kafka", reasons)
        metrics.batch_seconds.observe(time.perf_counter() - started)
        self._record_lag(batch)

    def _decode(self, values: list[bytes]) -> list[Decoded]:
        max_bytes, max_message_bytes = self.settings.max_record_bytes, self.settings.max_message_bytes
        return [decode_record(value, max_bytes=max_bytes, max_message_bytes=max_message_bytes) for value in values]

    async def _count(self, fetched: list[tuple[tuple[str, int], Any]], decoded: list[Decoded]) -> int:
        """Counts the records' events, each record with its offset (so a checkpoint in between is a consistent
        cut), a chunk at a time under the engine lock, yielding between chunks; returns the records skipped."""
        state, offsets = self.state, self.offsets
        observe = state.observe
        skipped = pending = 0
        try:
            async with state.writing() as write:
                for (key, record), outcome in zip(fetched, decoded, strict=True):
                    expected = offsets.get(key)
                    if expected is None or record.offset < expected:  # sought elsewhere while this batch decoded
                        skipped += 1
                        continue
                    for event in outcome.events:
                        observe(event)
                    pending += len(outcome.events)
                    offsets[key] = record.offset + 1
                    if pending >= KAFKA_APPLY_CHUNK:
                        state.metrics.ingested.labels("kafka").inc(pending)
                        pending = 0
                        await write.pause()
        finally:
            state.metrics.ingested.labels("kafka").inc(pending)
        return skipped

    def _record_lag(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Consumer lag of the batch's partitions, from this consumer's next offsets (every role: the raw
        topics' lag is the routers', the repartition topic's the owners')."""
        consumer = self.consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        for tp in batch:
            if tp not in assigned:  # a rebalance took it while the batch was processed (highwater() would raise)
                continue
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - self.offsets.get((tp.topic, tp.partition), 0))
                self.state.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    # -- scale-out ----------------------------------------------------------------------------------

    async def _route(self, routed: list[tuple[Any, list[LogEvent]]], fresh: dict[tuple[str, int], int]) -> None:
        """Sends each record's events to the partitions of their services, then commits the raw offsets: at
        least once, and the owners drop what comes twice by its origin offset."""
        producer, consumer = self.producer, self.consumer
        assert producer is not None and consumer is not None
        by_shard: dict[int, list[tuple[bytes, list[tuple[str, bytes]]]]] = {}
        for record, events in routed:
            headers = [(scale_out.HEADER_ORIGIN, scale_out.origin(record.topic, record.partition, record.offset))]
            for shard, value in scale_out.encode_by_shard(events, self.state.shard_of).items():
                by_shard.setdefault(shard, []).append((value, headers))
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
                self.offsets[key] = max(self.offsets.get(key, 0), next_offset)

    async def _send_in_order(self, shard: int, messages: list[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
        """Sends one partition's messages batch after batch, each acknowledged before the next is sent: after a
        failure nothing later reaches the partition, so the origin offsets an owner sees never skip a record
        (the producer would otherwise send the next batch once a failed one gave up: a gap, then a duplicate
        dropped as already counted)."""
        producer = self.producer
        assert producer is not None
        topic = self.settings.repartition_topic
        batch = producer.create_batch()
        for value, headers in messages:
            while batch.append(timestamp=None, key=None, value=value, headers=headers) is None:
                if not batch.record_count():
                    raise MessageSizeTooLargeError(f"a repartition record of {len(value)} bytes fits no batch")
                await (await producer.send_batch(batch, topic, partition=shard))
                batch = producer.create_batch()
        if batch.record_count():
            await (await producer.send_batch(batch, topic, partition=shard))

    async def forward(self, events: list[LogEvent]) -> None:
        """Scale-out HTTP ingestion: sends events to the partitions of their services (no origin: a retry of the
        request, with an Idempotency-Key, is what keeps it once). Raises KafkaUnavailable when it cannot."""
        producer = self.producer
        if producer is None or self.state.owned is None:
            raise KafkaUnavailable("not connected to Kafka: events cannot reach the replicas owning their services")
        values = scale_out.encode_by_shard(events, self.state.shard_of)
        try:
            await asyncio.gather(*(self._send_in_order(shard, [(value, [])]) for shard, value in values.items()))
        except KafkaError as exc:
            raise KafkaUnavailable(f"Kafka did not take the events ({exc})") from exc

    def _apply_routed(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Counts the events routers sent to this replica's partitions, each origin record once (no await)."""
        started = time.perf_counter()
        state = self.state
        offsets, origins, sought = state.offsets, state.origins, self._sought
        observe = state.observe_values
        counted = skipped = duplicates = from_http = 0
        for tp, records in batch.items():
            key = (tp.topic, tp.partition)
            expected = offsets.get(key)
            if expected is None or (state.owned is not None and tp.partition not in state.owned):
                skipped += len(records)
                continue
            for index, record in enumerate(records):
                if record.offset < expected:
                    skipped += 1
                    continue
                if record.offset > expected:
                    if self._fetched_elsewhere(tp, expected, record.offset):
                        skipped += len(records) - index
                        break
                elif sought:
                    sought.pop(key, None)  # back on track where it was sent
                offsets[key] = expected = record.offset + 1
                source = scale_out.origin_of(record.headers)
                if source is not None:
                    okey = (tp.partition, source[0], source[1])
                    if source[2] < origins.get(okey, 0):
                        duplicates += 1
                        continue
                    origins[okey] = source[2] + 1
                values = scale_out.decode(record.value)
                for event in values:
                    observe(*event)
                if source is None:
                    from_http += len(values)
                else:
                    counted += len(values)
        if skipped:
            self.metrics.below_offset.inc(skipped)
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        state.metrics.ingested.labels("kafka").inc(counted)
        if from_http:
            state.metrics.ingested.labels("http").inc(from_http)
        state.metrics.batch_seconds.observe(time.perf_counter() - started)
        self._record_lag(batch)

    def _fetched_elsewhere(self, tp: TopicPartition, expected: int, offset: int) -> bool:
        """True when a repartition partition's records jump past the next expected offset: logcanary's own topic
        has no gaps, so they were fetched from another position (a batch in hand while a restore moved the
        partition back). Nothing is counted and the consumer goes back to ``expected``. The same jump found again
        right after that seek is real (retention deleted records no owner had counted): it is logged, counted in
        ``logcanary_repartition_records_lost_total``, and passed."""
        key = (tp.topic, tp.partition)
        if self._sought.pop(key, None) == expected:
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
        self._sought[key] = expected
        log.info("%s[%d] fetched from %d, %d expected: read again from there", tp.topic, tp.partition, offset, expected)
        return True

    # -- dead letters --------------------------------------------------------------------------------

    def _dead_letter_message(self, record: Any, decoded: Decoded, head: int) -> dict[str, Any]:
        value: bytes = record.value or b""
        rejection = decoded.rejections[0]
        headers = [
            (HEADER_REASON, rejection.reason.encode()),
            (HEADER_DETAIL, rejection.detail[:1000].encode("utf-8", "replace")),
            (HEADER_SOURCE, f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        if decoded.events:  # partly counted
            headers.append((HEADER_ACCEPTED, str(len(decoded.events)).encode()))
            headers.append((HEADER_REJECTED, str(len(decoded.rejections)).encode()))
        if len(value) > head:
            headers.append((HEADER_ORIGINAL_BYTES, str(len(value)).encode()))
            value = value[:head]
        key = record.key[:MAX_KEY_BYTES] if record.key else record.key
        return {"value": value, "key": key, "headers": headers}

    async def _dead_letter(self, dead: list[tuple[Any, Decoded]]) -> None:
        """Sends bad records to the dead-letter topic, pipelined, retrying with backoff for a bounded time.

        A record too large for the producer's request limit goes with its head only; one refused even so
        goes with a 1 KiB head; one that cannot be sent before LOGCANARY_KAFKA_DEAD_LETTER_TIMEOUT_SECONDS is
        counted (``logcanary_dead_letters_failed_total``), logged and skipped. Stopping abandons the batch.
        """
        producer = self.producer
        assert producer is not None
        topic = self.settings.kafka_dead_letter_topic
        deadline = time.monotonic() + self.settings.kafka_dead_letter_timeout_seconds
        heads = {id(record): self.settings.kafka_dead_letter_max_bytes for record, _ in dead}
        pending = list(dead)
        backoff = 0.2
        while pending:
            sends: list[tuple[Any, Decoded, asyncio.Future[Any] | BaseException]] = []
            for record, decoded in pending:
                message = self._dead_letter_message(record, decoded, heads[id(record)])
                try:
                    remaining = max(0.01, deadline - time.monotonic())
                    future = await asyncio.wait_for(producer.send(topic, **message), remaining)
                    sends.append((record, decoded, future))
                except (KafkaError, TimeoutError) as exc:
                    sends.append((record, decoded, exc))
            futures = [outcome for _, _, outcome in sends if isinstance(outcome, asyncio.Future)]
            if futures:
                await asyncio.wait(futures, timeout=max(0.01, deadline - time.monotonic()))
            retry: list[tuple[Any, Decoded]] = []
            transient = False
            for record, decoded, outcome in sends:
                rejection = decoded.rejections[0]
                error: BaseException | None
                if isinstance(outcome, asyncio.Future):
                    error = outcome.exception() if outcome.done() else TimeoutError("no acknowledgement in time")
                else:
                    error = outcome
                if error is None:
                    self.state.metrics.dead_lettered.labels(rejection.reason).inc()
                    if len(record.value or b"") > heads[id(record)]:
                        self.metrics.dead_letter_truncated.labels(rejection.reason).inc()
                    continue
                too_large = isinstance(error, MessageSizeTooLargeError) or "too large" in str(error).lower()
                if too_large and heads[id(record)] > SMALL_HEAD_BYTES:
                    heads[id(record)] = SMALL_HEAD_BYTES
                    retry.append((record, decoded))
                    continue
                if not too_large and time.monotonic() < deadline:
                    retry.append((record, decoded))
                    transient = True
                    continue
                self.metrics.dead_letter_failed.labels(rejection.reason).inc()
                log.error(
                    "could not dead-letter %s/%s/%s (%s, %d bytes): %s; skipped",
                    record.topic,
                    record.partition,
                    record.offset,
                    rejection.reason,
                    len(record.value or b""),
                    error,
                )
            pending = retry
            if pending and self._stopping.is_set():
                raise _Stopping
            if transient:
                self.reachable = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, 5.0)
                if self._stopping.is_set():
                    raise _Stopping

    async def _commit_to_kafka(self) -> None:
        """Best effort, for lag tools: the truth is in the state store."""
        consumer = self.consumer
        if consumer is None:
            return
        if self.role == "router":
            return  # committed after each batch
        assignment = consumer.assignment()
        offsets = {
            tp: self.offsets[(tp.topic, tp.partition)] for tp in assignment if (tp.topic, tp.partition) in self.offsets
        }
        if offsets:
            with contextlib.suppress(KafkaError):
                await consumer.commit(offsets)


async def _bounded(awaitable: Awaitable[Any], timeout: float) -> None:
    """Awaits at most ``timeout`` seconds; a client that cannot reach the broker is abandoned, not waited for."""
    try:
        await asyncio.wait_for(awaitable, timeout)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("gave up waiting for Kafka (%s: %s)", type(exc).__name__, exc)
