"""What the engine's state costs in memory, estimated as it grows, and what the engine gives up, in a fixed order,
as the estimate nears its budget (``LOGCANARY_MEMORY_BUDGET_BYTES``).

The caps (:mod:`logcanary.engine.caps`) bound each part of the state, but they multiply: at the defaults a worst
case is thousands of GB. The budget is one number for all of it: templates (the miners' and river's share of
each), stored examples, per-deployment counts, and the miners' caches (a fixed share, :data:`CACHE_SHARE`).

Estimates are made where state is added, from string sizes and counts (``sys.getsizeof`` of one string is
constant time), never by walking objects; they were calibrated against ``tracemalloc`` (bench/RESULTS.md). From
:data:`SOFT` of the budget on, the engine degrades, each step counted by action
(``logcanary_memory_degradations_total``) and named on the verdicts of the services it touched (``degraded``):

1. ``examples``: every stored example is cut to :data:`SHORT_EXAMPLE_BYTES`, and so are new ones (once).
2. ``deployments``: the least recently seen deployments (never a service's newest) are summarised: their
   per-template counts fold into their *other* bucket, so their totals stay exact, until the estimate is
   under :data:`TARGET` of the budget.
3. ``templates``: the services holding at least half an average share of the estimate are closed to new event
   types, and so is any other service at its next new event type (that one is kept): their new event types are
   counted in the *other* template (as past ``MAX_TEMPLATES_PER_SERVICE``), in every deployment, until evictions
   or retention bring the estimate under :data:`TARGET`. Services that bring no new event type see no change.
4. ``summaries``: if closed services still grow to the whole budget (counts and examples of the event types they
   know), any deployment, least recently seen first, is summarised as in step 2.
5. ``evictions``: if what is left (services and deployments themselves, summaries) still fills the budget (a
   budget too small for the services and deployments the caps allow), the least recently seen deployments are
   dropped (never a service's newest), then the least recently seen services, as the caps drop them.

Up to step 4 no event is lost: every one is counted, under its template or under *other*. Step 5 forgets the
oldest counts, as the deployment and service caps do.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from logcanary.common.text import truncate_bytes

if TYPE_CHECKING:
    from logcanary.engine.miner import Template
    from logcanary.engine.model import DeploymentModel, Engine, ServiceModel
    from logcanary.engine.stats import TemplateStats


# What the process holds beside the engine's state: the interpreter and libraries (about 90 MiB idle), the masking
# caches (at most about 60 MiB), requests and Kafka batches in flight (a 16 MiB body decoded), a checkpoint's
# encoded rows, and what the allocator keeps. RSS stays under the budget plus this (README: Engine memory).
OVERHEAD_BYTES = 256 * 1024 * 1024
CACHE_SHARE = 8  # the miners' caches get 1/8 of the budget (they only save work)
SOFT = 0.9  # degrading starts at this share of the budget (what is left is room for known event types to grow)
TARGET = 0.8  # summarising frees memory until the estimate is under this share of the budget
SHORT_EXAMPLE_BYTES = 256  # an example's head once examples are shortened
ACTIONS = ("examples", "deployments", "templates", "summaries", "evictions")
REASONS = {  # what a verdict says, by what the service was marked with (summaries mark it "deployments")
    "examples": f"memory budget reached: examples shortened to {SHORT_EXAMPLE_BYTES} bytes",
    "deployments": "memory budget reached: older deployments summarised (their event types counted as other)",
    "templates": "memory budget reached: new event types of this service counted as other",
    "evictions": "memory budget reached: older deployments of this service dropped",
}

# Calibrated with tracemalloc (bench/RESULTS.md): CPython object headers, dict and list slots.
SERVICE_BYTES = 8_000  # a service's miner, masker and model with no template
DEPLOYMENT_BYTES = 4_500  # a deployment's model, clusterer and other bucket with no template
_TEMPLATE_BYTES = 900  # a template and its Drain group: objects, ids, dict entries
_TOKEN_BYTES = 24  # a token's slots in the template's and the group's lists, and the group's key
NEW_STATS_BYTES = 900  # a template's stats in a deployment: the object, its dicts, the deployment's entry
RIVER_BYTES = 1_600  # a template learnt by river: its micro-cluster, the cluster's entries
RIVER_TERM_BYTES = 300  # a word river keeps for it: the micro-cluster's, the cluster's and the term bags' entries
RIVER_MODEL_BYTES = 2_500  # a river model, one per leading word of a deployment
VALUE_BYTES = 150  # a value a Drain group keeps for a position that may become a wildcard
VALUE_KEY_BYTES = 120  # a combination of values a template's stats count: its dict entry and tuple (strings apart)
HOST_BYTES = 120  # a host's entry in a template's stats (its string apart)
BUCKET_BYTES = 100  # a 10-second bucket's entry in a template's stats
_LIST_SLOT = 8


def template_bytes(template: Template) -> int:
    """A new template in its miner (group included: most templates found their group) and its token strings."""
    tokens = template.tokens
    return _TEMPLATE_BYTES + _TOKEN_BYTES * len(tokens) + sum(map(sys.getsizeof, tokens))


def stats_bytes(stats: TemplateStats) -> int:
    """A template's stats as they stand (restores, summaries; the hot path adds as it grows)."""
    return (
        NEW_STATS_BYTES
        + sum(HOST_BYTES + sys.getsizeof(host) for host in stats.hosts)
        + sum(_LIST_SLOT + sys.getsizeof(example) for example in stats.examples)
        + BUCKET_BYTES * len(stats.buckets)
        + stats.value_bytes
    )


def degraded(service: ServiceModel, deployments: Iterable[DeploymentModel]) -> list[str]:
    """What the budget took from a service and the deployments a verdict compares, one sentence each (in the
    order of the steps): what a verdict says it could not see."""
    actions = set(service.degraded)
    if not any(deployment.summarised for deployment in deployments):
        actions.discard("deployments")
    return [reason for action, reason in REASONS.items() if action in actions]


def short_example(example: str) -> str:
    """An example as kept once examples are shortened (its marker counts from the original message)."""
    return truncate_bytes(example, SHORT_EXAMPLE_BYTES, recut=True)[0]


class MemoryBudget:
    """The engine's estimate, its budget and what it gave up so far; :meth:`enforce` runs the steps in order."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.soft_bytes = int(limit_bytes * SOFT)
        self.used_bytes = 0
        self.short_examples = False  # step 1 taken: examples are kept short from now on
        self.closed: set[str] = set()  # services closed to new event types (step 3)
        self.degradations: Counter[str] = Counter()  # by action: services or deployments degraded
        self._walk_from = 0  # the estimate from which enforce looks for something to give up again

    def add(self, size: int) -> None:
        self.used_bytes += size

    def enforce(self, engine: Engine, grown: ServiceModel | None) -> None:
        """The estimate is past :data:`SOFT` of the budget after ``grown`` learnt a new event type (None: something
        else grew, or a restore): give up what the module's docstring lists, in its order."""
        if self.used_bytes >= self._walk_from:
            # Walks the engine, so only again once the estimate grew by 1/64 of the budget: never once per event.
            self._walk(engine)
            self._walk_from = self.used_bytes + self.limit_bytes // 64 if self.used_bytes >= self.soft_bytes else 0
        if grown is not None and grown.name not in self.closed and self.used_bytes >= self.soft_bytes:
            self.close(grown)

    def _walk(self, engine: Engine) -> None:
        target = self.limit_bytes * TARGET
        if not self.short_examples:
            self._shorten_examples(engine)
        if self.used_bytes >= self.soft_bytes:
            self._summarise(engine, target, "deployments", newest=False)
        if self.used_bytes >= self.soft_bytes:
            self._close_flooding(engine)
        if self.used_bytes >= self.limit_bytes:
            self._summarise(engine, target, "summaries", newest=True)
        if self.used_bytes >= self.limit_bytes:
            self._evict(engine, target)

    def settle(self, engine: Engine) -> None:
        """After a restore (a batch of services): the same steps as ingestion, so a restore holds what running did."""
        if self.used_bytes >= self.soft_bytes:
            self.enforce(engine, None)

    def _close_flooding(self, engine: Engine) -> None:
        """Closes the services holding at least half an average share: all at once, so that the services flooding
        the budget do not each bring one more new event type past it."""
        services = list(engine.services.values())
        share = self.used_bytes / max(1, len(services)) / 2
        for service in services:
            if service.name not in self.closed and service.bytes >= share:
                self.close(service)

    def close(self, service: ServiceModel) -> None:
        """New event types of ``service`` are counted as other, in each of its deployments (step 3)."""
        self.closed.add(service.name)
        service.miner.closed = True
        for deployment in service.deployments.values():
            deployment.closed = True
        service.degraded.add("templates")
        self.degradations["templates"] += 1

    def reopen(self, engine: Engine) -> None:
        """Memory was freed (evictions, retention): closed services learn new event types again."""
        if self.closed and self.used_bytes < self.limit_bytes * TARGET:
            for name in self.closed:
                service = engine.services.get(name)
                if service is not None:
                    service.miner.closed = False
                    for deployment in service.deployments.values():
                        deployment.closed = deployment.summarised
            self.closed.clear()
            self._walk_from = 0

    def _shorten_examples(self, engine: Engine) -> None:
        self.short_examples = True
        for service in engine.services.values():
            touched = False
            for deployment in service.deployments.values():
                for stats in (*deployment.stats.values(), deployment.other):
                    touched = self._shorten(deployment, stats) or touched
            if touched:
                service.degraded.add("examples")
                self.degradations["examples"] += 1

    def _shorten(self, deployment: DeploymentModel, stats: TemplateStats) -> bool:
        before = sum(map(sys.getsizeof, stats.examples))
        shortened = list(dict.fromkeys(short_example(example) for example in stats.examples))
        if shortened == stats.examples:
            return False
        stats.examples = shortened
        freed = before - sum(map(sys.getsizeof, shortened))
        deployment.bytes -= freed
        self.used_bytes -= freed
        return True

    def _summarise(self, engine: Engine, target: float, action: str, newest: bool) -> None:
        """Summarises deployments, least recently seen first (a service's newest one only if ``newest``)."""
        candidates = [
            deployment
            for service in engine.services.values()
            for deployment in sorted(service.deployments.values(), key=_seen)[: None if newest else -1]
            if deployment.stats
        ]
        for deployment in sorted(candidates, key=_seen):
            if self.used_bytes < target:
                return
            self.used_bytes -= deployment.summarise()
            engine.services[deployment.service].degraded.add("deployments")
            self.degradations[action] += 1

    def _evict(self, engine: Engine, target: float) -> None:
        """Drops deployments (a service's newest last of all), then services, least recently seen first."""
        old = sorted(
            (d for service in engine.services.values() for d in sorted(service.deployments.values(), key=_seen)[:-1]),
            key=_seen,
        )
        for deployment in old:
            if self.used_bytes < target:
                return
            engine.evict(deployment.service, deployment.deployment)
            engine.services[deployment.service].degraded.add("evictions")
            self.degradations["evictions"] += 1
        for service in sorted(engine.services.values(), key=lambda s: s.last_seen):
            if self.used_bytes < target:
                return
            engine.evict_service(service.name)
            self.degradations["evictions"] += 1


def _seen(deployment: DeploymentModel) -> float:
    return deployment.last_seen
