"""Prometheus metrics (prometheus-client), named by Prometheus conventions.

Per-event paths update plain ints and flush them to counters once per batch,
so metrics cost nothing noticeable at tens of thousands of events per second.
Template and cluster counts are read from the engine at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from service.engine.model import Engine

ANALYSIS_LABELS = ["service", "canary", "analysis"]
VERDICTS = ("pass", "fail", "inconclusive")


class _EngineCollector(Collector):
    """Templates per service and clusters per deployment, read when Prometheus scrapes."""

    def __init__(self, engine: Callable[[], Engine]) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        templates = GaugeMetricFamily("logcanary_templates", "Live templates per service.", labels=["service"])
        clusters = GaugeMetricFamily(
            "logcanary_clusters", "River clusters per deployment.", labels=["service", "deployment"]
        )
        events = GaugeMetricFamily(
            "logcanary_deployment_events", "Events counted per deployment.", labels=["service", "deployment"]
        )
        for name, service in list(self._engine().services.items()):
            templates.add_metric([name], len(service.miner))
            for deployment, model in list(service.deployments.items()):
                clusters.add_metric([name, deployment], len(model.clusterer))
                events.add_metric([name, deployment], model.events)
        yield templates
        yield clusters
        yield events


class Metrics:
    """All of the service's metrics, in a registry of their own (tests can make many)."""

    def __init__(self, engine: Callable[[], Engine]) -> None:
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
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
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
        self.analyses = Counter("logcanary_analyses", "Completed analyses, by final verdict.", ["verdict"], registry=r)
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
        r.register(_EngineCollector(engine))
