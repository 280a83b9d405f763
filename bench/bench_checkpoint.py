"""Checkpoint bytes written per second at steady state: rows (codec format 2) against whole blobs (format 1).

A LiveState on a real SQLite file is fed the Loghub 2k lines (one service per system, a v1 and a v2
deployment each) until it knows them, then ``--rate`` events per second for ``--checkpoints`` intervals of
``--interval`` seconds (event time; the events are fed as fast as they go). Each interval brings a few
messages never seen (``--new-per-interval``), as production does. For every checkpoint it reports:

* ``rows``: the bytes of the rows the checkpoint wrote (format 2, what the store writes now);
* ``blobs``: the bytes the format-1 layout would have written for the same change (every changed miner
  and deployment rewritten whole);
* ``file``: the bytes SQLite actually wrote (``wchar`` of /proc/self/io around the transaction: WAL
  pages and headers; the WAL is copied back into the database file later, about as much again).

A second scenario (``--large-templates``) starts from a miner holding many long templates (the issue's
160 MB miner, scaled down) to show that a checkpoint's cost no longer grows with the miner.

    python bench/bench_checkpoint.py [--data ../shared/eval/data/loghub2k]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import statistics
import tempfile
import time
from pathlib import Path

from common import DEFAULT_DATA, machine_info, print_machine

from logcanary.live.single_node import SingleNode
from logcanary.settings import Settings
from logcanary.store.codec import encode_deployment, encode_miner
from logcanary.store.sqlite import SqliteStore


def written() -> int:
    """Bytes this process passed to write(2) so far."""
    with open("/proc/self/io", encoding="ascii") as io:
        for line in io:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def blob_bytes(state: SingleNode, versions: dict[str, int], events: dict[tuple[str, str], int]) -> int:
    """What the format-1 layout writes for the changes since ``versions``/``events`` (and updates them)."""
    total = 0
    for name, service in state.engine.services.items():
        if versions.get(name) != service.miner.version:
            total += len(encode_miner(service.miner))
            versions[name] = service.miner.version
        for deployment, model in service.deployments.items():
            if events.get((name, deployment)) != model.events:
                total += len(encode_deployment(model))
                events[(name, deployment)] = model.events
    return total


def run(name: str, lines: dict[str, list[str]], warm: dict[str, list[str]], args: argparse.Namespace) -> None:
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as folder:
        config = Settings(state_dir=Path(folder))
        state = SingleNode(config, config, SqliteStore(Path(folder) / "logcanary.sqlite"))
        state.load()
        clock = 1_800_000_000.0
        for service, messages in warm.items():
            for n, message in enumerate(messages):
                state.engine.observe(service, "v1" if n % 2 else "v2", message, clock, f"h{n % 8}", "info")
        asyncio.run(state.checkpoint(force=True))
        miner_bytes = sum(len(encode_miner(s.miner)) for s in state.engine.services.values())
        versions: dict[str, int] = {}
        counts: dict[tuple[str, str], int] = {}
        blob_bytes(state, versions, counts)
        per_interval = int(args.rate * args.interval)
        services = list(lines)
        rows, blobs, files, seconds = [], [], [], []
        for interval in range(args.checkpoints):
            for n in range(per_interval):
                service = services[n % len(services)]
                message = rng.choice(lines[service])
                state.engine.observe(service, rng.choice(("v1", "v2")), message, clock, f"h{n % 8}", "info")
                clock += args.interval / per_interval
            for k in range(args.new_per_interval):
                fresh = f"brand new event {interval} kind {k} appeared in module m{interval}x{k}"
                state.engine.observe(services[k % len(services)], "v2", fresh, clock, "h0", "warn")
            checkpoint, _ = state.snapshot()
            row_bytes = (
                sum(map(len, checkpoint.miners.values()))
                + sum(map(len, checkpoint.groups.values()))
                + sum(map(len, checkpoint.deployments.values()))
                + sum(map(len, checkpoint.templates.values()))
            )
            blob = blob_bytes(state, versions, counts)
            before, started = written(), time.perf_counter()
            assert asyncio.run(state.checkpoint(force=True))
            seconds.append(time.perf_counter() - started)
            files.append(written() - before)
            rows.append(row_bytes)
            blobs.append(blob)
        state.store.close()
    rate = args.interval
    print(
        f"{name} (miners {miner_bytes / 1024:,.0f} KiB as blobs): {args.rate:,} events/s, "
        f"checkpoint every {args.interval:g} s, {args.checkpoints} checkpoints: "
        f"rows {statistics.median(rows) / rate / 1024:,.1f} KiB/s, "
        f"file {statistics.median(files) / rate / 1024:,.1f} KiB/s (median), "
        f"format-1 blobs would be {statistics.median(blobs) / rate / 1024:,.1f} KiB/s; "
        f"checkpoint {statistics.median(seconds) * 1000:,.1f} ms (median)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rate", type=int, default=10_000, help="events per second (event time)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between checkpoints")
    parser.add_argument("--checkpoints", type=int, default=12)
    parser.add_argument("--new-per-interval", type=int, default=3, help="never-seen messages per interval")
    parser.add_argument("--large-templates", type=int, default=5_000, help="long templates of the large miner")
    args = parser.parse_args()
    print_machine(machine_info())

    lines: dict[str, list[str]] = {}
    for path in sorted(args.data.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            lines[path.stem.lower()] = [row["Content"] for row in csv.DictReader(handle)]
    if not lines:
        raise SystemExit(f"no CSV file in {args.data}")
    run("loghub", lines, lines, args)

    rng = random.Random(2)

    def letters(n: int) -> str:  # words of letters only: the masker leaves them alone
        out = ""
        while True:
            n, digit = divmod(n, 26)
            out += "abcdefghijklmnopqrstuvwxyz"[digit]
            if not n:
                return out

    words = [f"w{letters(n)}" for n in range(5_000)]
    # Each its own template: a kind word of its own and 120 words of text (about 1 KB).
    large = [" ".join(["op", f"kind{letters(n)}", *rng.sample(words, 120)]) for n in range(args.large_templates)]
    known = {"big": large[:200]}
    run(f"large miner ({args.large_templates:,} templates of ~1 KB)", known, {"big": large}, args)


if __name__ == "__main__":
    main()
