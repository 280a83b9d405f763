"""Helpers shared by the benchmarks: machine details, statistics, peak memory and the Loghub lines."""

from __future__ import annotations

import csv
import os
import platform
import resource
import statistics
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# ``../shared/eval/data/loghub2k`` seen from the project root, wherever the benchmark is started from.
DEFAULT_DATA = PROJECT.parent / "shared" / "eval" / "data" / "loghub2k"
PACKAGES = ("logcanary", "river", "drain3")


def cpu_model() -> str:
    """The CPU model named in /proc/cpuinfo, else whatever the platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def source_revision() -> str:
    """The commit measured (of the logcanary this Python imports: a benchmark may be run with another worktree's
    virtualenv), flagged when service/ has uncommitted changes."""
    import logcanary  # the package measured, wherever it is installed from

    tree = Path(logcanary.__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "service"], cwd=tree, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} + uncommitted changes under service/" if dirty else head


def machine_info() -> dict[str, str]:
    """What a reader needs to compare numbers across machines."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    info = {
        "cpu": cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable} usable",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "load average (1/5/15 min, at start)": load,
    }
    info.update({name: package_version(name) for name in PACKAGES})
    info["logcanary revision"] = source_revision()
    return info


def print_machine(info: dict[str, str]) -> None:
    print("machine:")
    for key, value in info.items():
        print(f"  {key}: {value}")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@dataclass(frozen=True, slots=True)
class Summary:
    """Median and spread of repeated measurements."""

    median: float
    low: float
    high: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        return cls(statistics.median(values), min(values), max(values), tuple(values))

    def as_dict(self) -> dict[str, object]:
        return {"median": self.median, "min": self.low, "max": self.high, "runs": list(self.runs)}


def load_contents(data: Path, names: list[str] | None = None) -> list[str]:
    """Every ``Content`` value of every CSV in ``data`` (or of those named, without ``.csv``), files in name order."""
    files = sorted(path for path in data.glob("*.csv") if names is None or path.stem in names)
    if not files:
        raise SystemExit(f"no CSV file in {data}")
    lines: list[str] = []
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            lines.extend(row["Content"] for row in csv.DictReader(handle))
    return lines
