"""Issue 20: drops and rates judged against the baseline's own variability; the same event in another spelling.

Traffic here is a service of three replicas logging eight kinds of request event for ten minutes, each event at a
steady rate on every replica (what a control deployment beside a canary looks like).
"""

from __future__ import annotations

import math
import random

import pytest

from logcanary.analysis.compact import compact
from logcanary.analysis.rates import effective_hosts
from logcanary.analysis.variability import (
    active_range,
    dispersion,
    host_dispersion,
    is_steady,
    rank_test_lower,
    timeline,
)
from logcanary.analysis.verdict import analyze
from logcanary.engine.model import Engine
from logcanary.schemas import Verdict

FLOWS = ["order", "payment", "refund", "invoice", "shipment", "login", "search", "review"]
START = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def _traffic(
    engine: Engine,
    deployment: str,
    start: float,
    rates: dict[str, float] | None = None,
    hosts: tuple[str, ...] = ("a", "b", "c"),
    seconds: float = 600.0,
    per_second: float = 0.5,
    seed: int = 1,
) -> None:
    """Each flow logs ``per_second x rate`` events per second on each host, at random times (Poisson)."""
    rng = random.Random(seed)
    rates = rates or {}
    events = []
    for flow in FLOWS:
        for host in hosts:
            moment = start
            rate = per_second * rates.get(flow, 1.0)
            if rate <= 0:
                continue
            while True:
                moment += rng.expovariate(rate)
                if moment >= start + seconds:
                    break
                events.append((moment, host, f"{flow.capitalize()} request {rng.randrange(10**6)} handled ok"))
    for moment, host, message in sorted(events):
        engine.observe("shop", deployment, message, moment, f"{deployment}-{host}", "info")


def _verdict(canary_rates: dict[str, float], **kwargs: object) -> Verdict:
    engine = Engine()
    _traffic(engine, "v1", START, seed=1)
    _traffic(engine, "v2", START + 600, canary_rates, seed=2)
    return analyze(engine.service("shop"), canary="v2", baseline=["v1"], **kwargs)  # type: ignore[arg-type]


def test_the_same_traffic_passes() -> None:
    verdict = _verdict({})
    assert verdict.verdict == "pass", verdict.reason


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_one_steady_key_flow_that_stops_or_halves_fails_alone(rate: float) -> None:
    """A handler that returns early or is skipped half the time: one flow vanishes or halves, no new text."""
    verdict = _verdict({"payment": rate})
    assert verdict.verdict == "fail", verdict.reason
    [drop] = [a for a in verdict.anomalies if a.direction == "down"]
    assert drop.kind == "frequency" and drop.steady
    assert drop.template == "Payment request <*> handled ok"
    assert drop.ratio is not None and drop.ratio <= 0.6
    assert drop.baseline_examples and bool(drop.examples) is bool(rate)  # examples are canary lines only


def test_a_traffic_mix_change_passes() -> None:
    """Many flows moving together in proportion (another mix of requests) is not a failure, though each of them
    alone would be a drop."""
    verdict = _verdict({"order": 0.5, "payment": 0.5, "refund": 0.5, "invoice": 0.5, "search": 1.3, "review": 1.3})
    assert verdict.verdict == "pass", verdict.reason


def test_a_slower_canary_is_a_rate_anomaly() -> None:
    """Every flow a third rarer, no new text: no share changes, the rate does."""
    verdict = _verdict(dict.fromkeys(FLOWS, 2 / 3))
    assert verdict.verdict == "fail", verdict.reason
    [rate] = [a for a in verdict.anomalies if a.rate is not None]
    assert rate.direction == "down" and rate.rate is not None
    assert rate.rate.unit == "per host" and rate.rate.canary_hosts == rate.rate.baseline_hosts == 3
    assert 0.55 < (rate.ratio or 0) < 0.8
    assert rate.p_value is not None and rate.p_value < 1e-3
    assert not [a for a in verdict.anomalies if a.direction == "down" and a.rate is None]  # no drop: shares held


def test_a_canary_given_less_traffic_by_its_weight_is_not_slow() -> None:
    """With a router giving the canary a third of the control's traffic (weight 25 %), a third of the rate is
    expected; without the weight, each canary host logging a third as much is a slower canary."""
    slower = dict.fromkeys(FLOWS, 1 / 3)
    assert _verdict(slower).verdict == "fail"
    verdict = _verdict(slower, canary_weight=25.0)
    assert verdict.verdict == "pass", verdict.reason


def test_a_canary_too_slow_for_its_weight_is_a_rate_anomaly() -> None:
    verdict = _verdict(dict.fromkeys(FLOWS, 1 / 6), canary_weight=25.0)
    assert verdict.verdict == "fail", verdict.reason
    [rate] = [a for a in verdict.anomalies if a.rate is not None]
    assert rate.rate is not None and rate.rate.unit == "all hosts" and rate.rate.canary_weight == 25.0
    assert rate.rate.expected_ratio == pytest.approx(1 / 3)


def test_a_restart_burst_in_the_baseline_is_not_a_drop() -> None:
    """The baseline restarted once and dumped its configuration: the canary, which did not, misses nothing."""
    engine = Engine()
    _traffic(engine, "v1", START, seed=1)
    for index in range(2000):
        engine.observe("shop", "v1", f"cfg option_{index % 97} = {index}", START + 300 + index / 400, "v1-a", "debug")
    _traffic(engine, "v2", START + 600, seed=2)
    verdict = analyze(engine.service("shop"), canary="v2", baseline=["v1"])
    assert verdict.verdict == "pass", verdict.reason


def test_the_same_event_in_other_case_or_punctuation_is_reworded_not_new() -> None:
    """``Success:`` logged ``SUCCESS:``, ``user=`` logged ``user:`` by a benign build: known, and listed."""
    engine = Engine()
    for index in range(200):
        at = START + index
        engine.observe("shop", "v1", f"Success: order {index} stored for user={index % 50}x", at, "h1")
        engine.observe("shop", "v1", f"GET /api/items/{index} done", at, "h1")
        engine.observe("shop", "v2", f"SUCCESS: order {index} stored for user:{index % 50}x", at + 600, "h2")
        engine.observe("shop", "v2", f"GET /api/items/{index} done", at + 600, "h2")
    verdict = analyze(engine.service("shop"), canary="v2", baseline=["v1"])
    assert verdict.verdict == "pass", verdict.reason
    [reworded] = verdict.reworded
    assert reworded.template.startswith("SUCCESS: order")
    assert reworded.baseline_template.startswith("Success: order")
    assert reworded.canary_count == 200


def test_an_info_level_traceback_after_a_loggers_prefix_fails() -> None:
    engine = Engine()
    _traffic(engine, "v1", START, seed=1)
    _traffic(engine, "v2", START + 600, seed=2)
    trace = (
        "nova.metadata.wsgi.server [req-{n} - - - - -] Traceback (most recent call last):\n"
        '  File "/usr/lib/python2.7/site-packages/nova/api/metadata/base.py", line 259, in get_ec2_metadata\n'
        "    fmt_sgroups = [x['name'] for x in self.security_groups]\n"
        "TypeError: 'NoneType' object is not iterable"
    )
    engine.observe("shop", "v2", trace.format(n=1), START + 700, "v2-a", "info")
    verdict = analyze(engine.service("shop"), canary="v2", baseline=["v1"])
    assert verdict.verdict == "fail", verdict.reason
    assert verdict.anomalies[0].kind == "unknown" and verdict.anomalies[0].level == "error"


# -- the statistics --------------------------------------------------------------------------------------------------


def test_rank_test_is_exact_for_small_samples() -> None:
    assert rank_test_lower([1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]) == pytest.approx(1 / math.comb(11, 5))
    assert rank_test_lower([6, 7, 8], [1, 2, 3]) == pytest.approx(1.0)
    lower = [random.Random(seed).gauss(0, 1) for seed in range(60)]
    higher = [random.Random(seed + 100).gauss(3, 1) for seed in range(60)]
    assert rank_test_lower(lower, higher) < 1e-12  # normal approximation for large samples


def test_dispersion_tells_steady_counts_from_bursts() -> None:
    steady = [10, 12, 9, 11, 10, 8, 12, 10]
    burst = [0, 0, 80, 0, 0, 0, 0, 0]
    assert dispersion(steady) < 1 and is_steady(steady)
    assert dispersion(burst) > 50 and not is_steady(burst)
    assert not is_steady([10, 0, 10, 0, 10, 0, 10, 0])  # absent from half the slices
    assert host_dispersion({"a": 100, "b": 98, "c": 102}, {"a": 1000, "b": 1000, "c": 1000}) < 1
    assert host_dispersion({"a": 300, "b": 0, "c": 0}, {"a": 1000, "b": 1000, "c": 1000}) > 100


def test_gaps_between_stretches_of_a_file_are_not_time_the_deployment_ran() -> None:
    buckets = [*range(0, 600, 10), *range(86_400, 86_400 + 300, 10)]
    segments = active_range(buckets, None, None)
    assert segments == [(0, 590), (86_400, 86_690)]
    line = timeline(segments, 90)
    assert line.slices == 10 and line.slice_seconds == 90  # 900 s of activity, the rest left over
    # Within a window, silence counts: a canary that stopped logging has a rate of zero for the rest of it.
    assert active_range([0, 10], (0.0, 600.0), None) == [(0, 590)]


def test_a_rate_anomaly_and_rewordings_survive_json_and_the_compact_form() -> None:
    verdict = _verdict(dict.fromkeys(FLOWS, 2 / 3))
    again = Verdict.model_validate_json(verdict.model_dump_json())
    assert again == verdict
    short = compact(verdict)
    assert [a.kind for a in short.anomalies] == [a.kind for a in verdict.anomalies][: len(short.anomalies)]
    assert short.anomalies[0].rate == verdict.anomalies[0].rate


def test_a_verdict_stored_before_issue_20_still_validates() -> None:
    """No rate, steady, reworded or new thresholds: the fields added are optional, with the defaults medium uses."""
    old = _verdict({}).model_dump(mode="json")
    del old["reworded"]
    for name in ("drop_max_ratio", "rate_max_ratio"):
        del old["thresholds"][name]
    restored = Verdict.model_validate(old)
    assert restored.reworded == [] and restored.thresholds.drop_max_ratio == 0.6


def test_hosts_that_log_little_do_not_divide_a_sides_rate() -> None:
    """Three replicas beside four hosts that logged a few lines (a sidecar, a pod that started late) share the rate
    about three ways, not seven: a canary that gained such hosts is not slower per host."""
    replicas = {"a": 1000.0, "b": 1000.0, "c": 1000.0}
    assert effective_hosts(replicas) == pytest.approx(3.0)
    assert 3.0 < effective_hosts(replicas | {f"late-{n}": 5.0 for n in range(4)}) < 3.2
    assert effective_hosts({}) == effective_hosts({"only": 7.0}) == 1.0
