"""Issue 18's memory budget through the real service: unique long hostile events across many services, posted over
HTTP to `logcanary serve` with a small budget; its resident memory (peak included) stays under the budget plus the
overhead README > Reliability > Engine memory states, live and after a restart, with every event counted.

The quick variant runs in ``make test``; ``make chaos`` runs the acceptance's size: 100,000 events of 4,000
characters across 1,000 services, with the default budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from logcanary.engine.caps import DEFAULT_CAPS
from logcanary.engine.memory import OVERHEAD_BYTES, REASONS
from tests.test_memory_budget import hostile

from .conftest import Launcher, ServiceProcess

MIB = 1024 * 1024
BATCH = 100


def status_bytes(process: ServiceProcess, field: str) -> int:
    """VmRSS (resident now) or VmHWM (the peak since start), in bytes."""
    assert process.process is not None
    for line in Path(f"/proc/{process.process.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


def metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(name)


def counted(client: httpx.Client) -> int:
    return sum(service["events"] for service in client.get("/v1/services").json())


@dataclass
class Run:
    events: int
    live_rss: int
    live_peak: int
    estimate: float
    restart_rss: int
    restart_peak: int
    restarted_events: int
    restart_seconds: float


def flood(service_process: Launcher, events: int, services: int, budget: int, chars: int = 4000) -> Run:
    env = {"LOGCANARY_MEMORY_BUDGET_BYTES": str(budget), "LOGCANARY_LOG_LEVEL": "warning"}
    service = service_process(env)
    service.start()
    stamp = datetime.now(UTC).timestamp() - 60
    with httpx.Client(base_url=service.url, timeout=600) as client:
        for start in range(0, events, BATCH):
            body = b"".join(
                orjson.dumps(
                    {
                        "service": f"svc-{index % services}",
                        "deployment": "v1",
                        "timestamp": stamp + index * 0.001,
                        "message": hostile(index, chars),
                    }
                )
                + b"\n"
                for index in range(start, min(events, start + BATCH))
            )
            answer = client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"})
            assert answer.status_code == 202, answer.text
        live_rss, live_peak = status_bytes(service, "VmRSS"), status_bytes(service, "VmHWM")
        assert counted(client) == events  # none lost, none twice: past the budget, new event types are "other"
        estimate = metric(client, "logcanary_memory_estimated_bytes")
        assert metric(client, "logcanary_memory_budget_bytes") == budget
        assert metric(client, 'logcanary_memory_degradations_total{action="templates"}') > 0
        verdict = client.get("/v1/verdict", params={"service": "svc-1", "canary": "v1", "history": "true"}).json()
        assert REASONS["templates"] in verdict["degraded"], verdict
    service.stop()  # SIGTERM: the state is checkpointed before it exits
    restarted = service_process(env)
    started = time.monotonic()
    restarted.start(timeout=600)
    restart_seconds = time.monotonic() - started
    with httpx.Client(base_url=restarted.url, timeout=600) as client:
        restarted_events = counted(client)
        restart_rss, restart_peak = status_bytes(restarted, "VmRSS"), status_bytes(restarted, "VmHWM")
    restarted.stop()
    return Run(
        events, live_rss, live_peak, estimate, restart_rss, restart_peak, restarted_events, round(restart_seconds, 1)
    )


def check(run: Run, budget: int, capsys: pytest.CaptureFixture[str], label: str) -> None:
    with capsys.disabled():
        print(
            f"\n[{label}] {run.events:,} events, budget {budget / MIB:.0f} MiB (+{OVERHEAD_BYTES / MIB:.0f} MiB "
            f"overhead): live RSS {run.live_rss / MIB:.0f} MiB (peak {run.live_peak / MIB:.0f}), estimate "
            f"{run.estimate / MIB:.0f} MiB; after a restart ({run.restart_seconds} s) RSS {run.restart_rss / MIB:.0f} "
            f"MiB (peak {run.restart_peak / MIB:.0f}), {run.restarted_events:,} events"
        )
    assert run.estimate <= budget
    assert run.live_peak <= budget + OVERHEAD_BYTES
    assert run.restart_peak <= budget + OVERHEAD_BYTES
    assert run.restart_peak <= run.live_peak  # a restore never needs more than running with the state did
    assert run.restarted_events == run.events


def test_unique_long_hostile_events_stay_under_the_budget_live_and_after_a_restart(
    service_process: Launcher, capsys: pytest.CaptureFixture[str]
) -> None:
    """8,000 unique 4,000-character events across 100 services with a 32 MiB budget: unbudgeted they took about
    320 MiB of state (bench/RESULTS.md), so an RSS under 32 MiB plus the overhead means the budget held."""
    budget = 32 * MIB
    check(flood(service_process, 8_000, 100, budget), budget, capsys, "memory budget")


@pytest.mark.chaos
def test_chaos_100000_hostile_events_across_1000_services_with_the_default_budget(
    service_process: Launcher, capsys: pytest.CaptureFixture[str]
) -> None:
    """The acceptance of issue 18: 100,000 unique 4,000-character events across 1,000 services, default budget."""
    budget = DEFAULT_CAPS.memory_budget_bytes
    check(flood(service_process, 100_000, 1_000, budget), budget, capsys, "memory budget chaos")
