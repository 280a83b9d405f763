"""The verdict question: one value object for what a gate, a page and the cache ask.

A question names a canary of a service, what to compare it with (a control deployment, the service's history, or
both), how sensitive to be, the event-time window (the last N seconds, or all), and the answer's shape (compact,
for tools that store it). Two questions that mean the same (``5m`` and ``300s``) are equal: the cache answers both
from one computation, and :meth:`VerdictQuestion.ui_query` writes the same page URL for both.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from logcanary.common.times import rfc3339
from logcanary.schemas import Sensitivity

DEFAULT_WINDOW = "5m"


def window_text(seconds: float) -> str:
    """A window as people write it: ``5m``, ``1h``, ``90s``."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class PulledFrom:
    """The logs of the question are pulled from the configured log store (LOGCANARY_LOKI_URL) with these LogQL
    selector templates (None: LOGCANARY_LOKI_CANARY_SELECTOR / _BASELINE_SELECTOR)."""

    canary_selector: str | None = None
    baseline_selector: str | None = None


@dataclass(frozen=True, slots=True)
class VerdictQuestion:
    service: str
    canary: str
    baseline: str | None = None
    history: bool = False  # also (implied without a baseline) compare with earlier deployments
    sensitivity: Sensitivity | None = None  # None: the service's default
    window: float | None = 300.0  # look-back seconds of event time; None: every event
    compact: bool = False
    until: float | None = None  # the window's end (epoch seconds); None: now, open-ended (events stamped ahead count)
    source: PulledFrom | None = None  # judged from the configured log store instead of the events sent
    canary_weight: float | None = None  # the canary's share of traffic in percent, when the deploy tool routes it

    @property
    def uses_history(self) -> bool:
        return self.history or self.baseline is None

    def full(self) -> VerdictQuestion:
        """The same question with the full answer (the page and the map read the whole verdict)."""
        return dataclasses.replace(self, compact=False)

    def window_at(self, now: float) -> tuple[float, float] | None:
        """The event-time window asked about, computed ``now``: up to ``until`` when it is fixed, else open-ended (an
        event stamped slightly ahead of this clock still counts)."""
        end = math.inf if self.until is None else self.until
        if self.window is None:
            return None if self.until is None else (-math.inf, end)
        return (end if self.until is not None else now) - self.window, end

    def ui_query(self, until: float) -> dict[str, str]:
        """The page's query string for this question with its window's end fixed at ``until``: the whole question
        (service, canary, baseline and/or history, window, sensitivity), so the page shows this verdict whenever it
        is opened."""
        query = {"service": self.service, "canary": self.canary}
        if self.baseline:
            query["baseline"] = self.baseline
        if self.uses_history:
            query["history"] = "1"
        query["window"] = "all" if self.window is None else window_text(self.window)
        if self.sensitivity:
            query["sensitivity"] = self.sensitivity
        query["until"] = rfc3339(until, "milliseconds")
        return query
