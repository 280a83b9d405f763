"""Engine state <-> bytes for the store (orjson; plain data, no pickle)."""

from __future__ import annotations

import math
from typing import Any

import orjson

from service.engine.masking import Masker
from service.engine.miner import TemplateMiner
from service.engine.model import DeploymentModel, Engine, TemplateStats


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _stats_data(stats: TemplateStats) -> dict[str, Any]:
    return {
        "count": stats.count,
        "first_seen": _finite(stats.first_seen),
        "last_seen": _finite(stats.last_seen),
        "max_severity": stats.max_severity,
        "hosts": stats.hosts,
        "other_hosts": stats.other_hosts,
        "examples": stats.examples,
        "buckets": list(stats.buckets.items()),
    }


def _stats_from(data: dict[str, Any]) -> TemplateStats:
    first, last = data["first_seen"], data["last_seen"]
    return TemplateStats(
        count=data["count"],
        first_seen=math.inf if first is None else first,
        last_seen=-math.inf if last is None else last,
        max_severity=data["max_severity"],
        hosts=dict(data["hosts"]),
        other_hosts=data["other_hosts"],
        examples=list(data["examples"]),
        buckets={int(bucket): count for bucket, count in data["buckets"]},
    )


def encode_miner(miner: TemplateMiner) -> bytes:
    return orjson.dumps(miner.to_state())


def encode_deployment(model: DeploymentModel) -> bytes:
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


def restore(engine: Engine, miners: dict[str, bytes], deployments: dict[tuple[str, str], bytes]) -> None:
    """Rebuilds services, deployments and their river clusters from stored blobs."""
    for name, blob in miners.items():
        miner = TemplateMiner.from_state(
            orjson.loads(blob), masker=Masker(engine.extra_patterns), max_templates=engine.max_templates_per_service
        )
        engine.service(name).miner = miner
    engine.forget_routes()
    for (service_name, deployment_name), blob in deployments.items():
        data = orjson.loads(blob)
        service = engine.service(service_name)
        model = service.deployment(deployment_name)
        model.events = data["events"]
        model.first_seen = math.inf if data["first_seen"] is None else data["first_seen"]
        model.last_seen = -math.inf if data["last_seen"] is None else data["last_seen"]
        model.other = _stats_from(data["other"])
        for identity in data.get("identities", ()):  # absent from blobs written before identities were kept
            model.add_identity(identity)
        for entry in data["templates"]:
            stats = _stats_from(entry)
            template = service.miner.get(entry["id"])
            if template is None:  # cannot happen with checkpoints written whole; never lose the counts anyway
                model.other.merge(stats)
                continue
            if template in model.stats:
                model.stats[template].merge(stats)
            else:
                model.stats[template] = stats
                model.cluster_of(template)  # river relearns the clusters in order of first appearance
