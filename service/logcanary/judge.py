"""Judging from a log store with no logcanary server: ``logcanary analyze --loki-url`` judges a past window, and
``logcanary gate --source loki`` watches a canary as it rolls out, in-process, as a pipeline step.

Both pull the deployments' logs from Grafana Loki into an engine of their own (:mod:`logcanary.verification.pulling`)
and judge them with the same verdict as the service. The gate's window starts with the gate, as the service's
gate does; its exit code is the verdict's (0 pass, 1 fail, 2 inconclusive or any error).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from logcanary.analysis.verdict import Judgement, judge
from logcanary.gate import EXIT_INCONCLUSIVE, UNKNOWN_CANARY_GRACE_SECONDS, GateReport, hopeless
from logcanary.schemas import Sensitivity, SourceAuth, SourceSpec, Verdict
from logcanary.settings import LimitSettings
from logcanary.verification.errors import BadSource
from logcanary.verification.pulling import Pulled, ResolvedSource

DEFAULT_SELECTOR = '{app="$service", version="$deployment"}'
HISTORY_SECONDS = 7 * 86_400.0  # as LOGCANARY_LOKI_HISTORY_SECONDS
HISTORY_MAX_LINES = 20_000


@dataclass(frozen=True, slots=True)
class LokiQuestion:
    """A canary of a service in a Loki, against a control deployment (or none: history is not pulled yet)."""

    url: str
    service: str
    canary: str
    baseline: str | None
    canary_selector: str = DEFAULT_SELECTOR
    baseline_selector: str | None = None
    tenant: str | None = None
    token_file: str | None = None
    sensitivity: Sensitivity = "medium"
    timeout: float = 30.0
    lateness: float = 120.0

    def source(self) -> ResolvedSource:
        auth = SourceAuth(type="bearer", token_file=self.token_file) if self.token_file else None
        return ResolvedSource(
            SourceSpec(
                url=self.url,
                tenant=self.tenant,
                auth=auth,
                canary_selector=self.canary_selector,
                baseline_selector=self.baseline_selector or self.canary_selector,
            )
        )

    def pull(self, canary_from: float, baseline_from: float, limits: LimitSettings) -> Pulled:
        """Without a baseline deployment, the service's earlier deployments (the week before, found by the
        selector's deployment label) are the baseline."""
        resolved = self.source()
        return Pulled(
            resolved.open(None, self.timeout),
            resolved,
            self.service,
            self.canary,
            self.baseline,
            canary_from,
            limits,
            self.lateness,
            baseline_from=baseline_from,
            history=None if self.baseline else (HISTORY_SECONDS, HISTORY_MAX_LINES),
        )

    def verdict(self, pulled: Pulled) -> Judgement:
        judgement = judge(
            pulled.model(),
            canary=self.canary,
            baseline=[self.baseline] if self.baseline else [],
            history=self.baseline is None,
            sensitivity=self.sensitivity,
        )
        return pulled.judged(judgement)


async def analyze_window(question: LokiQuestion, start: float, end: float, limits: LimitSettings) -> Verdict:
    """The verdict on ``[start, end)`` of both deployments (a past release): BadSource for a query Loki refuses."""
    pulled = question.pull(start, start, limits)
    try:
        await pulled.validate()
        await pulled.catch_up(end)  # to the end, however long the store takes (its retries are bounded)
        return question.verdict(pulled).verdict
    finally:
        await pulled.source.aclose()


async def watch(
    question: LokiQuestion,
    duration: float,
    baseline_window: float,
    limits: LimitSettings,
    report: GateReport,
    *,
    poll: float = 5.0,
    fail_fast: bool = False,
    unknown_canary_grace: float = UNKNOWN_CANARY_GRACE_SECONDS,
) -> int:
    """Watches the canary from now for ``duration`` seconds (the baseline from ``baseline_window`` before), a
    progress line per poll; returns the exit code of the final verdict."""
    started = time.time()
    ends = started + duration
    pulled = question.pull(started, started - baseline_window, limits)
    try:
        try:
            await pulled.validate()
        except BadSource as exc:
            print(f"logcanary gate: error: {exc}", file=report.err, flush=True)
            return EXIT_INCONCLUSIVE
        report.say(
            f"logcanary gate: {question.service} canary {question.canary} against "
            f"{('baseline ' + question.baseline) if question.baseline else 'history'}, {duration:g} s, "
            f"pulled from Loki {question.url}, sensitivity {question.sensitivity}{', fail fast' if fail_fast else ''}"
        )
        while True:
            now = time.time()
            last = now >= ends
            await pulled.catch_up(min(now, ends))
            verdict = question.verdict(pulled).verdict
            status = "completed" if last or (fail_fast and verdict.verdict == "fail") else "running"
            shown = verdict.model_dump(mode="json")
            document = {"status": status, "verdict": shown}
            report.progress(document, time.time() - started)
            why = hopeless(shown, question.canary, time.time() - started, unknown_canary_grace)
            if why is not None and status != "completed":
                print(f"logcanary gate: stopped early: {why}", file=report.err, flush=True)
                status = document["status"] = "completed"
            if status == "completed":
                report.document(document)
                return report.report(shown, None)
            await asyncio.sleep(max(0.0, min(poll, ends - time.time())))
    finally:
        await pulled.source.aclose()
