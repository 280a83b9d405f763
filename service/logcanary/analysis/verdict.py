"""Canary versus baseline: the verdict.

Each event type (template) the canary logged is compared with the baseline:

* not in the baseline, and not the *same event* as any baseline template
  (:mod:`logcanary.analysis.similarity`, searched among the baseline clusters
  most similar to the template's canary cluster): **unknown**; the same event in
  other letter case or punctuation is known, and listed as *reworded*;
* in the baseline, but with a canary count far above what its baseline count
  leads one to expect, the canary scaled by its *size factor* (the median ratio
  of the baseline's steady events; effect size, minimum count and a one-sided
  binomial test on the counts): **frequency**;
* in the baseline, with its count as expected but one of its values (a path, a state) taking a far larger share of
  it than in the baseline (:mod:`logcanary.analysis.values`): **frequency**, shown with the value;
* a baseline event that vanished or fell far below its expected count: **drop**.
  One the baseline shows steady (:mod:`logcanary.analysis.variability`) fails
  alone when the fall stands out from the baseline's own variability and does
  not move with many others (a change in the traffic mix); other drops are judged
  per cluster and fail only together (a silent failure stops several flows);
* the canary's events per second far below the control's, slice by slice
  (:mod:`logcanary.analysis.rates`): **rate**.

New events are weighed by evidence class (debug output and deprecation notices
never fail alone; an error or stack trace fails even once), by a test that the
baseline was big enough to have shown them, and by how much other low-level
novelty the canary logs (a chatty new build is not a broken one); a new info line logged one for one with a known
event is that event's second line (:mod:`logcanary.analysis.companions`). Data
sufficiency is decided first: missing or too little data is ``inconclusive``
with a ``reason_code``. Anomalies are grouped by cluster; the verdict fails when
one reaches the sensitivity's ``fail_score``, else it passes. Pure computation:
the caller supplies the models, feedback and time window.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from statistics import median
from typing import ParamSpec

from logcanary.analysis.binomial import binomial_head, binomial_tail
from logcanary.analysis.companions import companion_of
from logcanary.analysis.feedback import FeedbackRule
from logcanary.analysis.rates import rate_anomalies
from logcanary.analysis.sensitivity import LEVEL_WEIGHTS, UNKNOWN_WEIGHTS, evidence_class, host_factor, thresholds
from logcanary.analysis.similarity import respelled, same_event, same_words
from logcanary.analysis.values import rising_values, value_counts
from logcanary.analysis.variability import (
    MAX_SLICES,
    MIN_SLICES,
    STEADY_MAX_DISPERSION,
    Timeline,
    active_range,
    active_seconds,
    clip,
    dispersion,
    host_dispersion,
    is_steady,
    timeline,
)
from logcanary.common.times import utc
from logcanary.engine.clustering import Cluster, template_terms
from logcanary.engine.memory import degraded
from logcanary.engine.miner import OTHER, Template
from logcanary.engine.model import (
    BUCKET_SECONDS,
    MAX_EXAMPLES,
    SEVERITY_NAMES,
    DeploymentModel,
    ServiceModel,
    TemplateStats,
)
from logcanary.schemas import (
    Anomaly,
    ReasonCode,
    Reworded,
    Sensitivity,
    Suppressed,
    Thresholds,
    VanishedCluster,
    Verdict,
    VerdictName,
)

HISTORY_HALF_LIFE_SECONDS = 7 * 24 * 3600.0
HISTORY_MAX_DEPLOYMENTS = 10
CANDIDATE_CLUSTERS = 3  # baseline clusters searched for a same-event template
MAX_REPORTED_VANISHED = 20
DEFAULT_MAX_ANOMALIES = 10  # a gate's answer lists the strongest evidence; the count says how much more there is

Window = tuple[float, float] | None
OVERFLOW_TEMPLATE = "<*> (events of new types past the deployment's template cap)"
HISTORY_PREFIX = "history:"
P = ParamSpec("P")  # how a verdict names a history baseline deployment


@dataclass(frozen=True, slots=True)
class Scope:
    """What a verdict counted: the canary and control deployments within ``window``, history deployments over all
    time. The cluster map of a verdict counts the same."""

    canary: str
    control: tuple[str, ...]
    history: tuple[str, ...]
    window: Window

    @classmethod
    def of(cls, verdict: Verdict, window: Window) -> Scope:
        """The scope of a verdict published earlier (an analysis'), from the names it gives its baselines."""
        history = tuple(n.removeprefix(HISTORY_PREFIX) for n in verdict.baseline if n.startswith(HISTORY_PREFIX))
        control = tuple(n for n in verdict.baseline if not n.startswith(HISTORY_PREFIX))
        return cls(verdict.canary, control, history, window)


@dataclass(frozen=True, slots=True)
class Judgement:
    """A verdict with the scope it was computed over, and the canary templates it found new (whatever their score:
    the cluster map tells a new event below the fail score from a known one)."""

    verdict: Verdict
    scope: Scope
    novel: frozenset[str] = frozenset()


@dataclass(slots=True)
class _Side:
    """Counts of one side (canary or baseline) within the window, by live template."""

    counts: dict[Template, float] = field(default_factory=dict)
    stats: dict[Template, TemplateStats] = field(default_factory=dict)
    clusters: dict[int, Cluster] = field(default_factory=dict)  # by id(), deduplicated
    cluster_of: dict[Template, Cluster] = field(default_factory=dict)
    ever: set[Template] = field(default_factory=set)  # every template the side's deployments logged, any time
    total: float = 0.0
    nearest: _Nearest | None = None  # built on first use, once the side is complete
    word_index: _WordIndex | None = None  # built on first use (same_events)
    word_keys: dict[Template, tuple[str, frozenset[str]]] = field(default_factory=dict)  # memo of _word_key
    parts: list[tuple[DeploymentModel, Window, float]] = field(default_factory=list)  # what was added, how
    share: float | None = None  # memo of known_share (a canary side's, once both sides are complete)
    known: list[tuple[Template, TemplateStats]] | None = None  # memo of known_events (a canary side's)

    def words(self, template: Template) -> frozenset[str]:
        """The template's words (its :meth:`word_key`'s)."""
        return self.word_key(template)[1]

    def word_key(self, template: Template) -> tuple[str, frozenset[str]]:
        """:func:`_word_key`, computed once per template and call (templates do not change within a call)."""
        key = self.word_keys.get(template)
        if key is None:
            key = self.word_keys[template] = _word_key(template)
        return key

    def same_events(self, template: Template) -> Iterator[Template]:
        """This side's templates sharing the template's rarest words that are the same event (:class:`_WordIndex`;
        built on first use, once the side is complete)."""
        if self.word_index is None:
            self.word_index = _WordIndex(self)
        for candidate in self.word_index.candidates(self.words(template)):
            if same_event(template, candidate) or same_words(template, candidate):
                yield candidate

    def known_share(self, base: _Side) -> float:
        """The canary's share of the traffic both sides log: its events of templates the baseline logged too, over
        those and the baseline's of them (the whole volumes when they share none). Its own novelty is left out,
        so new events (a fault's, a start-up's) do not make the baseline look too small to have shown others."""
        if self.share is None:
            mine = sum(count for template, count in self.counts.items() if template in base.counts)
            theirs = sum(count for template, count in base.counts.items() if template in self.counts)
            if mine <= 0 or theirs <= 0:
                mine, theirs = self.total, base.total
            self.share = mine / (mine + theirs) if mine + theirs > 0 else 0.0
        return self.share

    def known_events(self, base: _Side) -> list[tuple[Template, TemplateStats]]:
        """The canary's templates the baseline logged too, with their canary stats (once both sides are complete)."""
        if self.known is None:
            self.known = [(t, self.stats[t]) for t in self.counts if t is not OTHER and base.counts.get(t)]
        return self.known

    def add(self, model: DeploymentModel, window: Window, weight: float = 1.0) -> None:
        self.parts.append((model, window, weight))
        total = 0
        # Events past the template caps count as one pseudo-template: never silently ignored.
        for template, stats in [*model.templates().items(), (OTHER, model.other)]:
            if template is not OTHER:
                self.ever.add(template)
            count = stats.count if window is None else stats.count_between(*window)
            if count <= 0:
                continue
            total += count
            self.counts[template] = self.counts.get(template, 0.0) + weight * count
            self.stats.setdefault(template, stats)
            cluster = self.cluster_of.setdefault(template, _cluster(model, template))
            self.clusters[id(cluster)] = cluster
        self.total += weight * total


@dataclass(slots=True)
class _Finding:
    kind: str
    template: Template
    cluster: Cluster
    canary: TemplateStats
    canary_count: int
    baseline_count: float
    score: float
    ratio: float | None = None
    p_value: float | None = None
    priority: bool = False
    novelty: int = 3  # the evidence class of an unknown event (0 debug-like .. 4 fatal)
    baseline_examples: list[str] = field(default_factory=list)
    baseline_level: int = 0
    steady: bool | None = None  # a drop: whether it fails alone (it stood out from the baseline's own variability)
    cluster_key: int = 0  # a drop: its baseline river cluster (id)
    shown: str | None = None  # what the anomaly shows as its template, when not the template's text (a value's rise)


def _cluster(model: DeploymentModel, template: Template) -> Cluster:
    return model.clusterer.other if template is OTHER else model.cluster_of(template)


def history_weights(service: ServiceModel, canary: DeploymentModel, exclude: set[str]) -> list[tuple[str, float]]:
    """Strictly earlier deployments (first seen before the canary), most recent first, weighted by the decay
    of their age. A later deployment is no precedent for the canary, and ``exclude`` (failed or marked bad)
    never is one."""
    others = [
        d
        for name, d in service.deployments.items()
        if name != canary.deployment and name not in exclude and d.first_seen < canary.first_seen
    ]
    others.sort(key=lambda d: d.last_seen, reverse=True)
    reference = canary.first_seen if math.isfinite(canary.first_seen) else max((d.last_seen for d in others), default=0)
    weights = []
    for model in others[:HISTORY_MAX_DEPLOYMENTS]:
        age = max(0.0, reference - model.last_seen)
        weights.append((model.deployment, 0.5 ** (age / HISTORY_HALF_LIFE_SECONDS)))
    return weights


def judge(
    service: ServiceModel,
    canary: str,
    baseline: Iterable[str] = (),
    history: bool = False,
    sensitivity: Sensitivity = "medium",
    feedback: Iterable[FeedbackRule] = (),
    window: Window = None,
    max_anomalies: int = DEFAULT_MAX_ANOMALIES,
    exclude_history: Iterable[str] = (),
    canary_weight: float | None = None,
) -> Judgement:
    """The verdict on deployment ``canary`` of ``service`` against control deployments and/or history.

    Data sufficiency is decided first: an unknown or silent canary, a missing or silent baseline,
    or too few events on either side is ``inconclusive`` with a ``reason_code``, never a pass and
    never a fail. ``exclude_history`` names deployments history must skip (failed or marked bad).
    ``canary_weight`` is the canary's share of traffic in percent, when the deploy tool routes it (its rate is
    then expected at ``weight / (100 - weight)`` of the control's; see :mod:`logcanary.analysis.rates`).
    """
    limits = thresholds(sensitivity)
    rules = [rule for rule in feedback if rule.applies_to(service, canary)]  # not_a_risk: its own canary only
    canary_model = service.peek_deployment(canary)
    canary_side = _Side()
    canary_side.add(canary_model, window)
    base = _Side()
    requested = [name for name in baseline if name]
    control = [name for name in requested if name != canary]
    names: list[str] = []
    used_control: list[str] = []
    used_history: list[str] = []
    for name in control:
        if name in service.deployments:
            base.add(service.deployments[name], window)
            names.append(name)
            used_control.append(name)
    if history:
        excluded = set(control) | set(exclude_history)
        for name, weight in history_weights(service, canary_model, excluded):
            base.add(service.deployments[name], None, weight)
            names.append(f"{HISTORY_PREFIX}{name}")
            used_history.append(name)
    scope = Scope(canary, tuple(used_control), tuple(used_history), window)

    def verdict_of(verdict: VerdictName, code: ReasonCode, reason: str, risk: float = 0.0) -> Verdict:
        return Verdict(
            verdict=verdict,
            risk=risk,
            reason=reason,
            reason_code=code,
            service=service.name,
            canary=canary,
            baseline=names,
            window_start=utc(window[0]) if window and math.isfinite(window[0]) else None,
            window_end=utc(window[1]) if window and math.isfinite(window[1]) else None,
            canary_events=int(canary_side.total),
            baseline_events=round(base.total, 3),
            anomalies=[],
            anomaly_count=0,
            vanished=_vanished(canary_side, base),
            degraded=degraded(service, [canary_model, *(service.deployments[n] for n in used_control + used_history)]),
            thresholds=limits,
        )

    insufficient = _insufficient(canary, canary_model, canary_side, requested, control, names, base, limits)
    if insufficient is not None:
        return Judgement(verdict_of("inconclusive", *insufficient), scope)

    findings: list[_Finding] = []
    suppressed: list[Suppressed] = []
    matched: dict[Template, Template] = {}  # canary template -> the baseline template of the same event
    reworded: dict[Template, Template] = {}  # canary template -> the baseline template it respells
    kin = _kin_counts(canary_side, base)
    judged = [
        _judge(template, int(count), canary_side, base, limits, matched, kin, reworded)
        for template, count in canary_side.counts.items()
    ]
    scaling = _scaling(canary_side, base, matched, judged, _profile(base, used_control))
    rises = _rises(canary_side, base, matched, limits, scaling.size)
    leads = {finding.template for finding in rises}
    rises.extend(_value_rises(canary_side, base, leads, limits))
    leads.update(finding.template for finding in rises)
    judged = [j for j in judged if j.kind != "none" or j.template not in leads]
    judged.extend(rises)
    judged.extend(_drops(base, canary_side, scaling, limits))
    for judgement in judged:
        template, cluster = judgement.template, judgement.cluster
        finding = judgement if judgement.kind != "none" else None
        rule_hits = [rule for rule in rules if rule.covers(template)]
        prioritised = any(rule.feedback.action == "priority" for rule in rule_hits)  # wins over silencing
        if not prioritised and any(rule.silences for rule in rule_hits):
            if finding is not None:
                ignore = next(rule for rule in rule_hits if rule.silences)
                suppressed.append(
                    Suppressed(
                        cluster_id=cluster.cluster_id,
                        template=template.text,
                        canary_count=judgement.canary_count,
                        feedback_id=ignore.feedback.id,
                    )
                )
            continue
        if prioritised:
            finding = finding or judgement
            if finding.kind == "none":
                finding.kind = "priority"
            finding.priority = True
            finding.score = max(finding.score, 2 * limits.fail_score)
        if finding is not None:
            findings.append(finding)

    _discount_noisy_novelty(findings)
    anomalies = _group(findings, canary_side.total, base.total)
    controls = [service.deployments[name] for name in used_control]
    typical = scaling.traffic if scaling.steady and not used_history else None
    anomalies.extend(rate_anomalies(canary_model, controls, window, limits, canary_weight, typical))
    failing = sorted((a for a in anomalies if a.score >= limits.fail_score), key=_evidence, reverse=True)
    top = max((a.score for a in anomalies), default=0.0)
    risk = min(round(100 * top / (top + limits.fail_score), 1), 100.0)
    if failing:
        result = verdict_of("fail", "anomalies", _fail_reason(failing), risk)
    else:
        result = verdict_of("pass", "no_anomaly", f"no anomaly reached the fail score of {limits.fail_score:g}", risk)
    result.anomalies = failing[:max_anomalies]
    result.anomaly_count = len(failing)
    result.suppressed = suppressed
    result.reworded = [
        Reworded(
            template=template.text,
            template_id=template.template_id,
            baseline_template=baseline.text,
            baseline_template_id=baseline.template_id,
            canary_count=round(canary_side.counts[template]),
        )
        for template, baseline in sorted(reworded.items(), key=lambda item: -canary_side.counts[item[0]])
    ][:MAX_REPORTED_VANISHED]
    return Judgement(result, scope, frozenset(j.template.template_id for j in judged if j.kind == "unknown"))


SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITY_NAMES)}


def _evidence(anomaly: Anomaly) -> tuple[int, float]:
    """How an anomaly ranks in the verdict's list and headline: by its evidence class first (a person's priority,
    then stack traces and errors, then warnings, then info), by score within one class. A release engineer reads a
    new exception before a new info line, whichever scored higher."""
    if anomaly.priority:
        rank = 5
    elif "\n\tat " in anomaly.template:  # a stack trace's template ends with its frames
        rank = max(SEVERITY_RANK[anomaly.level], 3)
    else:
        rank = SEVERITY_RANK[anomaly.level]
    return rank, anomaly.score


def _verdict_only(judging: Callable[P, Judgement]) -> Callable[P, Verdict]:
    @functools.wraps(judging)
    def verdict(*args: P.args, **kwargs: P.kwargs) -> Verdict:
        return judging(*args, **kwargs).verdict

    return verdict


analyze = _verdict_only(judge)
""":func:`judge`'s verdict alone."""


def _insufficient(
    canary: str,
    canary_model: DeploymentModel,
    canary_side: _Side,
    requested: list[str],
    control: list[str],
    used: list[str],
    base: _Side,
    limits: Thresholds,
) -> tuple[ReasonCode, str] | None:
    """Why the data cannot support a verdict, or None when it can. Checked before any judgement."""
    if canary_model.events == 0:
        return "unknown_canary", f"no events were ever seen from deployment {canary!r} of this service"
    if requested and not control:
        return "canary_is_baseline", f"the canary {canary!r} was named as its own baseline"
    if not used:
        if control:
            return "no_baseline", f"no events were ever seen from baseline deployment {control[0]!r}"
        return "no_baseline", "no baseline: name a baseline deployment, or the service needs earlier deployments"
    if canary_side.total <= 0:
        return "no_canary_events", f"the canary {canary!r} logged no events in the window"
    if base.total <= 0:
        return "no_baseline_events", "the baseline logged no events in the window"
    if canary_side.total < limits.min_canary_events or base.total < limits.min_baseline_events:
        return "too_few_events", (
            f"too little traffic to judge: canary {canary_side.total:g} events (needs {limits.min_canary_events}), "
            f"baseline {base.total:g} (needs {limits.min_baseline_events})"
        )
    return None


def _judge(
    template: Template,
    count: int,
    canary: _Side,
    base: _Side,
    limits: Thresholds,
    matched: dict[Template, Template],
    kin: Counter[tuple[str, frozenset[str]]],
    reworded: dict[Template, Template],
) -> _Finding:
    """Whether one canary template is new: an ``unknown`` finding, or kind ``none`` (known, or the same
    event as the baseline template recorded in ``matched``; :func:`_rises` judges its frequency).

    A template that is a baseline one respelled (other letter case or punctuation) is known: it is recorded in
    ``reworded``.

    An unknown event scores by its evidence class (:func:`evidence_class`), count and hosts. Below
    the error class it must also be significant: a baseline that saw events of its size would have
    shown it (``ABSENCE_MAX_P``), since a small baseline cannot call a rare event new.
    """
    stats, cluster = canary.stats[template], canary.cluster_of[template]
    nothing = _Finding("none", template, cluster, stats, count, base.counts.get(template, 0.0), 0.0)
    baseline_count = base.counts.get(template, 0.0)
    if baseline_count == 0 and template in base.ever:
        return nothing  # logged by the baseline before the window (its own start-up): known, not new
    if baseline_count == 0:
        match = None if template is OTHER else _same_event_in(template, cluster, base)
        if match is not None and respelled(template, match):
            reworded[template] = match
        if match is None:
            hosts = len(stats.hosts) + (1 if stats.other_hosts else 0)
            novelty = evidence_class(template, stats.max_severity)
            score = UNKNOWN_WEIGHTS[novelty] * count * host_factor(hosts)
            seen = kin.get(base.word_key(template), count)  # the event's count over all its split templates
            if novelty < 3 and canary.known_share(base) ** seen > ABSENCE_MAX_P:
                score = 0.0  # the baseline was too small to have shown an event this rare
            elif novelty <= 1 and companion_of(template, stats, canary.known_events(base), base.words) is not None:
                score = 0.0  # a known event's second line, logged one for one with it (analysis.companions)
            return _Finding("unknown", template, cluster, stats, count, 0.0, score, novelty=novelty)
        matched[template] = match
    return nothing


def _rises(
    canary: _Side, base: _Side, matched: dict[Template, Template], limits: Thresholds, size: float
) -> list[_Finding]:
    """Known events whose canary count is far above what their baseline count leads one to expect.

    Judged per baseline event, with the canary's events of it under split or reworded templates
    added up (an effect size, a minimum count and a one-sided binomial test); the finding names
    the canary template that holds most of them. The expectation is the baseline count times the canary's size
    factor (:func:`_scaling`): a restart burst in the baseline does not make every canary event look more frequent.
    """
    if base.total <= 0 or canary.total <= 0 or size <= 0:
        return []
    # One event may hold several templates on each side (lists of other lengths): add them all up.
    baseline_by_event: dict[tuple[str, frozenset[str]], float] = {}
    for template, count in base.counts.items():
        if template is not OTHER:
            key = base.word_key(template)
            baseline_by_event[key] = baseline_by_event.get(key, 0.0) + count
    members: dict[tuple[str, frozenset[str]], list[Template]] = {}
    for template in canary.counts:
        home = template if base.counts.get(template) else matched.get(template)
        if home is not None and home is not OTHER:
            members.setdefault(base.word_key(home), []).append(template)
    found = []
    for event, templates in members.items():
        count = round(sum(canary.counts[t] for t in templates))
        if count < limits.frequency_min_count:
            continue
        baseline_count = baseline_by_event[event]
        ratio = count / (size * (baseline_count + 0.5))
        if ratio < limits.frequency_min_ratio:
            continue
        p_value = binomial_tail(count, count + round(baseline_count), size / (1 + size))
        if p_value > limits.frequency_max_p:
            continue
        lead = max(templates, key=lambda t: canary.counts[t])
        stats = canary.stats[lead]
        score = _frequency_score(lead, stats, ratio, limits)
        found.append(
            _Finding("frequency", lead, canary.cluster_of[lead], stats, count, baseline_count, score, ratio, p_value)
        )
    return found


def _frequency_score(template: Template, stats: TemplateStats, ratio: float, limits: Thresholds) -> float:
    """A rise's score: ``fail_score x level weight x ln(ratio) / ln(min ratio)``. Debug-like events (debug lines,
    deprecation warnings) never fail a canary alone, new or not."""
    weight = LEVEL_WEIGHTS[stats.max_severity] if evidence_class(template, stats.max_severity) else 0.0
    return limits.fail_score * weight * math.log(ratio) / math.log(limits.frequency_min_ratio)


def _value_rises(canary: _Side, base: _Side, skip: set[Template], limits: Thresholds) -> list[_Finding]:
    """Known events one of whose values rose far above its baseline share (:mod:`logcanary.analysis.values`), the
    events already found more frequent (``skip``) apart: one finding per event, its strongest value, shown in place
    of the event's wildcard."""
    events = []
    canary_window = canary.parts[0][1] if canary.parts else None
    for template, stats in canary.known_events(base):
        if (
            template in skip
            or not stats.positions
            or stats.count < limits.frequency_min_count  # no value of it can reach the minimum count
            or not _in_window(stats, canary_window)
        ):
            continue
        mine = value_counts([(stats, 1.0)])
        if not any(count >= limits.frequency_min_count for counts in mine.values() for count in counts.values()):
            continue  # no value of it is frequent enough to be tested: the baseline's need not be read
        theirs = [
            (found, weight, window) for model, window, weight in base.parts if (found := model.stats.get(template))
        ]
        if all(_in_window(found, window) for found, _weight, window in theirs):
            events.append((template, mine, value_counts([(found, weight) for found, weight, _ in theirs])))
    best: dict[Template, _Finding] = {}
    for template, rise in rising_values(events, limits):
        stats = canary.stats[template]
        score = _frequency_score(template, stats, rise.ratio, limits)
        if template in best and best[template].score >= score:
            continue
        finding = _Finding(
            "frequency", template, canary.cluster_of[template], stats, rise.canary_count, rise.baseline_count, score
        )
        finding.ratio, finding.p_value = rise.ratio, rise.p_value
        shown = list(template.tokens)
        shown[rise.position] = rise.value
        finding.shown = " ".join(shown)
        best[template] = finding
    return list(best.values())


VALUES_IN_WINDOW = 0.9  # share of an event's occurrences that must lie in the window for its values to be read


def _in_window(stats: TemplateStats, window: Window) -> bool:
    """Whether a deployment's values of an event are the window's: values are counted over a deployment's life, so
    they are read only when nearly all of its occurrences (``VALUES_IN_WINDOW``) lie in the window (a long-running
    baseline's day holds other mixes of values than the canary's minutes)."""
    return window is None or stats.count_between(*window) >= VALUES_IN_WINDOW * stats.count


WORD_KEYS_CACHED = 20_000  # word keys kept across calls, by template content (then emptied)
_word_keys: dict[tuple[str, tuple[str, ...]], tuple[str, frozenset[str]]] = {}


def _word_key(template: Template) -> tuple[str, frozenset[str]]:
    """The template's trace signature and words. Kept across calls by the template's content (signature and
    tokens), never by the object, whose tokens change when it generalises: the same content, the same key."""
    content = (template.signature, tuple(template.tokens))
    key = _word_keys.get(content)
    if key is None:
        if len(_word_keys) >= WORD_KEYS_CACHED:
            _word_keys.clear()
        key = _word_keys[content] = (template.signature, frozenset(template_terms(template)))
    return key


def _kin_counts(canary: _Side, base: _Side) -> Counter[tuple[str, frozenset[str]]]:
    """Canary counts of the canary-only templates, summed over templates with the same words: the
    miner splits one event whose value is a list of varying length into one template per length."""
    kin: Counter[tuple[str, frozenset[str]]] = Counter()
    for template, count in canary.counts.items():
        if template is not OTHER and template not in base.counts:
            kin[base.word_key(template)] += round(count)
    return kin


@dataclass(slots=True)
class _Profile:
    """The baseline's own variability (:mod:`logcanary.analysis.variability`): each live template's count in each of
    its time slices and on each of its hosts."""

    line: Timeline
    counts: dict[Template, list[float]]
    hosts: dict[Template, dict[str, float]]
    host_totals: dict[str, float]
    bursts: frozenset[int]  # slices whose volume is BURST_FACTOR times the median slice's or more

    def of(self, templates: Iterable[Template]) -> list[float]:
        """The summed counts per slice of some templates."""
        out = [0.0] * self.line.slices
        for template in templates:
            for index, count in enumerate(self.counts.get(template, ())):
                out[index] += count
        return out

    def spread(self, templates: list[Template], slices: list[float] | None = None) -> tuple[float, bool]:
        """How much some templates' count varies in the baseline by itself, as an index of dispersion (1 for Poisson
        counts), and whether it is steady. Across hosts when the baseline's hosts are replicas logging the flow
        (``MIN_REPLICAS`` or more, most of the baseline's hosts): deployments compared over one window share what
        varies in time (load, phases), not what varies between replicas. Else across its time slices
        (:func:`logcanary.analysis.variability.is_steady`)."""
        by_host: dict[str, float] = {}
        for template in templates:
            for host, count in self.hosts.get(template, {}).items():
                by_host[host] = by_host.get(host, 0.0) + count
        present = [host for host, count in by_host.items() if count > 0]
        if len(present) >= MIN_REPLICAS and 3 * len(present) >= 2 * len(self.host_totals):
            spread = host_dispersion(by_host, self.host_totals)
            return spread, spread <= STEADY_MAX_DISPERSION
        if slices is None:
            slices = self.of(templates)
        return dispersion(slices), is_steady(slices)


def _profile(base: _Side, control: list[str]) -> _Profile | None:
    """The baseline's time slices and hosts: of its control deployments over the window when it has some, else of its
    history deployments (stretches of recording at other times, the gaps between them left out); None when its active
    time makes fewer than ``MIN_SLICES`` slices of a bucket or more."""
    parts = [part for part in base.parts if part[0].deployment in control] or base.parts
    if not parts:
        return None
    window = parts[0][1]
    seen: set[int] = set()
    for model, _window, _weight in parts:
        for stats in model.templates().values():
            seen.update(stats.buckets)
    segments = active_range(clip(seen, window), window, max(model.last_seen for model, _, _ in parts))
    seconds = active_seconds(segments)
    line = timeline(segments, max(float(BUCKET_SECONDS), seconds / MAX_SLICES))
    if line.slices < MIN_SLICES:
        return None
    counts: dict[Template, list[float]] = {}
    hosts: dict[Template, dict[str, float]] = {}
    host_totals: dict[str, float] = {}
    for model, part_window, weight in parts:
        for template, stats in model.templates().items():
            mine = line.per_slice(stats.buckets, weight)
            known = counts.get(template)
            counts[template] = mine if known is None else [a + b for a, b in zip(known, mine, strict=True)]
            inside = stats.count if part_window is None else stats.count_between(*part_window)
            if inside <= 0 or not stats.count:
                continue
            found = hosts.setdefault(template, {})
            for host, count in stats.hosts.items():  # all-time counts, shared out over the window's
                share = weight * inside * count / stats.count
                found[host] = found.get(host, 0.0) + share
                host_totals[host] = host_totals.get(host, 0.0) + share
    totals = [sum(column) for column in zip(*counts.values(), strict=True)] if counts else [0.0] * line.slices
    typical = sorted(totals)[len(totals) // 2]
    bursts = frozenset(index for index, total in enumerate(totals) if total >= BURST_FACTOR * max(typical, 1.0))
    return _Profile(line, counts, hosts, host_totals, bursts)


@dataclass(slots=True)
class _Flow:
    """A baseline event or cluster as the drops judge it."""

    members: list[Template]
    baseline_count: float
    canary_count: float  # its events in the canary, same events under other templates included
    spread: float  # its dispersion in the baseline (across replicas or time slices): 1 for Poisson counts
    steady: bool
    cluster: int  # its river cluster (id)


@dataclass(slots=True)
class _Scaling:
    """How the canary's counts compare with the baseline's: the size factor, the baseline's events and clusters."""

    size: float  # the canary's expected count of an event per baseline event (0: nothing to compare)
    events: list[_Flow]
    clusters: list[_Flow]
    steady: int  # steady events the size factor was taken from (0: it is the canary's volume over the baseline's)
    traffic: float  # the canary's events of established baseline events, per baseline event of them
    credit: dict[Template, float] = field(default_factory=dict)  # canary events per baseline template (same events)


def _scaling(
    canary: _Side, base: _Side, matched: dict[Template, Template], judged: list[_Finding], profile: _Profile | None
) -> _Scaling:
    """The canary's size factor against the baseline, and the baseline's events and clusters with their canary counts
    and their dispersion in the baseline (see :func:`_drops`)."""
    chatter = sum(f.canary_count for f in judged if f.kind == "unknown" and f.novelty == 0)
    scale = canary.total - chatter
    if scale <= 0 or base.total <= 0:
        return _Scaling(0.0, [], [], 0, 0.0)
    event_of = _events(base)
    credit: dict[Template, float] = {}  # canary events per baseline template, same events under other templates too
    for template, count in canary.counts.items():
        home = template if template in base.counts else matched.get(template)
        if home is not None and home is not OTHER:
            credit[home] = credit.get(home, 0.0) + count

    known: dict[tuple[int, ...], _Flow | None] = {}  # by its members: an event is often its cluster

    def flows(key: Callable[[Template], int]) -> list[_Flow]:
        groups: dict[int, list[Template]] = {}
        for template in event_of:
            groups.setdefault(key(template), []).append(template)
        out = []
        for members in groups.values():
            identity = tuple(id(t) for t in members)
            if identity in known:
                flow = known[identity]
            else:
                flow = known[identity] = _flow(members, base, credit, profile)
            if flow is not None:
                out.append(flow)
        return out

    events = flows(event_of.__getitem__)
    clusters = flows(lambda template: id(base.cluster_of[template]))
    ratios = [f.canary_count / f.baseline_count for f in events if f.steady]
    volume = scale / base.total
    established = sum(f.baseline_count for f in events)
    traffic = sum(f.canary_count for f in events) / established if established > 0 else volume
    if len(ratios) < SIZE_MIN_FLOWS:
        return _Scaling(volume, events, clusters, 0, traffic, credit)
    size = median(ratios)
    steady = len(ratios) if size > 0 else 0
    return _Scaling(size if size > 0 else volume, events, clusters, steady, traffic, credit)


def _flow(
    members: list[Template], base: _Side, credit: dict[Template, float], profile: _Profile | None
) -> _Flow | None:
    """Some baseline templates as one flow, or None when the baseline logged them only in its bursts (a restart's
    dump, a flood): not an established flow."""
    spread, steady = math.inf, False
    if profile is not None:
        slices = profile.of(members)
        present = [index for index, count in enumerate(slices) if count]
        if present and profile.bursts.issuperset(present):
            return None
        spread, steady = profile.spread(members, slices)
    return _Flow(
        members,
        sum(base.counts[t] for t in members),
        sum(credit.get(t, 0.0) for t in members),
        spread,
        steady,
        id(base.cluster_of[members[0]]),
    )


def _events(base: _Side) -> dict[Template, int]:
    """The baseline's templates grouped into events: within each river cluster, templates that are the same event
    (:func:`logcanary.analysis.similarity.same_event` or ``same_words``: a value or a placeholder in a word's place, a
    list of another length) are one; a cluster of more than ``EVENT_MAX_PAIRWISE`` templates is grouped by words
    only. An event's templates may share out its traffic differently on the two sides: judged apart, they would
    rise and drop by themselves."""
    clusters: dict[int, list[Template]] = {}
    for template in base.counts:
        if template is not OTHER:
            clusters.setdefault(id(base.cluster_of[template]), []).append(template)
    event_of: dict[Template, int] = {}
    for members in clusters.values():
        if len(members) > EVENT_MAX_PAIRWISE:
            keys: dict[tuple[str, frozenset[str]], int] = {}
            for template in members:
                event_of[template] = keys.setdefault(base.word_key(template), id(template))
            continue
        parent = list(range(len(members)))
        for i, j in itertools.combinations(range(len(members)), 2):
            first, second = _root(parent, i), _root(parent, j)
            if first != second and (same_event(members[i], members[j]) or same_words(members[i], members[j])):
                parent[second] = first
        for index, template in enumerate(members):
            event_of[template] = id(members[_root(parent, index)])
    return event_of


def _root(parent: list[int], index: int) -> int:
    """The representative of an index in a union-find forest (halving the path as it goes)."""
    while parent[index] != index:
        parent[index] = parent[parent[index]]
        index = parent[index]
    return index


def _drops(base: _Side, canary: _Side, scaling: _Scaling, limits: Thresholds) -> list[_Finding]:
    """Established baseline events that vanished from the canary or fell far below their expected count.

    What an event is expected to log in the canary is its baseline count times the canary's *size factor*: the
    median, over the baseline's steady events, of their canary-to-baseline ratios (flows moving together in
    proportion are the traffic, not a failure; a burst of start-up output or one event spiking does not make the
    others look rarer). Without enough steady events the factor is the canary's volume over the baseline's, its
    debug-like novelty (start-up dumps) left out. Canary templates that are the same event count for it.

    An event (:func:`_events`) the baseline shows steady (across replicas, or time slices; :meth:`_Profile.spread`)
    that falls to ``drop_max_ratio`` of its expected count or below fails the canary *alone* when the fall stands out
    from the baseline's own variability: a binomial test on its counts shrunk by its dispersion in the baseline, at
    ``frequency_max_p`` split over the events tested. Unless it moves with many others: more than
    ``MIX_MIN_FLOWS`` events at about the same ratio are a change in the traffic mix. Otherwise drops are judged per
    river cluster (coarser: an event templated anew in the canary still counts for its cluster), at
    ``1 / frequency_min_ratio`` or below with the plain binomial test, and fail only together: each scores at most
    ``fail_score x drops / DROP_QUORUM`` (a silent failure stops several flows at once; a phase of a test or a
    restart varies by itself).
    """
    size = scaling.size
    if size <= 0:
        return []
    share = size / (1 + size)
    found: list[_Finding] = []

    def ratio_of(flow: _Flow) -> float:
        return (flow.canary_count + 0.5) / (flow.baseline_count * size)

    tested = [flow for flow in scaling.events if flow.baseline_count * size >= DROP_MIN_EXPECTED]
    ratios = [ratio_of(flow) for flow in tested]
    for event, first in zip(tested, ratios, strict=True):
        if not event.steady or first > limits.drop_max_ratio:
            continue
        flow = _whole_event(event, scaling.credit, base)
        ratio = ratio_of(flow)
        if ratio > limits.drop_max_ratio:
            continue  # its lines went to its templates in other clusters
        shrink = max(1.0, flow.spread)
        count, baseline_count = flow.canary_count, flow.baseline_count
        p_value = binomial_head(round(count / shrink), round((count + baseline_count) / shrink), share)
        if p_value > limits.frequency_max_p / len(tested):
            continue
        if (
            ratio >= MIX_MIN_RATIO
            and sum(abs(math.log(r / ratio)) <= math.log(MIX_BAND) for r in ratios) > MIX_MIN_FLOWS
        ):
            continue  # it moves with many others: the traffic mix changed
        strength = min(2.0, math.log(1 / ratio) / math.log(1 / limits.drop_max_ratio))
        found.append(_drop(base, canary, flow, ratio, p_value, limits.fail_score * strength, alone=True))
    alone = {finding.cluster_key for finding in found}
    together: list[_Finding] = []
    for flow in scaling.clusters:
        expected = flow.baseline_count * size
        if expected < DROP_MIN_EXPECTED or flow.cluster in alone:
            continue
        ratio = (flow.canary_count + 0.5) / expected
        if ratio > 1 / limits.frequency_min_ratio:
            continue
        p_value = binomial_head(round(flow.canary_count), round(flow.canary_count + flow.baseline_count), share)
        if p_value > limits.frequency_max_p:
            continue
        strength = min(2.0, math.log(1 / ratio) / math.log(limits.frequency_min_ratio))
        together.append(_drop(base, canary, flow, ratio, p_value, limits.fail_score * strength, alone=False))
    quorum = min(1.0, len(together) / DROP_QUORUM)
    for finding in together:
        finding.score *= quorum
    for finding in (*found, *together):
        finding.score = round(finding.score, 3)
    return found + together


def _whole_event(flow: _Flow, credit: dict[Template, float], base: _Side) -> _Flow:
    """The event with its templates that river put in other baseline clusters (events are grouped within a cluster,
    :func:`_events`): ``[req-<*> <*> <*> - default default] Auditing ...`` and ``[req-<*> <*> <*> - <*> <*>] Auditing
    ...`` are one event, and a canary logging the second where the baseline logged the first has not dropped it.
    Found through the baseline's word index (:class:`_WordIndex`), for a dropping event only; ``credit``: the canary's
    events of each baseline template."""
    lead = max(flow.members, key=lambda t: base.counts[t])
    siblings = [other for other in base.same_events(lead) if all(other is not member for member in flow.members)]
    if not siblings:
        return flow
    return replace(
        flow,
        members=[*flow.members, *siblings],
        baseline_count=flow.baseline_count + sum(base.counts[template] for template in siblings),
        canary_count=flow.canary_count + sum(credit.get(template, 0.0) for template in siblings),
    )


def _drop(base: _Side, canary: _Side, flow: _Flow, ratio: float, p_value: float, score: float, alone: bool) -> _Finding:
    lead = max(flow.members, key=lambda t: base.counts[t])
    stats = canary.stats.get(lead) or TemplateStats()
    finding = _Finding(
        "drop", lead, base.cluster_of[lead], stats, round(flow.canary_count), flow.baseline_count, score, ratio, p_value
    )
    finding.baseline_examples = list(base.stats[lead].examples)
    finding.baseline_level = base.stats[lead].max_severity
    finding.steady = alone
    finding.cluster_key = flow.cluster
    return finding


DROP_QUORUM = 3  # distinct baseline clusters that must drop together to fail a canary alone
DROP_MIN_EXPECTED = 5.0  # a drop needs at least this many expected canary events
BURST_FACTOR = 4.0  # a baseline slice with this many times the median slice's events is a burst
MIN_REPLICAS = 3  # baseline hosts logging a flow for its dispersion to be read across hosts
MIX_MIN_FLOWS = 3  # other clusters at about a dropping cluster's ratio that make it a change in the traffic mix
MIX_BAND = 1.5  # "about the same ratio": within this factor
MIX_MIN_RATIO = 0.1  # a cluster below this ratio vanished: never a change in the mix
EVENT_MAX_PAIRWISE = 48  # templates of a cluster compared pairwise to group them into events (else by words)
SIZE_MIN_FLOWS = 3  # steady clusters needed to scale the canary by their median ratio (else by its volume)
NOISY_NOVELTY = 5  # low-level new event types a canary may log before their evidence is diluted
ABSENCE_MAX_P = 0.2  # chance that the baseline missed a low-level event by luck, above which it is not new


def _discount_noisy_novelty(findings: list[_Finding]) -> None:
    """A new version that logs many new info-level event types at once is chatty, not broken: their
    evidence is shared out, so that only one standing out from that noise (or an error) fails it."""
    low = [f for f in findings if f.kind == "unknown" and f.novelty <= 1 and not f.priority]
    noise = max(1.0, len(low) / NOISY_NOVELTY)
    for finding in low:
        finding.score /= noise


class _Nearest:
    """The baseline clusters most similar to a canary cluster, ranked exactly as
    ``sorted(clusters, key=lambda c: cosine(cluster.terms, c.terms), reverse=True)[:n]`` ranks them, for less.

    Only clusters sharing a word with the canary cluster have a cosine above 0, so they are found through an
    index of words and scored (the same integer dot product and norms as :func:`cosine`, so the same floats);
    ties keep the clusters' order, as a stable sort does, and clusters of cosine 0 follow in their order. A
    ranking is computed once per canary cluster and call: its unknown templates share it. Built after the
    side is complete, within one ``analyze`` call (nothing changes the clusters meanwhile).
    """

    def __init__(self, clusters: Iterable[Cluster]) -> None:
        self.clusters = list(clusters)
        self.norms = [math.sqrt(sum(count * count for count in c.terms.values())) for c in self.clusters]
        self.by_word: dict[str, list[tuple[int, int]]] = {}  # word -> (cluster index, the word's count in it)
        for index, cluster in enumerate(self.clusters):
            for word, weight in cluster.terms.items():
                self.by_word.setdefault(word, []).append((index, weight))
        self.ranked: dict[Cluster, list[Cluster]] = {}  # by the cluster itself (identity), held

    def top(self, cluster: Cluster, count: int) -> list[Cluster]:
        found = self.ranked.get(cluster)
        if found is not None:
            return found
        terms = cluster.terms
        dots: dict[int, int] = {}
        get = dots.get
        for word, weight in terms.items():
            for index, theirs in self.by_word.get(word, ()):
                dots[index] = get(index, 0) + weight * theirs
        own = math.sqrt(sum(c * c for c in terms.values()))
        norms = self.norms
        # The `count` first of the sort by (-cosine, index), without sorting them all (nsmallest is sorted()[:n]).
        best = heapq.nsmallest(count, [(-(dot / (own * norms[index])), index) for index, dot in dots.items() if dot])
        ranked = [self.clusters[index] for _, index in best]
        if len(ranked) < count:
            zero = (c for index, c in enumerate(self.clusters) if not dots.get(index))
            ranked.extend(itertools.islice(zero, count - len(ranked)))
        self.ranked[cluster] = ranked
        return ranked


def _same_event_in(template: Template, cluster: Cluster, base: _Side) -> Template | None:
    """A baseline template that is the same event, searched in the most similar baseline clusters, then among the
    baseline templates sharing the template's rarest words (:class:`_WordIndex`): a cluster's words are its members'
    together, so a template in a large canary cluster (``[req-<*> - - - - -] Auditing ...`` among a service's
    context-less lines) may not find its event's baseline cluster by them."""
    if base.nearest is None:
        base.nearest = _Nearest(base.clusters.values())
    for candidate in base.nearest.top(cluster, CANDIDATE_CLUSTERS):
        for other in candidate.templates:
            live = other.resolve()
            if base.counts.get(live) and (same_event(template, live) or same_words(template, live)):
                return live
    return next(base.same_events(template), None)


class _WordIndex:
    """The baseline's templates by word: a template's candidates for the same event are those sharing all but one,
    at most, of its ``RARE_WORDS`` rarest words the baseline has (a same event shares nearly all of its words: only
    a value may stand in a word's place). Bounded per call: ``MAX_POSTING`` templates read per word,
    ``MAX_CANDIDATES`` compared, those sharing the most first."""

    def __init__(self, base: _Side) -> None:
        self.by_word: dict[str, list[Template]] = {}
        for template, count in base.counts.items():
            if template is not OTHER and count > 0:
                for word in base.words(template):
                    self.by_word.setdefault(word, []).append(template)

    def candidates(self, words: frozenset[str]) -> list[Template]:
        # The rarest of the words the baseline has at all; ties by the word, not by the set's (hash-seeded) order.
        found = sorted((len(posting), word) for word in words if (posting := self.by_word.get(word)))
        postings = [self.by_word[word] for _, word in found[:RARE_WORDS]]
        shared: Counter[Template] = Counter()
        for posting in postings:
            shared.update(posting[:MAX_POSTING])
        least = min(len(postings), RARE_WORDS - 1)  # a same event shares nearly all of its words
        return [template for template, count in shared.most_common(MAX_CANDIDATES) if count >= least]


RARE_WORDS = 3  # a template's rarest words, by how many baseline templates have them, that find its candidates
MAX_POSTING = 256  # baseline templates read per word
MAX_CANDIDATES = 8  # baseline templates compared with a canary template, those sharing the most rare words first


def _group(findings: list[_Finding], canary_total: float, baseline_total: float) -> list[Anomaly]:
    """One anomaly per canary cluster and kind (at most MAX_EXAMPLES event types each), sorted by score."""
    groups: dict[tuple[str, str], list[_Finding]] = {}
    for finding in findings:
        groups.setdefault((finding.cluster.cluster_id, finding.kind), []).append(finding)
    anomalies = []
    for (cluster_id, kind), members in groups.items():
        members.sort(key=lambda f: f.score, reverse=True)
        for start in range(0, len(members), MAX_EXAMPLES):
            anomalies.append(
                _anomaly(cluster_id, kind, members[start : start + MAX_EXAMPLES], canary_total, baseline_total)
            )
    anomalies.sort(key=lambda a: a.score, reverse=True)
    return anomalies


def _examples(members: list[_Finding]) -> list[str]:
    """Up to MAX_EXAMPLES canary messages, one per event type first, then round-robin."""
    examples: list[str] = []
    for rank in range(MAX_EXAMPLES):
        for finding in members:
            if rank < len(finding.canary.examples) and len(examples) < MAX_EXAMPLES:
                examples.append(finding.canary.examples[rank])
    return examples


def _anomaly(
    cluster_id: str, kind: str, members: list[_Finding], canary_total: float, baseline_total: float
) -> Anomaly:
    lead = members[0]
    canary_count = sum(f.canary_count for f in members)
    baseline_count = sum(f.baseline_count for f in members)
    hosts = sorted({host for f in members for host in f.canary.hosts})
    first = min(f.canary.first_seen for f in members)
    return Anomaly(
        kind="frequency" if kind == "drop" else kind,
        direction="down" if kind == "drop" else "up" if kind == "frequency" else None,
        cluster_id=cluster_id,
        template=OVERFLOW_TEMPLATE if lead.template is OTHER else lead.shown or lead.template.text,
        template_ids=[f.template.template_id for f in members],
        examples=_examples(members),
        baseline_count=round(baseline_count),
        canary_count=canary_count,
        baseline_share=baseline_count / baseline_total if baseline_total else 0.0,
        canary_share=canary_count / canary_total if canary_total else 0.0,
        ratio=lead.ratio,
        p_value=lead.p_value,
        level=SEVERITY_NAMES[max(max(f.canary.max_severity, f.baseline_level) for f in members)],
        hosts=hosts[:64],
        first_seen=utc(first) if math.isfinite(first) else None,
        score=round(sum(f.score for f in members), 3),
        priority=any(f.priority for f in members),
        baseline_examples=[e for f in members for e in f.baseline_examples][:MAX_EXAMPLES],
        steady=any(bool(f.steady) for f in members) if kind == "drop" else None,
    )


def _vanished(canary: _Side, base: _Side) -> list[VanishedCluster]:
    gone = [(count, t) for t, count in base.counts.items() if t not in canary.counts]
    gone.sort(key=lambda item: item[0], reverse=True)
    return [
        VanishedCluster(cluster_id=t.template_id, template=t.text, baseline_count=round(count))
        for count, t in gone[:MAX_REPORTED_VANISHED]
    ]


def _fail_reason(failing: list[Anomaly]) -> str:
    lead = failing[0]
    if lead.kind == "unknown":
        what = "a never-seen event"
    elif lead.kind == "priority":
        what = "an event a person marked priority"
    elif lead.rate is not None:
        what = f"a rate of events at {lead.ratio or 0:.2f}x what the baseline leads one to expect"
    elif lead.direction == "down":
        what = f"an established event at {lead.ratio or 0:.2f}x its baseline share"
    else:
        what = f"an event {lead.ratio or 0:.1f}x more frequent"
    more = f" (and {len(failing) - 1} more anomalies)" if len(failing) > 1 else ""
    # A stack trace's template starts "headline\nException: message": name the exception too.
    summary = " | ".join(lead.template.splitlines()[:2])
    return f"{what} in the canary: {summary[:200]!r}{more}"
