"""How long ingestion and the canary verdict take.

Part 1, throughput: 200,000 baseline (v1) and 200,000 canary (v2, NPE rate
0.001) events of the demo payments service (service/logcanary/demo/traffic.py),
generated before any timing, are ingested into a new Engine (events/s), then
``analyze`` judges v2 against v1 (seconds). The verdict must be fail with the
NullPointerException as top anomaly.

Part 2, a large service: 5,000 distinct synthetic event types (distinct
combinations of words of a seeded vocabulary), each a few times in v1 and in
v2, plus a few canary-only types; the per-deployment caps are raised so every
type gets its own template and river cluster. Ingestion is timed, showing what
learning a new template costs as a deployment's clusters grow, then the
median time of ``analyze``. The verdict must be fail with exactly the
canary-only types as anomalies.

    .venv/bin/python bench/bench_analysis.py [--events 200000] [--types 5000] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime

from common import Summary, machine_info, peak_rss_mb, print_machine

from logcanary.analysis.verdict import analyze
from logcanary.demo import traffic
from logcanary.engine.caps import Caps
from logcanary.engine.model import Engine
from logcanary.schemas import Verdict

Event = tuple[str, str, float, str, str]  # deployment, message, timestamp, host, level
START = 1_795_694_400.0  # 2026-11-26 12:00 UTC
CHUNK = 1_000  # new templates per timed learning chunk in part 2


def ingest(engine: Engine, service: str, events: list[Event]) -> float:
    """Seconds to observe ``events``."""
    observe = engine.observe
    gc.collect()
    start = time.perf_counter()
    for deployment, message, timestamp, host, level in events:
        observe(service, deployment, message, timestamp, host, level)
    return time.perf_counter() - start


def timed_analyze(engine: Engine, service: str) -> tuple[float, Verdict]:
    gc.collect()
    start = time.perf_counter()
    verdict = analyze(engine.service(service), canary="v2", baseline=["v1"], sensitivity="medium")
    return time.perf_counter() - start, verdict


# -- part 1: demo traffic ----------------------------------------------------------------------


def demo_events(count: int, seed: int, npe_rate: float) -> list[Event]:
    """Baseline and canary events of the demo service, alternating as if both ran at once."""
    sides = []
    for deployment, rate in (("v1", 0.0), ("v2", npe_rate)):
        sides.append(
            [
                (
                    e["deployment"],
                    e["message"],
                    datetime.fromisoformat(e["timestamp"]).timestamp(),
                    e["host"],
                    e["level"],
                )
                for e in traffic.events(deployment, count, seed=seed, npe_rate=rate)
            ]
        )
    return [event for pair in zip(*sides, strict=True) for event in pair]


@dataclass(frozen=True, slots=True)
class Throughput:
    events: int
    ingest_events_per_second: Summary
    analyze_seconds: Summary
    verdict: Verdict
    ok: bool


def bench_throughput(count: int, seed: int, npe_rate: float, repeat: int) -> Throughput:
    events = demo_events(count, seed, npe_rate)
    rates: list[float] = []
    seconds: list[float] = []
    verdicts: list[Verdict] = []
    for _ in range(repeat):
        engine = Engine()
        rates.append(len(events) / ingest(engine, traffic.SERVICE, events))
        elapsed, verdict = timed_analyze(engine, traffic.SERVICE)
        seconds.append(elapsed)
        verdicts.append(verdict)
    ok = all(
        v.verdict == "fail" and v.anomalies and "NullPointerException" in v.anomalies[0].template for v in verdicts
    )
    return Throughput(len(events), Summary.of(rates), Summary.of(seconds), verdicts[-1], ok)


# -- part 2: a service with thousands of clusters -----------------------------------------------


def vocabulary(rng: random.Random, size: int) -> list[str]:
    """Distinct pronounceable letter-only words (the masker never touches those)."""
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def event_types(rng: random.Random, count: int, words: int = 6, vocabulary_size: int = 3_000) -> list[str]:
    """``count`` distinct combinations of ``words`` words, as message prefixes."""
    vocab = vocabulary(rng, vocabulary_size)
    types: set[tuple[str, ...]] = set()
    while len(types) < count:
        types.add(tuple(rng.sample(vocab, words)))
    ordered = sorted(types)
    rng.shuffle(ordered)
    return [" ".join(words) for words in ordered]


def message(prefix: str, rng: random.Random) -> str:
    return f"{prefix} took {rng.randint(1, 999)} ms"


@dataclass(frozen=True, slots=True)
class LargeService:
    types: int
    canary_only: int
    events: int
    clusters: dict[str, int]
    ingest_seconds: float
    learn_ms_per_template: dict[str, list[float]]  # per deployment, per chunk of CHUNK new templates
    analyze_seconds: Summary
    verdict: Verdict
    ok: bool


def bench_large_service(types: int, canary_only: int, occurrences: int, runs: int, seed: int) -> LargeService:
    """Every type ``occurrences`` times per side; each side's first pass is where its templates are new."""
    rng = random.Random(seed)
    prefixes = event_types(rng, types + canary_only)
    shared, new = prefixes[:types], prefixes[types:]
    hosts = ("host-a", "host-b", "host-c")
    clock = iter(range(10**9))

    def event(deployment: str, prefix: str, level: str = "info") -> Event:
        tick = next(clock)
        return deployment, message(prefix, rng), START + tick / 1000, hosts[tick % len(hosts)], level

    passes: dict[str, list[list[Event]]] = {
        deployment: [[event(deployment, prefix) for prefix in shared] for _ in range(occurrences)]
        for deployment in ("v1", "v2")
    }
    passes["v2"].append([event("v2", prefix, "error") for prefix in new for _ in range(3)])

    cap = 2 * (types + canary_only)
    engine = Engine(
        caps=Caps(max_templates_per_service=cap, max_templates_per_deployment=cap, max_clusters_per_deployment=cap)
    )
    learn: dict[str, list[float]] = {}
    total = 0.0
    for deployment, batches in passes.items():
        first, *rest = batches
        learn[deployment] = []
        for start in range(0, len(first), CHUNK):
            chunk = first[start : start + CHUNK]
            elapsed = ingest(engine, "large", chunk)
            learn[deployment].append(1000 * elapsed / len(chunk))
            total += elapsed
        total += sum(ingest(engine, "large", batch) for batch in rest)
    events = sum(len(batch) for batches in passes.values() for batch in batches)

    seconds: list[float] = []
    verdict = None
    for _ in range(runs):
        elapsed, verdict = timed_analyze(engine, "large")
        seconds.append(elapsed)
    assert verdict is not None
    found = {example.rsplit(" took ", 1)[0] for anomaly in verdict.anomalies for example in anomaly.examples}
    ok = verdict.verdict == "fail" and verdict.anomaly_count == canary_only and found == set(new)
    model = engine.service("large")
    clusters = {name: len(deployment.clusterer) for name, deployment in model.deployments.items()}
    return LargeService(types, canary_only, events, clusters, total, learn, Summary.of(seconds), verdict, ok)


# -- report --------------------------------------------------------------------------------------


def _top(verdict: Verdict) -> str:
    if not verdict.anomalies:
        return "(no anomaly)"
    top = verdict.anomalies[0]
    headline = " | ".join(line.strip() for line in top.template.splitlines()[:3])
    counts = f"canary_count={top.canary_count} baseline_count={top.baseline_count}"
    return f"{top.kind} score={top.score:g} {counts}: {headline}"


def _verdict(verdict: Verdict) -> str:
    return f"  verdict  {verdict.verdict}, {verdict.anomaly_count} anomalies; top: {_top(verdict)}"


def _ms(summary: Summary) -> str:
    spread = f"(min {1000 * summary.low:.1f}, max {1000 * summary.high:.1f}, {len(summary.runs)} runs)"
    return f"  analyze  {1000 * summary.median:>12.1f} ms        {spread}"


def print_report(throughput: Throughput, large: LargeService | None) -> None:
    rate = throughput.ingest_events_per_second
    print(f"part 1: demo payments traffic, {throughput.events:,} events (v1 and v2 alternating)")
    print(f"  ingest   {rate.median:>12,.0f} events/s  (min {rate.low:,.0f}, max {rate.high:,.0f})")
    print(_ms(throughput.analyze_seconds))
    print(_verdict(throughput.verdict))
    print(f"  check    {'OK' if throughput.ok else 'UNEXPECTED: wanted fail with the NullPointerException on top'}")
    if large is None:
        return
    print()
    print(
        f"part 2: {large.types:,} event types in v1 and v2 + {large.canary_only} canary-only, {large.events:,} events"
    )
    print(f"  clusters per deployment: {', '.join(f'{name}={count:,}' for name, count in large.clusters.items())}")
    print(f"  ingest   {large.ingest_seconds:>12.1f} s         ({large.events / large.ingest_seconds:,.0f} events/s)")
    for deployment, chunks in large.learn_ms_per_template.items():
        spans = ", ".join(
            f"{i * CHUNK:,}-{min((i + 1) * CHUNK, large.types):,}: {ms:.1f}" for i, ms in enumerate(chunks)
        )
        print(f"  {deployment} learning, ms per new template, by templates already in the deployment: {spans}")
    print(_ms(large.analyze_seconds))
    print(_verdict(large.verdict))
    print(f"  check    {'OK' if large.ok else 'UNEXPECTED: wanted fail with exactly the canary-only types'}")


def as_json(throughput: Throughput, large: LargeService | None) -> dict[str, object]:
    report: dict[str, object] = {
        "throughput": {
            "events": throughput.events,
            "ingest_events_per_second": throughput.ingest_events_per_second.as_dict(),
            "analyze_seconds": throughput.analyze_seconds.as_dict(),
            "verdict": throughput.verdict.verdict,
            "top_anomaly": throughput.verdict.anomalies[0].template if throughput.verdict.anomalies else None,
            "ok": throughput.ok,
        }
    }
    if large is not None:
        report["large_service"] = {
            "types": large.types,
            "canary_only": large.canary_only,
            "events": large.events,
            "clusters": large.clusters,
            "ingest_seconds": large.ingest_seconds,
            "learn_ms_per_template": large.learn_ms_per_template,
            "learn_chunk": CHUNK,
            "analyze_seconds": large.analyze_seconds.as_dict(),
            "verdict": large.verdict.verdict,
            "anomaly_count": large.verdict.anomaly_count,
            "ok": large.ok,
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per side in part 1")
    parser.add_argument("--npe-rate", type=float, default=0.001, help="share of canary events that are the NPE")
    parser.add_argument("--repeat", type=int, default=3, help="ingest + analyze runs in part 1")
    parser.add_argument("--types", type=int, default=5_000, help="event types in part 2 (0 skips part 2)")
    parser.add_argument("--canary-only", type=int, default=3, help="canary-only event types in part 2")
    parser.add_argument("--occurrences", type=int, default=4, help="occurrences of each type per side in part 2")
    parser.add_argument("--runs", type=int, default=5, help="analyze runs in part 2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    args = parser.parse_args()

    machine = machine_info()
    throughput = bench_throughput(args.events, args.seed, args.npe_rate, args.repeat)
    large = (
        bench_large_service(args.types, args.canary_only, args.occurrences, args.runs, args.seed)
        if args.types
        else None
    )
    rss = peak_rss_mb()
    if args.json:
        print(json.dumps({"machine": machine, **as_json(throughput, large), "peak_rss_mb": rss}, indent=2))
    else:
        print_machine(machine)
        print()
        print_report(throughput, large)
        print()
        print(f"peak RSS: {rss:.0f} MiB (whole process)")
    if not throughput.ok or (large is not None and not large.ok):
        sys.exit(1)


if __name__ == "__main__":
    main()
