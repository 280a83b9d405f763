"""What the engine holds at most, defined once: the engine, the settings (``LOGCANARY_MAX_*``) and the docs read
these defaults from here.

Every cap bounds memory whatever the input (an attacker's random strings included); what overflows is still
counted, under the "other" template of its deployment (or, for services, by dropping the least recently seen
one whole). README > Reliability > Engine memory tells what each costs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caps:
    max_templates_per_service: int = 10_000  # a service's miner: new event types past it count as "other"
    max_templates_per_deployment: int = 5_000  # one deployment's counted templates
    max_clusters_per_deployment: int = 2_000  # river clusters of one deployment
    max_deployments_per_service: int = 50  # past it the least recently seen deployment is dropped
    max_services: int = 1_000  # past it the least recently seen service is dropped whole
    # All of it, estimated (logcanary.engine.memory): past it the engine degrades, in a fixed order. 256 MiB: with
    # the process' own overhead it fits the chart's memory request (512Mi), under its limit (2Gi).
    memory_budget_bytes: int = 256 * 1024 * 1024


DEFAULT_CAPS = Caps()
