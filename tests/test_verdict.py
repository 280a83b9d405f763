"""Canary verdicts: the motivating NullPointerException case, noise, frequency, feedback."""

import math
from datetime import UTC, datetime

import pytest

from logcanary.analysis.binomial import binomial_tail
from logcanary.analysis.feedback import compile_rules
from logcanary.analysis.verdict import analyze
from logcanary.demo.traffic import events
from logcanary.engine.caps import Caps
from logcanary.engine.model import Engine, ServiceModel
from logcanary.schemas import Feedback

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
    assert anomaly.kind == "frequency" and anomaly.direction == "up"
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
    assert "too little traffic" in verdict.reason and verdict.reason_code == "too_few_events"
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
    engine = Engine(caps=Caps(max_templates_per_deployment=20))
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


def _steady(engine: Engine, deployment: str, start: float, flows: int = 8, rounds: int = 200) -> None:
    """``flows`` kinds of request events, interleaved, one round per second from ``start``."""
    for index in range(rounds):
        for flow in range(flows):
            engine.observe(
                "s", deployment, f"flow{'abcdefgh'[flow]} step completed for item {index}", start + index, "h1"
            )


def test_start_up_output_of_a_fresh_canary_does_not_fail_it() -> None:
    engine = Engine()
    _steady(engine, "v1", 0.0)
    _steady(engine, "v2", 0.0)
    for index in range(800):  # a configuration dump at DEBUG
        engine.observe("s", "v2", f"cfg.option_{index} = value{index} log_opt_values", 0.5, "h1", "debug")
    for group in ("database", "cache", "auth"):  # deprecation warnings of a fresh start
        engine.observe("s", "v2", f'Option "legacy" from group "{group}" is deprecated for removal.', 1.0, "h1", "warn")
        engine.observe("s", "v2", f'Option "legacy" from group "{group}" is deprecated for removal.', 9.0, "h1", "warn")
    verdict = analyze(engine.service("s"), canary="v2", baseline=["v1"])
    assert verdict.verdict == "pass", verdict.reason
    assert verdict.reason_code == "no_anomaly"


def test_a_single_new_error_fails_even_among_start_up_noise() -> None:
    engine = Engine()
    _steady(engine, "v1", 0.0)
    _steady(engine, "v2", 0.0)
    for index in range(300):
        engine.observe("s", "v2", f"cfg.option_{index} = value{index} log_opt_values", 0.5, "h1", "debug")
    engine.observe("s", "v2", "Unexpected exception in API method: KeyError 'instances'", 50.0, "h1", "error")
    verdict = analyze(engine.service("s"), canary="v2", baseline=["v1"])
    assert verdict.verdict == "fail"
    assert verdict.anomalies[0].kind == "unknown" and verdict.anomalies[0].level == "error"


def test_start_up_lines_the_baseline_logged_before_the_window_are_known() -> None:
    engine = Engine()
    hour = 3600.0
    for index in range(20):  # the baseline started an hour before the window, with the same start-up lines
        engine.observe("s", "v1", f"Registered handler number {index} for route group alpha", 0.0, "h1")
    _steady(engine, "v1", hour)
    for index in range(20):
        engine.observe("s", "v2", f"Registered handler number {index} for route group alpha", hour, "h2")
    _steady(engine, "v2", hour)
    verdict = analyze(engine.service("s"), canary="v2", baseline=["v1"], window=(hour, hour + 400))
    assert verdict.verdict == "pass", verdict.reason


def test_several_established_flows_that_stop_fail_as_drops() -> None:
    engine = Engine()
    _steady(engine, "v1", 0.0)
    _steady(engine, "v2", 0.0, flows=4)  # the canary runs only half of the flows: a silent failure
    verdict = analyze(engine.service("s"), canary="v2", baseline=["v1"])
    assert verdict.verdict == "fail"
    drops = [a for a in verdict.anomalies if a.kind == "frequency" and a.direction == "down" and a.rate is None]
    assert len(drops) == 4
    assert all(a.canary_count == 0 and a.baseline_examples and not a.examples for a in drops)
    assert "baseline share" in verdict.reason


def test_one_steady_flow_that_stops_fails_alone() -> None:
    """Issue 20: a single key flow that vanishes while the rest is steady is a silent failure (a handler returning
    early), when the baseline shows it steady; before, one drop alone only raised the risk."""
    engine = Engine()
    _steady(engine, "v1", 0.0)
    _steady(engine, "v2", 0.0, flows=7)
    verdict = analyze(engine.service("s"), canary="v2", baseline=["v1"])
    assert verdict.verdict == "fail", verdict.reason
    [drop] = [a for a in verdict.anomalies if a.direction == "down"]
    assert drop.steady and drop.canary_count == 0 and drop.template == "flowh step completed for item <*>"


def test_an_event_with_a_list_of_another_length_is_the_same_event() -> None:
    engine = Engine()
    _steady(engine, "v1", 0.0)
    _steady(engine, "v2", 0.0)
    for index in range(30):
        engine.observe("s", "v1", f"Running command: ['ip', 'link', 'set', 'tap{index}', 'up']", index, "h1")
        engine.observe(
            "s", "v2", f"Running command: ['ip', 'link', 'set', 'tap{index}', 'mtu', '{index}', 'up']", index, "h1"
        )
    verdict = analyze(engine.service("s"), canary="v2", baseline=["v1"])
    assert verdict.verdict == "pass", verdict.reason


def test_a_rare_info_event_a_small_baseline_could_not_have_shown_is_not_new() -> None:
    engine = Engine()
    _steady(engine, "v1", 0.0, rounds=20)  # 160 baseline events
    _steady(engine, "v2", 0.0, rounds=100)  # 800 canary events
    for index in range(4):
        engine.observe("s", "v2", f"Saved order changes for order {index}", index, "h1")
    verdict = analyze(engine.service("s"), canary="v2", baseline=["v1"])
    assert verdict.verdict == "pass", verdict.reason


def test_priority_rule_on_an_unremarkable_event_has_its_own_kind() -> None:
    service = service_with(0.0)
    template = next(t for t in service.miner.templates.values() if "Card declined" in t.text)
    rule = Feedback(id="fb-3", created_at=datetime.now(UTC), service=SERVICE, action="priority", template=template.text)
    verdict = analyze(service, canary="v2", baseline=["v1"], feedback=compile_rules([rule], service.miner))
    [anomaly] = verdict.anomalies
    assert anomaly.kind == "priority" and anomaly.ratio is None
    assert "marked priority" in verdict.reason


@pytest.mark.parametrize(
    ("canary", "baseline", "window", "code"),
    [
        ("nosuch", ["v1"], None, "unknown_canary"),
        ("v2", ["nosuch"], None, "no_baseline"),
        ("v2", ["v2"], None, "canary_is_baseline"),
        ("v2", ["v1"], (4e9, 4.1e9), "no_canary_events"),
    ],
)
def test_missing_data_is_inconclusive_with_a_reason_code(
    canary: str, baseline: list[str], window: tuple[float, float] | None, code: str
) -> None:
    verdict = analyze(service_with(0.01), canary=canary, baseline=baseline, window=window)
    assert verdict.verdict == "inconclusive"
    assert verdict.reason_code == code
    assert verdict.anomalies == [] and verdict.risk == 0


def test_a_silent_baseline_window_is_inconclusive() -> None:
    engine = Engine()
    _steady(engine, "v1", 0.0)
    _steady(engine, "v2", 10_000.0)
    verdict = analyze(engine.service("s"), canary="v2", baseline=["v1"], window=(10_000.0, 20_000.0))
    assert (verdict.verdict, verdict.reason_code) == ("inconclusive", "no_baseline_events")


def test_a_verdict_names_the_window_it_was_computed_over() -> None:
    verdict = analyze(service_with(0.0), canary="v2", baseline=["v1"], window=(1000.0, math.inf))
    assert verdict.window_start is not None and verdict.window_start.timestamp() == 1000.0
    assert verdict.window_end is None  # open-ended: up to now
    assert analyze(service_with(0.0), canary="v2", baseline=["v1"]).window_start is None  # all events


def test_the_headline_leads_with_the_strongest_evidence_class() -> None:
    """A new info line that scores higher than a new NullPointerException does not lead: a release engineer reads
    the exception first (the risk is still the top score)."""
    engine = engine_with(0.004)
    for n in range(80):
        at = datetime(2026, 11, 26, 12, 5, tzinfo=UTC).timestamp() + n
        engine.observe(SERVICE, "v2", f"Feature flag fast-checkout enabled for tenant {n}", at, f"pod-{n % 4}", "INFO")
    verdict = analyze(engine.service(SERVICE), canary="v2", baseline=["v1"])
    assert verdict.verdict == "fail"
    npe, flag = verdict.anomalies
    assert "NullPointerException" in npe.template and flag.template.startswith("Feature flag")
    assert flag.score > npe.score
    assert "NullPointerException" in verdict.reason
    assert verdict.risk == round(100 * flag.score / (flag.score + 3), 1)


def test_the_same_event_is_found_outside_the_most_similar_clusters() -> None:
    """A cluster's words are its members' together: a canary template river put among other lines (here: of the
    host's name) does not find its event's baseline cluster by them, and was a new event, its baseline flow a drop.
    The baseline templates sharing its rarest words find it."""
    from logcanary.analysis.verdict import CANDIDATE_CLUSTERS, _Nearest, _same_event_in, _Side
    from logcanary.engine.clustering import Cluster, template_terms
    from logcanary.engine.miner import Template

    def cluster(*texts: str) -> Cluster:
        found = Cluster(None)
        for text in texts:
            template = Template(tokens=text.split())
            found.add(template, template_terms(template))
        return found

    event = "nova.compute [req-<*> <*> <*> - default default] Auditing locally available compute resources"
    home = cluster(
        event, *(f"nova.api [req-<*> <*> <*> - default default] Calling method {verb} of servers" for verb in "abcdef")
    )
    others = [
        cluster(f"nova.compute [req-<*> - - - - -] Compute record {word} for localhost.localdomain in cell <*>")
        for word in ("updated", "weighed", "filtered", "selected")
    ]
    base = _Side()
    for found in (home, *others):
        base.clusters[id(found)] = found
        for template in found.templates:
            base.counts[template] = 10.0
            base.cluster_of[template] = found
    canary = cluster(
        "nova.compute [req-<*> <*> <*> - - -] Auditing locally available compute resources",
        *(f"nova.compute [req-<*> - - - - -] Compute record updated for localhost.localdomain:{n}" for n in "abcd"),
    )
    template = canary.templates[0]
    assert home not in _Nearest(base.clusters.values()).top(canary, CANDIDATE_CLUSTERS)  # the old search misses it
    assert _same_event_in(template, canary, base) is home.templates[0]


def test_a_drop_counts_the_events_templates_in_other_clusters() -> None:
    """One event, two baseline templates river put apart (a request context with and without ids): a canary that
    logs it under the second has not dropped the first. The dropping event is judged on both."""
    from logcanary.analysis.verdict import _Flow, _Side, _whole_event
    from logcanary.engine.miner import Template

    def t(text: str) -> Template:
        return Template(tokens=text.split())

    event = "CONF.reclaim_instance_interval <= <*>, skipping... _reclaim_queued_deletes <*>"
    usual = t(f"nova.compute.manager [req-<*> <*> <*> - default default] {event}")
    other = t(f"nova.compute.manager [req-<*> <*> <*> - <*> <*>] {event}")
    unrelated = t("nova.compute.manager [req-<*> <*> <*> - default default] Running periodic task <*>")
    base = _Side(counts={usual: 14.0, other: 1.0, unrelated: 40.0})
    flow = _Flow([usual], 14.0, 6.0, 0.2, True, 1)
    whole = _whole_event(flow, {usual: 6.0, other: 9.0, unrelated: 40.0}, base)
    assert (whole.baseline_count, whole.canary_count) == (15.0, 15.0)
    assert whole.members == [usual, other]
    alone = _Side(counts={usual: 14.0, unrelated: 40.0})
    assert _whole_event(flow, {usual: 6.0}, alone) is flow  # nothing else of the event: the drop stands as it was
