"""What the engine knows: per service a template miner, per deployment the counts.

``Engine.observe`` is the hot path: one call per log event, no I/O. State is
bounded whatever the input: services, deployments per service, templates per
service and per deployment, clusters per deployment, hosts, examples and time
buckets per template all have caps, and whatever does not fit is counted in an
explicit *other* bucket, never lost and never unbounded. Nothing grows with a
message's length either: an example keeps ``MAX_EXAMPLE_BYTES`` of it, a
template its head (``logcanary.engine.miner.bound_tokens``), river a bounded bag
of its words (``logcanary.engine.clustering.MAX_TERMS``).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from logcanary.common.text import truncate_bytes
from logcanary.engine.caps import DEFAULT_CAPS, Caps
from logcanary.engine.clustering import Cluster, TemplateClusterer
from logcanary.engine.masking import Masker
from logcanary.engine.miner import OTHER, Template, TemplateMiner
from logcanary.schemas import PRIMARY_SUFFIX

BUCKET_SECONDS = 10
MAX_EXAMPLES = 5
MAX_EXAMPLE_BYTES = 4096  # an example keeps this head of a longer message (UTF-8), marked truncated
_SURELY_SHORT = MAX_EXAMPLE_BYTES // 4  # characters: a UTF-8 character is at most 4 bytes
MAX_HOSTS = 64
MAX_BUCKETS = 720  # two hours of 10-second buckets per template and deployment: enough for any window
MAX_IDENTITIES = 16  # other names per deployment (labels, hashes): a few per release, the newest kept

_SEVERITY = {
    "trace": 0, "debug": 0, "fine": 0, "finer": 0, "finest": 0,
    "info": 1, "information": 1, "notice": 1, "": 1,
    "warn": 2, "warning": 2,
    "error": 3, "err": 3, "severe": 3, "exception": 3,
    "fatal": 4, "critical": 4, "crit": 4, "alert": 4, "emerg": 4, "emergency": 4, "panic": 4,
}  # fmt: skip
SEVERITY_NAMES = ("debug", "info", "warn", "error", "fatal")
_SEVERITY_SEEN: dict[str, int] = {}


def clip_example(message: str) -> str:
    """The message as an example keeps it: whole, or its first ``MAX_EXAMPLE_BYTES`` (UTF-8) followed by
    `` …[truncated N bytes]``, the marker ingestion uses for messages past LOGCANARY_MAX_MESSAGE_BYTES. N counts
    from the original message: a message ingestion already cut adds the bytes its marker says were dropped."""
    return truncate_bytes(message, MAX_EXAMPLE_BYTES, recut=True)[0]


def severity(level: str) -> int:
    """0 debug, 1 info, 2 warn, 3 error, 4 fatal; unknown levels count as info."""
    rank = _SEVERITY_SEEN.get(level)
    if rank is None:
        rank = _SEVERITY.get(level.strip().lower(), 1)
        if len(_SEVERITY_SEEN) < 1024:  # level spellings are few; a flood of junk levels is not cached
            _SEVERITY_SEEN[level] = rank
    return rank


@dataclass(slots=True)
class TemplateStats:
    """How often one template occurred in one deployment, when, where, and how it looked."""

    count: int = 0
    first_seen: float = float("inf")
    last_seen: float = float("-inf")
    max_severity: int = 0
    hosts: dict[str, int] = field(default_factory=dict)
    other_hosts: int = 0  # occurrences on hosts beyond MAX_HOSTS
    examples: list[str] = field(default_factory=list)
    buckets: dict[int, int] = field(default_factory=dict)  # bucket start (epoch s) -> count

    def add(self, timestamp: float, host: str, level: int, message: str) -> None:
        self.count += 1
        # Comparisons, not min()/max(): this runs once per event.
        if timestamp < self.first_seen:
            self.first_seen = timestamp
        if timestamp > self.last_seen:
            self.last_seen = timestamp
        if level > self.max_severity:
            self.max_severity = level
        hosts = self.hosts
        if host in hosts:
            hosts[host] += 1
        elif len(hosts) < MAX_HOSTS:
            hosts[host] = 1
        else:
            self.other_hosts += 1
        if len(self.examples) < MAX_EXAMPLES and message not in self.examples:
            example = message if len(message) <= _SURELY_SHORT else clip_example(message)
            if example not in self.examples:
                self.examples.append(example)
        bucket = int(timestamp // BUCKET_SECONDS) * BUCKET_SECONDS
        buckets = self.buckets
        buckets[bucket] = buckets.get(bucket, 0) + 1
        if len(buckets) > MAX_BUCKETS:
            del buckets[min(buckets)]

    def merge(self, other: TemplateStats) -> None:
        """Folds another template's stats into this one (used when templates merge)."""
        self.count += other.count
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        self.max_severity = max(self.max_severity, other.max_severity)
        for host, n in other.hosts.items():
            if host in self.hosts or len(self.hosts) < MAX_HOSTS:
                self.hosts[host] = self.hosts.get(host, 0) + n
            else:
                self.other_hosts += n
        self.other_hosts += other.other_hosts
        for example in other.examples:
            if len(self.examples) < MAX_EXAMPLES and example not in self.examples:
                self.examples.append(example)
        for bucket, n in other.buckets.items():
            self.buckets[bucket] = self.buckets.get(bucket, 0) + n

    def count_between(self, start: float, end: float) -> int:
        """Occurrences in the buckets that overlap [start, end): exact to a bucket (10 s)."""
        if start <= self.first_seen and self.last_seen < end:
            return self.count
        first_bucket = start - BUCKET_SECONDS
        return sum(n for bucket, n in self.buckets.items() if first_bucket < bucket < end)


class DeploymentModel:
    """The templates and clusters one deployment (version) of a service produced."""

    def __init__(self, service: str, deployment: str, max_templates: int, clusterer: TemplateClusterer) -> None:
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

    def add_identity(self, name: str) -> None:
        """Remembers another name of this deployment; past the cap the oldest is forgotten (recent ones matter)."""
        if name == self.deployment or name in self.identities:
            return
        if len(self.identities) >= MAX_IDENTITIES:
            del self.identities[next(iter(self.identities))]
        self.identities[name] = None

    def observe(self, template: Template, timestamp: float, host: str, level: int, message: str) -> None:
        self.events += 1
        if timestamp < self.first_seen:
            self.first_seen = timestamp
        if timestamp > self.last_seen:
            self.last_seen = timestamp
        stats = self.stats.get(template)
        if stats is None:
            if template is OTHER or len(self.stats) >= self.max_templates:
                self.other.add(timestamp, host, level, message)
                return
            stats = self.stats[template] = TemplateStats()
            self.clusterer.cluster_of(template)  # river learns once per new template, off the per-event path
        stats.add(timestamp, host, level, message)

    def templates(self) -> dict[Template, TemplateStats]:
        """Live templates with their stats. Reading never changes the model (verdicts read it from worker
        threads): merged templates are folded when the merge happens (:meth:`ServiceModel.fold`)."""
        return self.stats

    def fold(self) -> None:
        """Folds the stats of templates merged into others into the live ones (a writer's job)."""
        if all(template.merged_into is None for template in self.stats):
            return
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

    def cluster_of(self, template: Template) -> Cluster:
        """The river cluster of a live template in this deployment."""
        return self.clusterer.cluster_of(template)


class ServiceModel:
    """One service: a shared miner (so template ids agree across its deployments) and its deployments."""

    def __init__(self, name: str, engine: Engine) -> None:
        self.name = name
        self._engine = engine
        self.miner = TemplateMiner(Masker(engine.extra_patterns), max_templates=engine.max_templates_per_service)
        self.deployments: dict[str, DeploymentModel] = {}
        self.serial = next(_SERIALS)  # tells this model from an evicted one of the same name
        self.folded = 0  # the miner's ``renamed`` when the deployments were last folded

    def fold(self) -> None:
        """Folds every deployment's merged templates (after the miner merged some: see Engine.observe)."""
        self.folded = self.miner.renamed
        for model in self.deployments.values():
            model.fold()

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
        return found

    def peek_deployment(self, name: str) -> DeploymentModel:
        """The deployment's model, or an empty one that is not kept (reading must not create state)."""
        found = self.deployments.get(name)
        if found is None:
            clusterer = TemplateClusterer(max_clusters=self._engine.max_clusters_per_deployment)
            found = DeploymentModel(self.name, name, self._engine.max_templates_per_deployment, clusterer)
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
        return found

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
        for deployment in model.deployments:
            self._routes.pop((name, deployment), None)
            self.evicted.append((name, deployment))
        model.miner.clear_caches()  # gives its share of the shared cache budget back
        self.services_evicted += 1

    def release(self, name: str) -> None:
        """Lets go of a service another replica now owns: gone from memory, not evicted (the store keeps it)."""
        model = self.services.pop(name, None)
        if model is None:
            return
        for deployment in model.deployments:
            self._routes.pop((name, deployment), None)
        model.miner.clear_caches()

    def evict(self, service: str, deployment: str) -> None:
        """Forgets a deployment of a service (its counts go; the service's templates stay)."""
        model = self.services.get(service)
        if model is not None and model.deployments.pop(deployment, None) is not None:
            self._routes.pop((service, deployment), None)
            self.evicted.append((service, deployment))

    def forget_routes(self) -> None:
        """Drops the (service, deployment) shortcuts; call after replacing a service's miner."""
        self._routes.clear()

    def peek_service(self, name: str) -> ServiceModel:
        """The service's model, or an empty one that is not kept."""
        return self.services.get(name) or ServiceModel(name, self)

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
        route = self._routes.get((service, deployment))
        if route is None:
            if service not in self.services:
                self._make_room()
            model = self.service(service)
            route = self._routes[(service, deployment)] = (model, model.deployment(deployment))
        owner, target = route
        miner = owner.miner
        template = miner.add(message)
        if miner.renamed != owner.folded:  # templates merged: folded now, so that reads never have to
            owner.fold()
        rank = severity(level)
        if template.signature and rank < 3:
            rank = 3  # a stack trace is an error whatever level it was logged at
        target.observe(template, timestamp, host, rank, message)
        for name in identities:
            if name not in target.identities:
                target.add_identity(name)
        return template
