"""A new info line that is a known event's second line: logged one for one with it.

A build that adds a line to a flow (``Query product with name …`` now followed by ``Query product successfully``)
logs the new line exactly as often as the flow's known line, in the same 10-second buckets, in the same words. It is
new text, not a new failure: the flow it belongs to runs as before. A new error would be judged as any new error:
only lines below warning level, whose words name no failure, are read as companions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from logcanary.engine.miner import Template
from logcanary.engine.stats import TemplateStats

COMPANION_MIN_COUNT = 10  # occurrences a new line needs before one-for-one can be told from chance
COMPANION_MIN_BUCKETS = 2  # 10-second buckets it must span: one-for-one over time, not one burst
COMPANION_SLACK = 0.02  # share of its count that may fall in other buckets (a pair logged across a bucket's edge)
_FAILURE = re.compile(r"err|fail|fatal|exception|refus|denied|timeout|timed|unable|cannot|invalid|abort|reject")


def companion_of(
    template: Template,
    stats: TemplateStats,
    known: Iterable[tuple[Template, TemplateStats]],
    words: Callable[[Template], frozenset[str]],
) -> Template | None:
    """The known canary event whose second line the new ``template`` is, or None. ``known``: the canary's templates
    the baseline logged too; ``words``: a template's words (shared with the verdict's memo)."""
    count = stats.count
    if count < COMPANION_MIN_COUNT or len(stats.buckets) < COMPANION_MIN_BUCKETS:
        return None
    mine = words(template)
    if any(_FAILURE.search(word) for word in mine):
        return None
    slack = max(1, round(COMPANION_SLACK * count))
    for other, other_stats in known:
        if abs(other_stats.count - count) > slack or len(other_stats.buckets) < COMPANION_MIN_BUCKETS:
            continue
        shared = len(mine & words(other))
        if shared < 2 or 2 * shared < len(mine):
            continue
        apart = sum(abs(n - other_stats.buckets.get(bucket, 0)) for bucket, n in stats.buckets.items())
        apart += sum(n for bucket, n in other_stats.buckets.items() if bucket not in stats.buckets)
        if apart <= 2 * slack:
            return other
    return None
