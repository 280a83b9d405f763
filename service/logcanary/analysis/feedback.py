"""People's judgements applied to analyses.

* *ignore* silences similar events for good, in every deployment of the service;
* *not_a_risk* silences them in one canary only (the deployment the reviewer judged): the reviewer accepts
  what this release logs (a known side effect, a dependency's outage), and the next release is judged afresh;
* *priority* makes them fail whenever they appear.

A silenced anomaly is listed under the verdict's ``suppressed`` with the rule's id.

**One rule set, never contradicting itself.** A rule that would contradict a rule meeting it (priority against
ignore or not_a_risk on the same event, for a deployment both apply to) is refused, and so is one that repeats
what a rule already says (:func:`clash`); a person changes or undoes the standing rule instead. Rules stored before
this was enforced may still contradict: then **priority wins**, as "priority always fails" promises (the verdict
checks it first).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from logcanary.analysis.similarity import same_event
from logcanary.engine.clustering import cosine, template_terms
from logcanary.engine.miner import Template, TemplateMiner
from logcanary.engine.model import ServiceModel
from logcanary.schemas import Feedback

MIN_COSINE = 0.9  # word-vector similarity at which a rule covers a template it was not given for
SILENCING = frozenset({"ignore", "not_a_risk"})  # actions that remove an anomaly from a verdict


@dataclass(frozen=True, slots=True)
class FeedbackRule:
    """A stored feedback entry, with its template typed by the service's miner."""

    feedback: Feedback
    template: Template

    @property
    def silences(self) -> bool:
        """True when the events it covers are no anomaly (ignore, or not_a_risk in its canary)."""
        return self.feedback.action in SILENCING

    def applies_to(self, service: ServiceModel, canary: str) -> bool:
        """Whether the rule takes part in a verdict on ``canary`` (a canonical name): a not_a_risk rule only when
        its deployment (any identity of it) is that canary."""
        if self.feedback.action != "not_a_risk":
            return True
        deployment = self.feedback.deployment
        return deployment is not None and (deployment == canary or service.resolve(deployment) == canary)

    def covers(self, template: Template) -> bool:
        ids = {template.template_id, *template.aliases}
        if self.feedback.template_id in ids or self.template.template_id in ids:
            return True
        if same_event(self.template, template):
            return True
        return (
            self.template.signature == template.signature
            and cosine(template_terms(self.template), template_terms(template)) >= MIN_COSINE
        )


def meet(left: FeedbackRule, right: FeedbackRule, service: ServiceModel) -> bool:
    """Whether two rules take part in one verdict on the same event: each covers the other's template, or one
    covers it, and their deployments overlap (a not_a_risk rule is its canary's only)."""
    if not (left.covers(right.template) or right.covers(left.template)):
        return False
    canaries = [_canary(rule, service) for rule in (left, right) if rule.feedback.action == "not_a_risk"]
    return len(canaries) < 2 or canaries[0] == canaries[1]


Clash = Literal["contradicts", "repeats"]


def clash(
    rule: FeedbackRule, others: Iterable[FeedbackRule], service: ServiceModel
) -> tuple[Clash, FeedbackRule] | None:
    """Why ``rule`` may not join ``others`` (the service's standing rules), with the rule it clashes with; None when
    it may. It *contradicts* a rule it meets when one is priority and the other silences; it *repeats* one that
    already says as much (a priority; ignore, which covers every deployment; not_a_risk for the same canary).
    Ignore over a not_a_risk widens it to every deployment, and is no repeat."""
    for other in others:
        if other.feedback.id == rule.feedback.id or not meet(rule, other, service):
            continue
        if (rule.feedback.action == "priority") != (other.feedback.action == "priority"):
            return "contradicts", other
        if other.feedback.action in ("priority", "ignore") or rule.feedback.action == "not_a_risk":
            return "repeats", other
    return None


def _canary(rule: FeedbackRule, service: ServiceModel) -> str | None:
    deployment = rule.feedback.deployment
    return None if deployment is None else (service.resolve(deployment) or deployment)


def compile_rules(feedback: list[Feedback], miner: TemplateMiner) -> list[FeedbackRule]:
    """Types each rule's template with the service's miner, without teaching the miner anything."""
    rules = []
    for entry in feedback:
        template = miner.get(entry.template_id) if entry.template_id else None
        if template is None:
            template = miner.match(entry.template)
        if template is None:
            signature, tokens = miner.split(entry.template)
            template = Template(tokens=tokens, signature=signature)
        rules.append(FeedbackRule(entry, template))
    return rules
