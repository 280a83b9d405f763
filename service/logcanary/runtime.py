"""Everything the service runs, built once from the settings: the composition root.

The topology is decided here, and only here (``settings.mode``): a single node holds every service, with the
direct Kafka consumer and local analyses; scale-out replicas share the services through the repartition topic
(a router and an owner each) and a PostgreSQL store, with leased analyses and HTTP bodies forwarded to the
services' owners. Every component is handed the concrete collaborators of its topology, typed by what they are.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable
from functools import partial
from typing import Any

from logcanary import background
from logcanary.ingestion.intake import ForwardingIntake, Intake
from logcanary.ingestion.kafka import DirectConsumer, Owner, Router, SupervisedConsumer
from logcanary.ingestion.kafka.metrics import IngestMetrics
from logcanary.live.cluster import ClusterSettings, Member
from logcanary.live.scale_out import ScaleOut
from logcanary.live.single_node import SingleNode
from logcanary.live.state import LiveState
from logcanary.notify import Notifier
from logcanary.settings import Settings, SettingsError
from logcanary.sources import SourceMetrics
from logcanary.store.base import SharedStore, Store
from logcanary.store.factory import open_shared_store, open_store
from logcanary.verification.analyses import Analyses, Retention
from logcanary.verification.leases import LeasedAnalyses
from logcanary.verification.places import Places
from logcanary.verification.pulling import Pulls
from logcanary.verification.queries import History
from logcanary.verification.reviews import Reviews
from logcanary.verification.rules import Rules
from logcanary.verification.verdicts import Verdicts
from logcanary.verification.writer import StoreWriter

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.write = StoreWriter()
        self.consumer: SupervisedConsumer | None = None  # the one that counts events (direct, or the owner)
        self.router: Router | None = None  # scale-out: the one that routes them to their owners
        self._source_metrics: SourceMetrics | None = None
        self.refusal: str | None = None  # why this process stopped itself (it must not run beside its peers)
        # How this process stops itself: `logcanary serve` sets its server's graceful stop; SIGTERM elsewhere.
        self.exit: Callable[[], None] = partial(os.kill, os.getpid(), signal.SIGTERM)
        self.cluster = ClusterSettings(settings.cluster_settings())
        member = Member(settings.mode, self.cluster.fingerprint, f"{socket.gethostname()}.{os.getpid()}")
        self.shared: SharedStore | None = None
        store: Store
        state: LiveState
        if settings.mode == "scale-out":
            shared = open_shared_store(settings.store)
            self.shared = shared
            self._join_cluster(shared)
            node = ScaleOut(settings.store, settings.limits, settings.kafka, shared)
            store, state = shared, node
            self.rules = Rules(store, self.write)
            self.verdicts = Verdicts(
                state, self.rules, settings.analysis, self._pulls(settings, state, most=32), settings.http.base_url
            )
            self.analyses: Analyses = LeasedAnalyses(
                node,
                shared,
                self.write,
                self.verdicts,
                self.rules,
                settings.analysis,
                Retention(settings.retention_analyses_days, settings.retention_analyses_max),
                self._pulls(settings, node),
            )
            metrics = IngestMetrics(node.metrics.registry, stalled=self._stalled)
            interval, shutdown = settings.checkpoint_interval_seconds, settings.shutdown_timeout_seconds
            self.consumer = Owner(settings.kafka, node, metrics, interval, shutdown)
            self.router = Router(settings.kafka, settings.limits, node, metrics, interval, shutdown)
            self.intake: Intake = ForwardingIntake(node, settings.limits, self.router, shared)
        else:
            store = open_store(settings.store)
            single = SingleNode(settings.store, settings.limits, store)
            state = single
            self.rules = Rules(store, self.write)
            self.verdicts = Verdicts(
                state, self.rules, settings.analysis, self._pulls(settings, state, most=32), settings.http.base_url
            )
            self.analyses = Analyses(
                state,
                store,
                self.write,
                self.verdicts,
                self.rules,
                settings.analysis,
                Retention(settings.retention_analyses_days, settings.retention_analyses_max),
                self._pulls(settings, state),
            )
            if settings.kafka_bootstrap_servers:
                metrics = IngestMetrics(single.metrics.registry, stalled=self._stalled)
                self.consumer = DirectConsumer(
                    settings.kafka,
                    settings.limits,
                    single,
                    metrics,
                    settings.checkpoint_interval_seconds,
                    settings.shutdown_timeout_seconds,
                )
            self.intake = Intake(state, settings.limits)
        for consumer in self.consumers:
            consumer.member, consumer.on_refused = member, self.refuse
        self.store = store
        self.state = state
        self.reviews = Reviews(state, self.verdicts, self.analyses, self.rules, Places(store, self.write))
        self.history = History(self.analyses)
        self.notifier = Notifier(settings.notify, settings.http.base_url, state.metrics.registry)
        self.analyses.on_end = self.notifier.analysis_ended  # webhooks told of ended analyses
        self._tasks: list[asyncio.Task[None]] = []

    def _join_cluster(self, shared: SharedStore) -> None:
        """The first replica sets the cluster's settings; one started with others is refused, naming each."""
        stored = shared.join_cluster(self.cluster.fingerprint, self.cluster.body)
        reason = self.cluster.refusal(ClusterSettings.parse(stored[1]), self.settings.identity)
        if reason is not None:
            shared.close()
            raise SettingsError(reason)

    def refuse(self, reason: str) -> None:
        """Stops this process for good (the server's graceful stop): it must not run beside its peers."""
        if self.refusal is None:
            self.refusal = reason
            log.error("stopping: %s", reason)
            self.exit()

    def _pulls(self, settings: Settings, state: LiveState, most: int | None = None) -> Pulls:
        """The log store pulls of analyses, or of on-demand questions (at most ``most`` kept warm); one set of
        source metrics for both."""
        if self._source_metrics is None:
            self._source_metrics = SourceMetrics(state.metrics.registry)
        return Pulls(settings.loki, settings.limits, self._source_metrics, most)

    def _stalled(self) -> bool:
        return self.consumer is not None and self.consumer.stalled()

    @property
    def consumers(self) -> list[SupervisedConsumer]:
        return [c for c in (self.consumer, self.router) if c is not None]

    async def start(self) -> None:
        """Loads the state, evaluates running analyses, starts ingestion and the background loops."""
        await self.notifier.start()  # first: analyses that ended while the service was down are told of at start
        await asyncio.to_thread(self.state.load)
        await asyncio.to_thread(self.analyses.load)
        await self.analyses.start()
        for consumer in self.consumers:
            await consumer.start()
        settings, state = self.settings, self.state
        self._tasks = [
            asyncio.create_task(self.analyses.run(), name="analyses"),
            asyncio.create_task(background.loop_lag_monitor(state), name="loop-lag"),
            asyncio.create_task(background.gc_loop(), name="gc-freeze"),
            asyncio.create_task(
                background.maintenance_loop(state, self.analyses, settings.store_maintenance_interval_seconds),
                name="store-maintenance",
            ),
        ]
        if self.shared is not None:
            watch = background.cluster_watch(
                self.shared, self.cluster, settings.identity, self.refuse, background.CLUSTER_WATCH_SECONDS
            )
            self._tasks.append(asyncio.create_task(watch, name="cluster-settings"))
        if self.consumer is None:  # no consumer paces checkpoints
            self._tasks.append(
                asyncio.create_task(
                    background.checkpoint_loop(state, settings.checkpoint_interval_seconds), name="checkpoints"
                )
            )

    async def stop(self) -> None:
        """Stops ingestion (each consumer checkpoints), saves the state, tells queued notifications, closes."""
        for task in self._tasks:
            task.cancel()
        for consumer in reversed(self.consumers):  # the router first: nothing more reaches the owner
            await consumer.stop()
        await self.state.checkpoint(force=True)
        await self.notifier.stop(grace=min(5.0, self.settings.shutdown_timeout_seconds / 4))
        await self.analyses.pulls.close()
        await self.verdicts.pulls.close()
        await asyncio.to_thread(self.write.close)  # its pending store calls, before the store closes
        self.store.close()
        gc.unfreeze()  # what the service froze may be garbage now (an app stopped within a longer process)

    # -- health ------------------------------------------------------------------------------------------------

    def dead_consumer(self) -> SupervisedConsumer | None:
        """A consumer whose task ended for good (it will never ingest again: restart the process)."""
        return next((c for c in self.consumers if c.dead), None)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready once the state is loaded (verdicts can be served); with LOGCANARY_KAFKA_REQUIRED_FOR_READY, only
        while Kafka ingestion runs and reaches the broker."""
        consumer = self.consumer
        reachable = None if consumer is None else consumer.reachable  # checked in the background: never waits
        ingest = None if consumer is None else consumer.status()
        ready = self.state.loaded and self.refusal is None
        if ingest is not None and self.settings.kafka_required_for_ready:
            ready = ready and ingest["state"] == "running" and reachable is True
        body: dict[str, Any] = {"ready": ready, "state_loaded": self.state.loaded, "kafka": reachable, "ingest": ingest}
        if self.refusal is not None:
            body["refused"] = self.refusal
        if self._source_metrics is not None and (sources := self._source_metrics.health()):
            body["sources"] = sources  # log stores pulled from: last success, last error
        if self.router is not None:  # scale-out: the routing consumer, and the services' partitions held here
            body["routing"] = self.router.status()
            body["owned_partitions"] = sorted(self.router.node.owned)
        return ready, body
