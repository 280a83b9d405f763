"""Volume faults: a canary that logs far fewer events per second than the baseline leads one to expect.

A fault that only slows a service (every flow rarer, no new text) changes no share: only the rate shows it. The
canary's events per second are compared with the control deployment's over the same window (or, from files, over
each side's own active time):

* with the canary's traffic weight (``canary_weight``, percent, as the deploy tool routes it), the canary's total
  rate is expected at ``weight / (100 - weight)`` of the control's;
* without it, when both sides log from the same hosts (processes of one machine, say), host by host;
* else per host: each side's rate divided by its effective number of hosts (replicas that share traffic evenly;
  see :func:`effective_hosts`).

Both sides' active time is cut into slices of one length, and the canary's slice rates are tested against the
baseline's (one-sided Mann-Whitney, :func:`logcanary.analysis.variability.rank_test_lower`): a baseline that swings
by itself (bursts, a restart, load) needs a canary below nearly all of its slices. A rate anomaly needs that test
at the sensitivity's ``frequency_max_p`` (split over the units tested) and a rate at most ``rate_max_ratio`` of the
expected one; it scores ``fail_score x log(1 / ratio) / log(1 / rate_max_ratio)`` (at most twice the fail score).
Only a rate *below* expectation is judged: more traffic is no failure. History baselines (other times, other
traffic) are not compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from logcanary.analysis.variability import (
    MAX_RATE_SLICES,
    MAX_SLICES,
    MIN_SLICES,
    Timeline,
    Window,
    active_range,
    active_seconds,
    clip,
    rank_test_lower,
    timeline,
)
from logcanary.engine.model import BUCKET_SECONDS, DeploymentModel
from logcanary.schemas import Anomaly, RateEvidence, Thresholds

SHARED_HOSTS_MIN_SHARE = 0.5  # hosts both sides log from must carry this share of each side's events to compare
CRUDE_MARGIN = 1.25  # a shared host whose rate by its counts is this far above the limit is not sliced


@dataclass(slots=True)
class _Volume:
    """A side's events within the window: per 10-second bucket, per host, and per bucket of each host asked for."""

    buckets: dict[int, float] = field(default_factory=dict)
    hosts: dict[str, float] = field(default_factory=dict)
    by_host: dict[str, dict[int, float]] = field(default_factory=dict)
    total: float = 0.0


def _hosts(models: list[DeploymentModel], window: Window) -> tuple[dict[str, float], float]:
    """A side's events per host within the window (all-time host counts shared out over the window's), and in all."""
    hosts: dict[str, float] = {}
    total = 0.0
    for model in models:
        for stats in [*model.templates().values(), model.other]:
            count = stats.count if window is None else stats.count_between(*window)
            if count <= 0:
                continue
            total += count
            for host, n in stats.hosts.items():
                hosts[host] = hosts.get(host, 0.0) + n / stats.count * count
    return hosts, total


def effective_hosts(hosts: dict[str, float]) -> float:
    """How many hosts share a side's events, each weighed by its share (the exponential of the shares' entropy,
    Hill's number of order 1): n for n replicas that share evenly, about 3 for three replicas beside a few hosts that
    log little (a sidecar, a pod that started late), which a plain count takes for more and so divides the rate by
    too much: a canary that gained such a host would look slower per host than it is."""
    total = sum(hosts.values())
    if total <= 0:
        return 1.0
    entropy = -sum(n / total * math.log(n / total) for n in hosts.values() if n > 0)
    return max(1.0, math.exp(entropy))


def _volume(
    models: list[DeploymentModel], window: Window, hosts: set[str], by_host: tuple[dict[str, float], float]
) -> _Volume:
    """A side's events per 10-second bucket within the window, and per bucket of each of ``hosts`` (``by_host``: its
    events per host and in all, from :func:`_hosts`)."""
    volume = _Volume()
    volume.hosts, volume.total = by_host
    start, end = (-math.inf, math.inf) if window is None else (window[0] - BUCKET_SECONDS, window[1])
    buckets = volume.buckets
    for model in models:
        for stats in [*model.templates().values(), model.other]:
            if not stats.count:
                continue
            inside = stats.buckets
            if window is not None:  # the buckets that overlap the window, as TemplateStats.count_between counts them
                inside = {bucket: n for bucket, n in inside.items() if start < bucket < end}
            for bucket, n in inside.items():
                buckets[bucket] = buckets.get(bucket, 0.0) + n
            for host in hosts.intersection(stats.hosts):
                share = stats.hosts[host] / stats.count
                mine = volume.by_host.setdefault(host, {})
                for bucket, n in inside.items():
                    mine[bucket] = mine.get(bucket, 0.0) + share * n
    return volume


def _slice_rates(buckets: dict[int, float], line: Timeline) -> list[float]:
    counts = [0.0] * line.slices
    for bucket, count in buckets.items():
        index = line.slice_of.get(bucket)
        if index is not None:
            counts[index] += count
    return [count / line.slice_seconds for count in counts]


def rate_anomalies(
    canary: DeploymentModel,
    controls: list[DeploymentModel],
    window: Window,
    limits: Thresholds,
    canary_weight: float | None = None,
    typical: float | None = None,
) -> list[Anomaly]:
    """The canary's rate anomalies against its control deployments (none without one).

    ``typical`` is the canary's count of the baseline's established events per baseline event of them, when known:
    the canary's rate as a whole is then read from its established traffic, not from all its events, so start-up
    output or a burst on either side does not hide or fake a slower canary."""
    if not controls:
        return []
    live_end = max(model.last_seen for model in [canary, *controls])
    canary_side, control_side = _hosts([canary], window), _hosts(controls, window)
    (canary_by_host, canary_total), (control_by_host, control_total) = canary_side, control_side
    if canary_total <= 0 or control_total <= 0:
        return []
    shared = set(canary_by_host) & set(control_by_host)
    if (
        not all(
            sum(side[h] for h in shared) >= SHARED_HOSTS_MIN_SHARE * total
            for side, total in ((canary_by_host, canary_total), (control_by_host, control_total))
        )
        or canary_weight is not None
    ):
        shared = set()
    first = _volume([canary], window, set(), canary_side), _volume(controls, window, set(), control_side)
    segments = [active_range(clip(side.buckets, window), window, live_end) for side in first]
    seconds = [active_seconds(part) for part in segments]
    if min(seconds) <= 0:
        return []
    length = max(float(BUCKET_SECONDS), min(seconds) / MAX_SLICES, max(seconds) / MAX_RATE_SLICES)
    lines = [timeline(part, length) for part in segments]
    if min(line.slices for line in lines) < MIN_SLICES:
        return []
    canary_hosts, baseline_hosts = len(first[0].hosts), len(first[1].hosts)
    per_canary, per_baseline = effective_hosts(first[0].hosts), effective_hosts(first[1].hosts)
    units: list[tuple[str, list[float], list[float], float]] = []  # unit, canary and baseline rates, expected
    totals = _slice_rates(first[0].buckets, lines[0]), _slice_rates(first[1].buckets, lines[1])
    if canary_weight is not None:
        units.append(("all hosts", totals[0], totals[1], canary_weight / (100.0 - canary_weight)))
    elif shared:
        for host in sorted(shared):
            crude = (canary_by_host[host] / seconds[0]) / (control_by_host[host] / seconds[1])
            if crude > limits.rate_max_ratio * CRUDE_MARGIN:
                continue  # far from a rate anomaly by its counts: its time slices are not worth building
            mine = _slice_rates(_volume([canary], window, {host}, canary_side).by_host.get(host, {}), lines[0])
            theirs = _slice_rates(_volume(controls, window, {host}, control_side).by_host.get(host, {}), lines[1])
            units.append((f"host {host}", mine, theirs, 1.0))
    else:
        units.append(("per host", [r / per_canary for r in totals[0]], [r / per_baseline for r in totals[1]], 1.0))
    found = []
    for unit, canary_rates, baseline_rates, expected in units:
        canary_rate = sum(canary_rates) / len(canary_rates)
        baseline_rate = sum(baseline_rates) / len(baseline_rates)
        if baseline_rate <= 0:
            continue
        ratio = canary_rate / (expected * baseline_rate)
        if typical is not None and not unit.startswith("host "):
            hosts = 1.0 if canary_weight is not None else per_baseline / per_canary
            ratio = typical * seconds[1] / seconds[0] * hosts / expected
            canary_rate = ratio * expected * baseline_rate
        if ratio > limits.rate_max_ratio:
            continue
        p_value = rank_test_lower([rate / expected for rate in canary_rates], baseline_rates)
        if p_value > limits.frequency_max_p / max(len(units), len(shared)):
            continue
        strength = min(2.0, math.log(1 / max(ratio, 1e-9)) / math.log(1 / limits.rate_max_ratio))
        evidence = RateEvidence(
            unit=unit,
            canary_per_second=round(canary_rate, 6),
            baseline_per_second=round(baseline_rate, 6),
            expected_ratio=round(expected, 6),
            canary_weight=canary_weight,
            canary_hosts=canary_hosts,
            baseline_hosts=baseline_hosts,
            canary_slices=lines[0].slices,
            baseline_slices=lines[1].slices,
            slice_seconds=lines[0].slice_seconds,
        )
        found.append(_anomaly(unit, evidence, ratio, p_value, round(limits.fail_score * strength, 3), first, lines))
    return found


def _anomaly(
    unit: str,
    evidence: RateEvidence,
    ratio: float,
    p_value: float,
    score: float,
    sides: tuple[_Volume, _Volume],
    lines: list[Timeline],
) -> Anomaly:
    host = unit.removeprefix("host ") if unit.startswith("host ") else None
    canary_count = sides[0].hosts.get(host, 0.0) if host else sides[0].total
    baseline_count = sides[1].hosts.get(host, 0.0) if host else sides[1].total
    what = f"host {host}" if host else ("each canary host" if unit == "per host" else "the canary")
    template = (
        f"events per second of {what}: {evidence.canary_per_second:.3g} against "
        f"{evidence.expected_ratio * evidence.baseline_per_second:.3g} expected from the baseline"
    )
    return Anomaly(
        kind="frequency",  # a rate is a frequency: the kinds deploy tools and scorers know stay two
        direction="down",
        cluster_id=f"rate:{unit}",
        template=template,
        template_ids=[],
        examples=[],
        baseline_count=round(baseline_count),
        canary_count=round(canary_count),
        baseline_share=1.0 if not host else baseline_count / max(sides[1].total, 1e-9),
        canary_share=1.0 if not host else canary_count / max(sides[0].total, 1e-9),
        ratio=round(ratio, 6),
        p_value=p_value,
        level="info",
        hosts=[host] if host else sorted(sides[0].hosts)[:64],
        first_seen=None,
        score=score,
        rate=evidence,
    )
