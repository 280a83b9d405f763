"""Pulling a window from a real Grafana Loki: LokiSource against Loki's own raw ``query_range`` read rate.

Starts the shared Loki (``../shared/logstores/loki/start.sh``, or ``--url`` an existing one), pushes N lines
(Loghub's real log lines, over ``--streams`` pods, 1,000 lines per second of log time), then measures the
same window, alternately, each run in a fresh child process:

* ``raw``: httpx GETs of ``query_range`` pages (5,000 lines, forward, each page from the previous page's
  newest timestamp) with only ``orjson.loads`` of each body: what reading Loki costs at the least;
* ``pulled``: ``LokiSource.pull`` of the window, every line a ``PulledLine``, each exactly once;
* ``mapped``: the same, with every line through ``LineMapper`` (what the engine would be handed);
* ``judged``: what an analysis does: both deployments (half the streams are ``v1``, half ``v2``) pulled through
  ``Pulled`` into an engine of their own (masking, mining, clustering, counts), then the verdict.

Prints lines/s (median of ``--runs``), the ratio to raw (median of the runs' own ratios: the modes of a run
run back to back, in alternating order), and the peak RSS (VmHWM) of each measuring process.

Usage: python bench/bench_loki.py [--lines 200000] [--runs 5] [--streams 8] [--seconds SPAN] [--url URL] [--json]
(``--seconds``: the log time the lines span, default one second per 1,000 lines; ``--lines 200000 --seconds
600`` is a 10-minute window of a 100,000-line canary and its baseline.)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
from common import DEFAULT_DATA, PROJECT, Summary, load_contents, machine_info, print_machine

from logcanary.judge import LokiQuestion
from logcanary.settings import LimitSettings
from logcanary.sources import LineMapper, LokiSource

sys.path.insert(0, str(PROJECT))
from tests.loki_helpers import Loki, push, start_script

S = 1_000_000_000
PAGE = 5000
MODES = ("raw", "pulled", "mapped", "judged")


def lines_source() -> Iterator[str]:
    try:
        contents = load_contents(DEFAULT_DATA)
    except (SystemExit, OSError):
        contents = [f"GET /api/v1/items/{i} 200 {i % 97}ms user=u{i % 1000}" for i in range(2000)]
    return itertools.cycle(contents)


def load(url: str, count: int, streams: int, end: int, span: float) -> tuple[str, int, int, float]:
    """Pushes ``count`` lines over ``span`` seconds ending at ``end``; returns (query, start, end, seconds)."""
    run = os.urandom(4).hex()
    start = end - int(span * S) // 1000 * 1000
    text = lines_source()
    step = int(span * S) // count // 1000 * 1000  # stamps to the microsecond, as a window's float bounds hold them
    per_stream: list[list[tuple[int, str]]] = [[] for _ in range(streams)]
    for index in range(count):
        per_stream[index % streams].append((start + index * step, next(text)))
    began = time.perf_counter()
    labels = [{"bench": run, "app": "payments", "version": f"v{1 + i % 2}", "pod": f"pay-{i}"} for i in range(streams)]
    pushed = push(url, [(labels[i], per_stream[i]) for i in range(streams)])
    assert pushed == count, pushed
    return f'{{bench="{run}"}}', start, end + 1, time.perf_counter() - began


# --- the measured children ------------------------------------------------------------------------------------------


def raw(url: str, query: str, start: int, end: int) -> int:
    """Loki's raw read: pages of query_range, orjson.loads of each body and nothing else."""
    delivered = 0
    position = start
    with httpx.Client(base_url=url, timeout=120) as client:
        while True:
            params: dict[str, str | int] = {
                "query": query,
                "start": position,
                "end": end,
                "limit": PAGE,
                "direction": "forward",
            }
            result = orjson.loads(client.get("/loki/api/v1/query_range", params=params).content)["data"]["result"]
            count = sum(len(stream["values"]) for stream in result)
            delivered += count
            if count < PAGE:
                return delivered
            position = max(int(stream["values"][-1][0]) for stream in result)


async def pulled(url: str, query: str, start: int, end: int, mapped: bool) -> int:
    delivered = 0
    mapper = LineMapper("payments", "v1")
    async with LokiSource(url) as source:
        async for batch in source.pull(query, start, end):
            delivered += len(mapper.map(batch.lines)) if mapped else len(batch.lines)
    return delivered


async def judged(url: str, query: str, start: int, end: int) -> int:
    """Both deployments pulled into an engine of their own, then judged: what an analysis from Loki costs."""
    selector = query[:-1] + ', version="$deployment"}'
    question = LokiQuestion(url=url, service="payments", canary="v2", baseline="v1", canary_selector=selector)
    pulled = question.pull(start / S, start / S, LimitSettings())
    try:
        await pulled.catch_up((end + 1) / S)
        verdict = question.verdict(pulled).verdict
        assert pulled.problem is None and verdict.source is not None, verdict.reason
        return sum(verdict.source.lines.values())
    finally:
        await pulled.close()


def peak_rss_mb() -> float:
    """This process's peak RSS in MiB: VmHWM, which exec resets (ru_maxrss keeps the forking parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, url: str, query: str, start: int, end: int) -> None:
    baseline = peak_rss_mb()
    cpu = time.process_time()
    began = time.perf_counter()
    if mode == "raw":
        delivered = raw(url, query, start, end)
    elif mode == "judged":
        delivered = asyncio.run(judged(url, query, start, end))
    else:
        delivered = asyncio.run(pulled(url, query, start, end, mode == "mapped"))
    seconds = time.perf_counter() - began
    cpu = time.process_time() - cpu
    report = {"lines": delivered, "seconds": seconds, "cpu": cpu, "rss_mb": peak_rss_mb(), "rss_start_mb": baseline}
    print(json.dumps(report))


def measure(mode: str, url: str, query: str, start: int, end: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", mode, "--url", url, "--query", query]
    command += ["--start", str(start), "--end", str(end)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the run --------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--seconds", type=float, help="log time the lines span (default: 1 s per 1,000 lines)")
    parser.add_argument("--url", help="an existing Loki (default: start the shared one in a temporary folder)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--query", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--end", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.query, args.start, args.end)
        return

    info = machine_info()
    server: Loki | None = None
    data = Path(tempfile.mkdtemp(prefix="bench-loki-"))
    try:
        url = args.url
        if url is None:
            server = Loki(start_script(), data)
            server.start()
            url = server.url
        span = args.seconds or args.lines / 1000
        query, start, end, push_seconds = load(
            url, args.lines, args.streams, time.time_ns() // 1000 * 1000 - 60 * S, span
        )
        results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for run in range(args.runs):
            for mode in MODES if run % 2 == 0 else MODES[::-1]:  # alternate the order: load drifts on a shared box
                result = measure(mode, url, query, start, end)
                if mode != "raw" and result["lines"] != args.lines:
                    raise SystemExit(f"{mode} delivered {result['lines']} lines, not {args.lines}")
                results[mode].append(result)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(data, ignore_errors=True)

    rates = {mode: Summary.of([args.lines / r["seconds"] for r in runs]) for mode, runs in results.items()}
    # each run's modes ran back to back: the ratio within a run is less exposed to the machine's other load
    paired = {
        mode: Summary.of([raw["seconds"] / r["seconds"] for raw, r in zip(results["raw"], results[mode], strict=True)])
        for mode in ("pulled", "mapped", "judged")
    }
    rss = {mode: max(r["rss_mb"] for r in runs) for mode, runs in results.items()}
    cpu = {mode: Summary.of([r["cpu"] / args.lines * 1e6 for r in runs]).median for mode, runs in results.items()}
    rss_start = {mode: min(r["rss_start_mb"] for r in runs) for mode, runs in results.items()}
    report = {
        "machine": info,
        "lines": args.lines,
        "streams": args.streams,
        "push_seconds": push_seconds,
        "lines_per_second": {mode: summary.as_dict() for mode, summary in rates.items()},
        "ratio_to_raw_per_run": {mode: summary.as_dict() for mode, summary in paired.items()},
        "client_cpu_us_per_line": cpu,
        "peak_rss_mb": rss,
        "rss_after_imports_mb": rss_start,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print_machine(info)
    print(
        f"window: {args.lines:,} lines over {args.streams} streams, {span:g} s of log time, "
        f"pushed in {push_seconds:.1f} s"
    )
    print(
        f"{'mode':8} {'lines/s (median)':>18} {'min':>10} {'max':>10} {'client CPU':>13} "
        f"{'peak RSS':>10} {'after imports':>14}"
    )
    for mode in MODES:
        summary = rates[mode]
        print(
            f"{mode:8} {summary.median:18,.0f} {summary.low:10,.0f} {summary.high:10,.0f} {cpu[mode]:7.2f} µs/line "
            f"{rss[mode]:8.1f} MiB {rss_start[mode]:10.1f} MiB"
        )
    for mode, summary in paired.items():
        print(
            f"{mode} / raw, per run: median {summary.median:.2f} (min {summary.low:.2f}, max {summary.high:.2f}); "
            f"of the medians: {rates[mode].median / rates['raw'].median:.2f}"
        )


if __name__ == "__main__":
    main()
