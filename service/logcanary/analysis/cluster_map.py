"""The cluster map: every event type of a canary and its baseline as a point, coloured by one verdict and counted
over that verdict's own scope (:class:`~logcanary.analysis.verdict.Scope`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from logcanary.analysis.projection import position
from logcanary.analysis.verdict import OVERFLOW_TEMPLATE, Scope, Window
from logcanary.engine.miner import OTHER, Template
from logcanary.engine.model import SEVERITY_NAMES, DeploymentModel, ServiceModel
from logcanary.schemas import Feedback, FeedbackAction, Verdict

PointState = Literal["known", "anomalous", "vanished", "ignored"]
DEFAULT_MAX_POINTS = 1000


class MapPoint(BaseModel):
    """One event type (template) of the canary or the baseline, placed on the map."""

    template_id: str = Field(description="Content-derived id; the same template has the same position on every map.")
    cluster_id: str = Field(description="Its cluster in the canary (or, for a baseline-only event, the baseline).")
    template: str
    x: float = Field(ge=0, le=1, description="Position, from the template's own words (stable projection).")
    y: float = Field(ge=0, le=1)
    state: PointState = Field(
        description="anomalous: part of an anomaly the verdict lists (its strongest ten; its anomaly_count says how "
        "many reached the fail score), a drop too (then in_canary is false); ignored: "
        "an anomaly a feedback rule silenced (ignore, or not_a_risk for this canary); vanished: logged by the "
        "baseline only; known: logged by the canary, not anomalous."
    )
    in_canary: bool = Field(description="The canary logged it in the window.")
    canary_count: int = Field(ge=0, description="Events in the canary within the window.")
    baseline_count: int = Field(ge=0, description="Events in the baseline deployments (history: all time).")
    level: str = Field(description="Highest level seen on either side.")
    finding: str | None = Field(
        None, description="For an anomaly: unknown, frequency (up), drop (down) or priority; null otherwise."
    )
    score: float | None = Field(None, description="The anomaly's score, for an anomalous point.")
    feedback_id: str | None = Field(None, description="The rule that silenced an ignored point.")
    feedback_action: FeedbackAction | None = None


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
    max_points: int = DEFAULT_MAX_POINTS,
) -> tuple[list[MapPoint], int]:
    """The points of the verdict's canary and baseline, coloured by the verdict; (points, how many were left out).

    Counts are taken as the verdict took them (its scope): the canary and control deployments within the window,
    history deployments over all time.
    """
    canary_dep = model.deployments.get(scope.canary)
    canary = _counts(canary_dep, scope.window) if canary_dep is not None else {}
    baseline: dict[Template, list[int]] = {}
    owner: dict[Template, DeploymentModel] = {}
    sides = [(name, scope.window) for name in scope.control] + [(name, None) for name in scope.history]
    for name, window in sides:
        dep = model.deployments.get(name)
        if dep is None:
            continue
        for template, (count, level) in _counts(dep, window).items():
            entry = baseline.setdefault(template, [0, 0])
            entry[0] += count
            entry[1] = max(entry[1], level)
            owner.setdefault(template, dep)

    anomalous: dict[str, tuple[str, float]] = {}
    for anomaly in verdict.anomalies:
        finding = "drop" if anomaly.direction == "down" else anomaly.kind
        for template_id in anomaly.template_ids:
            anomalous.setdefault(template_id, (finding, anomaly.score))
    actions = {f.id: f.action for f in feedback}
    silenced = {s.template: s.feedback_id for s in verdict.suppressed}  # Suppressed names its template by text

    points = []
    for template in {*canary, *baseline}:
        in_canary = template in canary
        count, canary_level = canary.get(template, (0, 0))
        base_count, base_level = baseline.get(template, (0, 0))
        text = OVERFLOW_TEMPLATE if template is OTHER else template.text
        ids = {template.template_id, *template.aliases}
        hit = next((anomalous[i] for i in ids if i in anomalous), None)
        feedback_id = silenced.get(template.text) if in_canary else None
        state: PointState
        if hit is not None:
            state = "anomalous"
        elif feedback_id is not None:
            state = "ignored"
        elif in_canary:
            state = "known"
        else:
            state = "vanished"
        dep = canary_dep if in_canary and canary_dep is not None else owner[template]
        cluster = dep.clusterer.other if template is OTHER else dep.cluster_of(template)
        x, y = position(template)
        points.append(
            MapPoint(
                template_id=template.template_id,
                cluster_id=cluster.cluster_id,
                template=text,
                x=x,
                y=y,
                state=state,
                in_canary=in_canary,
                canary_count=count,
                baseline_count=base_count,
                level=SEVERITY_NAMES[max(canary_level, base_level)],
                finding=hit[0] if hit else None,
                score=hit[1] if hit else None,
                feedback_id=feedback_id,
                feedback_action=actions.get(feedback_id) if feedback_id else None,
            )
        )
    rank = {"anomalous": 0, "ignored": 1, "known": 2, "vanished": 2}
    points.sort(key=lambda p: (rank[p.state], -(p.canary_count + p.baseline_count), p.template_id))
    return points[:max_points], max(0, len(points) - max_points)
