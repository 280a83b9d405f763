"""Risk over time per analysis (the history page's chart): bounded, spread over the whole analysis, stored."""

from __future__ import annotations

import itertools

import orjson

from logcanary.store.base import MAX_RISK_SAMPLES, AnalysisRecord
from tests.test_store import a_spec, a_verdict


def test_risk_samples_are_bounded_and_span_the_analysis() -> None:
    record = AnalysisRecord(id="a", service="s", request=a_spec(), status="running", started_at=0.0, ends_at=86_400.0)
    for step in range(43_200):  # a day of evaluations, every 2 s
        record.add_risk_sample(2.0 * step, float(step % 100))
    record.add_risk_sample(86_400.0, 42.0, last=True)
    samples = record.risk_history
    assert MAX_RISK_SAMPLES // 2 <= len(samples) <= MAX_RISK_SAMPLES
    assert samples[0] == [0.0, 0.0] and samples[-1] == [86_400.0, 42.0]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(samples)]
    assert max(gaps[:-1]) <= 2 * min(gaps[:-1])  # evenly spread (the last one is the final evaluation)


def test_a_short_analysis_keeps_every_evaluation() -> None:
    record = AnalysisRecord(id="a", service="s", request=a_spec(), status="running", started_at=0.0, ends_at=10.0)
    for step in range(6):
        record.add_risk_sample(2.0 * step, 10.0 * step, last=step == 5)
    assert record.risk_history == [[2.0 * s, 10.0 * s] for s in range(6)]


def test_risk_samples_are_stored_with_the_analysis() -> None:
    record = AnalysisRecord(
        id="a", service="svc", request=a_spec(), status="completed", started_at=0.0, ends_at=4.0, verdict=a_verdict()
    )
    record.add_risk_sample(0.0, 0.0)
    record.add_risk_sample(2.0, 97.5, last=True)
    assert AnalysisRecord.from_json(record.to_json()) == record
    old = orjson.loads(record.to_json())
    del old["risk_history"]  # stored before risk samples were kept
    assert AnalysisRecord.from_json(orjson.dumps(old)).risk_history == []
