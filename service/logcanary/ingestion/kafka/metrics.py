"""The consume loops' health and what they skipped or lost, registered in the service's registry."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class IngestMetrics:
    """Shared by the consumers of one process (in scale-out the router and the owner)."""

    def __init__(self, registry: CollectorRegistry, stalled: Callable[[], bool]) -> None:
        r = registry
        self.restarts = Counter(
            "logcanary_ingest_restarts", "Restarts of the Kafka consume loop after an unexpected error.", registry=r
        )
        self.last_progress = Gauge(
            "logcanary_ingest_last_progress_timestamp_seconds",
            "Unix time of the last poll that reached the broker and processed its batch.",
            registry=r,
        )
        self.stalled = Gauge(
            "logcanary_ingest_stalled",
            "1 when Kafka ingestion made no progress for LOGCANARY_KAFKA_STALL_SECONDS (or its task died).",
            registry=r,
        )
        self.stalled.set_function(lambda: 1.0 if stalled() else 0.0)
        self.dead_letter_truncated = Counter(
            "logcanary_dead_letters_truncated",
            "Records dead-lettered with only their head (original size in the logcanary-original-bytes header).",
            ["reason"],
            registry=r,
        )
        self.dead_letter_failed = Counter(
            "logcanary_dead_letters_failed",
            "Bad records that could not be dead-lettered in time: logged and skipped.",
            ["reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "logcanary_repartition_duplicates",
            "Records of the repartition topic a restarted router sent again: dropped, never counted.",
            registry=r,
        )
        self.below_offset = Counter(
            "logcanary_ingest_records_skipped",
            "Records fetched again below the next expected offset (or before their partition was positioned, or "
            "past a repartition offset not counted yet): dropped, never counted.",
            registry=r,
        )
        self.lost = Counter(
            "logcanary_repartition_records_lost",
            "Records of the repartition topic deleted by retention before their owner counted them.",
            registry=r,
        )
