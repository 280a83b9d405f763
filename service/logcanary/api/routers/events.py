"""Ingestion over HTTP: POST /v1/events (JSON array or NDJSON), durable before the answer, idempotent by key."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import cast

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from logcanary.api.auth import Auth
from logcanary.api.errors import json_response, responses
from logcanary.api.runtime import Runtime, RuntimeDep
from logcanary.idempotency import IdempotencyRecord, valid_key
from logcanary.ingestion import http as ingest_http
from logcanary.ingestion.kafka import KafkaUnavailable
from logcanary.store.base import SharedCheckpointStore

router = APIRouter(tags=["ingestion"])


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


IDEMPOTENCY_HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
SAVED_HEADER = "Logcanary-Saved"  # "false": counted and kept in memory, saved by the next successful checkpoint


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body over {limit} bytes; split it into several requests")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body over {limit} bytes; split it into several requests")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/v1/events",
    summary="Send log events (JSON array or NDJSON)",
    status_code=202,
    response_model=IngestResult,
    responses=responses(400, 401, 403, 413),
    dependencies=[Auth],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/LogEvent"}}},
                "application/x-ndjson": {"schema": {"type": "string", "description": "One event per line."}},
            },
        }
    },
)
async def post_events(request: Request, rt: RuntimeDep) -> Response:
    """Accepts a JSON array of events, or one event (or shipper record) per line (NDJSON).

    Shipper shapes (Fluent Bit, Vector, OpenTelemetry OTLP/JSON, rsyslog) are mapped as for Kafka.
    Events are saved durably before the answer. A body with no valid event is a 400.

    With an `Idempotency-Key` header (1-255 printable ASCII characters), a retry of the same body with the same key
    (after a timeout or a restart) counts nothing again and gets the original answer, with
    `Idempotent-Replayed: true`; the same key with another body is a 422.
    """
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not valid_key(key):
        raise HTTPException(400, "Idempotency-Key: 1-255 printable ASCII characters")
    body = await _read_body(request, rt.settings.max_request_bytes)
    if key is None:
        return await _ingest(rt, body, None)
    keys = rt.state.idempotency
    fingerprint = await asyncio.to_thread(lambda: hashlib.sha256(body).hexdigest())
    async with keys.exclusive(key):  # a retry racing the first attempt waits for its answer
        known = keys.lookup(key)
        answer: tuple[int, bytes] | None = None
        if known is None and rt.router is not None:  # scale-out: the first attempt may have reached another replica
            saved = await asyncio.to_thread(cast(SharedCheckpointStore, rt.store).load_idempotency_key, key)
            if saved is not None:
                known, answer = (saved[0], None), (saved[1], saved[2])
        if known is None:
            return await _ingest(rt, body, (key, fingerprint))
        known_fingerprint, unsaved = known
        if known_fingerprint != fingerprint:
            return json_response(
                {"error": "idempotency_key_reused", "detail": "this Idempotency-Key was used with another body"}, 422
            )
        if unsaved is not None:  # counted, not yet durable (a failed checkpoint): save it before answering
            if not await rt.state.checkpoint(force=True):
                return _not_saved()
            answer = (unsaved.status, unsaved.body)
        elif answer is None:  # saved by this replica: its answer is in the store
            answer = await asyncio.to_thread(rt.store.load_idempotency_result, key)
        if answer is None:  # forgotten in between (its TTL passed): a new request
            return await _ingest(rt, body, (key, fingerprint))
        rt.state.metrics.idempotent_replays.inc()
        status_code, content = answer
        return Response(content, status_code, media_type="application/json", headers={REPLAYED_HEADER: "true"})


async def _ingest(rt: Runtime, body: bytes, idempotency: tuple[str, str] | None) -> Response:
    if not await rt.state.ensure_saved():  # the store takes no writes (disk full): apply nothing; a retry counts once
        return _store_unavailable()
    answer: list[tuple[int, bytes]] = []

    def applied(outcome: ingest_http.Outcome) -> None:
        # Runs before any checkpoint can see the events: the key is saved in the same transaction as they are.
        answer.append(_answer(outcome))
        if idempotency is not None:
            key, fingerprint = idempotency
            record = IdempotencyRecord(key, time.time(), fingerprint, *answer[0])
            rt.state.idempotency.remember(record)

    # Shielded: a client that disconnects mid-body must not leave half of it counted without its key.
    forward = rt.router.forward if rt.router is not None else None  # scale-out: to the services' owners
    work = asyncio.ensure_future(ingest_http.ingest(rt.state, body, applied, forward))
    try:
        outcome = await asyncio.shield(work)
    except ingest_http.BadBody as exc:
        raise HTTPException(400, str(exc)) from exc
    except KafkaUnavailable as exc:
        response = json_response({"error": "kafka_unavailable", "detail": f"{exc}; retry later"}, 503)
        response.headers["Retry-After"] = "5"
        return response
    saved = True
    if outcome.accepted or idempotency is not None:
        # Counted events are never answered with an error: a retry without a key would count them twice. If this
        # write fails they stay in memory, dirty, and the retried checkpoint saves them once the store takes writes.
        saved = await rt.state.checkpoint(force=True)
    status_code, content = answer[0]
    response = Response(content, status_code, media_type="application/json")
    if not saved:
        response.headers[SAVED_HEADER] = "false"
    return response


def _store_unavailable() -> Response:
    response = json_response(
        {
            "error": "store_unavailable",
            "detail": "the state cannot be saved (disk full? see the logs): nothing of this request was counted; "
            "retry later",
        },
        503,
    )
    response.headers["Retry-After"] = "5"
    return response


def _not_saved() -> Response:
    return json_response(
        {
            "error": "not_saved",
            "detail": "the events are counted and kept in memory, but the state could not be saved yet (see the "
            "logs); a retry with the same Idempotency-Key counts nothing twice and answers once they are saved",
        },
        503,
    )


def _answer(outcome: ingest_http.Outcome) -> tuple[int, bytes]:
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
