"""The verdict question: one value object for what a gate, a page and the cache ask.

A question names a canary of a service, what to compare it with (a control deployment, the service's history, or
both), how sensitive to be, the event-time window (the last N seconds, or all), and the answer's shape (compact,
for tools that store it). Two questions that mean the same (``5m`` and ``300s``) are equal: the cache answers both
from one computation, and :meth:`VerdictQuestion.ui_query` writes the same page URL for both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from logcanary.schemas import Sensitivity

DEFAULT_WINDOW = "5m"


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
    source: PulledFrom | None = None  # judged from the configured log store instead of the events sent
    canary_weight: float | None = None  # the canary's share of traffic in percent, when the deploy tool routes it

    @property
    def uses_history(self) -> bool:
        return self.history or self.baseline is None

    def full(self) -> VerdictQuestion:
        """The same question with the full answer (the page and the map read the whole verdict)."""
        return dataclasses.replace(self, compact=False)

    def ui_query(self) -> dict[str, str]:
        """The page's query string for this question (service, canary, and the baseline when there is one)."""
        query = {"service": self.service, "canary": self.canary}
        if self.baseline:
            query["baseline"] = self.baseline
        return query
