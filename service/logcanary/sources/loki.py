"""Grafana Loki as a log source: ``query_range`` paged by time, exactly once, in bounded memory.

Paging. Loki answers a forward query with at most ``limit`` lines (its ``max_entries_limit_per_query``,
5,000 by default): the oldest ones. A full page therefore holds every line older than its newest timestamp
``t``, but maybe not all lines *at* ``t``: those lines are held back and the next page starts at ``t``. No
line is skipped and none delivered twice, with no dedupe set. The next page is requested before the current
one is handed over, so Loki works while the caller does.

Floods. When a full page holds one timestamp only, more lines share it than a page holds (a shipper with
second precision, a burst). Loki offers no offset, and which lines of a timestamp it returns is its own
business, so the lines at that nanosecond are split by their text (:mod:`logcanary.sources.floods`).

Limits. A range Loki refuses as too long (``max_query_length``) is pulled in halves, and a lower entry limit
than asked is adopted; each pull says so with a :class:`~logcanary.sources.base.Notice`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from logcanary.sources import logql
from logcanary.sources.base import (
    EMPTY_LABELS,
    NS_PER_SECOND,
    Batch,
    Notice,
    PulledLine,
    SourceError,
    SourceLimitExceeded,
    SourceQueryError,
)
from logcanary.sources.cursor import Cursor
from logcanary.sources.floods import drain_timestamp
from logcanary.sources.http import HttpStore, RetryPolicy
from logcanary.sources.metrics import SourceMetrics

KIND = "loki"
DEFAULT_PAGE_LIMIT = 5000  # Loki's default max_entries_limit_per_query
_ENTRY_LIMIT = re.compile(r"max entries limit per query exceeded.*\((\d+) > (\d+)\)")
_RANGE_LIMIT = re.compile(r"query time range exceeds the limit|would read too many bytes")
_LIMIT_WORDS = re.compile(r"limit|too many|exceed", re.IGNORECASE)


@dataclass(slots=True)
class Page:
    """One ``query_range`` answer: its streams, how many lines, the oldest and newest timestamp."""

    streams: list[dict[str, Any]]
    count: int
    first: int
    last: int
    limit: int

    @property
    def full(self) -> bool:
        return self.count >= self.limit

    def texts(self) -> list[str]:
        return [value[1] for stream in self.streams for value in stream["values"]]


@dataclass(slots=True)
class Chunk:
    """What :meth:`LokiSource.scan` hands on: complete lines, every line before ``through`` included."""

    lines: list[PulledLine]
    through: int
    last: bool = False
    notices: list[Notice] = field(default_factory=list)


class LokiSource:
    """Reads one Loki (one tenant) over HTTP. Share one per Loki: it pools connections and learns its limits."""

    kind = KIND

    def __init__(
        self,
        url: str,
        *,
        tenant: str | None = None,
        auth: httpx.Auth | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        page_limit: int = DEFAULT_PAGE_LIMIT,
        categorize_labels: bool = False,
        max_split_queries: int = 1000,
        metrics: SourceMetrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``tenant`` goes out as ``X-Scope-OrgID``. ``categorize_labels`` asks Loki to return structured
        metadata apart from stream labels (into :attr:`PulledLine.metadata`); it makes Loki's answers about
        70% larger and reads about 30% slower here, so by default they are merged into ``labels``, as Loki
        does by default. ``max_split_queries`` bounds the queries spent on one flooded timestamp."""
        if page_limit < 2:
            raise ValueError("page_limit must be at least 2")
        headers = {"X-Scope-OrgID": tenant} if tenant else {}
        if categorize_labels:
            headers["X-Loki-Response-Encoding-Flags"] = "categorize-labels"
        self.tenant = tenant
        self.auth = auth
        self.page_limit = page_limit
        self._asked_limit = page_limit
        self.categorize_labels = categorize_labels
        self.max_split_queries = max_split_queries
        self.metrics = metrics
        self._span: int | None = None  # the widest range Loki accepted, once it refused a wider one
        self._http = HttpStore(
            KIND, url, headers=headers, auth=auth, timeout=timeout, retry=retry, metrics=metrics, transport=transport
        )

    @property
    def url(self) -> str:
        return self._http.url

    def __repr__(self) -> str:
        return f"LokiSource(url={self.url!r}, tenant={self.tenant!r}, auth={self.auth!r})"  # auth: never a secret

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> LokiSource:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # --- the protocol ---------------------------------------------------------------------------------------------

    def render(self, template: str, variables: Mapping[str, str]) -> str:
        """A LogQL selector template for one deployment (see :func:`logcanary.sources.logql.render`)."""
        return logql.render(template, variables)

    async def validate(self, query: str) -> None:
        """Makes Loki parse ``query`` over one nanosecond: its 400 becomes a :class:`SourceQueryError`."""
        now = time.time_ns()
        await self.query_range(query, now - 1, now, 1)

    async def pull(self, query: str, start: int, end: int) -> AsyncIterator[Batch]:
        """Every line of ``query`` in ``[start, end)``, once each, in batches of at most ``page_limit`` lines."""
        total = 0
        async for chunk in self.scan(query, start, end):
            total += len(chunk.lines)
            if chunk.last and not total:
                chunk.notices.append(Notice("empty_result", f"no line matched {query} in [{start}, {end})"))
            if self.metrics is not None:
                self.metrics.pulled(KIND, len(chunk.lines))
            yield Batch(chunk.lines, chunk.through, chunk.last, chunk.notices)

    async def follow(self, query: str, cursor: Cursor, until: int | None = None) -> AsyncIterator[Batch]:
        """The lines of ``query`` not yet delivered through ``cursor``, up to ``until`` (at most now).

        Re-scans from ``cursor.floor`` (``lateness`` before its position), so late lines Loki accepted since
        are delivered too; the cursor's dedupe set drops the lines delivered before. The cursor advances as
        batches are handed over: checkpoint it with what a batch produced (see :mod:`~logcanary.sources.cursor`).
        """
        if cursor.query != query:
            raise ValueError("this cursor follows another query")
        now = time.time_ns()
        until = now if until is None else min(until, now)
        if until <= cursor.floor:
            yield Batch([], cursor.position, True, [])
            return
        async for chunk in self.scan(query, cursor.floor, until):
            fresh, notices = cursor.admit(chunk.lines, chunk.through)
            if chunk.last:
                notices += cursor.settle(until)
            if self.metrics is not None:
                self.metrics.pulled(KIND, len(fresh))
                self.metrics.behind(KIND, cursor.position)
            yield Batch(fresh, cursor.position, chunk.last, chunk.notices + notices)

    async def label_values(self, name: str, start: int, end: int, query: str | None = None) -> list[str]:
        """Sorted values of label ``name`` on the streams (of ``query``) with data in ``[start, end)``.

        Loki answers from its index: a value may stand for a stream whose data only touches the range's
        index period (a day, for TSDB), so a history baseline found here should still be pulled to be used.
        """
        if not logql.LABEL_NAME.match(name):
            raise SourceQueryError(f"{name!r} is not a Loki label name", source=KIND)
        params: dict[str, str | int] = {"start": start, "end": end}
        if query:
            params["query"] = query
        try:
            body = await self._http.get(f"/loki/api/v1/label/{quote(name)}/values", params)
        except SourceQueryError as exc:
            if end - start > 1 and _RANGE_LIMIT.search(exc.store_message or ""):
                middle = start + (end - start) // 2
                first = await self.label_values(name, start, middle, query)
                return sorted({*first, *await self.label_values(name, middle, end, query)})
            raise _classified(exc) from None
        values = _json(body).get("data") or []
        return sorted({value for value in values if isinstance(value, str)})

    async def series(self, query: str, start: int, end: int) -> list[dict[str, str]]:
        """The label sets of the streams matching ``query``'s stream selector in ``[start, end)``."""
        matchers, _ = logql.split_query(query)
        params: dict[str, str | int] = {"match[]": "{" + matchers + "}", "start": start, "end": end}
        try:
            body = await self._http.get("/loki/api/v1/series", params)
        except SourceQueryError as exc:
            raise _classified(exc) from None
        data = _json(body).get("data") or []
        return [dict(labels) for labels in data if isinstance(labels, dict)]

    # --- paging ---------------------------------------------------------------------------------------------------

    async def query_range(self, query: str, start: int, end: int, limit: int) -> Page:
        """One forward ``query_range`` page; a :class:`SourceQueryError` unless Loki answers with streams."""
        params: dict[str, str | int] = {
            "query": query,
            "start": start,
            "end": end,
            "limit": limit,
            "direction": "forward",
        }
        body = await self._http.get("/loki/api/v1/query_range", params)
        data = _json(body).get("data")
        if not isinstance(data, dict) or data.get("resultType") != "streams":
            kind = data.get("resultType") if isinstance(data, dict) else None
            raise SourceQueryError(
                f"not a log query (Loki answered {kind or 'no result'}): give a stream selector and line filters",
                source=KIND,
            )
        streams: list[dict[str, Any]] = data.get("result") or []
        count, first, last = 0, end, start
        for stream in streams:
            values = stream["values"]
            if values:
                count += len(values)
                first = min(first, int(values[0][0]))
                last = max(last, int(values[-1][0]))
        return Page(streams, count, first, last, limit)

    def lines(self, page: Page, before: int | None = None) -> list[PulledLine]:
        """The page's lines (those older than ``before``, if given) as :class:`PulledLine` tuples."""
        new = tuple.__new__
        out: list[PulledLine] = []
        for stream in page.streams:
            labels = stream["stream"]
            values = stream["values"]
            if self.categorize_labels:
                for value in values:
                    timestamp = int(value[0])
                    if before is not None and timestamp >= before:
                        break
                    out.append(new(PulledLine, (timestamp, value[1], labels, _metadata(value))))
            elif before is None or (values and int(values[-1][0]) < before):
                out += [new(PulledLine, (int(value[0]), value[1], labels, EMPTY_LABELS)) for value in values]
            else:
                for value in values:
                    timestamp = int(value[0])
                    if timestamp >= before:
                        break
                    out.append(new(PulledLine, (timestamp, value[1], labels, EMPTY_LABELS)))
        return out

    async def scan(self, query: str, start: int, end: int) -> AsyncIterator[Chunk]:
        """Pages ``[start, end)`` into chunks of complete timestamps; the last chunk has ``last`` set."""
        said: set[str] = set()  # the notices given already: each once per scan
        notices: list[Notice] = []  # handed over with the next chunk
        position = start
        pending: tuple[asyncio.Task[Page], int] | None = None  # a page requested ahead, and its range's end
        try:
            while position < end:
                self._limit_notice(said, notices)
                if pending is None:
                    part_end = self._part_end(position, end, said, notices)
                    request = asyncio.ensure_future(self.query_range(query, position, part_end, self.page_limit))
                else:
                    request, part_end = pending
                pending = None
                try:
                    page = await request
                except SourceQueryError as exc:
                    if not self._adapt(exc, part_end - position):
                        raise _classified(exc) from None
                    continue
                if not page.full:
                    yield Chunk(self.lines(page), part_end, part_end >= end, notices)
                    notices, position = [], part_end
                elif page.first == page.last:  # one timestamp fills the page: split it by text
                    if "same_timestamp_split" not in said:
                        said.add("same_timestamp_split")
                        notices.append(_flood_notice(page))
                    async for lines in drain_timestamp(self, query, page):
                        yield Chunk(lines, page.last, False, notices)
                        notices = []
                    position = page.last + 1
                    if position >= end:
                        yield Chunk([], end, True, notices)
                else:
                    position = page.last  # the lines at page.last may continue on the next page
                    part_end = self._part_end(position, end, said, notices)
                    ahead = self.query_range(query, position, part_end, page.limit)
                    pending = (asyncio.ensure_future(ahead), part_end)  # Loki works while the caller does
                    yield Chunk(self.lines(page, page.last), page.last, False, notices)
                    notices = []
            if start >= end:
                yield Chunk([], end, True, [])
        finally:  # the caller stopped early or a page failed: drop the page requested ahead
            if pending is not None:
                if pending[0].done() and not pending[0].cancelled():
                    pending[0].exception()  # retrieved, so asyncio does not log it as lost
                pending[0].cancel()

    def _limit_notice(self, said: set[str], notices: list[Notice]) -> None:
        if self.page_limit < self._asked_limit and "limit_lowered" not in said:
            said.add("limit_lowered")
            message = f"Loki returns at most {self.page_limit} lines per query (asked {self._asked_limit})"
            notices.append(Notice("limit_lowered", message))

    def _part_end(self, position: int, end: int, said: set[str], notices: list[Notice]) -> int:
        if self._span is None or end - position <= self._span:
            return end
        if "range_split" not in said:
            said.add("range_split")
            notices.append(
                Notice(
                    "range_split",
                    f"Loki refuses ranges wider than about {self._span / NS_PER_SECOND / 3600:.1f} h at once: "
                    "pulling the window in parts",
                )
            )
        return position + self._span

    def _adapt(self, error: SourceQueryError, width: int) -> bool:
        """Learns from a refusal that a narrower range or a smaller page avoids; False if none does."""
        message = error.store_message or ""
        entries = _ENTRY_LIMIT.search(message)
        if entries is not None:
            allowed = int(entries.group(2))
            if 2 <= allowed < self.page_limit:
                self.page_limit = allowed
                return True
            return False
        if _RANGE_LIMIT.search(message) and width > 1:
            self._span = width // 2 if self._span is None else min(self._span, width // 2)
            return True
        return False


def _flood_notice(page: Page) -> Notice:
    return Notice(
        "same_timestamp_split",
        f"more than {page.limit} lines share the timestamp {page.last}: they were pulled in parts, split by text",
    )


def _metadata(value: list[Any]) -> Mapping[str, str]:
    if len(value) < 3 or not isinstance(value[2], dict):
        return EMPTY_LABELS
    extra: dict[str, Any] = value[2]
    metadata: dict[str, str] = extra.get("structuredMetadata") or {}
    parsed = extra.get("parsed")
    return {**metadata, **parsed} if parsed else metadata or EMPTY_LABELS


def _json(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SourceError(f"Loki answered something that is not JSON ({exc})", source=KIND) from None
    if not isinstance(document, dict):
        raise SourceError("Loki answered JSON that is not an object", source=KIND)
    return document


def _classified(error: SourceQueryError) -> SourceError:
    """A refusal for a limit is :class:`SourceLimitExceeded`; a parse error stays a query error."""
    message = error.store_message or ""
    if not message.startswith("parse error") and _LIMIT_WORDS.search(message):
        return SourceLimitExceeded(
            f"Loki refused the query for a limit: {message}",
            source=KIND,
            status=error.status,
            store_message=message,
        )
    return error
