"""Whole-process parse time: ``logcanary parse -`` against the same job done by Drain3, each a new process.

What a pipeline or a scorer pays to template a file: interpreter start, imports, reading, mining and writing one
line of output per input line. Drain3 runs with its default ``TemplateMinerConfig`` in a process of its own
(this file with ``--drain3``), printing each line's cluster id. Two inputs, from the loghub2k sets:

* ``2k``: each of the ten sets (2,000 lines) in its own process, as ``grouping.py`` runs it;
* ``200k``: the 20,000 lines of all ten sets, ten times over, in one process.

The two tools alternate ``--repeat`` times; medians of wall-clock seconds and the ratio Drain3 / logcanary.

    .venv/bin/python bench/bench_parse_process.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DEFAULT_DATA, load_contents, machine_info, print_machine

LOGCANARY = [sys.executable, "-m", "logcanary.cli", "parse", "-"]
DRAIN3 = [sys.executable, __file__, "--drain3"]


def drain3_parse() -> None:
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    miner = TemplateMiner(config=TemplateMinerConfig())
    ids = [miner.add_log_message(line.rstrip("\n"))["cluster_id"] for line in sys.stdin]
    sys.stdout.write("".join(f"{cluster}\n" for cluster in ids))


def seconds(command: list[str], path: Path) -> float:
    with path.open("rb") as stdin:
        started = time.perf_counter()
        subprocess.run(command, stdin=stdin, stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drain3", action="store_true", help="be the Drain3 process (stdin -> cluster ids)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.drain3:
        drain3_parse()
        return
    print_machine(machine_info())
    names = sorted(path.stem for path in DEFAULT_DATA.glob("*.csv"))
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name in names:
            files[name] = Path(tmp) / f"{name}.txt"
            files[name].write_text(
                "".join(line.replace("\n", " ") + "\n" for line in load_contents(DEFAULT_DATA, [name]))
            )
        whole = Path(tmp) / "all.txt"
        whole.write_text("".join(files[name].read_text() for name in names) * 10)
        inputs = {"2k (ten sets, a process each)": list(files.values()), "200k (one process)": [whole]}
        for label, paths in inputs.items():
            runs: dict[str, list[float]] = {"logcanary": [], "drain3": []}
            for _ in range(args.repeat):
                runs["logcanary"].append(sum(seconds(LOGCANARY, path) for path in paths))
                runs["drain3"].append(sum(seconds(DRAIN3, path) for path in paths))
            mine, theirs = statistics.median(runs["logcanary"]), statistics.median(runs["drain3"])
            print(
                f"parse-process {label}: logcanary {mine:.3f} s, drain3 {theirs:.3f} s (medians of {args.repeat}); "
                f"drain3 / logcanary = {theirs / mine:.2f}"
            )


if __name__ == "__main__":
    main()
