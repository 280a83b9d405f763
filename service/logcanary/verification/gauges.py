"""The metrics an analysis publishes: one risk and one verdict series per *running* analysis (from its creation, and
again after a restart, until it ends), and the count of final verdicts. Verdicts asked on demand never touch them,
so reads cannot move a gate."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from logcanary.metrics import MAX_ENVIRONMENT_LABELS, NO_ENVIRONMENT, OTHER, VERDICTS, Metrics
from logcanary.schemas import Verdict
from logcanary.store.base import AnalysisRecord


class AnalysisGauges:
    def __init__(self, metrics: Metrics, environments: Sequence[str] = ()) -> None:
        self.metrics = metrics
        self.published: set[str] = set()  # analyses whose series this process holds
        # The environment label's values: LOGCANARY_ENVIRONMENTS when set (analyses name no other), else the first
        # MAX_ENVIRONMENT_LABELS seen by this process; the rest count under "(other)".
        self.environments: set[str] = set(environments)
        self.fixed = bool(environments)

    def environment_label(self, environment: str | None) -> str:
        """The bounded ``environment`` label of an analysis' environment."""
        if environment is None:
            return NO_ENVIRONMENT
        if environment in self.environments:
            return environment
        if not self.fixed and len(self.environments) < MAX_ENVIRONMENT_LABELS:
            self.environments.add(environment)
            return environment
        return OTHER

    @staticmethod
    def _labels(record: AnalysisRecord) -> tuple[str, str, str]:
        return record.service, record.request.canary.deployment, record.id

    def publish(self, record: AnalysisRecord) -> None:
        """Sets the running analysis' risk and verdict series (risk 0 and inconclusive before any verdict)."""
        labels = self._labels(record)
        self.published.add(record.id)
        verdict = record.verdict
        self.metrics.risk.labels(*labels).set(verdict.risk if verdict else 0.0)
        current = verdict.verdict if verdict else "inconclusive"
        for name in VERDICTS:
            self.metrics.verdict.labels(*labels, name).set(1.0 if name == current else 0.0)

    def unpublish(self, record: AnalysisRecord) -> None:
        """Removes the analysis' series: a finished analysis no longer gates anything."""
        metrics = self.metrics
        labels = self._labels(record)
        self.published.discard(record.id)
        for gauge, values in [(metrics.risk, labels), *((metrics.verdict, (*labels, name)) for name in VERDICTS)]:
            with contextlib.suppress(KeyError):  # never published (e.g. completed while the service was down)
                gauge.remove(*values)

    def count(self, verdict: Verdict, environment: str | None = None) -> None:
        """Counts a completed analysis' final verdict, by its environment (never an on-demand one: reads change no
        metric)."""
        self.metrics.analyses.labels(verdict.verdict, self.environment_label(environment)).inc()
        for anomaly in verdict.anomalies:
            self.metrics.anomalies.labels(anomaly.kind).inc()
