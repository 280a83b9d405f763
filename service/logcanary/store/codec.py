"""Engine state <-> bytes for the store (orjson; plain data, no pickle).

Format 2 (rows): a miner is a small header (``miners``) plus one row per Drain group with its templates
(``miner_groups``, keyed by the group's bucket and position); a deployment is a small header
(``deployments``) plus one row per template's stats (``deployment_templates``, keyed by template id). So a
checkpoint rewrites only the groups and template stats that changed, not a service's whole state.

Format 1 (before rows): a miner was one blob ``{"version": 1, "overflow", "groups": [...]}`` and a deployment
one blob with a ``templates`` list. Both still decode: ``restore`` reads either, reports which keys were
legacy, and the next checkpoint rewrites them as rows (replacing the blobs in the same transaction).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from logcanary.engine.masking import WILDCARD, Masker
from logcanary.engine.memory import ACTIONS, NEW_STATS_BYTES, stats_bytes
from logcanary.engine.miner import TemplateMiner
from logcanary.engine.model import DeploymentModel, Engine, ServiceModel, TemplateStats

FORMAT = 2


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _stats_data(stats: TemplateStats) -> dict[str, Any]:
    data: dict[str, Any] = {
        "count": stats.count,
        "first_seen": _finite(stats.first_seen),
        "last_seen": _finite(stats.last_seen),
        "max_severity": stats.max_severity,
        "hosts": stats.hosts,
        "other_hosts": stats.other_hosts,
        "examples": stats.examples,
        "buckets": list(stats.buckets.items()),
    }
    if stats.positions:  # only then: stats that count no value are stored as before values were counted
        data["values"] = {"positions": stats.positions, "width": stats.width, "counts": stats.value_rows()}
    return data


def _stats_from(data: dict[str, Any]) -> TemplateStats:
    first, last = data["first_seen"], data["last_seen"]
    stats = TemplateStats(
        count=data["count"],
        first_seen=math.inf if first is None else first,
        last_seen=-math.inf if last is None else last,
        max_severity=data["max_severity"],
        hosts=dict(data["hosts"]),
        other_hosts=data["other_hosts"],
        examples=list(data["examples"]),
        buckets={int(bucket): count for bucket, count in data["buckets"]},
    )
    values = data.get("values")
    if values:
        stats.restore_values(values["positions"], values["width"], values["counts"])
    return stats


def encode_miner(miner: TemplateMiner) -> bytes:
    """The whole miner as one format-1 blob (kept for tools and tests; the store writes rows)."""
    return orjson.dumps(miner.to_state())


def encode_miner_header(service: ServiceModel) -> bytes:
    """A service's miner header; ``degraded`` (what the memory budget took) only when it took something, so a
    header is what it was before the budget existed otherwise."""
    header: dict[str, Any] = {"format": FORMAT, "overflow": service.miner.overflow}
    if service.degraded:
        header["degraded"] = [action for action in ACTIONS if action in service.degraded]
    return orjson.dumps(header)


def miner_groups(miner: TemplateMiner) -> Iterator[tuple[str, Any]]:
    """(key, group) for every Drain group: the key is the group's bucket and its position there.

    Buckets only ever grow by appending, so a group keeps its key for the miner's life. (After a restore
    a widened group may land in another bucket: ``restore`` then asks for a rewrite of the service's rows.)
    """
    for (signature, length, route), bucket in miner._buckets.items():  # the store reads the miner's own structure
        prefix = hashlib.blake2b(
            f"{signature}\x1f{length}\x1f{route}".encode("utf-8", "surrogatepass"), digest_size=8
        ).hexdigest()
        for position, group in enumerate(bucket):
            yield f"{prefix}:{position:08d}", group


def group_fingerprint(group: Any) -> tuple[int, ...]:
    """Changes whenever the miner changes the group (it only ever adds values, wildcards and templates).

    Template sizes are saved with the group when it changes otherwise; only whether a size reached 2 matters
    to mining (co-varying positions), so that is part of the fingerprint.
    """
    return (
        group.tokens.count(WILDCARD),
        len(group.variable),
        sum(len(seen) for seen in group.values.values()),
        len(group.templates),
        sum(1 for template in group.templates.values() if template.size >= 2),
        sum(len(template.aliases) for template in group.templates.values()),
    )


def encode_group(signature: str, group: Any) -> bytes:
    return orjson.dumps(
        {
            "signature": signature,
            "tokens": group.tokens,
            "variable": sorted(group.variable),
            "values": {str(index): sorted(seen) for index, seen in group.values.items()},
            "templates": [{"tokens": t.tokens, "size": t.size, "aliases": t.aliases} for t in group.templates.values()],
        }
    )


def encode_deployment_header(model: DeploymentModel) -> bytes:
    header = {
        "format": FORMAT,
        "events": model.events,
        "first_seen": _finite(model.first_seen),
        "last_seen": _finite(model.last_seen),
        "other": _stats_data(model.other),
        "identities": list(model.identities),
    }
    if model.summarised:  # only then: a header is what it was before the memory budget otherwise
        header["summarised"] = True
    return orjson.dumps(header)


def encode_template_stats(stats: TemplateStats) -> bytes:
    return orjson.dumps(_stats_data(stats))


def encode_deployment(model: DeploymentModel) -> bytes:
    """The whole deployment as one format-1 blob (kept for tools and tests; the store writes rows)."""
    templates = sorted(model.templates().items(), key=lambda item: item[1].first_seen)
    return orjson.dumps(
        {
            "events": model.events,
            "first_seen": _finite(model.first_seen),
            "last_seen": _finite(model.last_seen),
            "other": _stats_data(model.other),
            "identities": list(model.identities),
            "templates": [{"id": template.template_id, **_stats_data(stats)} for template, stats in templates],
        }
    )


@dataclass(slots=True)
class StoredState:
    """What the store holds, as loaded: headers (or format-1 blobs) and rows."""

    miners: dict[str, bytes] = field(default_factory=dict)
    groups: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)  # service -> [(key, group)] by key
    deployments: dict[tuple[str, str], bytes] = field(default_factory=dict)
    templates: dict[tuple[str, str], list[tuple[str, bytes]]] = field(default_factory=dict)  # -> [(id, stats)]


@dataclass(slots=True)
class Restored:
    """Which parts must be rewritten whole at the next checkpoint (format-1 blobs, moved group keys)."""

    services: set[str] = field(default_factory=set)
    deployments: set[tuple[str, str]] = field(default_factory=set)


def restore(engine: Engine, stored: StoredState) -> Restored:
    """Rebuilds services, deployments and their river clusters from stored headers and rows (or format-1 blobs)."""
    rewrite = Restored()
    for name, blob in stored.miners.items():
        data = orjson.loads(blob)
        rows = stored.groups.get(name, [])
        if "groups" in data:  # format 1: the whole miner in one blob
            rewrite.services.add(name)
            state = data
        else:
            state = {"version": 1, "overflow": data.get("overflow", 0), "groups": [orjson.loads(b) for _, b in rows]}
        miner = TemplateMiner.from_state(
            state,
            masker=Masker(engine.extra_patterns),
            max_templates=engine.max_templates_per_service,
            cache_budget=engine.cache_budget,
        )
        service = engine.service(name)
        engine.replace_miner(service, miner)
        service.degraded.update(data.get("degraded", ()))
        if [key for key, _ in rows] != sorted(key for key, _ in miner_groups(miner)):
            rewrite.services.add(name)  # a widened group moved bucket on restore: its keys changed
    engine.forget_routes()
    for (service_name, deployment_name), blob in stored.deployments.items():
        data = orjson.loads(blob)
        service = engine.service(service_name)
        model = service.deployment(deployment_name)
        model.events = data["events"]
        model.first_seen = math.inf if data["first_seen"] is None else data["first_seen"]
        model.last_seen = -math.inf if data["last_seen"] is None else data["last_seen"]
        model.other = _stats_from(data["other"])
        for identity in data.get("identities", ()):  # absent from blobs written before identities were kept
            model.add_identity(identity)
        model.summarised = model.closed = bool(data.get("summarised", False))
        if "templates" in data:  # format 1
            rewrite.deployments.add((service_name, deployment_name))
            entries = [(entry["id"], _stats_from(entry)) for entry in data["templates"]]
        else:
            rows = stored.templates.get((service_name, deployment_name), [])
            entries = sorted(
                ((template_id, _stats_from(orjson.loads(b))) for template_id, b in rows),
                key=lambda entry: entry[1].first_seen,
            )
        for template_id, stats in entries:
            template = service.miner.get(template_id)
            if template is None:  # cannot happen with consistent checkpoints; never lose the counts anyway
                model.other.merge(stats)
                rewrite.deployments.add((service_name, deployment_name))
                continue
            if template.template_id != template_id:  # stored under a former id: rewrite, or it would stay beside
                rewrite.deployments.add((service_name, deployment_name))  # the new one and be added up again
            if template in model.stats:
                model.stats[template].merge(stats)
                rewrite.deployments.add((service_name, deployment_name))
            else:
                model.stats[template] = stats
                model.cluster_of(template)  # river relearns the clusters in order of first appearance
            kept = model.stats[template]
            if not kept.width and not template.signature:  # stored before values were counted: count from now
                kept.track(template.tokens)
        restored = model.clusterer.bytes + stats_bytes(model.other) - NEW_STATS_BYTES
        restored += sum(map(stats_bytes, model.stats.values()))
        model.bytes += restored
        engine.memory.add(restored)
    return rewrite
