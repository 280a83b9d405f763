"""Worst-case masking cost per character against typical lines (issue 18).

Adversarial texts at 1,000, 4,000, 16,000 and 64,000 characters go through three paths of the engine:

* ``rules``: ``masking.apply_rules``, the built-in rules without the token cap (when the engine has them apart);
* ``mask_token``: ``Masker.mask_token``, one whitespace-free token, the cap included;
* ``split``: ``TemplateMiner.split``, the engine's tokeniser: stack-trace parsing, masking, bounds.

Each reports nanoseconds of CPU time per character (CPU time, so that other processes of a shared machine do not
count), next to the same path on the Loghub lines (every token of them through ``rules`` and ``mask_token``;
every line through ``split``, its caches warm as in a running engine). A cost per character that grows with the
size is a super-linear pattern. A call over ``--budget`` seconds stops that shape's larger sizes (the code before
issue 18 took 1.15 s for one 16,000-character token and would take about 20 s for 64,000).

Last, ``Engine.observe`` on the Loghub lines, alone and with one ``aaaa...a@`` line of 16,000 characters after
every 1,000 lines: lines per CPU second.

    .venv/bin/python bench/bench_masking.py [--data ../shared/eval/data/loghub2k] [--budget 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from common import DEFAULT_DATA, Summary, load_contents, machine_info, print_machine

from logcanary.engine import masking
from logcanary.engine.masking import Masker
from logcanary.engine.miner import TemplateMiner
from logcanary.engine.model import Engine

SIZES = (1_000, 4_000, 16_000, 64_000)
SAMPLE_CHARS = 64_000  # each sample handles about this many characters
START = 1_795_694_400.0


def _repeat(unit: str, head: str = "", tail: str = "") -> Callable[[int], str]:
    def make(size: int) -> str:
        return head + unit * max(1, (size - len(head) - len(tail)) // len(unit)) + tail

    return make


# Tokens (both paths) and multi-line messages (split only), each once quadratic or worse.
TOKENS: dict[str, Callable[[int], str]] = {
    "aaaa...a@ (e-mail)": _repeat("a", tail="@"),
    "ab.ab....@ (e-mail)": _repeat("ab.", tail="@"),
    "aaa...@bbb (e-mail domain)": lambda size: "a" * (size // 2) + "@" + "b" * (size // 2),
    "a111...1g (bare hex)": _repeat("1", head="a", tail="g"),
    "aaa...a=:// (URL scheme)": _repeat("a", tail="=://"),
    "1m1m...X (units)": _repeat("1m", tail="X"),
    "aaaa (letters)": _repeat("a"),
}
TRACES: dict[str, Callable[[int], str]] = {
    "Java a.ErrorError...!": _repeat("Error", head="x\n\tat a.b(C.java:1)\na.", tail="!"),
    "Python AErrorError...!": _repeat("Error", head="Traceback (most recent call last)\nx\nA", tail="!"),
    "Go a.a.a...(": _repeat("a.", head="panic: x\n", tail="("),
}


def per_char(work: Callable[[str], object], text: str, samples: int, budget: float) -> float | None:
    """Best of ``samples`` samples, in seconds per character; None when one call takes over ``budget`` s, and
    that one call when it takes over a tenth of it (far above any noise: no need to wait for more)."""
    start = time.process_time()
    work(text)
    first = time.process_time() - start
    if first > budget:
        return None
    if first > budget / 10:
        return first / len(text)
    times = max(1, SAMPLE_CHARS // len(text))
    best = float("inf")
    for _ in range(samples):
        start = time.process_time()
        for _ in range(times):
            work(text)
        best = min(best, (time.process_time() - start) / (times * len(text)))
    return best


def _token_paths() -> dict[str, Callable[[str], object]]:
    """The token paths this engine has: ``rules`` only once the rules were apart from the cap (issue 18)."""
    paths: dict[str, Callable[[str], object]] = {"mask_token": Masker().mask_token}
    rules = getattr(masking, "apply_rules", None)
    return {"rules": rules, **paths} if rules is not None else paths


def typical(lines: list[str]) -> dict[str, float]:
    """Seconds per character of every path on real lines."""
    tokens = [token for line in lines for token in line.split()]
    chars = sum(map(len, tokens))
    results: dict[str, float] = {}
    for path, work in _token_paths().items():
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            for token in tokens:
                work(token)
            best = min(best, (time.process_time() - start) / chars)
        results[path] = best
    miner = TemplateMiner()
    for line in lines:
        miner.split(line)  # warm, as a running engine is
    line_chars = sum(map(len, lines))
    split_best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for line in lines:
            miner.split(line)
        split_best = min(split_best, (time.process_time() - start) / line_chars)
    return {**results, "split": split_best}


def adversarial(samples: int, budget: float) -> dict[str, dict[str, list[float | None]]]:
    """Seconds per character per path, shape and size (None past the budget)."""
    paths: dict[str, tuple[Callable[[str], object], dict[str, Callable[[int], str]]]] = {
        path: (work, TOKENS) for path, work in _token_paths().items()
    }
    paths["split"] = (TemplateMiner().split, TOKENS | TRACES)
    results: dict[str, dict[str, list[float | None]]] = {}
    for path, (work, shapes) in paths.items():
        results[path] = {}
        for name, make in shapes.items():
            row: list[float | None] = []
            for size in SIZES:
                cost = per_char(work, make(size), samples, budget) if not row or row[-1] is not None else None
                row.append(cost)
            results[path][name] = row
    return results


def ingest(lines: list[str], every: int, runs: int) -> dict[str, Summary]:
    """Engine lines per CPU second on ``lines``, alone and with a 16,000-character ``aaaa...a@`` line per ``every``."""
    attack = "a" * 15_999 + "@"
    mixed: list[str] = []
    for index, line in enumerate(lines, 1):
        mixed.append(line)
        if index % every == 0:
            mixed.append(attack)
    rates: dict[str, list[float]] = {"loghub": [], "loghub + attack": []}
    warm = Engine()  # the masking caches are shared by every engine: warm them for both streams alike
    for index, line in enumerate(lines):
        warm.observe("svc", "v1", line, START + index / 1000, "h", "info")
    for _ in range(runs):
        for label, stream in (("loghub", lines), ("loghub + attack", mixed)):
            engine = Engine()
            start = time.process_time()
            for index, line in enumerate(stream):
                engine.observe("svc", "v1", line, START + index / 1000, "h", "info")
            rates[label].append(len(stream) / (time.process_time() - start))
    return {label: Summary.of(values) for label, values in rates.items()}


def _ns(value: float | None) -> str:
    return "over budget" if value is None else f"{value * 1e9:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of Loghub CSVs (column Content)")
    parser.add_argument("--samples", type=int, default=5, help="samples per measure (the best counts)")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds one call may take before larger sizes stop")
    parser.add_argument("--every", type=int, default=1_000, help="one attack line after this many Loghub lines")
    parser.add_argument("--runs", type=int, default=3, help="engine runs of each stream")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    args = parser.parse_args()
    machine = machine_info()
    lines = load_contents(args.data)
    usual = typical(lines)
    worst = adversarial(args.samples, args.budget)
    rates = ingest(lines, args.every, args.runs)
    if args.json:
        report = {
            "machine": machine,
            "sizes": SIZES,
            "typical_seconds_per_char": usual,
            "adversarial_seconds_per_char": worst,
            "ingest_lines_per_second": {label: summary.as_dict() for label, summary in rates.items()},
        }
        print(json.dumps(report, indent=2))
        return
    print_machine(machine)
    print()
    for path, shapes in worst.items():
        header = f"{path:<28}" + "".join(f"{size:>14,}" for size in SIZES) + f"{'64k / typical':>15}"
        print(header)
        print("-" * len(header))
        print(f"{'typical (Loghub lines)':<28}{_ns(usual[path]):>14}")
        for name, row in shapes.items():
            last = row[-1]
            ratio = f"{last / usual[path]:.1f}" if last is not None else "-"
            print(f"{name:<28}" + "".join(f"{_ns(value):>14}" for value in row) + f"{ratio:>15}")
        print(f"(ns of CPU time per character; best of {args.samples} samples of about {SAMPLE_CHARS:,} characters)")
        print()
    for label, summary in rates.items():
        print(f"engine {label:<16} {summary.median:>10,.0f} lines/s ({summary.low:,.0f}-{summary.high:,.0f}; CPU time)")
    print(f"(attack: one 16,000-character 'aaaa...a@' line after every {args.every:,} Loghub lines)")


if __name__ == "__main__":
    main()
