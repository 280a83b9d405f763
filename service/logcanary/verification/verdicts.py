"""Verdicts: the one path by which a question about a canary becomes a verdict, on demand or for an analysis.

A verdict is computed in a worker thread, so the loop goes on serving while it runs; reading the live engine it
holds the engine lock (writers wait, never the loop), while a snapshot of another replica's service needs no lock.
What depends on this process's mutable state (feedback rules, resolved names, history exclusions) is taken on the
loop first (:meth:`Verdicts.job`); the thread only reads the model.

On-demand answers are not computed once per gate: the cache (:mod:`logcanary.common.caching`) answers a question
from the verdict computed for it at most ``LOGCANARY_VERDICT_MAX_AGE_SECONDS`` (1 s) ago under the same rules
version, serialised once. Twenty gates polling one canary cost one computation per second; concurrent identical
questions share it. A gate tolerates a lag of one checkpoint interval (5 s); a cached answer is at most 1 s behind
ingestion, and says how old it is. Reads never change state or metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import orjson

from logcanary.analysis.compact import compact
from logcanary.analysis.verdict import Judgement, Window, judge
from logcanary.common.caching import Cached, RefreshAheadCache
from logcanary.engine.model import ServiceModel
from logcanary.live.engine import LiveEngine
from logcanary.live.state import LiveState
from logcanary.schemas import SourceSpec
from logcanary.settings import AnalysisSettings
from logcanary.verification.errors import BadQuestion, UnknownService
from logcanary.verification.pulling import Pulled, Pulls
from logcanary.verification.question import VerdictQuestion
from logcanary.verification.rules import Rules

MAX_CACHED_QUESTIONS = 256
ON_DEMAND_WAIT_SECONDS = 5.0  # a question about a log store waits this long for what is new (gates time out at 10 s)


@dataclass(frozen=True, slots=True)
class Answer:
    """A verdict as answered: with its scope, and serialised (in the question's shape)."""

    judgement: Judgement
    body: bytes


class Verdicts:
    def __init__(
        self, state: LiveState, rules: Rules, config: AnalysisSettings, pulls: Pulls, base_url: str | None = None
    ) -> None:
        self.state = state
        self.rules = rules
        self.config = config
        self.pulls = pulls  # questions about canaries pulled from a log store: their engines, kept warm
        self.base_url = base_url  # LOGCANARY_PUBLIC_URL: on-demand verdicts link to their page under it
        self.cache: RefreshAheadCache[VerdictQuestion, Answer] = RefreshAheadCache(
            config.verdict_max_age_seconds, MAX_CACHED_QUESTIONS, what="a verdict"
        )

    async def model(self, service: str) -> ServiceModel:
        """The service as a read sees it (live, or another replica's last checkpoint); UnknownService if none."""
        model = await self.state.read_service(service)
        if model is None:
            raise UnknownService(service)
        return model

    def job(self, model: ServiceModel, question: VerdictQuestion) -> Callable[[Window], Judgement]:
        """The computation in two steps: what depends on this process's state (rules, names, exclusions) is taken
        now, on the loop; the returned function only reads the model, so it may run in a worker thread."""
        rules = self.rules.compiled(model)
        canary = model.resolve(question.canary) or question.canary
        baseline = question.baseline and (model.resolve(question.baseline) or question.baseline)
        excluded = self.rules.excluded_from_history(model.name)
        sensitivity = question.sensitivity or self.config.default_sensitivity

        def compute(window: Window) -> Judgement:
            return judge(
                model,
                canary=canary,
                baseline=[baseline] if baseline else [],
                history=question.uses_history,
                sensitivity=sensitivity,
                feedback=rules,
                window=window,
                exclude_history=excluded,
                canary_weight=question.canary_weight,
            )

        return compute

    async def compute(
        self, model: ServiceModel, question: VerdictQuestion, window: Window, engine: LiveEngine | None = None
    ) -> Judgement:
        """The verdict over an event-time ``window``, computed off the loop (analyses evaluate through this).
        ``engine`` holds the model when it is not the live state's (a canary pulled from a log store)."""
        job = self.job(model, question)
        if engine is not None:
            return await engine.read_in_thread(lambda: job(window))
        return await self.state.live.read_in_thread(lambda: job(window), self.state.is_live(model))

    async def answer(self, question: VerdictQuestion, model: ServiceModel | None = None) -> Cached[Answer]:
        """The answer to an on-demand question over the last ``question.window`` seconds of event time (None:
        all): computed now, or at most LOGCANARY_VERDICT_MAX_AGE_SECONDS ago under the same rules."""
        if question.source is not None:
            return await self.cache.get(question, lambda: self._pulled(question), self.rules.version)
        found = model or await self.model(question.service)

        async def load() -> Answer:
            job = self.job(found, question)  # on the loop: rules, names
            now = time.time()

            def run() -> Judgement:
                # The window ends at the time of computing: events stamped ahead of this clock (skew) still count.
                return job(question.window_at(now))

            judgement = await self.state.live.read_in_thread(run, self.state.is_live(found))
            self._link(question, judgement, now)

            def serialised() -> bytes:  # off the engine lock: it reads only the verdict
                verdict = compact(judgement.verdict) if question.compact else judgement.verdict
                return orjson.dumps(verdict.model_dump(mode="json"))

            return Answer(judgement, await asyncio.to_thread(serialised))

        return await self.cache.get(question, load, self.rules.version)

    async def _pulled(self, question: VerdictQuestion) -> Answer:
        """A question about a canary in the log store: its engine (kept warm while it is asked) pulls what is new,
        then the same verdict as any is computed over the window."""
        source = question.source
        assert source is not None
        if question.window is None:
            raise BadQuestion("a verdict from a log store needs a window (such as 5m), not 'all'")
        window = question.window
        spec = self.pulls.resolve(
            SourceSpec(canary_selector=source.canary_selector, baseline_selector=source.baseline_selector)
        ).spec
        key = repr((question.service, question.canary, question.baseline, question.uses_history, source, window))

        def make() -> Pulled:
            since = time.time() - window
            return self.pulls.open(
                spec, question.service, question.canary, question.baseline, since, history=question.uses_history
            )

        pulled = await self.pulls.refreshed(key, make, time.time(), ON_DEMAND_WAIT_SECONDS)
        model = pulled.model()
        job = self.job(model, question)
        now = time.time()
        judgement = await pulled.live.read_in_thread(lambda: job(question.window_at(now)))
        judgement = pulled.judged(judgement)
        self._link(question, judgement, now)

        def serialised() -> bytes:
            verdict = compact(judgement.verdict) if question.compact else judgement.verdict
            return orjson.dumps(verdict.model_dump(mode="json"))

        return Answer(judgement, await asyncio.to_thread(serialised))

    def _link(self, question: VerdictQuestion, judgement: Judgement, now: float) -> None:
        """Gives an on-demand verdict its page: the question with the window's end fixed, the top anomaly open."""
        if self.base_url is None:
            return
        verdict = judgement.verdict
        query = question.ui_query(question.until if question.until is not None else now)
        if verdict.anomalies:
            query["expand"] = verdict.anomalies[0].cluster_id
        verdict.page = f"{self.base_url.rstrip('/')}/ui?{urlencode(query)}"


def answered_within(answer: Cached[Answer]) -> float:
    """Seconds since the answer was computed."""
    return max(0.0, time.time() - answer.loaded_at)
