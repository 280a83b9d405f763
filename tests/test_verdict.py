"""Canary verdicts: the motivating NullPointerException case, noise, frequency, feedback."""

from datetime import UTC, datetime

import pytest

from service.analysis.feedback import compile_rules
from service.analysis.verdict import analyze, binomial_tail
from service.demo.traffic import events
from service.engine.model import Engine, ServiceModel
from service.schemas import Feedback

SERVICE = "payments"


def ingest(engine: Engine, deployment: str, count: int, seed: int, npe_rate: float = 0.0) -> None:
    for event in events(deployment, count, seed=seed, npe_rate=npe_rate):
        engine.observe(
            SERVICE,
            deployment,
            event["message"],
            datetime.fromisoformat(event["timestamp"]).timestamp(),
            event["host"],
            event["level"],
        )


def engine_with(canary_npe_rate: float) -> Engine:
    engine = Engine()
    ingest(engine, "v1", 3000, seed=1)
    ingest(engine, "v2", 3000, seed=2, npe_rate=canary_npe_rate)
    return engine


def service_with(canary_npe_rate: float) -> ServiceModel:
    return engine_with(canary_npe_rate).service(SERVICE)


def test_new_null_pointer_exception_fails_the_canary() -> None:
    verdict = analyze(service_with(0.01), canary="v2", baseline=["v1"])
    assert verdict.verdict == "fail"
    top = verdict.anomalies[0]
    assert top.kind == "unknown"
    assert "java.lang.NullPointerException" in top.template
    assert "EncryptionService.encrypt" in top.template
    assert all("NullPointerException" in example for example in top.examples)
    assert top.baseline_count == 0
    assert top.canary_count >= 10
    assert top.level == "error"
    assert len(verdict.anomalies) == 1  # fresh ids, amounts and hosts are not anomalies
    assert verdict.risk > 50


def test_same_traffic_without_the_exception_passes() -> None:
    verdict = analyze(service_with(0.0), canary="v2", baseline=["v1"])
    assert verdict.verdict == "pass", verdict.anomalies
    assert verdict.anomalies == []
    assert verdict.risk < 50


def test_ignore_feedback_silences_the_exception_in_later_deployments() -> None:
    engine = engine_with(0.01)
    service = engine.service(SERVICE)
    first = analyze(service, canary="v2", baseline=["v1"])
    anomaly = first.anomalies[0]
    rule = Feedback(
        id="fb-1",
        created_at=datetime.now(UTC),
        service=SERVICE,
        action="ignore",
        template=anomaly.template,
        template_id=anomaly.template_ids[0],
        author="oncall",
        reason="known, fixed in v4",
    )
    engine_rules = compile_rules([rule], service.miner)
    # A later deployment (v3) throws the same exception from the same place, with other values.
    ingest(engine, "v3", 3000, seed=3, npe_rate=0.01)
    later = analyze(service, canary="v3", baseline=["v1"], feedback=engine_rules)
    assert later.verdict == "pass"
    assert [s.feedback_id for s in later.suppressed] == ["fb-1"]
    without_feedback = analyze(service, canary="v3", baseline=["v1"])
    assert without_feedback.verdict == "fail"


def test_priority_feedback_fails_even_a_known_event() -> None:
    service = service_with(0.0)
    template = next(t for t in service.miner.templates.values() if "Card declined" in t.text)
    rule = Feedback(
        id="fb-2",
        created_at=datetime.now(UTC),
        service=SERVICE,
        action="priority",
        template=template.text,
        template_id=template.template_id,
    )
    verdict = analyze(service, canary="v2", baseline=["v1"], feedback=compile_rules([rule], service.miner))
    assert verdict.verdict == "fail"
    assert verdict.anomalies[0].priority


def test_frequency_spike_fails_and_names_the_event() -> None:
    engine = Engine()
    for index in range(2000):
        engine.observe("s", "v1", f"request {index} ok", float(index), "h1")
        if index % 100 == 0:
            engine.observe("s", "v1", f"retrying connection to db-{index} after timeout", float(index), "h1", "warn")
    for index in range(2000):
        engine.observe("s", "v2", f"request {index} ok", float(index), "h2")
        if index % 10 == 0:
            engine.observe("s", "v2", f"retrying connection to db-{index} after timeout", float(index), "h2", "warn")
    verdict = analyze(engine.service("s"), canary="v2", baseline=["v1"])
    assert verdict.verdict == "fail"
    [anomaly] = verdict.anomalies
    assert anomaly.kind == "frequency"
    assert anomaly.template == "retrying connection to db-<*> after timeout"
    assert anomaly.ratio is not None and anomaly.ratio > 5
    assert anomaly.p_value is not None and anomaly.p_value < 1e-6


def test_too_little_traffic_is_inconclusive_and_vanished_events_never_fail() -> None:
    engine = Engine()
    for index in range(500):
        engine.observe("s", "v1", f"request {index} ok", float(index))
        engine.observe("s", "v1", f"cache warmed in {index} ms", float(index))
    for index in range(5):
        engine.observe("s", "v2", f"request {index} ok", float(index))
    verdict = analyze(engine.service("s"), canary="v2", baseline=["v1"])
    assert verdict.verdict == "inconclusive"
    assert "too little traffic" in verdict.reason
    assert any("cache warmed" in v.template for v in verdict.vanished)


@pytest.mark.parametrize(("sensitivity", "expected"), [("low", "pass"), ("medium", "fail"), ("high", "fail")])
def test_sensitivity_moves_the_threshold(sensitivity: str, expected: str) -> None:
    engine = Engine()
    for index in range(1000):
        engine.observe("s", "v1", f"request {index} ok", float(index))
        engine.observe("s", "v2", f"request {index} ok", float(index))
    for index in range(4):  # four new info lines: enough at medium, not at low
        engine.observe("s", "v2", f"feature flag beta-{index} evaluated", float(index))
    verdict = analyze(engine.service("s"), canary="v2", baseline=["v1"], sensitivity=sensitivity)  # type: ignore[arg-type]
    assert verdict.verdict == expected


def test_history_baseline_is_time_decayed() -> None:
    engine = Engine()
    day = 86400.0
    for index in range(300):
        engine.observe("s", "v1", f"old event {index}", index, "h")  # 30 days before the canary
        engine.observe("s", "v2", f"request {index} ok", 29 * day + index, "h")
        engine.observe("s", "v3", f"request {index} ok", 30 * day + index, "h")
    verdict = analyze(engine.service("s"), canary="v3", history=True)
    assert verdict.verdict == "pass"
    assert verdict.baseline == ["history:v2", "history:v1"]
    assert verdict.baseline_events < 600  # v1 is a month old: it weighs far less than v2


def test_binomial_tail() -> None:
    assert binomial_tail(0, 10, 0.5) == 1.0
    assert binomial_tail(10, 10, 0.5) == pytest.approx(0.5**10)
    assert binomial_tail(6, 10, 0.5) == pytest.approx(386 / 1024)
    assert binomial_tail(11, 10, 0.5) == 0.0


def test_new_events_past_the_template_cap_still_fail_the_canary() -> None:
    engine = Engine(max_templates_per_deployment=20)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
             "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango"]  # fmt: skip
    for deployment in ("v1", "v2"):
        for index in range(2000):
            engine.observe("s", deployment, f"{words[index % 20]} step {index} done", float(index))
    for index in range(6):
        engine.observe("s", "v2", f"disk {['sda', 'sdb', 'sdc'][index % 3]} failed with {index}", 1.0, "h", "error")
    verdict = analyze(engine.service("s"), canary="v2", baseline=["v1"])
    assert verdict.verdict == "fail"
    [anomaly] = verdict.anomalies
    assert anomaly.cluster_id == "other"
    assert anomaly.canary_count == 6
    assert all(example.startswith("disk") for example in anomaly.examples)
