"""Prometheus metrics (prometheus-client), named by Prometheus conventions.

Per-event paths update plain ints and flush them to counters once per batch,
so metrics cost nothing noticeable at tens of thousands of events per second.
Template and cluster counts are read from the engine at scrape time.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from logcanary.engine.memory import ACTIONS
from logcanary.engine.model import Engine

ANALYSIS_LABELS = ["service", "canary", "analysis"]
SHORT_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)  # 1 ms .. 5 s
VERDICTS = ("pass", "fail", "inconclusive")


OTHER = "(other)"  # the label of series that add up the rest: no service or deployment can have this name
NO_ENVIRONMENT = "(none)"  # the environment label of analyses that name none (no environment can have this name)
MAX_ENVIRONMENT_LABELS = 20  # environments with series of their own when LOGCANARY_ENVIRONMENTS does not list them


class _EngineCollector(Collector):
    """Templates per service and clusters and events per deployment, read when Prometheus scrapes.

    Series are bounded whatever the input: the ``max_services`` services with the most events have series of their
    own, and so do the ``max_deployments`` deployments with the most events. The rest add up, under
    ``deployment="(other)"`` of a listed service or under ``service="(other)"``: at most
    ``max_services + 1`` template series and ``max_deployments + max_services + 1`` of each deployment metric.
    A scrape only reads the engine; a query for a name never seen (a read) creates nothing.
    """

    def __init__(self, engine: Callable[[], Engine], max_services: int, max_deployments: int) -> None:
        self._engine = engine
        self._max_services = max_services
        self._max_deployments = max_deployments

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        templates = GaugeMetricFamily("logcanary_templates", "Live templates per service.", labels=["service"])
        clusters = GaugeMetricFamily(
            "logcanary_clusters", "River clusters per deployment.", labels=["service", "deployment"]
        )
        events = GaugeMetricFamily(
            "logcanary_deployment_events", "Events counted per deployment.", labels=["service", "deployment"]
        )
        rows: list[tuple[int, str, str, int]] = []  # (events, service, deployment, clusters)
        volume: dict[str, int] = {}
        sizes: dict[str, int] = {}
        for name, service in list(self._engine().services.items()):
            sizes[name] = len(service.miner)
            total = 0
            for deployment, model in list(service.deployments.items()):
                rows.append((model.events, name, deployment, len(model.clusterer)))
                total += model.events
            volume[name] = total
        top_services = set(heapq.nlargest(self._max_services, volume, key=lambda name: (volume[name], name)))
        other_templates = 0
        for name, size in sizes.items():
            if name in top_services:
                templates.add_metric([name], size)
            else:
                other_templates += size
        if other_templates or len(sizes) > len(top_services):
            templates.add_metric([OTHER], other_templates)
        top_rows = heapq.nlargest(self._max_deployments, rows)
        for count, name, deployment, size in top_rows:
            clusters.add_metric([name, deployment], size)
            events.add_metric([name, deployment], count)
        if len(top_rows) < len(rows):
            listed = {(name, deployment) for _, name, deployment, _ in top_rows}
            rest: dict[tuple[str, str], list[int]] = {}
            for count, name, deployment, size in rows:
                if (name, deployment) not in listed:
                    key = (name, OTHER) if name in top_services else (OTHER, OTHER)
                    sums = rest.setdefault(key, [0, 0])
                    sums[0] += count
                    sums[1] += size
            for (name, deployment), (count, size) in rest.items():
                clusters.add_metric([name, deployment], size)
                events.add_metric([name, deployment], count)
        yield templates
        yield clusters
        yield events
        yield from self._memory()

    def _memory(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The engine's memory budget, its estimate, and what the budget made it give up (by action)."""
        memory = self._engine().memory
        yield GaugeMetricFamily(
            "logcanary_memory_budget_bytes", "LOGCANARY_MEMORY_BUDGET_BYTES.", value=memory.limit_bytes
        )
        yield GaugeMetricFamily(
            "logcanary_memory_estimated_bytes",
            "The engine's state as estimated (templates, examples, counts, river); near the budget it degrades.",
            value=memory.used_bytes,
        )
        degradations = CounterMetricFamily(
            "logcanary_memory_degradations",
            "What the memory budget made the engine give up, by action (examples, deployments, templates, "
            "summaries, evictions): services or deployments degraded.",
            labels=["action"],
        )
        for action in ACTIONS:
            degradations.add_metric([action], memory.degradations[action])
        yield degradations


class Metrics:
    """All of the service's metrics, in a registry of their own (tests can make many)."""

    def __init__(self, engine: Callable[[], Engine], max_services: int = 50, max_deployments: int = 200) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ingested = Counter("logcanary_events_ingested", "Log events accepted, by source.", ["source"], registry=r)
        self.rejected = Counter(
            "logcanary_events_rejected", "Records rejected, by source and reason.", ["source", "reason"], registry=r
        )
        self.dead_lettered = Counter(
            "logcanary_events_dead_lettered", "Records forwarded to the dead-letter topic.", ["reason"], registry=r
        )
        self.batch_seconds = Histogram(
            "logcanary_batch_processing_seconds",
            "Time to process one batch of records (decode, mine, count).",
            buckets=SHORT_SECONDS_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "logcanary_consumer_lag_records", "Records behind the partition's end.", ["topic", "partition"], registry=r
        )
        self.checkpoint_seconds = Histogram(
            "logcanary_checkpoint_duration_seconds",
            "Time to write a checkpoint (state and offsets in one transaction).",
            registry=r,
        )
        self.checkpoint_failures = Counter(
            "logcanary_checkpoint_failures",
            "Checkpoints that failed (disk full, any store error); the state stays in memory and is retried.",
            registry=r,
        )
        self.analyses = Counter(
            "logcanary_analyses",
            "Completed analyses, by final verdict and environment ('(none)': none named; at most "
            "MAX_ENVIRONMENT_LABELS values, the rest '(other)').",
            ["verdict", "environment"],
            registry=r,
        )
        self.anomalies = Counter(
            "logcanary_anomalies",
            "Anomalies in the final verdicts of completed analyses, by kind.",
            ["kind"],
            registry=r,
        )
        # One series per *running* analysis (at most LOGCANARY_MAX_RUNNING_ANALYSES): set by the analysis alone,
        # from its creation until it completes or is cancelled. Reads (GET /v1/verdict) never touch them.
        self.risk = Gauge(
            "logcanary_analysis_risk",
            "Current risk (0-100) of a running analysis; 50 is the fail threshold.",
            ANALYSIS_LABELS,
            registry=r,
        )
        self.verdict = Gauge(
            "logcanary_analysis_verdict",
            "1 for the current verdict of a running analysis (pass, fail or inconclusive), 0 for the others.",
            [*ANALYSIS_LABELS, "verdict"],
            registry=r,
        )
        self.http_requests = Counter(
            "logcanary_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "logcanary_http_request_duration_seconds", "HTTP request latency by route.", ["route"], registry=r
        )
        self.timestamps_clamped = Counter(
            "logcanary_timestamps_clamped",
            "Events stamped beyond LOGCANARY_MAX_CLOCK_SKEW_SECONDS in the future, counted at their receive time.",
            registry=r,
        )
        self.loop_lag = Histogram(
            "logcanary_event_loop_lag_seconds",
            "How late the event loop ran a 100 ms timer (time the loop was blocked).",
            buckets=SHORT_SECONDS_BUCKETS,
            registry=r,
        )
        self.idempotent_replays = Counter(
            "logcanary_idempotent_replays",
            "POST /v1/events answered from a stored result (a retry with a known Idempotency-Key).",
            registry=r,
        )
        r.register(_EngineCollector(engine, max_services, max_deployments))
