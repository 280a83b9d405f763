"""GETs to a log store's HTTP API with bounded retries: what every HTTP store (Loki, Elasticsearch, Splunk) needs.

A request is retried on a transport error (refused, reset, timed out, a corrupt body) and on 429, 500, 502,
503 and 504, with exponential backoff and jitter, honouring ``Retry-After``; never past ``attempts`` tries,
nor once the pauses would pass ``max_elapsed`` seconds, so a dead store fails a pull in bounded time (at
most ``attempts`` request timeouts plus ``max_elapsed``) with :class:`SourceUnavailable`. Any other answer
is final: 401/403 :class:`SourceAuthError`, another 4xx :class:`SourceQueryError` carrying the store's own
message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import orjson

from logcanary.common.backoff import capped, jittered
from logcanary.sources.base import (
    SourceAuthError,
    SourceConfigError,
    SourceError,
    SourceQueryError,
    SourceUnavailable,
)

if TYPE_CHECKING:
    from logcanary.sources.metrics import SourceMetrics

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
STORE_MESSAGE_MAX = 2000  # characters of the store's error body kept


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: ``attempts`` tries in all, the n-th retry after about ``backoff * 2**n`` seconds
    (at most ``max_backoff``, or what ``Retry-After`` asks), and never past ``max_elapsed`` seconds."""

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 10.0
    max_elapsed: float = 60.0

    def delay(self, retry: int) -> float:
        """The pause before retry number ``retry`` (0 first): half fixed, half random, so clients spread out."""
        return jittered(capped(self.backoff, self.max_backoff, retry + 1))


class HttpStore:
    """One store's base URL, tenant headers, auth and timeout, over one pooled :class:`httpx.AsyncClient`."""

    def __init__(
        self,
        kind: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        metrics: SourceMetrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SourceConfigError(f"{kind} url must be http(s)://host[:port][/prefix], not {url!r}", source=kind)
        if parts.username is not None or parts.password is not None:
            raise SourceConfigError(f"{kind} url must not hold credentials: give them as auth", source=kind)
        self.kind = kind
        self.url = url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.metrics = metrics
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers=dict(headers or {}),
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, path: str, params: Mapping[str, str | int]) -> bytes:
        """The body of a 2xx answer to ``GET path``, after retries; a :class:`SourceError` otherwise."""
        began = time.monotonic()
        policy = self.retry
        retry = 0
        while True:
            wait: float | None = None
            try:
                response = await self._client.get(path, params=params)
            except SourceError as exc:  # raised by the auth flow: a secret that cannot be read
                exc.source = self.kind
                self._count("rejected", exc)
                raise
            except httpx.RequestError as exc:  # refused, reset, timed out, a corrupt (gzip) body
                cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                failure = SourceUnavailable(f"{self.kind} at {self.url} unreachable ({cause})", source=self.kind)
                self._count("unreachable", failure)
            else:
                status = response.status_code
                if status < 300:
                    self._count("ok", None)
                    return response.content
                message = store_message(response.content)
                if status not in RETRY_STATUSES:
                    final = _refusal(self.kind, status, message)
                    self._count("rejected", final)
                    raise final
                failure = SourceUnavailable(
                    f"{self.kind} answered {status}: {message}", source=self.kind, status=status, store_message=message
                )
                self._count("throttled" if status == 429 else "server_error", failure)
                wait = retry_after(response.headers.get("Retry-After"))
            retry += 1
            pause = max(policy.delay(retry - 1), wait or 0.0)
            elapsed = time.monotonic() - began
            if retry >= policy.attempts or elapsed + pause > policy.max_elapsed:
                asked = f", asked to retry after {wait:g} s" if wait and elapsed + pause > policy.max_elapsed else ""
                raise SourceUnavailable(
                    f"{failure.message}; gave up after {retry} attempts in {elapsed:.1f} s{asked}",
                    source=self.kind,
                    status=failure.status,
                    store_message=failure.store_message,
                )
            await asyncio.sleep(pause)

    def _count(self, result: str, error: SourceError | None) -> None:
        if self.metrics is not None:
            self.metrics.request(self.kind, result, error)


def _refusal(kind: str, status: int, message: str) -> SourceError:
    if status in (401, 403):
        return SourceAuthError(
            f"{kind} refused the credentials ({status}): {message}", source=kind, status=status, store_message=message
        )
    if 400 <= status < 500:
        return SourceQueryError(
            f"{kind} refused the query ({status}): {message}", source=kind, status=status, store_message=message
        )
    return SourceError(f"{kind} answered {status}: {message}", source=kind, status=status, store_message=message)


def store_message(body: bytes) -> str:
    """The store's error in its own words: a JSON body's ``error``/``message``, else the text; clipped."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            for key in ("error", "message", "reason"):
                if isinstance(parsed.get(key), str):
                    text = parsed[key].strip()
                    break
    if len(text) > STORE_MESSAGE_MAX:
        text = text[: STORE_MESSAGE_MAX - 1] + "…"
    return text or "(empty body)"


def retry_after(value: str | None) -> float | None:
    """Seconds asked by a ``Retry-After`` header (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())
