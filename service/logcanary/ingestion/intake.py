"""``POST /v1/events`` as a use case: a body counted once, durably, whatever retries and kills happen.

With an ``Idempotency-Key``, the key, the body's SHA-256 and the answer are saved in the same store transaction as
the checkpoint holding the events they counted, so after a timeout or a kill either both are saved (a retry gets
the original answer) or neither is (a retry counts them, once). A retry racing the first attempt waits for its
answer; the same key with another body is refused. Counted events are never answered with an error: a retry
without a key would count them twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from pydantic import BaseModel, Field

from logcanary.idempotency import IdempotencyRecord
from logcanary.ingestion import bodies
from logcanary.ingestion.kafka.clients import KafkaUnavailable
from logcanary.ingestion.kafka.router import Router
from logcanary.ingestion.sink import EventValues
from logcanary.live.scale_out import ScaleOut
from logcanary.live.state import LiveState
from logcanary.settings import LimitSettings
from logcanary.store.base import SharedStore


class RejectedRecord(BaseModel):
    index: int = Field(description="0-based position of the record (array element or NDJSON line).")
    reason: str
    detail: str


class PartialRecord(BaseModel):
    index: int = Field(description="0-based position of a record (an OTLP batch, ...) only partly counted.")
    accepted: int = Field(description="Its events that were counted (never rejected, never dead-lettered).")
    rejected: int = Field(description="Its events or parts that were rejected (listed in errors).")


class IngestResult(BaseModel):
    accepted: int = Field(description="Events counted (and durably saved before this response).")
    rejected: int
    errors: list[RejectedRecord] = Field(description="The first 100 rejections.")
    partial: list[PartialRecord] = Field(
        default_factory=list, description="The first 100 records of which some events were counted and some rejected."
    )


@dataclass(slots=True)
class Reply:
    """The answer to a body: status, JSON body, extra headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


REPLAYED_HEADER = "Idempotent-Replayed"
CLAIM_WAIT_SECONDS = 10.0  # a retry waits this long for the answer of the same request running elsewhere
CLAIM_POLL_SECONDS = 0.1
CLAIM_STALE_SECONDS = 120.0  # a claim no replica answered for this long is its dead replica's: taken over
SAVED_HEADER = "Logcanary-Saved"  # "false": counted and kept in memory, saved by the next successful checkpoint
RETRY_AFTER = {"Retry-After": "5"}


def _error(status: int, error: str, detail: object, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, orjson.dumps({"error": error, "detail": detail}), dict(headers or {}))


STORE_UNAVAILABLE = (
    "the state cannot be saved (disk full? see the logs): nothing of this request was counted; retry later"
)
NOT_SAVED = (
    "the events are counted and kept in memory, but the state could not be saved yet (see the logs); a retry with "
    "the same Idempotency-Key counts nothing twice and answers once they are saved"
)


def _answer(outcome: bodies.Outcome) -> tuple[int, bytes]:
    result = IngestResult(
        accepted=outcome.accepted,
        rejected=outcome.rejected,
        errors=[RejectedRecord(index=e.index, reason=e.reason, detail=e.detail) for e in outcome.errors],
        partial=[PartialRecord(index=p.index, accepted=p.accepted, rejected=p.rejected) for p in outcome.partial],
    )
    data = result.model_dump(exclude=None if result.partial else {"partial"})  # listed when there are some
    if not outcome.accepted and (outcome.rejected or not outcome.records):
        return 400, orjson.dumps({"error": "no_valid_event", "detail": data})
    return 202, orjson.dumps(data)


class Intake:
    """Counts bodies into this process's engine (single node)."""

    #: Where events go instead of this engine (scale-out: the replicas owning their services).
    forward: Callable[[list[EventValues]], Awaitable[None]] | None = None

    def __init__(self, state: LiveState, limits: LimitSettings) -> None:
        self.state = state
        self.limits = limits

    async def accept(self, body: bytes, key: str | None) -> Reply:
        """Counts a body once; ``key`` is its Idempotency-Key (already checked valid)."""
        if key is None:
            return await self._ingest(body, None)
        keys = self.state.idempotency
        fingerprint = await asyncio.to_thread(lambda: hashlib.sha256(body).hexdigest())
        async with keys.exclusive(key):  # a retry racing the first attempt waits for its answer
            known = keys.lookup(key)
            answer: tuple[int, bytes] | None = None
            if known is None:
                return await self._ingest(body, (key, fingerprint))
            known_fingerprint, unsaved = known
            if known_fingerprint != fingerprint:
                return _error(422, "idempotency_key_reused", "this Idempotency-Key was used with another body")
            if unsaved is not None:  # counted, not yet durable (a failed checkpoint): save it before answering
                if not await self.state.checkpoint(force=True):
                    return _error(503, "not_saved", NOT_SAVED)
                answer = (unsaved.status, unsaved.body)
            elif answer is None:  # saved by this replica: its answer is in the store
                answer = await asyncio.to_thread(self.state.store.load_idempotency_result, key)
            if answer is None:  # forgotten in between (its TTL passed): a new request
                return await self._ingest(body, (key, fingerprint))
            self.state.metrics.idempotent_replays.inc()
            status, content = answer
            return Reply(status, content, {REPLAYED_HEADER: "true"})

    async def _ingest(self, body: bytes, idempotency: tuple[str, str] | None) -> Reply:
        state = self.state
        if not await state.ensure_saved():  # the store takes no writes (disk full): apply nothing; a retry counts once
            return _error(503, "store_unavailable", STORE_UNAVAILABLE, RETRY_AFTER)
        answer: list[tuple[int, bytes]] = []

        def applied(outcome: bodies.Outcome) -> None:
            # Runs before any checkpoint can see the events: the key is saved in the same transaction as they are.
            answer.append(_answer(outcome))
            if idempotency is not None:
                key, fingerprint = idempotency
                state.idempotency.remember(IdempotencyRecord(key, time.time(), fingerprint, *answer[0]))

        # Shielded: a client that disconnects mid-body must not leave half of it counted without its key.
        work = asyncio.ensure_future(bodies.ingest(state, self.limits, body, applied, self.forward))
        try:
            outcome = await asyncio.shield(work)
        except KafkaUnavailable as exc:
            return _error(503, "kafka_unavailable", f"{exc}; retry later", RETRY_AFTER)
        saved = True
        if outcome.accepted or idempotency is not None:
            # If this write fails the events stay in memory, dirty, and the retried checkpoint saves them once the
            # store takes writes.
            saved = await state.checkpoint(force=True)
        status, content = answer[0]
        return Reply(status, content, {} if saved else {SAVED_HEADER: "false"})


class ForwardingIntake(Intake):
    """Scale-out: events go to the replicas owning their services (through the repartition topic), and a key is
    claimed in the shared store before its events are sent, so the same request on two replicas at once (a load
    balancer's retry of a slow answer) is counted once: the second waits for the first's answer and replays it,
    or, while the first still runs, is told to retry (409 with Retry-After)."""

    def __init__(self, state: ScaleOut, limits: LimitSettings, router: Router, store: SharedStore) -> None:
        super().__init__(state, limits)
        self.forward = router.forward
        self.store = store

    async def accept(self, body: bytes, key: str | None) -> Reply:
        if key is None:
            return await self._ingest(body, None)
        fingerprint = await asyncio.to_thread(lambda: hashlib.sha256(body).hexdigest())
        async with self.state.idempotency.exclusive(key):  # this replica's own retries queue here
            deadline = time.monotonic() + CLAIM_WAIT_SECONDS
            while True:
                now = time.time()
                held = await asyncio.to_thread(
                    self.store.claim_idempotency_key, key, fingerprint, now, now - CLAIM_STALE_SECONDS
                )
                if held is None:
                    break
                known_fingerprint, status, content = held
                if known_fingerprint != fingerprint:
                    return _error(422, "idempotency_key_reused", "this Idempotency-Key was used with another body")
                if status:  # answered, here or on another replica
                    self.state.metrics.idempotent_replays.inc()
                    return Reply(status, content, {REPLAYED_HEADER: "true"})
                if time.monotonic() >= deadline:
                    return _error(
                        409,
                        "idempotency_key_in_flight",
                        "a request with this Idempotency-Key is being counted now (on this replica or another): "
                        "retry in a second for its answer",
                        {"Retry-After": "1"},
                    )
                await asyncio.sleep(CLAIM_POLL_SECONDS)
            try:
                reply = await self._ingest(body, (key, fingerprint))
            except BaseException:
                await asyncio.to_thread(self.store.release_idempotency_key, key)
                raise
            if reply.status in (202, 400):  # counted (or nothing to count): the answer every retry gets
                await asyncio.to_thread(self.store.answer_idempotency_key, key, reply.status, reply.body)
            else:  # Kafka refused the events: nothing was counted, a retry may claim the key again
                await asyncio.to_thread(self.store.release_idempotency_key, key)
            return reply
