"""Long-running canary analyses, feedback rules and on-demand verdicts over a time window.

An analysis watches a canary for ``duration`` from its creation: its verdict is
recomputed every few seconds over the events since it started, published as
the ``logcanary_analysis_risk`` and ``logcanary_analysis_verdict`` gauges, and
frozen when it completes (or fails early with ``fail_fast``). The gauges hold
one series per running analysis, from its creation (and again after a restart)
until it ends; verdicts asked on demand never touch metrics, so reads cannot
move a gate. Analyses and feedback live in the store.

**Off the loop, and no queue of gates.** The event loop also ingests, so it never waits on the store: every
store call made here (analyses, feedback, marks) runs in one dedicated writer thread, in the order the loop
asked for it (a later save of a record never lands before an earlier one), on a copy of the record taken on
the loop. The store's lock may be held by a checkpoint for a while; only that thread waits for it.

Verdicts are computed on the loop thread, on purpose: the engine has a single writer (the loop, in
``LiveState.observe``), and a Kafka batch or an HTTP chunk is applied with no await inside, so a verdict
computed on the loop always reads whole batches and a consistent cut of every count. A worker thread would
read dicts while they change (or need a copy of the engine per verdict), and ``analyze`` is pure Python:
under the GIL a thread would not make it run beside ingestion anyway. So verdicts are made cheap instead,
and are not computed once per gate: :class:`VerdictCache` answers a question (service, canary, baseline,
history, sensitivity, window, compact) from the verdict computed for it at most
``LOGCANARY_VERDICT_MAX_AGE_SECONDS`` (1 s) ago, with the same feedback, marks and failed analyses. Twenty
gates polling one canary cost one computation per second; concurrent identical questions share it (the
first computes it while the loop runs nothing else; the others, queued behind it, find it). A gate
tolerates a lag of one checkpoint interval (5 s); a cached answer is at most 1 s behind ingestion, and says
how old it is (``Logcanary-Computed-At``, ``Logcanary-Verdict-Age``). Feedback, a mark, or an analysis that
ends changes the rules version in the key, so those are seen by the next verdict at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar, cast

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from logcanary.analysis.feedback import compile_rules
from logcanary.analysis.verdict import analyze
from logcanary.engine.model import ServiceModel
from logcanary.metrics import VERDICTS
from logcanary.schemas import (
    AnalysisSpec,
    BaselineRef,
    CanaryRef,
    DeploymentMark,
    DeploymentMarkIn,
    Feedback,
    FeedbackIn,
    Sensitivity,
    Verdict,
)
from logcanary.state import REFRESH_AFTER, LiveState
from logcanary.store.base import AnalysisRecord, Repository, SharedRepository

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
MAX_DURATION_SECONDS = 7 * 86400
EVALUATE_EVERY_SECONDS = 2.0
LEASE_SECONDS = 10.0  # scale-out: a running analysis whose evaluator was silent this long is taken over


def parse_duration(value: object) -> float:
    """Seconds from 300, "300", "90s", "5m", "1.5h" or "2d"."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"invalid duration {value!r}: use seconds or a number with ms, s, m, h or d")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not 0 < seconds <= MAX_DURATION_SECONDS:
        raise ValueError(f"duration must be more than 0 and at most {MAX_DURATION_SECONDS} s")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class AnalysisIn(BaseModel):
    """Start watching a canary."""

    model_config = ConfigDict(extra="forbid")
    service: str = Field(min_length=1, max_length=256)
    canary: CanaryRef
    baseline: BaselineRef
    duration: Duration = Field(600.0, description="How long to watch, in seconds or like '10m'.")
    sensitivity: Sensitivity | None = Field(None, description="Default: the service's LOGCANARY_DEFAULT_SENSITIVITY.")
    fail_fast: bool = Field(False, description="Complete with 'fail' as soon as the verdict fails.")


class AnalysisOut(BaseModel):
    """An analysis and its current (or final) verdict."""

    id: str
    service: str
    canary: CanaryRef
    baseline: BaselineRef
    sensitivity: Sensitivity
    fail_fast: bool
    status: str = Field(description="running, completed or cancelled.")
    started_at: datetime
    ends_at: datetime
    finished_at: datetime | None
    verdict: Verdict | None = Field(description="Current verdict while running; final once completed.")


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


class TooManyAnalyses(Exception):
    """More running analyses than LOGCANARY_MAX_RUNNING_ANALYSES: each is a metric series, so they are capped."""


class UnknownTemplate(Exception):
    """Feedback naming a template id (and no template text) or a deployment the service does not know."""


class AnalysisFinished(Exception):
    """Cancelling an analysis that already completed: its verdict is final."""


_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class CachedVerdict:
    """A verdict answered for a question, with when it was computed."""

    verdict: Verdict
    body: bytes  # the verdict as JSON, serialised once
    computed_at: float  # epoch seconds, taken before the computation began (never fresher than it is)
    monotonic: float  # the cache's clock then
    rules: int  # Analyses.rules_version it was computed with


class VerdictCache:
    """Verdicts by question, each answered again for at most ``max_age`` seconds (0: never).

    An entry is served only if it is younger than ``max_age`` by the cache's clock and was computed under the
    current rules version (feedback, marks, ended analyses); it never changes state or metrics. Past three
    quarters of its age it is still served, while one new computation for the question runs in the background:
    a gate polling steadily never waits for a computation. Concurrent askers of a question being computed share
    that computation. Expired entries are dropped whenever one is added, and at most ``max_entries`` questions
    are kept (the least recently used going first), so the memory held is that of the questions asked within
    ``max_age``, at most 256 verdicts.
    """

    def __init__(self, max_age: float, max_entries: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[Hashable, CachedVerdict] = OrderedDict()
        self._computing: dict[Hashable, tuple[int, asyncio.Task[CachedVerdict]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, rules: int) -> CachedVerdict | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.rules != rules or self.clock() - entry.monotonic > self.max_age:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    async def answer(self, key: Hashable, rules: int, compute: Callable[[], Awaitable[Verdict]]) -> CachedVerdict:
        """The cached verdict for ``key``, or ``compute()``'s (then kept when caching is on)."""
        found = self.get(key, rules)
        if found is not None:
            if self.clock() - found.monotonic > self.max_age * REFRESH_AFTER:
                self._start(key, rules, compute)  # in the background; this answer is still within its bound
            return found
        if self.max_age <= 0:  # always computed afresh, never shared nor kept
            return await self._computed(rules, compute)
        return await asyncio.shield(self._start(key, rules, compute))

    def _start(
        self, key: Hashable, rules: int, compute: Callable[[], Awaitable[Verdict]]
    ) -> asyncio.Task[CachedVerdict]:
        running = self._computing.get(key)
        if running is not None and running[0] == rules:
            return running[1]
        task = asyncio.ensure_future(self._computed(rules, compute))
        self._computing[key] = (rules, task)

        def done(task: asyncio.Task[CachedVerdict]) -> None:
            if self._computing.get(key, (rules, None))[1] is task:
                del self._computing[key]
            if task.cancelled():
                return
            if (error := task.exception()) is not None:  # awaited askers get it too; a refresh only logs it
                log.warning("computing a verdict failed: %r", error)
                return
            self._put(key, task.result())

        task.add_done_callback(done)
        return task

    async def _computed(self, rules: int, compute: Callable[[], Awaitable[Verdict]]) -> CachedVerdict:
        computed_at, monotonic = time.time(), self.clock()
        verdict = await compute()
        body = await asyncio.to_thread(lambda: orjson.dumps(verdict.model_dump(mode="json")))
        return CachedVerdict(verdict, body, computed_at, monotonic, rules)

    def _put(self, key: Hashable, entry: CachedVerdict) -> None:
        current = self._entries.get(key)
        if current is not None and current.monotonic >= entry.monotonic:
            return  # a newer answer is kept already
        now = self.clock()
        expired = [k for k, e in self._entries.items() if now - e.monotonic > self.max_age]
        for old in expired:
            del self._entries[old]
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class Analyses:
    """Analyses, feedback and verdicts on top of the live state."""

    def __init__(self, state: LiveState, repository: Repository) -> None:
        self.state = state
        self.repository = repository
        self.records: dict[str, AnalysisRecord] = {}
        self.feedback: list[Feedback] = []
        self.marks: dict[tuple[str, str], DeploymentMark] = {}  # (service, canonical deployment) -> a person's mark
        self._task: asyncio.Task[None] | None = None
        self.on_end: Callable[[AnalysisRecord], None] = lambda record: None  # notifications (logcanary.notify)
        # Bumped by whatever changes a verdict besides events: feedback, marks, analyses that end.
        self.rules_version = 0
        self.verdicts = VerdictCache(state.settings.verdict_max_age_seconds)
        self._published: set[str] = set()  # analyses whose gauges this process holds
        # One thread for every store call made from the loop: in order, and the loop never waits on the store lock.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logcanary-analyses-store")

    async def _store(self, call: Callable[..., _T], *args: Any) -> _T:
        """Runs a store call in the writer thread (after those asked before it) and awaits its result."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, call, *args)

    async def _save(self, record: AnalysisRecord) -> None:
        # A copy: the loop may change the record (its next evaluation) while the thread writes this one.
        await self._store(self.repository.save_analysis, dataclasses.replace(record))

    def close(self) -> None:
        """Waits for the store calls asked so far (before the store is closed)."""
        self._writer.shutdown(wait=True)

    @property
    def shared(self) -> bool:
        """Scale-out: analyses, feedback and marks live in the shared store, and replicas lease running analyses."""
        return self.state.owned is not None

    def load(self) -> None:
        """Reads analyses and feedback; running analyses get their gauges back at once (evaluated now). In
        scale-out the analysis loop leases them instead (:meth:`evaluate_running`)."""
        self._read_shared()
        if self.shared:
            return
        now = time.time()
        for record in self.records.values():
            if record.status == "running":
                self._publish(record)
                try:
                    model = self.state.engine.peek_service(record.service)
                    if self._refresh(record, now, model):  # load runs in a worker thread: the store may be called
                        self.repository.save_analysis(record)
                except Exception:  # the loop retries it; a bad analysis must not stop the start
                    log.exception("evaluating analysis %s failed", record.id)

    def _read_shared(self) -> None:
        """Analyses, feedback and marks as the store holds them (blocking). A change another replica made to
        what verdicts depend on (a rule, a mark, an analysis that ended) bumps the rules version here too."""
        store = self.repository
        records = {record.id: record for record in store.load_analyses()}
        feedback = store.list_feedback()
        marks = {(mark.service, mark.deployment): mark for mark in store.load_marks()}
        ended = {r.id for r in records.values() if r.status != "running"}
        if (
            [f.id for f in feedback] != [f.id for f in self.feedback]
            or marks != self.marks
            or ended != {r.id for r in self.records.values() if r.status != "running"}
        ):
            self.rules_version += 1
        self.records, self.feedback, self.marks = records, feedback, marks

    async def refresh(self) -> None:
        """Scale-out: reads analyses, feedback and marks again, so a list answers what another replica just
        added (single process: what this one holds is all there is)."""
        if self.shared:
            await asyncio.to_thread(self._read_shared)

    async def find(self, analysis_id: str) -> AnalysisRecord | None:
        """An analysis as every replica sees it: in scale-out, read from the store (another replica may have
        created it, or evaluated it since)."""
        if not self.shared:
            return self.records.get(analysis_id)
        store = cast(SharedRepository, self.repository)
        record = await asyncio.to_thread(store.load_analysis, analysis_id)
        if record is not None:
            self.records[record.id] = record
        return record

    # -- verdicts ---------------------------------------------------------------------------

    def verdict(
        self,
        model: ServiceModel,
        canary: str,
        baseline: str | None,
        history: bool,
        sensitivity: Sensitivity | None,
        window: tuple[float, float] | None,
    ) -> Verdict:
        """The verdict now; the canary's and control's counts are taken within ``window`` (event time).

        ``canary`` and ``baseline`` may be any identity of a deployment (a hash, a version, Flagger's names):
        the verdict judges, and names, the deployments they resolve to.
        """
        return self.verdict_job(model, canary, baseline, history, sensitivity)(window)

    def verdict_job(
        self,
        model: ServiceModel,
        canary: str,
        baseline: str | None,
        history: bool,
        sensitivity: Sensitivity | None,
    ) -> Callable[[tuple[float, float] | None], Verdict]:
        """:meth:`verdict` in two steps: what depends on this object (feedback, names, analyses) is taken now,
        on the loop; the returned function only reads the model, so it may run in a worker thread."""
        service = model.name
        rules = compile_rules([f for f in self.feedback if f.service == service], model.miner)
        canary = model.resolve(canary) or canary
        if baseline:
            baseline = model.resolve(baseline) or baseline
        control = [baseline] if baseline else []
        excluded = self.excluded_from_history(service)
        chosen = sensitivity or self.state.settings.default_sensitivity

        def compute(window: tuple[float, float] | None) -> Verdict:
            return analyze(
                model,
                canary=canary,
                baseline=control,
                history=history,
                sensitivity=chosen,
                feedback=rules,
                window=window,
                exclude_history=excluded,
            )

        return compute

    def excluded_from_history(self, service: str) -> set[str]:
        """Deployments no history baseline may use: the canaries of completed analyses that failed, and those
        a person marked bad. A person's mark wins either way (``bad: false`` lets a false alarm back in)."""
        failed = {
            record.verdict.canary
            for record in self.records.values()
            if record.service == service
            and record.status == "completed"
            and record.verdict is not None
            and record.verdict.verdict == "fail"
        }
        marked = {deployment: mark.bad for (name, deployment), mark in self.marks.items() if name == service}
        return {name for name in failed if marked.get(name, True)} | {name for name, bad in marked.items() if bad}

    async def cached_verdict(
        self,
        model: ServiceModel,
        canary: str,
        baseline: str | None,
        history: bool,
        sensitivity: Sensitivity | None,
        seconds: float | None,
        shape: Callable[[Verdict], Verdict] | None = None,
    ) -> CachedVerdict:
        """The answer to an on-demand question over the last ``seconds`` of event time (None: all): computed now,
        or at most LOGCANARY_VERDICT_MAX_AGE_SECONDS ago under the same rules (:class:`VerdictCache`). It is
        computed in a worker thread while ingestion waits (:meth:`LiveState.read_in_thread`), so other requests
        are served meanwhile. ``shape`` (the compact form) is part of the question."""
        state = self.state
        live = state.engine.services.get(model.name) is model  # else a snapshot of another replica's service

        async def compute() -> Verdict:
            job = self.verdict_job(model, canary, baseline, history, sensitivity)  # on the loop: rules, names

            def run() -> Verdict:
                # The window ends at the time of computing: events stamped ahead of this clock (skew) still count.
                window = None if seconds is None else (time.time() - seconds, math.inf)
                verdict = job(window)
                return shape(verdict) if shape is not None else verdict

            return await state.read_in_thread(run, live)

        key = (model.name, canary, baseline, history, sensitivity, seconds, shape)
        return await self.verdicts.answer(key, self.rules_version, compute)

    async def mark(self, service: str, deployment: str, entry: DeploymentMarkIn) -> DeploymentMark:
        """Stores a person's mark on a deployment (its canonical name), replacing an earlier one."""
        mark = DeploymentMark(**entry.model_dump(), service=service, deployment=deployment, marked_at=datetime.now(UTC))
        await self._store(self.repository.save_mark, mark)
        self.marks[(service, deployment)] = mark
        self.rules_version += 1
        return mark

    def count_verdict(self, verdict: Verdict) -> None:
        """Counts a completed analysis' final verdict (never an on-demand one: reads change no metric)."""
        metrics = self.state.metrics
        metrics.analyses.labels(verdict.verdict).inc()
        for anomaly in verdict.anomalies:
            metrics.anomalies.labels(anomaly.kind).inc()

    # -- analyses -----------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return sum(1 for record in self.records.values() if record.status == "running")

    async def create(self, request: AnalysisIn, replace: bool = False) -> AnalysisRecord:
        """Starts an analysis; its gauges exist from now on. Raises TooManyAnalyses past the cap.

        ``replace`` first cancels running analyses of the same service and canary (a new rollout of it).
        """
        if replace:
            for record in list(self.records.values()):
                same = record.service == request.service and record.request.canary == request.canary
                if same and record.status == "running":
                    await self.cancel(record)
        limit = self.state.settings.max_running_analyses
        if self.running >= limit:
            raise TooManyAnalyses(
                f"{limit} analyses are running (LOGCANARY_MAX_RUNNING_ANALYSES): wait for one to end or cancel one"
            )
        now = time.time()
        spec = AnalysisSpec.model_validate(
            {**request.model_dump(), "sensitivity": request.sensitivity or self.state.settings.default_sensitivity}
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
        model = await self.state.read_service(record.service) or self.state.engine.peek_service(record.service)
        self._evaluate(record, now, model, publish=not self.shared)
        await self._save(record)
        if self.shared:  # evaluated from now on by whichever replica leases it (this one, unless busy elsewhere)
            await self.evaluate_running()
        return record

    def prune(self, now: float) -> list[str]:
        """Forgets completed and cancelled analyses that ended over LOGCANARY_RETENTION_ANALYSES_DAYS ago.

        Returns their ids, for the store to delete. Running analyses are never pruned.
        """
        days = self.state.settings.retention_analyses_days
        if days <= 0:
            return []
        cutoff = now - days * 86_400.0
        old = [
            record.id
            for record in self.records.values()
            if record.status != "running" and (record.finished_at if record.finished_at is not None else now) < cutoff
        ]
        for analysis_id in old:
            del self.records[analysis_id]
        return old

    async def cancel(self, record: AnalysisRecord) -> None:
        """Stops a running analysis and removes its gauges; cancelling twice is a no-op.

        Raises AnalysisFinished for a completed analysis: its final verdict stays as it is.
        """
        if record.status == "completed":
            raise AnalysisFinished(f"analysis {record.id!r} already completed; its verdict is final")
        if record.status == "running":
            record.status = "cancelled"
            record.finished_at = time.time()
            self._unpublish(record)
            self.rules_version += 1
            await self._save(record)

    def view(self, record: AnalysisRecord) -> AnalysisOut:
        request = record.request
        return AnalysisOut(
            id=record.id,
            service=record.service,
            canary=request.canary,
            baseline=request.baseline,
            sensitivity=request.sensitivity,
            fail_fast=request.fail_fast,
            status=record.status,
            started_at=_time(record.started_at),
            ends_at=_time(record.ends_at),
            finished_at=_time(record.finished_at) if record.finished_at else None,
            verdict=record.verdict,
        )

    def _evaluate(
        self, record: AnalysisRecord, now: float, model: ServiceModel, publish: bool = True, announce: bool = True
    ) -> None:
        """Computes the analysis' verdict now; completes it when its time is up (or it failed fast), counting and
        notifying that end unless ``announce`` is off (the caller does it once the store kept the completion)."""
        request = record.request
        verdict = self.verdict(
            model,
            request.canary.deployment,
            request.baseline.deployment,
            request.baseline.history,
            request.sensitivity,
            # Event time from the start to the end of the analysis: events stamped slightly ahead of
            # this clock (skew between hosts) still count.
            (record.started_at, record.ends_at),
        )
        record.verdict = verdict
        done = now >= record.ends_at or (request.fail_fast and verdict.verdict == "fail")
        record.add_risk_sample(now, verdict.risk, last=done)  # the history page's chart
        if done:
            record.status = "completed"
            record.finished_at = now
            self._unpublish(record)
            self.rules_version += 1  # a failed canary leaves the history baselines
            if announce:
                self._announce(record)
        elif publish:
            self._publish(record)

    def _announce(self, record: AnalysisRecord) -> None:
        """Counts a completed analysis' final verdict and notifies it: once per analysis."""
        if record.verdict is not None:
            self.count_verdict(record.verdict)
        self.on_end(record)

    def _labels(self, record: AnalysisRecord) -> tuple[str, str, str]:
        return record.service, record.request.canary.deployment, record.id

    def _publish(self, record: AnalysisRecord) -> None:
        """Sets the running analysis' risk and verdict series (risk 0 and inconclusive before any verdict)."""
        metrics = self.state.metrics
        labels = self._labels(record)
        self._published.add(record.id)
        verdict = record.verdict
        metrics.risk.labels(*labels).set(verdict.risk if verdict else 0.0)
        current = verdict.verdict if verdict else "inconclusive"
        for name in VERDICTS:
            metrics.verdict.labels(*labels, name).set(1.0 if name == current else 0.0)

    def _unpublish(self, record: AnalysisRecord) -> None:
        """Removes the analysis' series: a finished analysis no longer gates anything."""
        metrics = self.state.metrics
        labels = self._labels(record)
        self._published.discard(record.id)
        for gauge, values in [(metrics.risk, labels), *((metrics.verdict, (*labels, name)) for name in VERDICTS)]:
            with contextlib.suppress(KeyError):  # never published (e.g. completed while the service was down)
                gauge.remove(*values)

    def _refresh(self, record: AnalysisRecord, now: float, model: ServiceModel, announce: bool = True) -> bool:
        """Recomputes a running analysis' verdict; True when that completed it (the caller saves it)."""
        if record.status != "running":
            return False
        self._evaluate(record, now, model, announce=announce)
        return record.status != "running"

    async def evaluate_running(self) -> None:
        """Refreshes every running analysis, yielding to requests and ingestion between two; completes (and
        saves, off the loop) those whose time is up or that failed fast."""
        if self.shared:
            await self._evaluate_leased()
            return
        now = time.time()
        for record in list(self.records.values()):
            if self._refresh(record, now, self.state.engine.peek_service(record.service)):
                await self._save(record)
            await asyncio.sleep(0)

    async def _evaluate_leased(self) -> None:
        """Scale-out: each running analysis is evaluated by one replica at a time, the one holding its lease in
        the store (renewed at every pass, LEASE_SECONDS long). When that replica dies or stops, its lease runs
        out and another takes the analysis over, from the verdict last saved. Only the holder publishes the
        analysis' gauges; a replica that lost a lease removes them."""
        store = cast(SharedRepository, self.repository)
        await self._store(self._read_shared)
        now = time.time()
        leased = await self._store(store.lease_analyses, self.state.replica_id, now, now + LEASE_SECONDS)
        held = set()
        for record in leased:
            model = await self.state.read_service(record.service) or self.state.engine.peek_service(record.service)
            self.records[record.id] = record
            held.add(record.id)
            completed = self._refresh(record, time.time(), model, announce=False)
            if completed:
                held.discard(record.id)
            saved = await self._store(store.save_leased_analysis, dataclasses.replace(record), self.state.replica_id)
            if not saved:  # another replica took it over (this one stalled past the lease): its gauges go, and
                held.discard(record.id)  # the end is that replica's to count and notify
                self._unpublish(record)
            elif completed:
                self._announce(record)  # the store kept this replica's completion: counted and notified once
            await asyncio.sleep(0)
        for analysis_id in self._published - held:
            lost = self.records.get(analysis_id)
            if lost is not None:
                self._unpublish(lost)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(EVALUATE_EVERY_SECONDS)
            try:
                await self.evaluate_running()
            except Exception:  # a bad analysis must not stop the others
                log.exception("evaluating analyses failed")

    # -- feedback -----------------------------------------------------------------------------

    async def add_feedback(self, entry: FeedbackIn) -> Feedback:
        """Stores a rule; a rule given only a template_id gets the template of that id (UnknownTemplate if none)."""
        data = entry.model_dump()
        model = await self.state.read_service(entry.service)
        if entry.deployment is not None and (model is None or model.resolve(entry.deployment) is None):
            raise UnknownTemplate(  # a not_a_risk rule on a name no deployment has would never apply
                f"no deployment {entry.deployment!r} of service {entry.service!r}: name the canary judged"
            )
        if entry.template is None:
            template = model.miner.get(entry.template_id) if model is not None and entry.template_id else None
            if template is None:
                raise UnknownTemplate(
                    f"no template {entry.template_id!r} in service {entry.service!r}: "
                    "give a template_id from a verdict of this service, or the template text"
                )
            data["template"] = template.text
        feedback = Feedback(**data, id=uuid.uuid4().hex, created_at=datetime.now(UTC))
        await self._store(self.repository.add_feedback, feedback)
        self.feedback.append(feedback)
        self.rules_version += 1
        return feedback

    async def delete_feedback(self, feedback_id: str) -> bool:
        deleted = await self._store(self.repository.delete_feedback, feedback_id)
        self.feedback = [f for f in self.feedback if f.id != feedback_id]
        self.rules_version += 1
        return deleted
