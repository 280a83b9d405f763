"""Feedback: judge event types (ignore, not a risk, priority), change or undo a judgement, read the audit trail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from logcanary.api.auth import Auth, ReadAuth
from logcanary.api.deps import AnalysesDep, RulesDep, StateDep
from logcanary.api.errors import responses
from logcanary.schemas import Feedback, FeedbackChange, FeedbackIn, FeedbackUpdate

router = APIRouter(tags=["feedback"])


@router.post(
    "/v1/feedback",
    summary="Judge an event type: ignore, not a risk, or priority",
    status_code=201,
    response_model=Feedback,
    responses=responses(401, 403, 404, 409, 422),
    dependencies=[Auth],
)
async def add_feedback(rules: RulesDep, state: StateDep, analyses: AnalysesDep, body: FeedbackIn) -> Feedback:
    """`ignore`: events like this template are never anomalies again for this service.
    `not_a_risk`: accepted in the canary named by `deployment` only (later deployments are judged afresh).
    `priority`: they always fail a canary when seen. Give the `template_id` from a verdict's anomaly, the
    `template` text, or both; a `template_id` alone, or a `deployment`, that the service does not know is a 404.

    Rules never contradict each other: a priority rule on an event a standing ignore or not_a_risk rule covers (for
    a deployment both apply to), or the other way round, is refused with 409 `conflicting_rule`, naming the standing
    rule to change (`PATCH`) or undo (`DELETE`) first; so is a rule that repeats one. The rule and its entry in the
    audit trail (`GET /v1/feedback/audit`) are stored together."""
    await analyses.refresh()  # scale-out: rules another replica just added take part in the check
    return await rules.add_feedback(body, await state.read_service(body.service))


@router.get(
    "/v1/feedback",
    summary="List feedback rules",
    response_model=list[Feedback],
    responses=responses(401, 403),
    dependencies=[ReadAuth],
)
async def list_feedback(rules: RulesDep, analyses: AnalysesDep, service: str | None = None) -> list[Feedback]:
    await analyses.refresh()  # scale-out: rules another replica just added
    return [f for f in rules.feedback if service is None or f.service == service]


@router.get(
    "/v1/feedback/audit",
    summary="The audit trail of feedback rules: created, changed, undone (who, when, why)",
    response_model=list[FeedbackChange],
    responses=responses(401, 403),
    dependencies=[ReadAuth],
)
async def feedback_audit(rules: RulesDep, service: str | None = None) -> list[FeedbackChange]:
    """Newest first. Each entry holds the rule as it stood after the change (for `undone`, as it was when removed)
    and, for `changed`, the rule before. Rules made before the trail existed (logcanary 0.1 stores) have no
    `created` entry; the rule itself says who made it and when."""
    return await rules.changes(service)


@router.patch(
    "/v1/feedback/{feedback_id}",
    summary="Change a rule's judgement or reason",
    response_model=Feedback,
    responses=responses(401, 403, 404, 409, 422),
    dependencies=[Auth],
)
async def change_feedback(
    rules: RulesDep, state: StateDep, analyses: AnalysesDep, feedback_id: str, body: FeedbackUpdate
) -> Feedback:
    """The rule keeps its id and event; `action` (and `deployment` for not_a_risk) or `reason` change, checked
    against the other rules as a new rule is (409 `conflicting_rule`). The trail keeps `author`, the time, the
    `reason` and the rule before and after."""
    await analyses.refresh()
    rule = next((f for f in rules.feedback if f.id == feedback_id), None)
    model = await state.read_service(rule.service) if rule is not None else None
    return await rules.change_feedback(feedback_id, body, model)


@router.delete(
    "/v1/feedback/{feedback_id}",
    summary="Undo a rule",
    status_code=204,
    responses=responses(401, 403, 404),
    dependencies=[Auth],
)
async def delete_feedback(
    rules: RulesDep,
    analyses: AnalysesDep,
    feedback_id: str,
    author: Annotated[str, Query(max_length=256, description="Who undoes it (kept in the audit trail).")] = "unknown",
    reason: Annotated[str, Query(max_length=4096, description="Why (kept in the audit trail).")] = "",
) -> Response:
    """Verdicts judge the event as before; the audit trail keeps the rule as it was, with who undid it, when and
    why."""
    await analyses.refresh()
    if not await rules.delete_feedback(feedback_id, author, reason):
        raise HTTPException(404, f"no feedback {feedback_id!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
