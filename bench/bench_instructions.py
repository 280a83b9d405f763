"""The engine's instructions per log line, counted by callgrind: a measure this shared, noisy machine cannot move.

    .venv/bin/python bench/bench_instructions.py [--tree DIR] [--seeds 3]

Runs ``Engine.observe`` over the ten loghub2k sets (20,000 lines) once and three times, each under
``valgrind --tool=callgrind`` with address randomisation off (``setarch -R``) and a fixed hash seed, and prints the
difference over the 40,000 lines of the last two passes: what a line costs once its event types are learnt (one
deployment, so no stats are created in those passes). ``--tree`` measures another checkout (its ``service/``), so
two revisions are compared in one run. The run itself is ``--passes N`` (what callgrind executes).
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


def run_passes(passes: int) -> None:
    from logcanary.engine.model import Engine

    csv.field_size_limit(10**9)
    sets = []
    for path in sorted(glob.glob(str(DATA / "*.csv"))):
        with open(path, newline="", encoding="utf-8") as file:
            sets.append((Path(path).stem, [row["Content"] for row in csv.DictReader(file)]))
    engine = Engine()
    clock = 1_700_000_000.0
    for _ in range(passes):
        for name, lines in sets:
            observe = engine.observe
            for line in lines:
                clock += 0.01
                observe(name, "v0", line, clock, "host-a", "info")


def instructions(tree: Path, passes: int, seed: int) -> int:
    env = {**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(tree / "service")}
    command = ["setarch", platform.machine(), "-R", "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, __file__, "--passes", str(passes)]
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
    args = parser.parse_args()
    if args.passes:
        run_passes(args.passes)
        return
    per_line = []
    for seed in range(args.seeds):
        one, three = instructions(args.tree, 1, seed), instructions(args.tree, 3, seed)
        per_line.append((three - one) / (2 * LINES_PER_PASS))
        print(f"seed {seed}: {per_line[-1]:,.0f} instructions a line", flush=True)
    print(f"{args.tree}: {sum(per_line) / len(per_line):,.0f} instructions a line (mean of {len(per_line)} seeds)")


if __name__ == "__main__":
    main()
