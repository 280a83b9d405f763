"""Analyses: a canary watched for a while, its verdict recomputed every few seconds over the events since it
started, published as the ``logcanary_analysis_risk`` and ``logcanary_analysis_verdict`` gauges, and frozen when it
completes (or fails early with ``fail_fast``). Analyses live in the store; every store call goes through the one
writer thread (:mod:`logcanary.verification.writer`), on a copy of the record taken on the loop.

This module is the single-node lifecycle: the records in memory are the truth. In scale-out the store is, and
running analyses are leased to one replica at a time (:mod:`logcanary.verification.leases`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from logcanary.analysis.verdict import Judgement
from logcanary.engine.model import ServiceModel
from logcanary.live.state import LiveState
from logcanary.schemas import AnalysisPlace, AnalysisSpec, Verdict
from logcanary.settings import AnalysisSettings
from logcanary.store.base import AnalysisRecord, Repository
from logcanary.verification.errors import (
    AnalysisFinished,
    TooManyAnalyses,
    UnknownAnalysis,
    UnknownEnvironment,
    UnknownService,
)
from logcanary.verification.gauges import AnalysisGauges
from logcanary.verification.history import AnalysisFilter, newest_first
from logcanary.verification.models import AnalysisIn
from logcanary.verification.pulling import Pulled, Pulls
from logcanary.verification.question import VerdictQuestion
from logcanary.verification.rules import Rules
from logcanary.verification.verdicts import Verdicts
from logcanary.verification.writer import StoreWriter

log = logging.getLogger(__name__)

EVALUATE_EVERY_SECONDS = 2.0
REFRESH_WAIT_SECONDS = 1.0  # an evaluation waits this long for its log store's news (a slow one never holds it up)
SOURCE_GRACE_SECONDS = 120.0  # past its end, an analysis waits this long for its log store to give the window whole
DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Retention:
    """How long ended analyses are kept, and how many at most (LOGCANARY_RETENTION_ANALYSES_DAYS, _MAX)."""

    days: float = 90.0  # 0: no age limit
    max_kept: int = 20_000


def question_of(record: AnalysisRecord) -> VerdictQuestion:
    """What an analysis asks at each evaluation (over its own window, given apart)."""
    request = record.request
    return VerdictQuestion(
        service=record.service,
        canary=request.canary.deployment,
        baseline=request.baseline.deployment,
        history=request.baseline.history,
        sensitivity=request.sensitivity,
        window=None,
        canary_weight=request.canary_weight,
    )


class Analyses:
    def __init__(
        self,
        state: LiveState,
        repository: Repository,
        write: StoreWriter,
        verdicts: Verdicts,
        rules: Rules,
        config: AnalysisSettings,
        retention: Retention,
        pulls: Pulls,
    ) -> None:
        self.state = state
        self.pulls = pulls  # analyses that read a log store: their engines and cursors
        self.repository = repository
        self.write = write
        self.verdicts = verdicts
        self.rules = rules
        self.config = config
        self.retention = retention
        self.gauges = AnalysisGauges(state.metrics, config.environments)
        self.records: dict[str, AnalysisRecord] = {}
        self.on_end: Callable[[AnalysisRecord], None] = lambda record: None  # notifications (logcanary.notify)

    # -- reading -----------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Reads analyses, feedback and marks (blocking: call in a worker thread at start); running analyses get
        their gauges back at once, and :meth:`start` evaluates them before the first request."""
        self._read()
        for record in self.records.values():
            if record.status == "running":
                self.gauges.publish(record)

    def _read(self) -> None:
        """Analyses, feedback and marks as the store holds them (blocking)."""
        store = self.repository
        records = {record.id: record for record in store.load_analyses()}
        self.rules.replace(store.list_feedback(), store.load_marks(), records.values())
        self.records = records

    async def start(self) -> None:
        """Evaluates the running analyses once (those whose time ran out while the service was down complete)."""
        await self.evaluate_running()

    async def refresh(self) -> None:
        """Makes a list answer what every replica holds (single node: what this one holds is all there is)."""

    async def find(self, analysis_id: str) -> AnalysisRecord:
        record = self.records.get(analysis_id)
        if record is None:
            raise UnknownAnalysis(f"no analysis {analysis_id!r}")
        return record

    async def listed(self, query: AnalysisFilter | None = None) -> list[AnalysisRecord]:
        """The analyses ``query`` lets through, newest first."""
        await self.refresh()
        query = query or AnalysisFilter()
        return newest_first(r for r in self.records.values() if query.matches(r))

    async def release(self, release: str) -> list[AnalysisRecord]:
        """The analyses of one release (single node: memory holds them all)."""
        return [record for record in self.records.values() if record.request.release == release]

    @property
    def running(self) -> int:
        return sum(1 for record in self.records.values() if record.status == "running")

    # -- changes -----------------------------------------------------------------------------------------------

    async def create(self, request: AnalysisIn, replace: bool = False) -> AnalysisRecord:
        """Starts an analysis; its gauges exist from now on. UnknownService for a service never seen (unless its
        logs are pulled from a log store); BadSource for a source that cannot be used (a query the store refuses);
        TooManyAnalyses past the cap. ``replace`` first cancels running analyses of the same service and canary
        (a new rollout of it)."""
        self._check_environment(request.environment)
        model = await self.state.read_service(request.service)
        if model is None and request.source is None:
            raise UnknownService(request.service)
        now = time.time()
        source = None if request.source is None else self.pulls.resolve(request.source).spec
        pulled = None
        if source is not None:
            pulled = self.pulls.open(
                source,
                request.service,
                request.canary.deployment,
                request.baseline.deployment,
                now,
                history=request.baseline.history or request.baseline.deployment is None,
            )
            try:
                await pulled.validate()  # a query Loki refuses is a 422 quoting Loki, before anything is kept
            except BaseException:
                await pulled.source.aclose()
                raise
        if replace:
            for record in list(self.records.values()):
                same = record.service == request.service and record.request.canary == request.canary
                if same and record.status == "running":
                    await self.cancel(record)
        limit = self.config.max_running_analyses
        if self.running >= limit:
            if pulled is not None:
                await pulled.source.aclose()
            raise TooManyAnalyses(
                f"{limit} analyses are running (LOGCANARY_MAX_RUNNING_ANALYSES): wait for one to end or cancel one"
            )
        spec = AnalysisSpec.model_validate(
            {
                **request.model_dump(exclude={"source"}),
                "source": source,
                "sensitivity": request.sensitivity or self.config.default_sensitivity,
            }
        )
        record = AnalysisRecord(
            id=uuid.uuid4().hex,
            service=request.service,
            request=spec,
            status="running",
            started_at=now,
            ends_at=now + request.duration,
        )
        self.records[record.id] = record
        if pulled is not None:
            self.pulls.keep(record.id, pulled)
        await self._created(record, model or self.state.engine.peek_service(record.service), now)
        return record

    def _check_environment(self, environment: str | None) -> None:
        """With LOGCANARY_ENVIRONMENTS set, an analysis names one of them (or none)."""
        allowed = self.config.environments
        if environment is not None and allowed and environment not in allowed:
            raise UnknownEnvironment(
                f"environment {environment!r} is not one of LOGCANARY_ENVIRONMENTS ({', '.join(allowed)})"
            )

    async def _created(self, record: AnalysisRecord, model: ServiceModel, now: float) -> None:
        """Evaluated at once (its gauges exist from now on), then saved."""
        done = await self._evaluate(record, now, model)
        await self._save(record)
        if done:
            self._announce(record)

    async def record_measurement(
        self,
        release: str,
        place: AnalysisPlace,
        labels: dict[str, str],
        question: VerdictQuestion,
        verdict: Verdict,
        at: float,
    ) -> AnalysisRecord:
        """Keeps a deploy tool's on-demand verdict (an Argo Rollouts measurement, a Flagger check) as its release's
        analysis of the service: one record per release, service, canary and requester, created completed at the
        first measurement and holding the latest one after (the verdict the tool acted on last). Its window runs
        from the first measurement's window start to the latest measurement. Not counted in
        ``logcanary_analyses_total`` nor notified: the tool that measures decides when a rollout ends."""
        self._check_environment(place.environment)
        record = next(
            (
                r
                for r in await self.release(release)
                if r.measured
                and r.service == question.service
                and r.request.canary.deployment == question.canary
                and r.request.requested_by == place.requested_by
            ),
            None,
        )
        if record is None:
            window = question.window or 0.0
            pulled = question.source
            spec = AnalysisSpec.model_validate(
                {
                    **{name: getattr(place, name) for name in AnalysisPlace.model_fields},
                    "source": None
                    if pulled is None
                    else {
                        "type": "loki",
                        "canary_selector": pulled.canary_selector,
                        "baseline_selector": pulled.baseline_selector,
                    },
                    "labels": labels,
                    "service": question.service,
                    "canary": {"deployment": question.canary},
                    "baseline": {"deployment": question.baseline, "history": question.uses_history},
                    "canary_weight": question.canary_weight,
                    "duration": max(window, 1.0),
                    "sensitivity": question.sensitivity or self.config.default_sensitivity,
                }
            )
            record = AnalysisRecord(
                id=uuid.uuid4().hex,
                service=question.service,
                request=spec,
                status="completed",
                started_at=at - window,
                ends_at=at,
                finished_at=at,
                measured=True,
            )
            self.records[record.id] = record
        record.verdict = verdict
        record.ends_at = record.finished_at = max(at, record.ends_at)
        record.add_risk_sample(at, verdict.risk)
        await self._save(record)
        return record

    async def cancel(self, record: AnalysisRecord) -> None:
        """Stops a running analysis and removes its gauges; cancelling twice is a no-op.

        Raises AnalysisFinished for a completed analysis: its final verdict stays as it is.
        """
        if record.status == "completed":
            raise AnalysisFinished(f"analysis {record.id!r} already completed; its verdict is final")
        if record.status == "running":
            record.status = "cancelled"
            record.finished_at = time.time()
            self.gauges.unpublish(record)
            await self.pulls.drop(record.id)
            await self._save(record)

    def prune(self, now: float) -> list[str]:
        """Forgets completed and cancelled analyses that ended over LOGCANARY_RETENTION_ANALYSES_DAYS ago, and the
        oldest-ended past LOGCANARY_RETENTION_ANALYSES_MAX, so the store stays bounded however busy the pipelines.

        Returns their ids, for the store to delete. Running analyses are never pruned.
        """
        ended = sorted(
            (record for record in self.records.values() if record.status != "running"),
            key=lambda r: (r.finished_at if r.finished_at is not None else now, r.id),
            reverse=True,
        )
        old = [record.id for record in ended[self.retention.max_kept :]]
        if self.retention.days > 0:
            cutoff = now - self.retention.days * DAY
            old += [
                record.id
                for record in ended[: self.retention.max_kept]
                if (record.finished_at if record.finished_at is not None else now) < cutoff
            ]
        for analysis_id in old:
            del self.records[analysis_id]
        return old

    async def _save(self, record: AnalysisRecord) -> None:
        # A copy: the loop may change the record (its next evaluation) while the thread writes this one.
        await self.write(self.repository.save_analysis, dataclasses.replace(record))

    # -- evaluation --------------------------------------------------------------------------------------------

    async def _evaluate(self, record: AnalysisRecord, now: float, model: ServiceModel, publish: bool = True) -> bool:
        """Computes the analysis' verdict over its own window (event time from its start to its end: events stamped
        slightly ahead of this clock still count); completes it when its time is up or it failed fast. True when
        this evaluation completed it (the caller saves it, then :meth:`_announce` counts and notifies the end)."""
        judgement = await self._judge(record, model, now)
        if record.status != "running":  # cancelled (or completed by another evaluation) meanwhile
            return False
        verdict = judgement.verdict
        record.verdict = verdict
        done = (now >= record.ends_at and self._whole(record, now)) or (
            record.request.fail_fast and verdict.verdict == "fail"
        )
        record.add_risk_sample(now, verdict.risk, last=done)  # the history page's chart
        if done:
            record.status = "completed"
            record.finished_at = now
            self.gauges.unpublish(record)
            self.rules.analyses_ended(self.records.values())  # a failed canary leaves the history baselines
            await self.pulls.drop(record.id)
        elif publish:
            self.gauges.publish(record)
        return done

    async def _judge(self, record: AnalysisRecord, model: ServiceModel, now: float) -> Judgement:
        """The verdict of an evaluation: over the live engine within the analysis' window, or over what its log
        store holds for it (pulled up to now, and to its end at the last evaluation)."""
        question = question_of(record)
        spec = record.request.source
        if spec is None:
            return await self.verdicts.compute(model, question, (record.started_at, record.ends_at))
        request = record.request

        def make() -> Pulled:
            return self.pulls.open(
                spec,
                record.service,
                request.canary.deployment,
                request.baseline.deployment,
                record.started_at,
                history=request.baseline.history or request.baseline.deployment is None,
            )

        pulled = await self.pulls.refreshed(record.id, make, min(now, record.ends_at), REFRESH_WAIT_SECONDS)
        judgement = await self.verdicts.compute(pulled.model(), question, None, pulled.live)
        return pulled.judged(judgement)

    def _whole(self, record: AnalysisRecord, now: float) -> bool:
        """Past its end, an analysis is judged whole: at once from the events sent to logcanary; from a log store
        once the store gave every line up to the end (or a grace passed: the verdict then says what was missing)."""
        if record.request.source is None or now >= record.ends_at + SOURCE_GRACE_SECONDS:
            return True
        pulled = self.pulls.held(record.id)
        return pulled is not None and pulled.covers(record.ends_at)

    def _announce(self, record: AnalysisRecord) -> None:
        """Counts a completed analysis' final verdict and notifies it: once per analysis."""
        if record.verdict is not None:
            self.gauges.count(record.verdict, record.request.environment)
        self.on_end(record)

    async def evaluate_running(self) -> None:
        """Refreshes every running analysis, yielding to requests and ingestion between two; completes (and
        saves, off the loop) those whose time is up or that failed fast."""
        now = time.time()
        for record in list(self.records.values()):
            if record.status != "running":
                continue
            model = self.state.engine.peek_service(record.service)
            if await self._evaluate(record, now, model):
                await self._save(record)
                self._announce(record)
            await asyncio.sleep(0)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(EVALUATE_EVERY_SECONDS)
            try:
                await self.evaluate_running()
            except Exception:  # a bad analysis must not stop the others
                log.exception("evaluating analyses failed")
