"""Feedback: mark event types ignore or priority, list and remove the marks."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from logcanary.api.auth import Auth, ReadAuth
from logcanary.api.deps import AnalysesDep, RulesDep, StateDep
from logcanary.api.errors import responses
from logcanary.schemas import Feedback, FeedbackIn

router = APIRouter(tags=["feedback"])


@router.post(
    "/v1/feedback",
    summary="Mark a cluster ignore or priority",
    status_code=201,
    response_model=Feedback,
    responses=responses(401, 403, 404, 422),
    dependencies=[Auth],
)
async def add_feedback(rules: RulesDep, state: StateDep, body: FeedbackIn) -> Feedback:
    """`ignore`: events like this template are never anomalies again for this service.
    `not_a_risk`: accepted in the canary named by `deployment` only (later deployments are judged afresh).
    `priority`: they always fail a canary when seen. Give the `template_id` from a verdict's anomaly, the
    `template` text, or both; a `template_id` alone, or a `deployment`, that the service does not know is a 404."""
    return await rules.add_feedback(body, await state.read_service(body.service))


@router.get(
    "/v1/feedback",
    summary="List feedback",
    response_model=list[Feedback],
    responses=responses(401, 403),
    dependencies=[ReadAuth],
)
async def list_feedback(rules: RulesDep, analyses: AnalysesDep, service: str | None = None) -> list[Feedback]:
    await analyses.refresh()  # scale-out: rules another replica just added
    return [f for f in rules.feedback if service is None or f.service == service]


@router.delete(
    "/v1/feedback/{feedback_id}",
    summary="Remove feedback",
    status_code=204,
    responses=responses(401, 403, 404),
    dependencies=[Auth],
)
async def delete_feedback(rules: RulesDep, feedback_id: str) -> Response:
    if not await rules.delete_feedback(feedback_id):
        raise HTTPException(404, f"no feedback {feedback_id!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
