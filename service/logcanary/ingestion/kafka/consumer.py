"""A supervised Kafka consumer: what every role (direct, router, owner) shares.

Offsets of counted events are never trusted to Kafka: they are saved with the engine state in one transaction
(:mod:`logcanary.live`), and on every assignment the consumer seeks to them. After a crash the records since the
last checkpoint are read again and counted once, because the state they had changed was not saved either. They
are also committed to Kafka after each checkpoint, for lag tooling only.

The consume loop is supervised: an unexpected exception is logged with its traceback, counted
(``logcanary_ingest_restarts_total``), and the loop starts again with a new consumer after a capped exponential
backoff, resuming from the live offsets. :meth:`SupervisedConsumer.status` tells readiness and liveness how
ingestion is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from logcanary.common.backoff import Backoff
from logcanary.ingestion.kafka.clients import (
    CLOSE_TIMEOUT_SECONDS,
    CONNECT_TIMEOUT_SECONDS,
    MAX_BATCH_BYTES,
    PROBE_INTERVAL_SECONDS,
    PROBE_TIMEOUT_SECONDS,
    bounded,
    client_options,
)
from logcanary.ingestion.kafka.dead_letters import Stopping
from logcanary.ingestion.kafka.membership import Refused, check
from logcanary.ingestion.kafka.metrics import IngestMetrics
from logcanary.live.cluster import Member
from logcanary.live.state import LiveState
from logcanary.settings import KafkaSettings

log = logging.getLogger(__name__)

Batch = dict[TopicPartition, list[Any]]


class SupervisedConsumer(ABC):
    """Consumes until stopped, restarting its loop after any failure; subclasses say what a batch does."""

    #: Saves the state on the checkpoint cadence and at stop (a router counts nothing: its offsets go to Kafka).
    counts = True

    def __init__(
        self,
        config: KafkaSettings,
        state: LiveState,
        metrics: IngestMetrics,
        checkpoint_interval: float,
        shutdown_timeout: float,
    ) -> None:
        self.config = config
        self.state = state
        self.metrics = metrics
        self.checkpoint_interval = checkpoint_interval
        self.shutdown_timeout = shutdown_timeout
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
        # Who this process is in its consumer group; checked against the group's members once joined.
        self.member: Member | None = None
        self.on_refused: Callable[[str], None] | None = None
        self.refused: str | None = None
        self._options: dict[str, Any] = {}
        self._members_checked = False

    # -- what a role decides --------------------------------------------------------------------------------

    @abstractmethod
    def group_id(self) -> str: ...

    @abstractmethod
    def subscribe(self, consumer: AIOKafkaConsumer) -> None:
        """Subscribes to the role's topics with its rebalance listener."""

    @abstractmethod
    async def process(self, batch: Batch) -> None:
        """Counts (or routes) one fetched batch."""

    @abstractmethod
    def position(self, tp: TopicPartition) -> int | None:
        """The next offset this consumer will process on a partition (None: not positioned)."""

    async def prepare(self, options: dict[str, Any]) -> None:  # noqa: B027 (a hook: most roles need nothing)
        """Before connecting (scale-out: the repartition topic exists and has the partitions the state expects)."""

    async def after_batch(self) -> None:
        """After each poll: a counting role checkpoints when one is due (and commits to Kafka for lag tools)."""
        if self.counts and time.time() - self.state.last_checkpoint >= self.checkpoint_interval:
            await self.state.checkpoint()
            await bounded(self.commit_to_kafka(), 5.0)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connects in the background: an unreachable cluster never stops the service."""
        self._task = asyncio.create_task(self._supervise(), name=f"kafka-{type(self).__name__.lower()}")
        self._probe = asyncio.create_task(self._probe_loop(), name="kafka-probe")

    async def stop(self) -> None:
        """Finishes the batch in hand, checkpoints, leaves the group: within LOGCANARY_SHUTDOWN_TIMEOUT_SECONDS.

        The state is checkpointed to the store whatever happens; committing offsets to Kafka (for lag tools)
        and leaving the group are skipped when the broker does not answer in time.
        """
        deadline = time.monotonic() + self.shutdown_timeout
        self._stopping.set()
        for task, share in ((self._task, 0.25), (self._probe, 0.05)):
            if task is None:
                continue
            _, pending = await asyncio.wait({task}, timeout=max(0.1, (deadline - time.monotonic()) * share))
            if pending:
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
        self.phase = "stopped"
        if self.counts:
            await self.state.checkpoint(force=True)  # the last chance before exit, whatever the retry backoff
        remaining = deadline - time.monotonic()
        await bounded(self.commit_to_kafka(), max(0.1, min(5.0, remaining / 3)))
        await self._close_clients(timeout=max(0.1, (deadline - time.monotonic()) / 2))

    # -- health ------------------------------------------------------------------------------------------------

    @property
    def dead(self) -> bool:
        """The consume task ended while the service is not stopping: it will never ingest again."""
        return self._task is not None and self._task.done() and not self._stopping.is_set()

    def status(self) -> dict[str, Any]:
        """``state``: running, connecting, backing_off, stalled (no progress for KAFKA_STALL_SECONDS), dead."""
        age = time.monotonic() - self._last_progress
        if self.refused is not None:
            state = "refused"
        elif self.dead:
            state = "dead"
        elif self.phase != "stopped" and age > self.config.kafka_stall_seconds:
            state = "stalled"
        else:
            state = self.phase
        return {
            "state": state,
            "last_progress_age_seconds": round(age, 3),
            "restarts": self.restarts,
            "last_error": self.last_error,
        }

    def stalled(self) -> bool:
        return self.status()["state"] in ("stalled", "dead")

    def _progressed(self) -> None:
        self._last_progress = time.monotonic()
        self.metrics.last_progress.set(time.time())

    def unreachable(self) -> None:
        self.reachable = False

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

    # -- supervision -------------------------------------------------------------------------------------------

    async def _connect(self) -> None:
        options = client_options(self.config)
        if self.member is not None:
            options["client_id"] = self.member.client_id
        self._options = options
        await self.prepare(options)
        producer = AIOKafkaProducer(**options, linger_ms=20, max_batch_size=MAX_BATCH_BYTES)
        consumer = AIOKafkaConsumer(
            **options,
            group_id=self.group_id(),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.config.kafka_max_batch_records,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=self.config.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(100, self.config.kafka_session_timeout_ms // 4),
        )
        try:
            await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_SECONDS)
            await asyncio.wait_for(consumer.start(), CONNECT_TIMEOUT_SECONDS)
        except BaseException:
            await bounded(producer.stop(), CLOSE_TIMEOUT_SECONDS)
            await bounded(consumer.stop(), CLOSE_TIMEOUT_SECONDS)
            raise
        self.producer, self.consumer = producer, consumer
        self.subscribe(consumer)
        self.reachable = True

    async def _close_clients(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        consumer, producer = self.consumer, self.producer
        self.consumer = self.producer = None
        if consumer is not None:
            await bounded(consumer.stop(), timeout)
        if producer is not None:
            await bounded(producer.stop(), timeout)

    async def _supervise(self) -> None:
        """Connects and runs the consume loop; after any failure, closes the clients and starts again."""
        backoff = Backoff(0.5, self.config.kafka_restart_backoff_max_seconds)
        while not self._stopping.is_set():
            self.phase = "connecting"
            connected = False
            started = time.monotonic()
            wait = backoff.next()
            try:
                await self._connect()
                connected = True
                self.phase = "running"
                await self._run()
                return
            except asyncio.CancelledError:
                raise
            except Refused as exc:
                self.refused = self.last_error = str(exc)
                log.error("%s", exc)
                if self.on_refused is not None:
                    self.on_refused(str(exc))
                return
            except Exception as exc:
                if self._stopping.is_set():
                    return
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.reachable = False
                if not connected and isinstance(exc, KafkaError | TimeoutError):
                    log.warning(
                        "cannot reach Kafka at %s (%s); retrying in %.1fs",
                        self.config.kafka_bootstrap_servers,
                        self.last_error,
                        wait,
                    )
                else:
                    self.restarts += 1
                    self.metrics.restarts.inc()
                    log.exception("Kafka ingestion failed (restart %d in %.1fs)", self.restarts, wait)
            await self._close_clients()
            if time.monotonic() - started > 60:  # it ran well for a while: a new failure starts small again
                backoff.reset()
                wait = backoff.next()
            self.phase = "backing_off"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)

    async def _run(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        backoff = Backoff(0.5, 10.0)
        while not self._stopping.is_set():
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=self.config.kafka_max_batch_records)
            except KafkaError as exc:
                self.reachable = False
                wait = backoff.next()
                log.warning("kafka poll failed (%s); retrying in %.1fs", exc, wait)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wait)
                continue
            backoff.reset()
            if not self._members_checked and self.member is not None and consumer.assignment():
                await check(self._options, self.group_id(), self.member)  # before counting anything
                self._members_checked = True
            if batch:
                try:
                    await self.process(batch)
                except Stopping:
                    return  # the batch was not counted: it is read again after the restart
                self.reachable = True
                self._progressed()
            elif self.reachable:
                self._progressed()
            await self.after_batch()

    # -- offsets -----------------------------------------------------------------------------------------------

    def record_lag(self, batch: Batch) -> None:
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
                lag = max(0, highwater - (self.position(tp) or 0))
                self.state.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    async def commit_to_kafka(self) -> None:
        """Best effort, for lag tools: the truth is in the state store."""
        consumer = self.consumer
        if consumer is None or not self.counts:
            return
        offsets = {tp: offset for tp in consumer.assignment() if (offset := self.position(tp)) is not None}
        if offsets:
            with contextlib.suppress(KafkaError):
                await consumer.commit(offsets)
