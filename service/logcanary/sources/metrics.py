"""Prometheus metrics and a health summary of the log store sources, for /metrics and /readyz.

Label values are bounded: ``source`` is a store kind (``loki``) and ``result`` one of :data:`RESULTS`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from logcanary.sources.base import SourceError, SourceQueryError

# One HTTP attempt's outcome: answered 2xx; refused for good (4xx but 429); 429; 5xx; no answer at all.
RESULTS = ("ok", "rejected", "throttled", "server_error", "unreachable")


@dataclass(slots=True)
class SourceHealth:
    """The last success and the last failure of one source, as /readyz shows them."""

    last_success: float | None = None  # unix time
    last_error: float | None = None
    last_error_code: str | None = None
    last_error_message: str | None = None
    consecutive_failures: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.consecutive_failures == 0,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "last_error_code": self.last_error_code,
            "last_error_message": self.last_error_message,
            "consecutive_failures": self.consecutive_failures,
        }


class SourceMetrics:
    """The sources' series, registered on the given registry (the service's, or a test's own)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "logcanary_source_requests",
            "HTTP requests to log stores, by store kind and result (ok, rejected, throttled, server_error, "
            "unreachable); every retry counts.",
            ["source", "result"],
            registry=registry,
        )
        self.lines = Counter(
            "logcanary_source_lines_pulled", "Log lines pulled from log stores.", ["source"], registry=registry
        )
        self.lag = Gauge(
            "logcanary_source_pull_lag_seconds",
            "How far behind now the most recently advanced follow cursor is.",
            ["source"],
            registry=registry,
        )
        self._health: dict[str, SourceHealth] = {}

    def request(self, source: str, result: str, error: SourceError | None) -> None:
        self.requests.labels(source, result).inc()
        health = self._health.setdefault(source, SourceHealth())
        now = time.time()
        if error is not None:
            health.last_error = now
            health.last_error_code = error.code
            health.last_error_message = error.message
        if error is None or isinstance(error, SourceQueryError):  # a refused query: the store itself is fine
            health.last_success = now
            health.consecutive_failures = 0
        else:
            health.consecutive_failures += 1

    def pulled(self, source: str, lines: int) -> None:
        if lines:
            self.lines.labels(source).inc(lines)

    def behind(self, source: str, position_ns: int) -> None:
        """Records a follow cursor's position: the lag is now minus it."""
        self.lag.labels(source).set(max(0.0, time.time() - position_ns / 1e9))

    def health(self) -> dict[str, dict[str, object]]:
        """Per source kind: ok (no failure since the last success), last success and last error."""
        return {source: health.as_dict() for source, health in sorted(self._health.items())}
