"""Every error is JSON ``{"error": ..., "detail": ...}`` with a fitting status; never a 500 for bad input.

Domain errors are mapped to HTTP here, once: routers raise or let through what the use cases raise.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from logcanary.ingestion.bodies import BadBody
from logcanary.store.base import StoreUnavailable
from logcanary.verification.errors import (
    AnalysisFinished,
    BadQuestion,
    BadSource,
    NotFound,
    RuleConflict,
    TooManyAnalyses,
    UnknownEnvironment,
)

log = logging.getLogger(__name__)


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: str = Field(description="Machine-readable kind, e.g. not_found, unauthorized, invalid_request.")
    detail: Any = Field(None, description="What exactly was wrong.")


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the error responses an endpoint can give."""
    texts = {
        400: "Bad input",
        401: "Missing bearer token",
        403: "Wrong bearer token",
        404: "Not found",
        409: "Conflict with the resource's state",
        412: "The verdict is fail (only when fail_status asks for it)",
        413: "Body too large",
        422: "Invalid request",
        429: "Too many running analyses",
    }
    return {status: {"model": ErrorResponse, "description": texts[status]} for status in statuses}


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON response serialised with orjson (the data is already plain JSON types)."""
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error(status: int, error: str, detail: Any = None) -> Response:
    return json_response({"error": error, "detail": detail}, status)


# Domain error -> (status, error kind). The first that matches (by isinstance) answers.
DOMAIN_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (NotFound, 404, "not_found"),
    (BadSource, 422, "invalid_source"),
    (UnknownEnvironment, 422, "invalid_environment"),
    (BadQuestion, 400, "bad_request"),
    (BadBody, 400, "bad_request"),
    (AnalysisFinished, 409, "conflict"),
    (RuleConflict, 409, "conflicting_rule"),
    (TooManyAnalyses, 429, "too_many_analyses"),
)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        name = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            409: "conflict",
            413: "too_large",
            429: "too_many_analyses",
        }.get(exc.status_code, "bad_request" if exc.status_code < 500 else "error")
        response = error(exc.status_code, name, exc.detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"loc": list(item.get("loc", ())), "msg": item.get("msg", ""), "type": item.get("type", "")}
            for item in exc.errors()
        ]
        return error(422, "invalid_request", problems)

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(_: Request, exc: StoreUnavailable) -> Response:
        response = error(503, "store_unavailable", str(exc))
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(sqlite3.OperationalError)
    async def sqlite_unavailable(_: Request, exc: sqlite3.OperationalError) -> Response:
        response = error(503, "store_unavailable", f"the state file refused the request ({exc}): retry later")
        response.headers["Retry-After"] = "5"
        return response

    for kind, status, name in DOMAIN_ERRORS:

        async def domain(_: Request, exc: Exception, status: int = status, name: str = name) -> Response:
            return error(status, name, str(exc))

        app.add_exception_handler(kind, domain)

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return error(500, "internal_error", "the service failed to handle this request; see its logs")
