"""Where a `logcanary serve` spends its time while it counts a preloaded Kafka topic (issue 22).

Preloads N events of the demo traffic into the embedded broker (as ``bench_kafka.py --mode preloaded``), starts
`logcanary serve`, attaches py-spy to it while it counts, and prints the functions holding the most samples, by
own time and by inclusive time (py-spy's collapsed stacks, summed here). py-spy is not a project dependency: install
it anywhere (``python3 -m venv /tmp/pyspy && /tmp/pyspy/bin/pip install py-spy``) and pass ``--py-spy``.

Usage: python bench/profile_ingest.py --py-spy /tmp/pyspy/bin/py-spy [--events 300000] [--top 25] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
from bench_kafka import counted, create_topic, produce, start_service, wait_counted

from logcanary.demo.embedded_broker import EmbeddedBroker, free_port
from logcanary.demo.traffic import events

# What a sample is doing, by the first of these found in its stack (or its last frame, for the idle ones).
KINDS = (
    ("engine (Engine.observe: masking, mining, counts)", "Engine.observe ("),
    ("decoding (orjson, field checks, pydantic)", "decode"),
    ("aiokafka (fetch responses, record objects)", "aiokafka/"),
    ("counting loop (offsets, slices, clock)", "DirectConsumer.handle"),
    ("HTTP (the benchmark polling /v1/services)", "uvicorn/protocols"),
)
IDLE = ("Condition.wait", "_worker (concurrent/futures/thread.py:81)", "Runner.run (asyncio/runners.py:118)")


def kinds(collapsed: Path) -> str:
    """Busy samples (neither an idle worker thread nor the loop waiting in select) by kind, in percent."""
    busy: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or stack.split(";")[-1].startswith(IDLE):
            continue
        busy[next((kind for kind, mark in KINDS if mark in stack), "other")] += int(count_text)
    total = sum(busy.values())
    return "\n".join(f"{100 * n / total:5.1f}%  {kind}" for kind, n in busy.most_common())


def summarise(collapsed: Path, top: int) -> str:
    """The ``top`` frames by own samples and by inclusive samples, as percentages of all samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    out = [f"{total} samples"]
    for title, counter in (("own", own), ("inclusive", inclusive)):
        out.append(f"-- top {top} by {title} time --")
        out += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in counter.most_common(top)]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--py-spy", required=True, help="the py-spy executable")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, help="keep the collapsed stacks (py-spy --format raw) here")
    args = parser.parse_args()
    half = args.events // 2
    payloads = [orjson.dumps(e) for e in events("v1", half, seed=1)]
    payloads += [orjson.dumps(e) for e in events("v2", args.events - half, seed=2, npe_rate=0.001)]
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        topic = "profile"
        asyncio.run(create_topic(broker.bootstrap_servers, topic, args.partitions))
        asyncio.run(produce(broker.bootstrap_servers, topic, payloads))
        port = free_port()
        collapsed = args.out or Path(tmp) / "collapsed.txt"
        service = start_service(broker.bootstrap_servers, topic, Path(tmp) / "state", port, Path(tmp) / "log")
        command = [args.py_spy, "record", "--pid", str(service.pid), "--format", "raw", "--rate", "200"]
        spy = subprocess.Popen(
            [*command, "-o", str(collapsed)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            first, finished, early = wait_counted(lambda: counted(port), args.events)
            print(f"steady {round((args.events - early) / (finished - first))} events/s while sampled")
        finally:
            spy.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
            spy.wait(30)
            service.terminate()
            service.wait(30)
        time.sleep(0.1)
        print(f"-- busy samples by kind --\n{kinds(collapsed)}")
        print(summarise(collapsed, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
