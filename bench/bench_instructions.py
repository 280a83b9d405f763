"""The engine's instructions per log line, counted by callgrind: a measure this shared, noisy machine cannot move.

    .venv/bin/python bench/bench_instructions.py [--tree DIR] [--seeds 3]

Runs ``Engine.observe`` over the ten loghub2k sets (20,000 lines) twice and four times, each under
``valgrind --tool=callgrind`` with address randomisation off (``setarch -R``) and a fixed hash seed, and prints the
difference over the 40,000 lines of the last two passes: what a line costs once its event types are learnt and its
message shapes seen twice (a shape is cached on its second sighting; one deployment, so no stats are created in
those passes). ``--input demo`` runs the demo service's traffic instead (20,000 events a pass, each pass new events:
ids and numbers never repeat, as in a real stream). ``--tree`` measures another checkout (its ``service/``), so two
revisions are compared in one run. The run itself is ``--passes N`` (what callgrind executes).
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "eval" / "data" / "loghub2k"
LINES_PER_PASS = 20_000
MAX_PASSES = 4


def run_passes(passes: int, source: str) -> None:
    from logcanary.engine.model import Engine

    sets: list[list[tuple[str, str]]] = []  # per pass: (service, message)
    if source == "demo":
        from logcanary.demo.traffic import events

        # As many events whatever the passes, so that making them costs both runs alike (and cancels out).
        made = [(event["service"], event["message"]) for event in events("v0", MAX_PASSES * LINES_PER_PASS, seed=1)]
        sets = [made[index * LINES_PER_PASS : (index + 1) * LINES_PER_PASS] for index in range(passes)]
    else:
        csv.field_size_limit(10**9)
        lines = []
        for path in sorted(glob.glob(str(DATA / "*.csv"))):
            with open(path, newline="", encoding="utf-8") as file:
                lines += [(Path(path).stem, row["Content"]) for row in csv.DictReader(file)]
        sets = [lines] * passes
    engine = Engine()
    clock = 1_700_000_000.0
    observe = engine.observe
    for lines in sets:
        for service, line in lines:
            clock += 0.01
            observe(service, "v0", line, clock, "host-a", "info")


def instructions(tree: Path, passes: int, seed: int, source: str) -> int:
    env = {**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(tree / "service")}
    command = ["setarch", platform.machine(), "-R", "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, __file__, "--passes", str(passes), "--input", source]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : ([\d,]+)", done.stderr)
    if found is None:
        raise SystemExit(f"no callgrind total in:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, help="run the engine this many passes (what callgrind measures)")
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--input", choices=("loghub", "demo"), default="loghub")
    args = parser.parse_args()
    if args.passes:
        run_passes(args.passes, args.input)
        return
    per_line = []
    for seed in range(args.seeds):
        two, four = instructions(args.tree, 2, seed, args.input), instructions(args.tree, 4, seed, args.input)
        per_line.append((four - two) / (2 * LINES_PER_PASS))
        print(f"seed {seed}: {per_line[-1]:,.0f} instructions a line", flush=True)
    mean = sum(per_line) / len(per_line)
    print(f"{args.tree} ({args.input}): {mean:,.0f} instructions a line (mean of {len(per_line)} seeds)")


if __name__ == "__main__":
    main()
