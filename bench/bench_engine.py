"""Lines per second of logcanary's engine versus Drain3 on real Loghub lines.

The engine is measured end to end (``Engine.observe``: masking, mining, river
clustering of new templates and per-deployment counting); Drain3 with its
default ``TemplateMinerConfig`` (no masking, no counting). Two inputs of the
same size:

* ``repeated``: the Loghub lines verbatim, over and over; after the first pass
  every message has been seen before, which flatters any cache;
* ``fresh``: every repetition gives every digit run a fresh random value of the
  same length, as in a real stream where ids and numbers never repeat. The
  lines are generated before any timing.

Engine and Drain3 runs alternate ``--repeat`` times, each on a new instance,
so load drifting on a shared machine hits both; medians are reported.

    .venv/bin/python bench/bench_engine.py [--lines 200000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import DEFAULT_DATA, Summary, load_contents, machine_info, peak_rss_mb, print_machine
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from logcanary.engine.model import Engine

MODES = ("repeated", "fresh")
START = 1_795_694_400.0  # 2026-11-26 12:00 UTC; one line per millisecond from there
HOSTS = ("host-a", "host-b", "host-c")
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class Run:
    lines_per_second: float
    templates: int  # engine: live templates of the service; Drain3: clusters


def build(lines: list[str], total: int, mode: str, seed: int) -> list[str]:
    """Whole repetitions of ``lines`` until there are at least ``total``; fresh digits in mode ``fresh``."""
    repetitions = math.ceil(total / len(lines))
    if mode == "repeated":
        return lines * repetitions
    rng = random.Random(seed)

    def fresh(match: re.Match[str]) -> str:
        width = len(match.group())
        return f"{rng.randrange(10**width):0{width}d}"

    return [_DIGITS.sub(fresh, line) for _ in range(repetitions) for line in lines]


# --clock cpu: this thread's CPU time, which other processes of a busy machine leave (mostly) alone
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}


def run_engine(lines: list[str], clock: Callable[[], float] = time.perf_counter) -> Run:
    timestamps = [START + index / 1000 for index in range(len(lines))]
    hosts = [HOSTS[index % len(HOSTS)] for index in range(len(lines))]
    engine = Engine()
    observe = engine.observe
    gc.collect()
    start = clock()
    for line, timestamp, host in zip(lines, timestamps, hosts, strict=True):
        observe("svc", "v1", line, timestamp, host, "info")
    elapsed = clock() - start
    return Run(len(lines) / elapsed, len(engine.service("svc").miner.templates))


def run_drain3(lines: list[str], clock: Callable[[], float] = time.perf_counter) -> Run:
    miner = TemplateMiner(config=TemplateMinerConfig())
    add = miner.add_log_message
    gc.collect()
    start = clock()
    for line in lines:
        add(line)
    elapsed = clock() - start
    return Run(len(lines) / elapsed, len(miner.drain.clusters))


@dataclass(frozen=True, slots=True)
class Result:
    """Engine and Drain3 runs on one input."""

    engine: Summary
    drain3: Summary
    engine_templates: int
    drain3_clusters: int

    @property
    def ratio(self) -> float:
        return self.engine.median / self.drain3.median

    def as_dict(self) -> dict[str, object]:
        return {
            "engine": {**self.engine.as_dict(), "templates": self.engine_templates},
            "drain3": {**self.drain3.as_dict(), "clusters": self.drain3_clusters},
            "ratio": self.ratio,
        }


def measure(lines: list[str], repeat: int, clock: Callable[[], float] = time.perf_counter) -> Result:
    """Alternates engine and Drain3 runs on the same lines."""
    engine: list[Run] = []
    drain3: list[Run] = []
    for _ in range(repeat):
        engine.append(run_engine(lines, clock))
        drain3.append(run_drain3(lines, clock))
    return Result(
        Summary.of([run.lines_per_second for run in engine]),
        Summary.of([run.lines_per_second for run in drain3]),
        engine[-1].templates,
        drain3[-1].templates,
    )


def _rate(summary: Summary) -> str:
    return f"{summary.median:,.0f} ({summary.low:,.0f}-{summary.high:,.0f})"


def print_report(results: dict[str, Result]) -> None:
    header = f"{'mode':<9} {'engine lines/s (min-max)':>34} {'drain3 lines/s (min-max)':>34} {'ratio':>6} {'templ.':>8}"
    print(header)
    print("-" * len(header))
    for mode, result in results.items():
        counts = f"{result.engine_templates}/{result.drain3_clusters}"
        print(f"{mode:<9} {_rate(result.engine):>34} {_rate(result.drain3):>34} {result.ratio:>6.2f} {counts:>8}")
    print("(ratio = engine median / drain3 median; templ. = engine templates / drain3 clusters after a run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of Loghub CSVs (column Content)")
    parser.add_argument("--lines", type=int, default=200_000, help="minimum lines per run (whole repetitions)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each engine per mode")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh values")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="wall time, or this thread's CPU time (a busy machine)"
    )
    parser.add_argument("--sets", help="comma-separated CSV names of --data to use (default: every CSV)")
    args = parser.parse_args()
    logging.getLogger("drain3").setLevel(logging.CRITICAL)

    machine = machine_info()
    source = load_contents(args.data, args.sets.split(",") if args.sets else None)
    inputs = {mode: build(source, args.lines, mode, args.seed) for mode in MODES}
    results = {mode: measure(lines, args.repeat, CLOCKS[args.clock]) for mode, lines in inputs.items()}
    lines = len(inputs["repeated"])
    rss = peak_rss_mb()
    if args.json:
        report = {
            "machine": machine,
            "source_lines": len(source),
            "lines": lines,
            "repeat": args.repeat,
            "clock": args.clock,
            "modes": {mode: result.as_dict() for mode, result in results.items()},
            "peak_rss_mb": rss,
        }
        print(json.dumps(report, indent=2))
        return
    print_machine(machine)
    print(f"input: {len(source):,} Loghub lines -> {lines:,} lines per run; {args.repeat} runs of each engine per mode")
    print(f"clock: {args.clock}" + (" (this thread's CPU time)" if args.clock == "cpu" else ""))
    print()
    print_report(results)
    print(f"peak RSS: {rss:.0f} MiB (whole process: the materialised lines and both engines)")
    print()
    for mode, result in results.items():
        print(
            f"engine-vs-drain3 mode={mode}: engine={result.engine.median:.0f} lines/s "
            f"drain3={result.drain3.median:.0f} lines/s ratio={result.ratio:.2f}"
        )


if __name__ == "__main__":
    main()
