"""The compact verdict (``compact=true``): bounded size whatever the evidence, same decision."""

from __future__ import annotations

from datetime import UTC, datetime

from logcanary.analysis.compact import COMPACT_MAX_BYTES, compact, stored_size
from logcanary.analysis.sensitivity import thresholds
from logcanary.schemas import Anomaly, Suppressed, VanishedCluster, Verdict

TRACE = "Failed <*> <payment>\njava.lang.StackOverflowError\n" + "\tat com.acme.Deep.recurse(Deep.java:12)\n" * 2000


def anomaly(index: int) -> Anomaly:
    return Anomaly(
        kind="unknown",
        cluster_id=f"c{index:015x}",
        template=TRACE,
        template_ids=[f"t{index}-{n:014x}" for n in range(5)],
        examples=[TRACE.replace("<*>", "4de7f811-&-<>") for _ in range(5)],
        baseline_count=0,
        canary_count=100 + index,
        baseline_share=0.0,
        canary_share=0.01,
        ratio=None,
        p_value=None,
        level="error",
        hosts=[f"payments-7d4f9c6b58-{n:05x}" for n in range(64)],
        first_seen=datetime(2026, 11, 26, 12, tzinfo=UTC),
        score=900.0 - index,
    )


def huge_verdict() -> Verdict:
    return Verdict(
        verdict="fail",
        risk=99.7,
        reason="a never-seen event in the canary: 'Failed <*> | java.lang.StackOverflowError' (and 11 more anomalies)",
        reason_code="anomalies",
        service="payments",
        canary="7d4f9c6b58",
        baseline=["6b8f9c7d4f"],
        canary_events=3000,
        baseline_events=3000.0,
        anomalies=[anomaly(i) for i in range(10)],
        anomaly_count=12,
        vanished=[VanishedCluster(cluster_id=f"v{i}", template=TRACE, baseline_count=40) for i in range(20)],
        suppressed=[Suppressed(cluster_id=f"s{i}", template=TRACE, canary_count=3, feedback_id="f") for i in range(9)],
        thresholds=thresholds("medium"),
    )


def test_compact_bounds_the_stored_size_and_keeps_the_decision() -> None:
    full = huge_verdict()
    assert stored_size(full) > 1_000_000
    small = compact(full)
    assert stored_size(small) <= COMPACT_MAX_BYTES
    keep = ("verdict", "risk", "reason", "reason_code", "service", "canary", "baseline", "canary_events")
    for key in (*keep, "baseline_events", "anomaly_count", "thresholds"):
        assert getattr(small, key) == getattr(full, key), key
    assert small.anomalies, "the strongest anomaly is always kept"
    assert small.anomalies[0].cluster_id == full.anomalies[0].cluster_id
    assert small.anomalies[0].template.startswith("Failed <*> <payment>\njava.lang.StackOverflowError")
    Verdict.model_validate(small.model_dump(mode="json"))  # still a valid Verdict


def test_compact_leaves_a_small_verdict_alone() -> None:
    full = huge_verdict()
    one = anomaly(0).model_copy(update={"template": "Card declined <*>", "examples": ["Card declined 51"]})
    small = full.model_copy(update={"anomalies": [one], "vanished": [], "suppressed": [], "anomaly_count": 1})
    one_host = one.model_copy(update={"hosts": one.hosts[:3], "template_ids": one.template_ids[:3]})
    assert compact(small) == small.model_copy(update={"anomalies": [one_host]})


def test_compact_bounds_the_baseline_examples_of_drops() -> None:
    drop = anomaly(0).model_copy(
        update={"kind": "frequency", "direction": "down", "examples": [], "baseline_examples": [TRACE] * 5}
    )
    full = huge_verdict().model_copy(update={"anomalies": [drop], "anomaly_count": 1})
    assert stored_size(full) > 100_000
    small = compact(full)
    assert stored_size(small) <= COMPACT_MAX_BYTES
    assert small.anomalies[0].direction == "down"
