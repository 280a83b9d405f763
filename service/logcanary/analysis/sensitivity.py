"""What low, medium and high sensitivity mean, in numbers.

``fail_score`` is the score an anomaly needs to fail the canary. An unknown
event scores ``level weight x occurrences x host factor``: at medium, three
info lines, two warnings or a single error or fatal line of a never-seen event
fail the canary. A frequency anomaly needs a share at least ``frequency_min_ratio``
times the baseline's, at least ``frequency_min_count`` occurrences, and a
one-sided binomial p-value of at most ``frequency_max_p``; it then scores
``fail_score x level weight x log(ratio) / log(min ratio)``. A steady baseline event (see
:mod:`logcanary.analysis.variability`) at most ``drop_max_ratio`` of its expected canary count has dropped and
fails alone; a canary logging at most ``rate_max_ratio`` of the events per second the baseline leads one to
expect, below nearly all the baseline's own time slices, has a rate anomaly.
"""

from __future__ import annotations

import re

from logcanary.engine.miner import Template
from logcanary.schemas import Sensitivity, Thresholds

SENSITIVITIES: dict[str, Thresholds] = {
    "low": Thresholds(
        sensitivity="low",
        fail_score=6.0,
        min_canary_events=50,
        min_baseline_events=50,
        frequency_min_ratio=5.0,
        frequency_max_p=1e-5,
        frequency_min_count=20,
        drop_max_ratio=1 / 3,
        rate_max_ratio=0.5,
    ),
    "medium": Thresholds(
        sensitivity="medium",
        fail_score=3.0,
        min_canary_events=20,
        min_baseline_events=20,
        frequency_min_ratio=3.0,
        frequency_max_p=1e-3,
        frequency_min_count=10,
        drop_max_ratio=0.6,
        rate_max_ratio=0.75,
    ),
    "high": Thresholds(
        sensitivity="high",
        fail_score=1.5,
        min_canary_events=10,
        min_baseline_events=10,
        frequency_min_ratio=2.0,
        frequency_max_p=1e-2,
        frequency_min_count=5,
        drop_max_ratio=0.75,
        rate_max_ratio=0.8,
    ),
}

# Weight of an event by its highest level (debug, info, warn, error, fatal).
LEVEL_WEIGHTS = (0.5, 1.0, 1.5, 3.0, 4.0)
# Weight of a *new* event by its evidence class (see evidence_class): debug output and deprecation
# notices never fail a canary alone; they are what a new build or a fresh start prints.
UNKNOWN_WEIGHTS = (0.0, 1.0, 1.5, 3.0, 4.0)
_DEPRECATION = re.compile(r"deprecat", re.IGNORECASE)


def evidence_class(template: Template, severity: int) -> int:
    """How strongly a new event speaks against a canary: 0 debug-like, 1 info, 2 warn, 3 error, 4 fatal.

    A stack trace is at least an error whatever its level. A deprecation *warning* is debug-like: it
    announces a future change, printed at start-up by configuration and libraries, never a failure
    (logged at info, a deprecation notice is judged as any info line).
    """
    if template.signature:
        return max(severity, 3)
    if severity == 2 and _DEPRECATION.search(template.text):
        return 0
    return severity


def thresholds(name: Sensitivity) -> Thresholds:
    return SENSITIVITIES[name]


def host_factor(hosts: int) -> float:
    """Seen on several canary hosts weighs more than one host (up to +50%)."""
    return 1.0 + 0.1 * min(max(hosts - 1, 0), 5)
