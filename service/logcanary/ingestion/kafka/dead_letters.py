"""Bad records to the dead-letter topic, with why: sent (and acknowledged, or given up after a bounded time) before
the batch's offsets move, so a bad record is never lost silently and never blocks the records behind it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from prometheus_client import Counter

from logcanary.common.backoff import Backoff
from logcanary.ingestion.kafka.metrics import IngestMetrics
from logcanary.ingestion.records import Decoded
from logcanary.settings import KafkaSettings

log = logging.getLogger(__name__)

HEADER_REASON = "logcanary-reason"
HEADER_DETAIL = "logcanary-detail"
HEADER_SOURCE = "logcanary-source"
HEADER_ORIGINAL_BYTES = "logcanary-original-bytes"
# A record of several events, some counted and some rejected, is dead-lettered whole with these counts, so
# that whoever replays it knows how many of its events logcanary already counted.
HEADER_ACCEPTED = "logcanary-accepted-events"
HEADER_REJECTED = "logcanary-rejected-events"

#: Head kept of a dead letter the producer or the broker refused even once truncated.
SMALL_HEAD_BYTES = 1024
#: Longest dead-letter key kept (a key is only used for partitioning).
MAX_KEY_BYTES = 1024


class Stopping(Exception):
    """Raised inside a batch when the service stops before the batch's dead letters were sent."""


def dead_letter_message(record: Any, decoded: Decoded, head: int) -> dict[str, Any]:
    """The dead letter of a record: its value (or ``head`` bytes of it), key and the headers saying why."""
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


class DeadLetters:
    def __init__(
        self,
        config: KafkaSettings,
        metrics: IngestMetrics,
        dead_lettered: Counter,
        stopping: asyncio.Event,
        unreachable: Callable[[], None],
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.dead_lettered = dead_lettered  # logcanary_events_dead_lettered_total, by reason
        self.stopping = stopping
        self.unreachable = unreachable  # a transient failure: the broker is not answering

    async def send(self, producer: AIOKafkaProducer, dead: list[tuple[Any, Decoded]]) -> None:
        """Sends bad records, pipelined, retrying with backoff for a bounded time.

        A record too large for the producer's request limit goes with its head only; one refused even so
        goes with a 1 KiB head; one that cannot be sent before LOGCANARY_KAFKA_DEAD_LETTER_TIMEOUT_SECONDS is
        counted (``logcanary_dead_letters_failed_total``), logged and skipped. Stopping abandons the batch
        (:class:`Stopping`).
        """
        topic = self.config.kafka_dead_letter_topic
        deadline = time.monotonic() + self.config.kafka_dead_letter_timeout_seconds
        heads = {id(record): self.config.kafka_dead_letter_max_bytes for record, _ in dead}
        pending = list(dead)
        backoff = Backoff(0.2, 5.0)
        while pending:
            sends: list[tuple[Any, Decoded, asyncio.Future[Any] | BaseException]] = []
            for record, decoded in pending:
                message = dead_letter_message(record, decoded, heads[id(record)])
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
                    self.dead_lettered.labels(rejection.reason).inc()
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
            if pending and self.stopping.is_set():
                raise Stopping
            if transient:
                self.unreachable()
                wait = min(backoff.next(), max(0.0, deadline - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), wait)
                if self.stopping.is_set():
                    raise Stopping
