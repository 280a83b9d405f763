"""Feedback kinds at the verdict: not_a_risk accepts an event in one canary only; ignore in every deployment."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from logcanary.analysis.feedback import compile_rules
from logcanary.analysis.verdict import analyze
from logcanary.engine.model import Engine
from logcanary.schemas import Feedback, FeedbackAction, FeedbackIn
from tests.test_verdict import SERVICE, ingest


def rule(action: FeedbackAction, template_id: str, deployment: str | None) -> Feedback:
    return Feedback(
        id=f"fb-{action}",
        created_at=datetime.now(UTC),
        service=SERVICE,
        action=action,
        template="x",
        template_id=template_id,
        author="ana",
        reason="staging keys rotate",
        deployment=deployment,
    )


@pytest.fixture(scope="module")
def engine() -> Engine:
    """v1 clean; v2 and v3 both throw the NPE; v2 is also known by its pod-template hash."""
    engine = Engine()
    ingest(engine, "v1", 3000, seed=1)
    ingest(engine, "v2", 3000, seed=2, npe_rate=0.01)
    ingest(engine, "v3", 3000, seed=3, npe_rate=0.01)
    engine.service(SERVICE).deployments["v2"].add_identity("7f9c4d")
    return engine


def test_not_a_risk_silences_the_event_in_its_canary_only(engine: Engine) -> None:
    service = engine.service(SERVICE)
    npe = analyze(service, canary="v2", baseline=["v1"]).anomalies[0].template_ids[0]
    for deployment in ("v2", "7f9c4d"):  # any identity of the canary
        rules = compile_rules([rule("not_a_risk", npe, deployment)], service.miner)
        accepted = analyze(service, canary="v2", baseline=["v1"], feedback=rules)
        assert accepted.verdict == "pass"
        assert [s.feedback_id for s in accepted.suppressed] == ["fb-not_a_risk"]
        later = analyze(service, canary="v3", baseline=["v1"], feedback=rules)
        assert later.verdict == "fail"  # the next deployment is judged afresh
        assert later.suppressed == []
    ignore = compile_rules([rule("ignore", npe, "v2")], service.miner)
    assert analyze(service, canary="v3", baseline=["v1"], feedback=ignore).verdict == "pass"  # ignore: everywhere


def test_not_a_risk_names_the_canary() -> None:
    with pytest.raises(ValidationError, match="give deployment"):
        FeedbackIn(service=SERVICE, action="not_a_risk", template_id="95cdf0d0c914fd3c")
    given = FeedbackIn(service=SERVICE, action="not_a_risk", template_id="95cdf0d0c914fd3c", deployment="v2")
    assert given.deployment == "v2"
    with pytest.raises(ValidationError):
        FeedbackIn(service=SERVICE, action="not_a_risk", template_id="95cdf0d0c914fd3c", deployment="../etc")
    # ignore and priority record the canary they were given on, and apply everywhere
    assert FeedbackIn(service=SERVICE, action="ignore", template="x").deployment is None
