"""The cluster map and the canary's clusters of one verdict: every event type of a canary and its baseline as a point,
and the canary's clusters as rows, all coloured by that verdict and counted over its own scope
(:class:`~logcanary.analysis.verdict.Scope`), so a page never shows a row, a dot or a finding of another question.

A point's state says what the verdict made of it: ``anomalous`` (an anomaly it lists), ``ignored`` (one a rule
silenced), ``known`` (the baseline logged it, in the window or before), ``new`` (the baseline never logged it, and
it stayed below the fail score), ``vanished`` (baseline only), or ``unjudged`` (the verdict judged nothing:
inconclusive). A canary cluster with no event in the window is listed with ``judged: false``: it was not part of
this verdict. Where each point sits is the caller's (:mod:`logcanary.analysis.layout`, places kept in the store).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from logcanary.analysis.verdict import OVERFLOW_TEMPLATE, Scope, Window
from logcanary.engine.miner import OTHER, Template
from logcanary.engine.model import SEVERITY_NAMES, DeploymentModel, ServiceModel, TemplateStats
from logcanary.schemas import Feedback, FeedbackAction, Verdict

PointState = Literal["known", "new", "anomalous", "vanished", "ignored", "unjudged"]
DEFAULT_MAX_POINTS = 1000
JUDGED = ("anomalies", "no_anomaly")  # reason codes of a verdict that judged the canary's events

Point = tuple[float, float]
RANK = {"anomalous": 0, "ignored": 1, "new": 2, "known": 3, "unjudged": 3, "vanished": 3}  # the order of points


class MapPoint(BaseModel):
    """One event type (template) of the canary or the baseline, placed on the map."""

    template_id: str = Field(description="Content-derived id; the same template has the same place on every map.")
    cluster_id: str = Field(description="Its cluster in the canary (or, for a baseline-only event, the baseline).")
    template: str
    x: float = Field(
        ge=0, le=1, description="Place across the map: laid out by similarity when first shown, then kept."
    )
    y: float = Field(ge=0, le=1, description="Place down the map.")
    state: PointState = Field(
        description="anomalous: part of an anomaly the verdict lists (its strongest ten; its anomaly_count says how "
        "many reached the fail score), a drop too (then in_canary is false); ignored: an anomaly a feedback rule "
        "silenced (ignore, or not_a_risk for this canary; feedback_action says which); known: logged by the canary "
        "and by the baseline (in the window, or before it); new: logged by the canary, never by the baseline, below "
        "the fail score; vanished: logged by the baseline only; unjudged: logged by the canary, but the verdict "
        "judged nothing (inconclusive: see its reason_code)."
    )
    in_canary: bool = Field(description="The canary logged it in the window.")
    canary_count: int = Field(ge=0, description="Events in the canary within the window.")
    baseline_count: int = Field(ge=0, description="Events in the baseline deployments (history: all time).")
    level: str = Field(description="Highest level seen on either side.")
    finding: str | None = Field(
        None, description="For an anomaly: unknown, frequency (up), drop (down) or priority; null otherwise."
    )
    score: float | None = Field(None, description="The anomaly's score, for an anomalous point.")
    anomaly: int | None = Field(
        None,
        description="For an anomalous point: the index of its anomaly in the verdict's list (one anomaly may "
        "hold several event types: the verdict counts anomalies, the map draws event types).",
    )
    feedback_id: str | None = Field(None, description="The rule that silenced an ignored point.")
    feedback_action: FeedbackAction | None = None


class MapTemplate(BaseModel):
    """A template of a canary cluster, counted within the verdict's window, with its evidence."""

    template_id: str
    template: str
    count: int = Field(ge=0, description="Events within the verdict's window.")
    total: int = Field(ge=0, description="Events of all time.")
    level: str
    hosts: list[str]
    hosts_capped: bool = Field(description="More hosts logged it than are kept (64): hosts is the first of them.")
    examples: list[str]
    first_seen: float | None = Field(description="Epoch seconds of the first event (all time).")
    last_seen: float | None


class MapCluster(BaseModel):
    """A canary cluster as the verdict saw it: its events within the window (and of all time, to say what it left
    out)."""

    cluster_id: str
    count: int = Field(ge=0, description="Canary events within the verdict's window.")
    total: int = Field(ge=0, description="Canary events of all time.")
    judged: bool = Field(
        description="Part of the verdict: it has events in the window, and the verdict judged the canary (not "
        "inconclusive). A row with judged false was not judged by this verdict."
    )
    templates: list[MapTemplate] = Field(description="Most events in the window first.")


@dataclass(slots=True)
class _Row:
    """A point before it is placed, with its place in the order of points."""

    template: Template
    fields: dict[str, object]
    order: tuple[int, int, str]


@dataclass(slots=True)
class ClusterMapData:
    """What :func:`cluster_map` computed: the points to place (by template), how many were left out, the clusters."""

    rows: list[_Row]
    omitted: int
    clusters: list[MapCluster] = field(default_factory=list)

    @property
    def templates(self) -> list[Template]:
        """The shown points' templates, in the points' order."""
        return [row.template for row in self.rows]

    def points(self, places: Mapping[str, Point]) -> list[MapPoint]:
        """The points, at their ``places`` (by template id)."""
        out = []
        for row in self.rows:
            x, y = places[row.template.template_id]
            out.append(MapPoint.model_validate({**row.fields, "x": x, "y": y}))
        return out


def _counts(dep: DeploymentModel, window: Window) -> dict[Template, tuple[int, int]]:
    """Events per live template within the window, with the highest severity (events past the caps as OTHER)."""
    out: dict[Template, tuple[int, int]] = {}
    for template, stats in [*dep.templates().items(), (OTHER, dep.other)]:
        count = stats.count if window is None else stats.count_between(*window)
        if count > 0:
            out[template] = (count, stats.max_severity)
    return out


def cluster_map(
    model: ServiceModel,
    verdict: Verdict,
    scope: Scope,
    feedback: list[Feedback],
    novel: frozenset[str] | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
) -> ClusterMapData:
    """The points of the verdict's canary and baseline and the canary's clusters, coloured by the verdict.

    Counts are taken as the verdict took them (its scope): the canary and control deployments within the window,
    history deployments over all time. ``novel`` names the canary templates the verdict found new (its
    :class:`~logcanary.analysis.verdict.Judgement`); without it (a verdict published earlier, whose judgement of
    each template was not kept), a template is new when no baseline deployment of the scope ever logged it.
    """
    canary_dep = model.deployments.get(scope.canary)
    canary = _counts(canary_dep, scope.window) if canary_dep is not None else {}
    baseline: dict[Template, list[int]] = {}
    owner: dict[Template, DeploymentModel] = {}
    ever: set[Template] = set()  # templates a baseline deployment of the scope logged at any time
    sides = [(name, scope.window) for name in scope.control] + [(name, None) for name in scope.history]
    for name, window in sides:
        dep = model.deployments.get(name)
        if dep is None:
            continue
        ever.update(dep.templates())
        for template, (count, level) in _counts(dep, window).items():
            entry = baseline.setdefault(template, [0, 0])
            entry[0] += count
            entry[1] = max(entry[1], level)
            owner.setdefault(template, dep)

    judged = verdict.reason_code in JUDGED
    anomalous: dict[str, tuple[str, float, int]] = {}
    for index, anomaly in enumerate(verdict.anomalies):
        finding = "drop" if anomaly.direction == "down" else anomaly.kind
        for template_id in anomaly.template_ids:
            anomalous.setdefault(template_id, (finding, anomaly.score, index))
    actions = {f.id: f.action for f in feedback}
    silenced = {s.template: s.feedback_id for s in verdict.suppressed}  # Suppressed names its template by text

    rows = []
    for template in {*canary, *baseline}:
        in_canary = template in canary
        count, canary_level = canary.get(template, (0, 0))
        base_count, base_level = baseline.get(template, (0, 0))
        text = OVERFLOW_TEMPLATE if template is OTHER else template.text
        ids = {template.template_id, *template.aliases}
        hit = next((anomalous[i] for i in ids if i in anomalous), None)
        feedback_id = silenced.get(template.text)
        state: PointState
        if hit is not None:
            state = "anomalous"
        elif feedback_id is not None:
            state = "ignored"
        elif not in_canary:
            state = "vanished"
        elif not judged:
            state = "unjudged"
        elif (template.template_id in novel) if novel is not None else (not base_count and template not in ever):
            state = "new"
        else:
            state = "known"
        dep = canary_dep if in_canary and canary_dep is not None else owner[template]
        cluster = dep.clusterer.other if template is OTHER else dep.cluster_of(template)
        fields: dict[str, object] = {
            "template_id": template.template_id,
            "cluster_id": cluster.cluster_id,
            "template": text,
            "state": state,
            "in_canary": in_canary,
            "canary_count": count,
            "baseline_count": base_count,
            "level": SEVERITY_NAMES[max(canary_level, base_level)],
            "finding": hit[0] if hit else None,
            "score": hit[1] if hit else None,
            "anomaly": hit[2] if hit else None,
            "feedback_id": feedback_id,
            "feedback_action": actions.get(feedback_id) if feedback_id else None,
        }
        rows.append(_Row(template, fields, (RANK[state], -(count + base_count), template.template_id)))
    rows.sort(key=lambda row: row.order)
    clusters = _clusters(canary_dep, scope.window, judged) if canary_dep is not None else []
    return ClusterMapData(rows[:max_points], max(0, len(rows) - max_points), clusters)


def _clusters(dep: DeploymentModel, window: Window, judged: bool) -> list[MapCluster]:
    """The canary's clusters counted within the window (all its templates, those without events in it too)."""
    clusters: dict[str, MapCluster] = {}
    for template, stats in [*dep.templates().items(), (OTHER, dep.other)]:
        if template is OTHER and not stats.count:
            continue
        count = stats.count if window is None else stats.count_between(*window)
        cluster = dep.clusterer.other if template is OTHER else dep.cluster_of(template)
        info = clusters.setdefault(
            cluster.cluster_id, MapCluster(cluster_id=cluster.cluster_id, count=0, total=0, judged=False, templates=[])
        )
        info.count += count
        info.total += stats.count
        info.judged = info.judged or (judged and count > 0)
        info.templates.append(_template(template, stats, count))
    for info in clusters.values():
        info.templates.sort(key=lambda t: (-t.count, -t.total, t.template_id))
    return sorted(clusters.values(), key=lambda c: (-c.count, -c.total, c.cluster_id))


def _template(template: Template, stats: TemplateStats, count: int) -> MapTemplate:
    return MapTemplate(
        template_id=template.template_id,
        template=OVERFLOW_TEMPLATE if template is OTHER else template.text,
        count=count,
        total=stats.count,
        level=SEVERITY_NAMES[stats.max_severity],
        hosts=sorted(stats.hosts),
        hosts_capped=stats.other_hosts > 0,
        examples=list(stats.examples),
        first_seen=stats.first_seen if stats.count else None,
        last_seen=stats.last_seen if stats.count else None,
    )
