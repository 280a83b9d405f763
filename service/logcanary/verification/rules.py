"""What changes a verdict besides events: people's feedback rules and deployment marks, and the canaries whose
analyses failed (never a history baseline). Each change bumps :attr:`Rules.version`, which is part of every cached
verdict's key, so the next verdict sees it at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from logcanary.analysis.feedback import FeedbackRule, compile_rules
from logcanary.engine.model import ServiceModel
from logcanary.schemas import DeploymentMark, DeploymentMarkIn, Feedback, FeedbackIn
from logcanary.store.base import AnalysisRecord, Repository
from logcanary.verification.errors import UnknownTemplate
from logcanary.verification.writer import StoreWriter


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
        """Stores a rule; a rule given only a template_id gets the template of that id (UnknownTemplate if none)."""
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
        await self.write(self.repository.add_feedback, feedback)
        self.feedback.append(feedback)
        self.version += 1
        return feedback

    async def delete_feedback(self, feedback_id: str) -> bool:
        deleted = await self.write(self.repository.delete_feedback, feedback_id)
        self.feedback = [f for f in self.feedback if f.id != feedback_id]
        self.version += 1
        return deleted

    async def mark(self, service: str, deployment: str, entry: DeploymentMarkIn) -> DeploymentMark:
        """Stores a person's mark on a deployment (its canonical name), replacing an earlier one."""
        mark = DeploymentMark(**entry.model_dump(), service=service, deployment=deployment, marked_at=datetime.now(UTC))
        await self.write(self.repository.save_mark, mark)
        self.marks[(service, deployment)] = mark
        self.version += 1
        return mark
