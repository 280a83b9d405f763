"""POST /v1/events (JSON array or NDJSON): durable before the answer, idempotent by key."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from logcanary.api.auth import Auth
from logcanary.api.deps import IntakeDep, LimitsDep
from logcanary.api.errors import responses
from logcanary.idempotency import valid_key
from logcanary.ingestion.intake import IngestResult

router = APIRouter(tags=["ingestion"])

IDEMPOTENCY_HEADER = "idempotency-key"


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
async def post_events(request: Request, intake: IntakeDep, limits: LimitsDep) -> Response:
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
    body = await _read_body(request, limits.max_request_bytes)
    reply = await intake.accept(body, key)
    return Response(reply.body, reply.status, media_type="application/json", headers=reply.headers)
