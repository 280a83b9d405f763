"""One value of a known event rising: a share of the event's values far above the baseline's.

A fault often changes *which* variant of a known event is logged, not how often the event is: a guest that cannot
read its metadata retries one path (``GET /2009-04-04/meta-data/instance-id``: 4 of 33 requests in the baseline,
40 of 40 in the canary) while the request line's count barely moves. The engine counts the words at a template's
variable positions per deployment (:class:`logcanary.engine.stats.TemplateStats`); here each value the baseline
logged too is tested: its share of the event's values in the canary against the baseline's, by effect size, count
and a one-sided binomial test, Bonferroni-corrected over every value tested. Numbers, ids and times are never
values (they are masked away, :func:`logcanary.engine.masking.mask_values`), and a value the baseline never logged
is not tested: new pods, hosts and names are what a new deployment brings.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from logcanary.analysis.binomial import binomial_tail
from logcanary.engine.masking import WILDCARD, mask_values
from logcanary.engine.stats import TemplateStats
from logcanary.schemas import Thresholds

K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class ValueRise:
    """A value at one position of a template whose share rose: counts are of events carrying it."""

    position: int
    value: str
    canary_count: int
    baseline_count: float
    ratio: float
    p_value: float


def value_counts(parts: Iterable[tuple[TemplateStats, float]]) -> dict[int, dict[str, float]]:
    """Per position, each value's (weighted) count over some deployments' stats of one template, values normalised
    (numbers, ids and times masked) and those that are no words once normalised left out."""
    out: dict[int, dict[str, float]] = {}
    for stats, weight in parts:
        for position, counts in stats.value_counts().items():
            found = out.setdefault(position, {})
            for value, count in counts.items():
                key = _normalised(value)
                found[key] = found.get(key, 0.0) + weight * count
    return out


@functools.lru_cache(maxsize=65_536)  # values repeat from one verdict to the next; a regex per value is not free
def _normalised(value: str) -> str:
    masked = mask_values(value)
    return masked if any(char.isalpha() for char in masked.replace(WILDCARD, "")) else WILDCARD


def rising_values(
    events: Iterable[tuple[K, dict[int, dict[str, float]], dict[int, dict[str, float]]]], limits: Thresholds
) -> list[tuple[K, ValueRise]]:
    """The values whose share rose, of events given as (key, canary values, baseline values) (:func:`value_counts`):
    at least ``frequency_min_count`` occurrences, ``frequency_min_ratio`` times the baseline's share, and a binomial
    p-value of at most ``frequency_max_p`` divided by the number of values tested (a value the baseline logged and
    the canary at least the minimum count)."""
    tested: list[tuple[K, int, str, float, float, float, float]] = []
    for key, canary, baseline in events:
        for position, mine in canary.items():
            theirs = baseline.get(position)
            if not theirs:
                continue
            canary_total, baseline_total = sum(mine.values()), sum(theirs.values())
            share = canary_total / (canary_total + baseline_total)
            for value, count in mine.items():
                before = theirs.get(value, 0.0)
                if value != WILDCARD and before > 0 and count >= limits.frequency_min_count:
                    ratio = (count / canary_total) / ((before + 0.5) / baseline_total)
                    tested.append((key, position, value, count, before, ratio, share))
    rises = []
    for key, position, value, count, before, ratio, share in tested:
        if ratio < limits.frequency_min_ratio:
            continue
        p_value = binomial_tail(round(count), round(count + before), share)
        if p_value * len(tested) <= limits.frequency_max_p:
            rises.append((key, ValueRise(position, value, round(count), before, ratio, p_value)))
    return rises
