"""Canaries judged from a log store: a deployment's logs pulled from Grafana Loki instead of sent to logcanary.

A :class:`Pulled` holds one canary (and its control deployment) in an engine of its own, fed through the same
seam (:class:`~logcanary.ingestion.sink.EventSink`) and judged by the same verdict as ingested events. Each side
is followed with a cursor (:class:`~logcanary.sources.cursor.Cursor`): the first catch-up pulls the side's window
from its start (the baseline's recent window before the analysis, so it is known before the canary's first
minutes), later ones what is new, late lines within the lateness once, none twice.

The store holds the data, so nothing pulled is checkpointed: an analysis evaluated again after a restart (or by
the replica that took its lease over) pulls its window afresh, and counts it exactly. A store that fails keeps
its error as the pull's ``problem`` until a catch-up succeeds (the cursor resumes where it stopped); meanwhile
every verdict is ``inconclusive`` with ``source_unavailable`` or ``source_error`` and the store's message: never a
pass, never a fail on part of the window.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from logcanary.analysis.verdict import Judgement
from logcanary.engine.model import ServiceModel
from logcanary.live.engine import LiveEngine
from logcanary.schemas import SourceAuth, SourceProblem, SourceSpec, Verdict, VerdictSource
from logcanary.settings import LimitSettings, LokiSettings
from logcanary.sources import (
    Cursor,
    LineMapper,
    LogSource,
    SourceConfigError,
    SourceError,
    SourceMetrics,
    SourceQueryError,
    SourceUnavailable,
    from_ns,
    open_source,
)
from logcanary.sources.base import NS_PER_SECOND, seconds_to_ns
from logcanary.verification.errors import BadSource

SIDES = ("canary", "baseline")
HISTORY_DEPLOYMENTS = 10  # earlier deployments pulled for a history baseline (the verdict weighs at most 10)
_DEPLOYMENT_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"\$(?:deployment\b|\{deployment\})"\s*,?\s*')
STALE_SECONDS = 15.0  # a catch-up running longer than this makes verdicts wait for it (source_pending)


@dataclass(frozen=True, slots=True)
class ResolvedSource:
    """An analysis' source with every default filled in from LOGCANARY_LOKI_* (what is stored with it)."""

    spec: SourceSpec

    @classmethod
    def of(cls, given: SourceSpec, defaults: LokiSettings) -> ResolvedSource:
        url = given.url or defaults.loki_url
        if not url:
            raise BadSource("source: no Loki URL (give source.url, or set LOGCANARY_LOKI_URL)")
        auth = given.auth
        if auth is None and given.url is None:  # the configured store: its configured credentials
            if defaults.loki_token_file:
                auth = SourceAuth(type="bearer", token_file=defaults.loki_token_file)
            elif defaults.loki_username:
                auth = SourceAuth(
                    type="basic", username=defaults.loki_username, password_file=defaults.loki_password_file
                )
        canary = given.canary_selector or defaults.loki_canary_selector
        spec = SourceSpec(
            type="loki",
            url=url,
            tenant=given.tenant if given.tenant is not None else (defaults.loki_tenant if given.url is None else None),
            auth=auth,
            canary_selector=canary,
            baseline_selector=given.baseline_selector or defaults.loki_baseline_selector or canary,
            baseline_window=given.baseline_window or defaults.loki_baseline_window_seconds,
        )
        return cls(spec)

    def open(self, metrics: SourceMetrics | None, timeout: float) -> LogSource:
        spec = self.spec
        raw: dict[str, object] = {"type": spec.type, "url": spec.url, "timeout": timeout}
        if spec.tenant:
            raw["tenant"] = spec.tenant
        if spec.auth is not None:
            raw["auth"] = spec.auth.model_dump(exclude_none=True)
        try:
            return open_source(raw, metrics=metrics, inline_secrets=False)
        except SourceConfigError as exc:
            raise BadSource(f"source: {exc.message}") from exc


class Pulled:
    """One canary and its control deployment of one service, pulled into an engine of their own."""

    def __init__(
        self,
        source: LogSource,
        resolved: ResolvedSource,
        service: str,
        canary: str,
        baseline: str | None,
        canary_from: float,
        limits: LimitSettings,
        lateness_seconds: float,
        baseline_from: float | None = None,
        history: tuple[float, int] | None = None,
    ) -> None:
        """``history``: (seconds before the canary's start, lines per deployment) to pull earlier deployments of the
        service for a history baseline, found by the values of the selector's deployment label."""
        spec = resolved.spec
        assert spec.canary_selector is not None and spec.baseline_selector is not None
        self.source = source
        self.resolved = resolved
        self.service = service
        self.live = LiveEngine(limits)
        lateness = int(lateness_seconds * NS_PER_SECOND)
        start = seconds_to_ns(canary_from)
        self.queries: dict[str, str] = {"canary": self._query(spec.canary_selector, canary)}
        self.cursors = {"canary": Cursor(self.queries["canary"], start, lateness=lateness)}
        self.mappers = {"canary": LineMapper(service, canary, max_message_bytes=limits.max_message_bytes)}
        if baseline:
            # Default: the baseline's recent window before the canary's, so it is known before the canary's first
            # minutes; a past window judged as a whole (logcanary analyze) pulls both sides from one start.
            since = start - int((spec.baseline_window or 0) * NS_PER_SECOND)
            if baseline_from is not None:
                since = seconds_to_ns(baseline_from)
            self.queries["baseline"] = self._query(spec.baseline_selector, baseline)
            self.cursors["baseline"] = Cursor(self.queries["baseline"], since, lateness=lateness)
            self.mappers["baseline"] = LineMapper(service, baseline, max_message_bytes=limits.max_message_bytes)
        self.lines = dict.fromkeys(self.queries, 0)
        self.canary, self.baseline, self.start, self.limits = canary, baseline, start, limits
        self.history = history
        self.history_pulled = history is None  # the earlier deployments are pulled once, with the first catch-up
        self.notices: list[str] = []
        self.problem: SourceError | None = None
        self.through: int | None = None  # every line stamped before it was pulled, on every side
        self._pull: asyncio.Task[None] | None = None  # the catch-up running, if one is
        self._pulling_since = 0.0  # monotonic time it started
        self._pulled_at = -math.inf  # monotonic time the last catch-up ended

    def _query(self, template: str, deployment: str) -> str:
        try:
            return self.source.render(template, {"service": self.service, "deployment": deployment})
        except SourceError as exc:
            raise BadSource(f"source: {exc.message}") from exc

    async def validate(self) -> None:
        """Makes the store parse every query: a query it refuses is a :class:`BadSource` quoting its words. A
        store that cannot be reached now is no reason to refuse: the pull says so in every verdict."""
        for query in self.queries.values():
            try:
                await self.source.validate(query)
            except SourceQueryError as exc:
                detail = exc.store_message or exc.message
                raise BadSource(f"Loki refused the query {query}: {detail}", store_message=detail) from exc
            except SourceUnavailable:
                return

    async def refresh(self, until: float | None, wait: float, every: float = 0.0) -> None:
        """Starts a catch-up to ``until`` unless one is running or the last ended less than ``every`` seconds ago
        (each one reads the lateness window again), and waits at most ``wait`` seconds for it: a slow or unreachable
        store (its requests are retried for up to a minute) never holds up the caller, whose verdict then says the
        window is still being pulled (``source_pending``)."""
        idle = self._pull is None or self._pull.done()
        if idle and (self.problem is not None or time.monotonic() - self._pulled_at >= every):
            self._pull = asyncio.ensure_future(self._catch_up_timed(until))
            self._pulling_since = time.monotonic()
        if self._pull is not None and not self._pull.done():
            await asyncio.wait({self._pull}, timeout=wait)

    async def _catch_up_timed(self, until: float | None) -> None:
        try:
            await self.catch_up(until)
        finally:
            self._pulled_at = time.monotonic()

    @property
    def pending(self) -> float | None:
        """Seconds the running catch-up has been pulling, or None when none runs."""
        if self._pull is None or self._pull.done():
            return None
        return time.monotonic() - self._pulling_since

    def covers(self, until: float) -> bool:
        """Every line stamped before ``until`` has been pulled, on every side."""
        return (
            self.pending is None
            and self.problem is None
            and self.through is not None
            and (self.through >= seconds_to_ns(until))
        )

    async def close(self) -> None:
        if self._pull is not None and not self._pull.done():
            self._pull.cancel()
            await asyncio.wait({self._pull}, timeout=5.0)
        await self.source.aclose()

    async def catch_up(self, until: float | None = None) -> None:
        """Pulls what is new on every side, up to ``until`` (epoch seconds; default now). A failure becomes the
        pull's ``problem`` (the next catch-up resumes where this one stopped); a success clears it."""
        end = None if until is None else seconds_to_ns(until)
        try:
            if not self.history_pulled:
                await self._pull_history()
                self.history_pulled = True
            for side, cursor in self.cursors.items():
                mapper = self.mappers[side]
                async for batch in self.source.follow(cursor.query, cursor, end):
                    self.notices.extend(f"{n.code}: {n.message}" for n in batch.notices if n.code != "empty_result")
                    del self.notices[:-10]
                    observed = mapper.map(batch.lines)
                    async with self.live.writing() as write:
                        for observation in observed:
                            self.live.observe_values(*observation)
                            if write.due():
                                await write.pause()
                    self.lines[side] += len(batch.lines)
        except SourceError as exc:
            self.problem = exc
            return
        self.problem = None
        self.through = min(cursor.position for cursor in self.cursors.values())

    async def _pull_history(self) -> None:
        """Earlier deployments of the service, found by the values of the canary selector's deployment label
        (``label="$deployment"``) on the service's streams before the canary's start, each pulled from then (at
        most a bounded number of lines): what a history baseline weighs them by (first and last seen, counts)
        comes from those lines, strictly earlier than the canary's."""
        assert self.history is not None
        seconds, most = self.history
        template = self.resolved.spec.canary_selector or ""
        found = _DEPLOYMENT_MATCHER.search(template)
        if found is None:
            self.notices.append('history: the canary selector names no label="$deployment" to find deployments by')
            return
        label = found.group(1)
        without = template[: found.start()] + template[found.end() :]
        without = re.sub(r"\{\s*,", "{", re.sub(r",\s*\}", "}", without))  # no comma left dangling
        service_only = self._query(without, "")
        since = self.start - int(seconds * NS_PER_SECOND)
        values = await self.source.label_values(label, since, self.start, service_only)
        earlier = [v for v in values if v not in (self.canary, self.baseline) and v][-HISTORY_DEPLOYMENTS:]
        self.lines.setdefault("history", 0)
        for deployment in earlier:
            query = self._query(template, deployment)
            mapper = LineMapper(self.service, deployment, max_message_bytes=self.limits.max_message_bytes)
            taken = 0
            async for batch in self.source.pull(query, since, self.start):
                observed = mapper.map(batch.lines[: most - taken])
                async with self.live.writing() as write:
                    for observation in observed:
                        self.live.observe_values(*observation)
                        if write.due():
                            await write.pause()
                taken += min(len(batch.lines), most - taken)
                if taken >= most:
                    break
            self.lines["history"] += taken

    def model(self) -> ServiceModel:
        return self.live.engine.peek_service(self.service)

    def provenance(self) -> VerdictSource:
        problem = self.problem
        return VerdictSource(
            type="loki",
            url=self.resolved.spec.url or "",
            canary_query=self.queries["canary"],
            baseline_query=self.queries.get("baseline"),
            lines=dict(self.lines),
            through=from_ns(self.through) if self.through is not None else None,
            notices=list(self.notices),
            problem=None
            if problem is None
            else SourceProblem(code=problem.code, message=problem.message, store_message=problem.store_message),
        )

    def judged(self, judgement: Judgement) -> Judgement:
        """The verdict as the pull lets it stand: it says where its events came from; a store that failed makes it
        inconclusive (never a pass, never a fail on part of the window), and so does a side the store holds no
        line of."""
        verdict = judgement.verdict.model_copy(update={"source": self.provenance()})
        problem, pending = self.problem, self.pending
        if pending is not None and (problem is not None or self.through is None or pending > STALE_SECONDS):
            verdict = _inconclusive(
                verdict,
                "source_pending",
                f"the window is still being pulled from the log store ({pending:.0f} s so far"
                + (f"; the last try failed: {problem.message})" if problem is not None else ")"),
            )
        elif problem is not None:
            code = "source_unavailable" if isinstance(problem, SourceUnavailable) else "source_error"
            detail = f": {problem.store_message}" if problem.store_message else ""
            verdict = _inconclusive(
                verdict, code, f"the log store could not give the window ({problem.message}{detail})"
            )
        elif verdict.verdict == "inconclusive":
            empty = [side for side in self.queries if self.lines[side] == 0]
            if empty and verdict.reason_code in (
                "unknown_canary",
                "no_canary_events",
                "no_baseline",
                "no_baseline_events",
            ):
                queries = " and ".join(self.queries[side] for side in empty)
                verdict = _inconclusive(
                    verdict, "source_empty", f"the log store holds no line for {queries} in the window"
                )
        return Judgement(verdict, judgement.scope, judgement.novel)


def _inconclusive(verdict: Verdict, code: str, reason: str) -> Verdict:
    return verdict.model_copy(
        update={
            "verdict": "inconclusive",
            "reason_code": code,
            "reason": reason,
            "risk": 0.0,
            "anomalies": [],
            "anomaly_count": 0,
        }
    )


class Pulls:
    """The pulls of the running analyses that read a log store, by analysis id."""

    def __init__(
        self, loki: LokiSettings, limits: LimitSettings, metrics: SourceMetrics | None, most: int | None = None
    ) -> None:
        self.loki = loki
        self.limits = limits
        self.metrics = metrics
        self.most = most  # pulls held at most (on-demand questions), the least recently used dropped first
        self._held: OrderedDict[str, Pulled] = OrderedDict()

    def resolve(self, given: SourceSpec) -> ResolvedSource:
        return ResolvedSource.of(given, self.loki)

    def open(
        self, spec: SourceSpec, service: str, canary: str, baseline: str | None, since: float, history: bool = False
    ) -> Pulled:
        """A new pull of a canary from ``since`` (epoch seconds), of its baseline's recent window before it, and
        with ``history`` of the service's earlier deployments."""
        resolved = ResolvedSource(spec)
        source = resolved.open(self.metrics, self.loki.loki_timeout_seconds)
        earlier = (self.loki.loki_history_seconds, self.loki.loki_history_max_lines) if history else None
        return Pulled(
            source,
            resolved,
            service,
            canary,
            baseline,
            since,
            self.limits,
            self.loki.loki_lateness_seconds,
            history=earlier,
        )

    def held(self, key: str) -> Pulled | None:
        return self._held.get(key)

    def keep(self, key: str, pulled: Pulled) -> None:
        self._held[key] = pulled

    async def refreshed(self, key: str, make: Callable[[], Pulled], until: float, wait: float) -> Pulled:
        """The pull of ``key`` (made anew after a restart or a lease takeover: the store holds the data), refreshed
        up to ``until`` and waited for at most ``wait`` seconds (:meth:`Pulled.refresh`)."""
        pulled = self._held.get(key)
        if pulled is None:
            pulled = make()
            await pulled.validate()  # a query the store refuses is a BadSource (422) before anything is held
            self._held[key] = pulled
            while self.most is not None and len(self._held) > self.most:
                await self.drop(next(iter(self._held)))
        self._held.move_to_end(key)
        await pulled.refresh(until, wait, self.loki.loki_poll_seconds)
        return pulled

    async def drop(self, key: str) -> None:
        """The analysis ended (or is another replica's now): its engine and connections go."""
        pulled = self._held.pop(key, None)
        if pulled is not None:
            await pulled.close()

    async def close(self) -> None:
        for key in list(self._held):
            await self.drop(key)
