"""``POST /v1/events`` bodies (JSON array or NDJSON), decoded and applied in bounded chunks and time slices.

A 16 MiB body holds some 300,000 events. They are decoded a chunk of records at a time (so the decoded events of
the whole body never sit in memory at once): NDJSON lines on the loop, in slices of ``live.engine.SLICE_SECONDS``
(a worker thread would not run beside the loop, the GIL, and each hand-off costs two thread wake-ups), unless a
line of the chunk is longer than ``records.LOOP_RECORD_BYTES``; JSON arrays (parsed whole, in one call) and such
chunks in a worker thread. Each chunk is applied to the engine in slices too; the loop serves other requests
between slices. The engine keeps a single writer (the loop thread). The whole body is applied while the state's
checkpoint lock is held: no checkpoint can save half a request, so a request is durable whole or not at all, which
is what makes its idempotency key exact.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from logcanary.ingestion.records import LOOP_RECORD_BYTES, DecodedBatch, decode_batch, decode_objects
from logcanary.ingestion.sink import EventSink, EventValues
from logcanary.live.engine import SLICE_SECONDS

if TYPE_CHECKING:
    from logcanary.live.state import LiveState
    from logcanary.settings import LimitSettings

MAX_ERRORS = 100  # rejections and partial records listed in an answer


class BadBody(Exception):
    """The body as a whole cannot be read (a JSON array that does not parse)."""


@dataclass(slots=True)
class RecordError:
    index: int
    reason: str
    detail: str


@dataclass(slots=True)
class PartialRecord:
    index: int
    accepted: int
    rejected: int


@dataclass(slots=True)
class Outcome:
    """What a body turned into: events counted, rejections, per record."""

    records: int = 0
    accepted: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    errors: list[RecordError] = field(default_factory=list)
    partial: list[PartialRecord] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return sum(self.reasons.values())

    def tally(self, first: int, batch: DecodedBatch) -> None:
        """Adds a chunk's accepted events and rejections (the first MAX_ERRORS of each kind named); ``first`` is
        the index of its first record in the body."""
        self.records += len(batch.ends)
        self.accepted += len(batch.events)
        for offset, record in batch.rejected.items():
            index = first + offset
            for rejection in record.rejections:
                self.reasons[rejection.reason] += 1
                if len(self.errors) < MAX_ERRORS:
                    self.errors.append(RecordError(index, rejection.reason, rejection.detail))
            if record.events and len(self.partial) < MAX_ERRORS:
                self.partial.append(PartialRecord(index, len(record.events), len(record.rejections)))


class _Source:
    """The body's records, decoded a chunk at a time, each chunk within a time slice.

    NDJSON lines are cut from the body as they are needed, never all at once: one ``splitlines`` of 16 MiB
    is a single C call that holds the GIL for tens of milliseconds, and the loop would wait for it. A JSON
    array can only be parsed whole (the same holds for ``orjson.loads``): prefer NDJSON for large bodies.
    """

    def __init__(self, body: bytes, max_record_bytes: int, max_message_bytes: int) -> None:
        self.body = body
        self.max_record_bytes = max_record_bytes
        self.max_message_bytes = max_message_bytes
        self.items: list[object] = []
        self.lines: list[bytes] = []  # cut from the body, not decoded yet
        self.position = 0  # of the next NDJSON line in the body
        self.index = 0  # of the next record
        self.array = body.lstrip()[:1] == b"["
        if self.array:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise BadBody(f"body is not valid JSON: {exc}") from exc
            self.items = parsed if isinstance(parsed, list) else [parsed]

    def on_loop(self, count: int) -> bool:
        """Cuts the next ``count`` NDJSON lines; whether they may be decoded on the loop (none is long)."""
        if self.array:
            return False
        body, end, lines = self.body, len(self.body), self.lines
        while len(lines) < count and self.position < end:
            stop = body.find(b"\n", self.position)
            stop = end if stop < 0 else stop
            line = body[self.position : stop]
            self.position = stop + 1
            if line.strip():
                lines.append(line)
        return not lines or max(map(len, lines)) <= LOOP_RECORD_BYTES

    def take(self) -> tuple[int, list[bytes]]:
        """The lines :meth:`on_loop` cut, with the index of the first, for the caller to decode."""
        first, lines = self.index, self.lines
        self.lines = []
        self.index += len(lines)
        return first, lines

    def decode(self, count: int) -> tuple[int, DecodedBatch]:
        """The next ``count`` records (fewer at the end, none once the body is read), with the index of the first."""
        if not self.array:
            self.on_loop(count)
            first, lines = self.take()
            return first, decode_batch(lines, self.max_record_bytes, max_message_bytes=self.max_message_bytes)
        first = self.index
        chunk = self.items[first : first + count]
        self.items[first : first + len(chunk)] = [None] * len(chunk)  # let parsed values go
        self.index += len(chunk)
        return first, decode_objects(chunk, max_message_bytes=self.max_message_bytes)


async def ingest(
    state: LiveState,
    limits: LimitSettings,
    body: bytes,
    applied: Callable[[Outcome], None] | None = None,
    forward: Callable[[list[EventValues]], Awaitable[None]] | None = None,
) -> Outcome:
    """Decodes and counts a body (JSON array or NDJSON). Raises :class:`BadBody` before counting anything.

    ``applied`` runs once every event is applied, before any checkpoint can run (it records the idempotency key).
    Run this shielded from cancellation: once the first chunk is applied, the rest must follow. With ``forward``
    (scale-out) each chunk's events are sent to the replicas owning their services instead of counted here.
    """
    chunk, max_message = limits.ingest_chunk_events, limits.max_message_bytes
    source = await asyncio.to_thread(_Source, body, limits.max_record_bytes, limits.max_message_bytes)
    outcome = Outcome()
    sink: EventSink = state.live
    async with state.checkpoint_lock:  # no checkpoint saves half a request
        while True:
            if source.on_loop(chunk):
                first, lines = source.take()
                decoded = DecodedBatch()
                while len(decoded.ends) < len(lines):  # the whole chunk, a slice at a time: it is applied whole
                    until = time.perf_counter() + SLICE_SECONDS
                    decode_batch(
                        lines, limits.max_record_bytes, max_message_bytes=max_message, into=decoded, until=until
                    )
                    await asyncio.sleep(0)  # a slice of decoding, then one of counting: the loop serves others between
            else:
                first, decoded = await asyncio.to_thread(source.decode, chunk)
            if not decoded.ends:
                break
            events = decoded.events
            if forward is not None:  # nothing changes the engine here: no wait for a verdict thread
                if events:
                    await forward(events)  # counted (as "http") by their owners
            elif events:
                async with sink.writing() as write:  # no verdict thread reads the engine while a chunk changes it
                    start = 0
                    while (start := sink.observe_many(events, start, len(events), write.due)) < len(events):
                        await write.pause()  # within a record too: one with very many events (OTLP) yields
            outcome.tally(first, decoded)
            await asyncio.sleep(0)
        if forward is None:
            state.metrics.ingested.labels("http").inc(outcome.accepted)
        state.count_rejections("http", outcome.reasons)
        if applied is not None:
            applied(outcome)
    return outcome
