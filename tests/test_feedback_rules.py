"""Feedback kinds at the verdict: not_a_risk accepts an event in one canary only; ignore in every deployment."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from logcanary.analysis.feedback import clash, compile_rules
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


def test_priority_wins_over_silencing_rules_stored_before_contradictions_were_refused(engine: Engine) -> None:
    """Stores may hold contradicting rules from before they were refused: priority always fails, as documented."""
    service = engine.service(SERVICE)
    npe = analyze(service, canary="v2", baseline=["v1"]).anomalies[0].template_ids[0]
    for silencing in ("ignore", "not_a_risk"):
        rules = compile_rules([rule(silencing, npe, "v2"), rule("priority", npe, None)], service.miner)
        judged = analyze(service, canary="v2", baseline=["v1"], feedback=rules)
        assert judged.verdict == "fail"
        assert judged.suppressed == []
        assert judged.anomalies[0].priority


def test_rules_that_contradict_or_repeat_a_standing_one_clash(engine: Engine) -> None:
    service = engine.service(SERVICE)
    npe = analyze(service, canary="v2", baseline=["v1"]).anomalies[0].template_ids[0]

    def clash_of(new: Feedback, *standing: Feedback) -> str | None:
        [rule_] = compile_rules([new.model_copy(update={"id": "fb-new"})], service.miner)
        found = clash(rule_, compile_rules(list(standing), service.miner), service)
        return None if found is None else found[0]

    not_a_risk_v2 = rule("not_a_risk", npe, "v2")
    assert clash_of(rule("priority", npe, None), not_a_risk_v2) == "contradicts"
    assert clash_of(rule("priority", npe, None), rule("ignore", npe, None)) == "contradicts"
    assert clash_of(rule("ignore", npe, None), rule("priority", npe, None)) == "contradicts"
    assert clash_of(rule("not_a_risk", npe, "7f9c4d"), not_a_risk_v2) == "repeats"  # v2 by its other name
    assert clash_of(rule("not_a_risk", npe, "v3"), rule("ignore", npe, None)) == "repeats"
    assert clash_of(rule("priority", npe, None), rule("priority", npe, None)) == "repeats"
    assert clash_of(rule("not_a_risk", npe, "v3"), not_a_risk_v2) is None  # another canary: both stand
    assert clash_of(rule("ignore", npe, None), not_a_risk_v2) is None  # widens it to every deployment
    elsewhere = rule("priority", npe, None).model_copy(update={"template": "Card declined <*>", "template_id": None})
    assert clash_of(elsewhere, not_a_risk_v2) is None  # another event
