"""What the engine knows: per service a template miner, per deployment the counts.

``Engine.observe`` is the hot path: one call per log event, no I/O. State is
bounded whatever the input: services, deployments per service, templates per
service and per deployment, clusters per deployment, hosts, examples and time
buckets per template all have caps, and whatever does not fit is counted in an
explicit *other* bucket, never lost and never unbounded. Nothing grows with a
message's length either: an example keeps ``MAX_EXAMPLE_BYTES`` of it, a
template its head (``logcanary.engine.miner.bound_tokens``), river a bounded bag
of its words (``logcanary.engine.clustering.MAX_TERMS``). What the caps allow still multiplies, so the whole is
also held to one byte budget, estimated as state grows (:mod:`logcanary.engine.memory`).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence

from logcanary.engine.caps import DEFAULT_CAPS, Caps
from logcanary.engine.clustering import Cluster, TemplateClusterer
from logcanary.engine.masking import Masker
from logcanary.engine.memory import (
    CACHE_SHARE,
    DEPLOYMENT_BYTES,
    NEW_STATS_BYTES,
    SERVICE_BYTES,
    MemoryBudget,
    stats_bytes,
)
from logcanary.engine.miner import OTHER, CacheBudget, Template, TemplateMiner
from logcanary.engine.stats import (
    BUCKET_SECONDS,
    MAX_BUCKETS,
    MAX_EXAMPLE_BYTES,
    MAX_EXAMPLES,
    MAX_HOSTS,
    SEVERITY_NAMES,
    TemplateStats,
    clip_example,
    severity,
)
from logcanary.schemas import PRIMARY_SUFFIX

__all__ = [  # the stats' names, where they were before they had a module of their own
    "BUCKET_SECONDS",
    "MAX_BUCKETS",
    "MAX_EXAMPLES",
    "MAX_EXAMPLE_BYTES",
    "MAX_HOSTS",
    "MAX_IDENTITIES",
    "SEVERITY_NAMES",
    "DeploymentModel",
    "Engine",
    "ServiceModel",
    "TemplateStats",
    "clip_example",
    "severity",
]

MAX_IDENTITIES = 16  # other names per deployment (labels, hashes): a few per release, the newest kept


class DeploymentModel:
    """The templates and clusters one deployment (version) of a service produced."""

    def __init__(
        self,
        service: str,
        deployment: str,
        max_templates: int,
        clusterer: TemplateClusterer,
        memory: MemoryBudget | None = None,
    ) -> None:
        self.service = service
        self.deployment = deployment
        self.max_templates = max_templates
        self.clusterer = clusterer
        self.stats: dict[Template, TemplateStats] = {}
        self.other = TemplateStats()  # events past the template cap
        self.events = 0
        self.first_seen = float("inf")
        self.last_seen = float("-inf")
        self.identities: dict[str, None] = {}  # other names its records carried, oldest first (an ordered set)
        self.memory = MemoryBudget(0) if memory is None else memory  # the engine's (what it may still add)
        self.bytes = DEPLOYMENT_BYTES  # its estimated memory (logcanary.engine.memory)
        self.closed = False  # its service learns no new event type (memory budget): new ones here count as other
        self.summarised = False  # its per-template counts were folded into other (memory budget)

    def add_identity(self, name: str) -> None:
        """Remembers another name of this deployment; past the cap the oldest is forgotten (recent ones matter)."""
        if name == self.deployment or name in self.identities:
            return
        if len(self.identities) >= MAX_IDENTITIES:
            del self.identities[next(iter(self.identities))]
        self.identities[name] = None

    def observe(
        self,
        template: Template,
        timestamp: float,
        host: str,
        level: int,
        message: str,
        words: list[str] | None = None,
    ) -> int:
        """Counts one event (``words``: its words, one per template token, or None); returns the bytes this deployment
        grew by (mostly 0)."""
        self.events += 1
        if timestamp < self.first_seen:
            self.first_seen = timestamp
        if timestamp > self.last_seen:
            self.last_seen = timestamp
        short = self.memory.short_examples
        stats = self.stats.get(template)
        if stats is None:
            if template is OTHER or self.closed or len(self.stats) >= self.max_templates:
                grown = self.other.add(timestamp, host, level, message, short)
                self.bytes += grown
                return grown
            stats = self.stats[template] = TemplateStats()
            if words is not None and len(words) == len(template.tokens):
                stats.track(template.tokens, words)
            learnt = self.clusterer.bytes
            self.clusterer.cluster_of(template)  # river learns once per new template, off the per-event path
            added = stats.add(timestamp, host, level, message, short, words)
            grown = NEW_STATS_BYTES + self.clusterer.bytes - learnt + added
            self.bytes += grown
            return grown
        grown = stats.add(timestamp, host, level, message, short, words)
        if grown:
            self.bytes += grown
        return grown

    def templates(self) -> dict[Template, TemplateStats]:
        """Live templates with their stats. Reading never changes the model (verdicts read it from worker
        threads): merged templates are folded when the merge happens (:meth:`ServiceModel.fold`)."""
        return self.stats

    def fold(self) -> int:
        """Folds the stats of templates merged into others into the live ones (a writer's job); returns the bytes
        river's relearning added (the folded stats are left counted: merging only ever frees)."""
        if all(template.merged_into is None for template in self.stats):
            return 0
        learnt = self.clusterer.bytes
        folded: dict[Template, TemplateStats] = {}
        for template, stats in self.stats.items():
            live = template.resolve()
            if live in folded:
                folded[live].merge(stats)
            elif live is template:
                folded[live] = stats
            else:
                copy = TemplateStats()
                copy.merge(stats)
                folded[live] = copy
        for template in folded:
            self.clusterer.cluster_of(template)  # learnt now, so reads find every live template's cluster
        self.stats = folded
        grown = self.clusterer.bytes - learnt
        self.bytes += grown
        return grown

    def summarise(self) -> int:
        """Folds every template's counts into ``other`` and forgets the templates and clusters (the memory budget's
        second step): totals stay exact, event types are lost. Returns the bytes freed."""
        for stats in self.stats.values():
            self.other.merge(stats)
        self.other.forget_values()  # other is no event type: its values say nothing
        buckets = self.other.buckets
        if len(buckets) > MAX_BUCKETS:
            self.other.buckets = dict(sorted(buckets.items())[-MAX_BUCKETS:])
        self.stats = {}
        self.clusterer = TemplateClusterer(radius=self.clusterer.radius, max_clusters=self.clusterer.max_clusters)
        self.summarised = self.closed = True
        before = self.bytes
        self.bytes = DEPLOYMENT_BYTES + stats_bytes(self.other)
        return before - self.bytes

    def cluster_of(self, template: Template) -> Cluster:
        """The river cluster of a live template in this deployment."""
        return self.clusterer.cluster_of(template)


class ServiceModel:
    """One service: a shared miner (so template ids agree across its deployments) and its deployments."""

    def __init__(self, name: str, engine: Engine) -> None:
        self.name = name
        self._engine = engine
        self.miner = TemplateMiner(
            Masker(engine.extra_patterns),
            max_templates=engine.max_templates_per_service,
            cache_budget=engine.cache_budget,
        )
        self.deployments: dict[str, DeploymentModel] = {}
        self.serial = next(_SERIALS)  # tells this model from an evicted one of the same name
        self.folded = 0  # the miner's ``renamed`` when the deployments were last folded
        self.degraded: set[str] = set()  # what the memory budget took from it (logcanary.engine.memory.ACTIONS)

    def fold(self) -> int:
        """Folds every deployment's merged templates (after the miner merged some: see Engine.observe); returns the
        bytes river's relearning added."""
        self.folded = self.miner.renamed
        return sum(model.fold() for model in self.deployments.values())

    @property
    def bytes(self) -> int:
        """Its estimated memory: the model, its miner and its deployments (logcanary.engine.memory)."""
        return SERVICE_BYTES + self.miner.bytes + sum(d.bytes for d in self.deployments.values())

    @property
    def last_seen(self) -> float:
        """Its latest event's time (any deployment); -inf before the first."""
        return max((d.last_seen for d in self.deployments.values()), default=float("-inf"))

    def deployment(self, name: str) -> DeploymentModel:
        """The deployment's model, created on first use; past the cap the least recently seen one is dropped.

        Teams deploy many times a day: without a cap, a long-running service would keep every
        version it ever saw. History baselines only use the most recent ten anyway.
        """
        found = self.deployments.get(name)
        if found is None:
            if len(self.deployments) >= self._engine.max_deployments_per_service:
                oldest = min(self.deployments.values(), key=lambda d: d.last_seen)
                self._engine.evict(self.name, oldest.deployment)
            found = self.deployments[name] = self.peek_deployment(name)
            found.closed = self.miner.closed
            self._engine.memory.add(found.bytes)
        return found

    def peek_deployment(self, name: str) -> DeploymentModel:
        """The deployment's model, or an empty one that is not kept (reading must not create state)."""
        found = self.deployments.get(name)
        if found is None:
            clusterer = TemplateClusterer(max_clusters=self._engine.max_clusters_per_deployment)
            found = DeploymentModel(
                self.name, name, self._engine.max_templates_per_deployment, clusterer, self._engine.memory
            )
        return found

    def resolve(self, name: str) -> str | None:
        """The deployment a deploy tool means by ``name``, or None when no deployment answers to it.

        Deploy tools name deployments their own way (Argo Rollouts by pod-template hash, Flagger by the
        workload's name), while records are filed under one canonical name. In order: the canonical
        name; else the newest deployment (by first event) whose records carried ``name``; else, for the
        service's own name (Flagger's canary), its newest deployment that is not the primary.
        """
        if name in self.deployments:
            return name
        carriers = [d for d in self.deployments.values() if name in d.identities]
        if not carriers and name == self.name:
            primary = name + PRIMARY_SUFFIX
            carriers = [d for d in self.deployments.values() if d.deployment != primary]
        if not carriers:
            return None
        return max(carriers, key=lambda d: d.first_seen).deployment


_SERIALS = itertools.count()


class Engine:
    """Entry point of the engine: feed it events, read templates and counts back."""

    def __init__(self, extra_patterns: tuple[str, ...] = (), caps: Caps = DEFAULT_CAPS) -> None:
        self.extra_patterns = extra_patterns
        self.caps = caps
        self.max_services = caps.max_services
        self.max_templates_per_service = caps.max_templates_per_service
        self.max_templates_per_deployment = caps.max_templates_per_deployment
        self.max_clusters_per_deployment = caps.max_clusters_per_deployment
        self.max_deployments_per_service = caps.max_deployments_per_service
        self.memory = MemoryBudget(caps.memory_budget_bytes)
        self.cache_budget = CacheBudget(caps.memory_budget_bytes // CACHE_SHARE)  # the miners' caches: a share
        self.services: dict[str, ServiceModel] = {}
        self._routes: dict[tuple[str, str], tuple[ServiceModel, DeploymentModel]] = {}
        self.evicted: list[tuple[str, str]] = []  # (service, deployment) dropped since last asked (for the store)
        self.services_evicted = 0  # services dropped whole by the services cap, since start
        # (last seen, serial, name) of every service, least recently seen first; an entry is refreshed lazily,
        # when it comes up for eviction, so keeping it costs nothing per event.
        self._by_recency: list[tuple[float, int, str]] = []

    def service(self, name: str) -> ServiceModel:
        """The service's model, created on first use (an event creating one past the cap evicts another)."""
        found = self.services.get(name)
        if found is None:
            found = self.services[name] = ServiceModel(name, self)
            heapq.heappush(self._by_recency, (found.last_seen, found.serial, name))
            self.memory.add(SERVICE_BYTES)
        return found

    def replace_miner(self, service: ServiceModel, miner: TemplateMiner) -> None:
        """Gives a service a restored miner, accounted (a restore)."""
        self.memory.add(miner.bytes - service.miner.bytes)
        service.miner = miner

    def _forget(self, model: ServiceModel) -> None:
        """A service gone from memory: its bytes, its caches' share, its routes."""
        for deployment in model.deployments:
            self._routes.pop((model.name, deployment), None)
        model.miner.clear_caches()  # gives its share of the cache budget back
        self.memory.add(-model.bytes)
        self.memory.closed.discard(model.name)
        self.memory.reopen(self)

    def _make_room(self) -> None:
        """Evicts least recently seen services until a new one fits under ``max_services``."""
        heap = self._by_recency
        while len(self.services) >= self.max_services and heap:
            seen, serial, name = heapq.heappop(heap)
            model = self.services.get(name)
            if model is None or model.serial != serial:
                continue  # the entry of a service evicted before
            now = model.last_seen
            if now > seen:  # seen since the entry was made: back in line with its real time
                heapq.heappush(heap, (now, serial, name))
                continue
            self.evict_service(name)

    def evict_service(self, name: str) -> None:
        """Forgets a service whole: its miner and deployments (each recorded in ``evicted`` for the store)."""
        model = self.services.pop(name, None)
        if model is None:
            return
        self.evicted.extend((name, deployment) for deployment in model.deployments)
        self._forget(model)
        self.services_evicted += 1

    def release(self, name: str) -> None:
        """Lets go of a service another replica now owns: gone from memory, not evicted (the store keeps it)."""
        model = self.services.pop(name, None)
        if model is None:
            return
        self._forget(model)

    def evict(self, service: str, deployment: str) -> None:
        """Forgets a deployment of a service (its counts go; the service's templates stay)."""
        model = self.services.get(service)
        if model is None:
            return
        gone = model.deployments.pop(deployment, None)
        if gone is not None:
            self._routes.pop((service, deployment), None)
            self.evicted.append((service, deployment))
            self.memory.add(-gone.bytes)
            self.memory.reopen(self)

    def forget_routes(self) -> None:
        """Drops the (service, deployment) shortcuts; call after replacing a service's miner."""
        self._routes.clear()

    def peek_service(self, name: str) -> ServiceModel:
        """The service's model, or an empty one that is not kept."""
        return self.services.get(name) or ServiceModel(name, self)

    def _route(self, service: str, deployment: str) -> tuple[ServiceModel, DeploymentModel]:
        """The models an event of (service, deployment) is counted in, created (and remembered) if new."""
        if service not in self.services:
            self._make_room()
        model = self.service(service)
        route = self._routes[(service, deployment)] = (model, model.deployment(deployment))
        return route

    def observe(
        self,
        service: str,
        deployment: str,
        message: str,
        timestamp: float,
        host: str = "",
        level: str = "info",
        identities: Sequence[str] = (),
    ) -> Template:
        """Learns one event and counts it under ``deployment``, which is also known by ``identities``."""
        route = self._routes.get((service, deployment)) or self._route(service, deployment)
        owner, target = route
        miner = owner.miner
        known = miner.bytes
        template = miner.add(message)
        learnt = miner.bytes - known
        grown = learnt
        if miner.renamed != owner.folded:  # templates merged: folded now, so that reads never have to
            grown += owner.fold()
        rank = severity(level)
        if template.signature and rank < 3:
            rank = 3  # a stack trace is an error whatever level it was logged at
        grown += target.observe(template, timestamp, host, rank, message, miner.words)
        if grown:
            memory = self.memory
            memory.used_bytes += grown
            if memory.used_bytes >= memory.soft_bytes:
                memory.enforce(self, owner if learnt else None)
        for name in identities:
            if name not in target.identities:
                target.add_identity(name)
        return template
