"""What changes a verdict besides events: people's feedback rules and deployment marks, and the canaries whose
analyses failed (never a history baseline). Each change bumps :attr:`Rules.version`, which is part of every cached
verdict's key, so the next verdict sees it at once.

Feedback rules are one consistent set (:func:`logcanary.analysis.feedback.clash`): a rule that would contradict or
repeat a standing one is refused with the standing rule named, to be changed or undone instead. Every creation,
change and undo is kept in the audit trail with who, when and why (``feedback_changes``, written with the rule in
one transaction)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from logcanary.analysis.feedback import FeedbackRule, clash, compile_rules
from logcanary.common.text import cut
from logcanary.engine.model import ServiceModel
from logcanary.schemas import (
    DeploymentMark,
    DeploymentMarkIn,
    Feedback,
    FeedbackChange,
    FeedbackChangeKind,
    FeedbackIn,
    FeedbackUpdate,
)
from logcanary.store.base import AnalysisRecord, Repository
from logcanary.verification.errors import RuleConflict, UnknownRule, UnknownTemplate
from logcanary.verification.writer import StoreWriter

LABELS = {"ignore": "ignored", "not_a_risk": "not a risk", "priority": "a priority"}


def failed_canaries(records: Iterable[AnalysisRecord]) -> dict[str, set[str]]:
    """Per service, the canaries of completed analyses whose final verdict was fail."""
    failed: dict[str, set[str]] = {}
    for record in records:
        if record.status == "completed" and record.verdict is not None and record.verdict.verdict == "fail":
            failed.setdefault(record.service, set()).add(record.verdict.canary)
    return failed


class Rules:
    def __init__(self, repository: Repository, write: StoreWriter) -> None:
        self.repository = repository
        self.write = write
        self.feedback: list[Feedback] = []
        self.marks: dict[tuple[str, str], DeploymentMark] = {}  # (service, canonical deployment) -> a person's mark
        self.failed: dict[str, set[str]] = {}
        self.version = 0

    def replace(self, feedback: list[Feedback], marks: list[DeploymentMark], records: Iterable[AnalysisRecord]) -> None:
        """Everything as the store holds it (at start; in scale-out, as other replicas changed it)."""
        by_key = {(mark.service, mark.deployment): mark for mark in marks}
        failed = failed_canaries(records)
        if [f.id for f in feedback] != [f.id for f in self.feedback] or by_key != self.marks or failed != self.failed:
            self.version += 1
        self.feedback, self.marks, self.failed = feedback, by_key, failed

    def analyses_ended(self, records: Iterable[AnalysisRecord]) -> None:
        """Analyses completed or were cancelled: a failed canary leaves the history baselines."""
        failed = failed_canaries(records)
        if failed != self.failed:
            self.failed = failed
            self.version += 1

    # -- what a verdict on a service uses ----------------------------------------------------------------------

    def compiled(self, model: ServiceModel) -> list[FeedbackRule]:
        return compile_rules([f for f in self.feedback if f.service == model.name], model.miner)

    def excluded_from_history(self, service: str) -> set[str]:
        """Deployments no history baseline may use: the canaries of completed analyses that failed, and those
        a person marked bad. A person's mark wins either way (``bad: false`` lets a false alarm back in)."""
        marked = {deployment: mark.bad for (name, deployment), mark in self.marks.items() if name == service}
        failed = self.failed.get(service, set())
        return {name for name in failed if marked.get(name, True)} | {name for name, bad in marked.items() if bad}

    def of_service(self, service: str) -> tuple[list[Feedback], list[DeploymentMark]]:
        """The service's feedback rules and marks, oldest first."""
        feedback = sorted((f for f in self.feedback if f.service == service), key=lambda f: f.created_at)
        marks = sorted((m for (name, _), m in self.marks.items() if name == service), key=lambda m: m.marked_at)
        return feedback, marks

    # -- changes -----------------------------------------------------------------------------------------------

    async def add_feedback(self, entry: FeedbackIn, model: ServiceModel | None) -> Feedback:
        """Stores a rule and its audit entry; a rule given only a template_id gets the template of that id
        (UnknownTemplate if none). RuleConflict when it would contradict or repeat a standing rule."""
        data = entry.model_dump()
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
        self._check(feedback, model)
        await self._apply("created", feedback, feedback.author, feedback.reason)
        self.feedback.append(feedback)
        return feedback

    async def change_feedback(self, feedback_id: str, update: FeedbackUpdate, model: ServiceModel | None) -> Feedback:
        """Changes a rule's judgement (or only its reason), checked against the other rules as a new one is."""
        rule = self._rule(feedback_id)
        action = update.action or rule.action
        deployment = update.deployment or rule.deployment
        if action == "not_a_risk" and deployment is None:
            raise UnknownTemplate("not_a_risk needs the canary it was judged on: give deployment")
        if (
            deployment is not None
            and deployment != rule.deployment
            and (model is None or model.resolve(deployment) is None)
        ):
            raise UnknownTemplate(f"no deployment {deployment!r} of service {rule.service!r}: name the canary judged")
        changed = rule.model_copy(
            update={"action": action, "deployment": deployment, "reason": update.reason or rule.reason}
        )
        self._check(changed, model)
        await self._apply("changed", changed, update.author, update.reason, previous=rule)
        self.feedback = [changed if f.id == feedback_id else f for f in self.feedback]
        return changed

    async def delete_feedback(self, feedback_id: str, author: str = "unknown", reason: str = "") -> bool:
        """Undoes a rule, keeping who, when and why in the audit trail (False: no such rule)."""
        rule = next((f for f in self.feedback if f.id == feedback_id), None)
        if rule is None:
            return False
        stored = await self._apply("undone", rule, author, reason)
        self.feedback = [f for f in self.feedback if f.id != feedback_id]
        return stored

    async def changes(self, service: str | None = None) -> list[FeedbackChange]:
        """The audit trail of the rules (of one service), newest first: every replica's, as the store holds it."""
        return (await self.write(self.repository.list_feedback_changes, service))[::-1]

    def _rule(self, feedback_id: str) -> Feedback:
        rule = next((f for f in self.feedback if f.id == feedback_id), None)
        if rule is None:
            raise UnknownRule(f"no feedback rule {feedback_id!r}")
        return rule

    def _check(self, feedback: Feedback, model: ServiceModel | None) -> None:
        """RuleConflict when ``feedback`` contradicts or repeats a standing rule of its service."""
        if model is None:
            return  # a service never seen has no template a standing rule could meet
        [rule] = compile_rules([feedback], model.miner)
        found = clash(rule, self.compiled(model), model)
        if found is None:
            return
        why, standing = found
        other = standing.feedback
        where = f" in {other.deployment}" if other.action == "not_a_risk" else ""
        said = f"{LABELS[other.action]}{where} by {other.author} ({other.created_at:%Y-%m-%d %H:%M} UTC)"
        event = cut(" ".join(other.template.split()), 120)
        if why == "contradicts":
            message = (
                f"{LABELS[feedback.action]} contradicts a standing rule: {event!r} is {said}, rule {other.id}. "
                f"Change that rule (PATCH /v1/feedback/{other.id}) or undo it (DELETE /v1/feedback/{other.id}) first"
            )
        else:
            message = f"already said: {event!r} is {said}, rule {other.id}"
        raise RuleConflict(message, other.id)

    async def _apply(
        self, kind: FeedbackChangeKind, rule: Feedback, author: str, reason: str, previous: Feedback | None = None
    ) -> bool:
        """Stores the rule's change with its audit entry (one transaction) and bumps the version."""
        change = FeedbackChange(
            id=uuid.uuid4().hex,
            service=rule.service,
            change=kind,
            at=datetime.now(UTC),
            author=author,
            reason=reason,
            rule=rule,
            previous=previous,
        )
        stored = await self.write(self.repository.change_feedback, change)
        self.version += 1
        return stored

    async def mark(self, service: str, deployment: str, entry: DeploymentMarkIn) -> DeploymentMark:
        """Stores a person's mark on a deployment (its canonical name), replacing an earlier one."""
        mark = DeploymentMark(**entry.model_dump(), service=service, deployment=deployment, marked_at=datetime.now(UTC))
        await self.write(self.repository.save_mark, mark)
        self.marks[(service, deployment)] = mark
        self.version += 1
        return mark
