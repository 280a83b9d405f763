"""Which engine rows the store holds already, so a checkpoint writes only what changed.

What was saved is remembered per *object* (the miner, the deployment model): a deployment or service evicted and
re-created between two checkpoints is rewritten whole, never mistaken for the saved one. A miner's Drain groups are
rewritten when their fingerprint moved, a deployment's template stats when their count moved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from logcanary.engine.miner import TemplateMiner
from logcanary.engine.model import DeploymentModel, Engine, ServiceModel
from logcanary.store.base import Checkpoint
from logcanary.store.codec import (
    Restored,
    encode_deployment_header,
    encode_group,
    encode_miner_header,
    encode_template_stats,
    group_fingerprint,
    miner_groups,
)


@dataclass(slots=True)
class _SavedMiner:
    miner: TemplateMiner  # the object saved: a re-created service has another one
    version: int
    overflow: int
    degraded: int  # how many things the memory budget took from the service (its header says which)
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)  # group key -> fingerprint


@dataclass(slots=True)
class _SavedDeployment:
    model: DeploymentModel  # the object saved: a deployment evicted and re-created has another one
    events: int
    summarised: bool  # by the memory budget: its templates' rows go, its header holds their counts
    counts: dict[str, int] = field(default_factory=dict)  # template id -> count


@dataclass(slots=True)
class PendingRows:
    """What the store will hold once a checkpoint commits."""

    miners: dict[str, _SavedMiner] = field(default_factory=dict)
    deployments: dict[tuple[str, str], _SavedDeployment] = field(default_factory=dict)
    evicted: int = 0  # entries of engine.evicted covered


def _saved_miner(service: ServiceModel) -> _SavedMiner:
    miner = service.miner
    groups = {key: group_fingerprint(group) for key, group in miner_groups(miner)}
    return _SavedMiner(miner, miner.version, miner.overflow, len(service.degraded), groups)


def _saved_deployment(model: DeploymentModel) -> _SavedDeployment:
    counts = {template.template_id: stats.count for template, stats in model.templates().items()}
    return _SavedDeployment(model, model.events, model.summarised, counts)


class SavedRows:
    """The engine rows the store holds, per service and deployment."""

    def __init__(self) -> None:
        self._miners: dict[str, _SavedMiner] = {}
        self._deployments: dict[tuple[str, str], _SavedDeployment] = {}

    def restored(self, engine: Engine, names: Iterable[str], rewrite: Restored) -> None:
        """Records services just restored from the store as saved (except what must be rewritten whole)."""
        for name in names:
            service = engine.services.get(name)
            if service is None:
                continue
            if name not in rewrite.services:  # else unknown: rewritten whole at the next checkpoint
                self._miners[name] = _saved_miner(service)
            for deployment, model in service.deployments.items():
                if (name, deployment) not in rewrite.deployments:
                    self._deployments[(name, deployment)] = _saved_deployment(model)

    def forget(self, released: Callable[[str], bool]) -> None:
        """Services this process let go of (another replica owns them now): nothing of theirs is written, not
        even the deletion of one the caps evicted meanwhile (its rows are the next owner's)."""
        for name in [name for name in self._miners if released(name)]:
            del self._miners[name]
        for key in [key for key in self._deployments if released(key[0])]:
            del self._deployments[key]

    def changes(self, engine: Engine, checkpoint: Checkpoint) -> PendingRows:
        """Adds to ``checkpoint`` the rows that changed since the last commit. Run while nothing changes the engine:
        a consistent cut."""
        pending = PendingRows(evicted=len(engine.evicted))
        for name, service in list(engine.services.items()):  # one C call: a rebalance may release services
            miner = service.miner
            saved = self._miners.get(name)
            if saved is not None and saved.miner is not miner:
                saved = None  # the service was evicted and re-created
            if saved is None:  # new, re-created, or not known to match the store: its rows are rewritten
                checkpoint.miners_replaced.append(name)
            degraded = len(service.degraded)
            if (
                saved is None
                or saved.version != miner.version
                or saved.overflow != miner.overflow
                or saved.degraded != degraded
            ):
                fresh = _SavedMiner(miner, miner.version, miner.overflow, degraded)
                for key, group in miner_groups(miner):
                    fingerprint = fresh.groups[key] = group_fingerprint(group)
                    if saved is None or saved.groups.get(key) != fingerprint:
                        checkpoint.groups[(name, key)] = encode_group(group.signature, group)
                checkpoint.miners[name] = encode_miner_header(service)
                pending.miners[name] = fresh
            for deployment, model in service.deployments.items():
                dkey = (name, deployment)
                known = self._deployments.get(dkey)
                if known is None or known.model is not model:
                    checkpoint.deployments_replaced.append(dkey)
                    known = None
                elif known.events == model.events and known.summarised == model.summarised:
                    continue
                current = _saved_deployment(model)
                for template, stats in model.templates().items():
                    if known is None or known.counts.get(template.template_id) != stats.count:
                        checkpoint.templates[(name, deployment, template.template_id)] = encode_template_stats(stats)
                if known is not None:
                    checkpoint.templates_gone += [
                        (name, deployment, template_id)
                        for template_id in known.counts
                        if template_id not in current.counts
                    ]
                checkpoint.deployments[dkey] = encode_deployment_header(model)
                pending.deployments[dkey] = current
        for name in self._miners:
            if name not in engine.services:
                checkpoint.dropped_services.append(name)
        for service_name, deployment in self._deployments:
            live = engine.services.get(service_name)
            if live is None or deployment not in live.deployments:
                checkpoint.dropped.append((service_name, deployment))
        return pending

    def committed(self, engine: Engine, checkpoint: Checkpoint, pending: PendingRows) -> None:
        """The checkpoint is in the store: what it held is saved (events that arrived during the write stay dirty)."""
        self._miners.update(pending.miners)
        self._deployments.update(pending.deployments)
        for name in checkpoint.dropped_services:
            self._miners.pop(name, None)
        for key in checkpoint.dropped:
            self._deployments.pop(key, None)
        del engine.evicted[: pending.evicted]
