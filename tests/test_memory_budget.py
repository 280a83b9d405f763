"""The engine's memory budget (issue 18): an estimate that follows the state, the degrade steps in their order,
counts exact through them, verdicts that say what was given up, and a restore that holds what running held."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from pathlib import Path

from logcanary.analysis.verdict import analyze
from logcanary.engine import masking
from logcanary.engine.caps import Caps
from logcanary.engine.memory import REASONS, SHORT_EXAMPLE_BYTES, SOFT
from logcanary.engine.model import Engine
from tests.test_state import make_state

MIB = 1024 * 1024


def letters(number: int) -> str:
    """A number as lower-case letters (masking never touches a word of letters)."""
    text = ""
    while True:
        number, digit = divmod(number, 26)
        text += chr(97 + digit)
        if not number:
            return text


def hostile(index: int, chars: int = 4000) -> str:
    """A unique message of ``chars`` characters whose every word is new: each one is a new event type."""
    seed = letters(index)
    words = (f"{seed}q{letters(n)}" for n in range(chars))
    text = ""
    for word in words:
        if len(text) + len(word) + 1 > chars:
            return text
        text += (" " if text else "") + word
    return text


def total_events(engine: Engine) -> int:
    return sum(d.events for service in engine.services.values() for d in service.deployments.values())


def test_the_estimate_follows_what_the_state_really_takes() -> None:
    """Calibration: the estimate of hostile state is within 25% of what tracemalloc sees (caches apart), and an
    evicted service gives its bytes back."""
    engine = Engine(caps=Caps(memory_budget_bytes=1 << 40))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(600):
            engine.observe(f"svc-{index % 20}", "v1", hostile(index), 1000.0 + index, host=f"h{index % 3}")
        for service in engine.services.values():
            service.miner.clear_caches()
        for caches in masking._SHARED_CACHES.values():  # shared by every engine: not the engine's state
            for cache in caches:
                cache.clear()
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    estimate = engine.memory.used_bytes
    assert 0.8 * traced < estimate < 1.25 * traced, (estimate, traced)
    assert estimate == sum(service.bytes for service in engine.services.values())
    engine.evict_service("svc-0")
    assert engine.memory.used_bytes == sum(service.bytes for service in engine.services.values())


def test_the_budget_degrades_in_order_and_counts_stay_exact() -> None:
    """Old deployments with detail, then a flood of new event types: examples are shortened first, then the old
    deployments are summarised (each service's newest kept), then the flooding services are closed to new event
    types (counted as other). The estimate never passes the budget and every event is counted."""
    budget = 8 * MIB
    engine = Engine(caps=Caps(memory_budget_bytes=budget))
    fed = 0
    for index in range(300):  # old deployments: 30 event types each, long examples
        engine.observe(f"svc-{index % 10}", "v1", f"old event {letters(index % 30)} " + "x" * 3000, float(index))
        fed += 1
    assert not engine.memory.degradations
    highest = 0
    for index in range(2000):
        engine.observe(f"svc-{index % 10}", "v2", hostile(index), 1000.0 + index)
        fed += 1
        highest = max(highest, engine.memory.used_bytes)
    memory = engine.memory
    assert highest <= budget, highest
    assert total_events(engine) == fed
    assert list(memory.degradations) == ["examples", "deployments", "templates"]
    assert memory.degradations["deployments"] == 10 and memory.degradations["templates"] == 10
    for service in engine.services.values():
        old, new = service.deployments["v1"], service.deployments["v2"]
        assert old.summarised and not old.stats and old.other.count == old.events == 30
        assert not new.summarised and new.other.count > 0  # new event types past the closing, counted as other
        assert service.miner.closed
        examples = [e for stats in new.stats.values() for e in stats.examples]
        assert examples and all(len(e.encode()) <= SHORT_EXAMPLE_BYTES + 40 for e in examples)
    verdict = analyze(engine.services["svc-1"], "v2", ["v1"])
    assert verdict.degraded == [REASONS["examples"], REASONS["deployments"], REASONS["templates"]]


def test_a_service_under_the_budget_is_not_degraded() -> None:
    engine = Engine(caps=Caps(memory_budget_bytes=64 * MIB))
    for index in range(500):
        engine.observe("svc", "v2" if index % 2 else "v1", f"request {index} served in {index} ms", float(index))
    assert engine.memory.used_bytes < 64 * MIB * SOFT
    assert not engine.memory.degradations
    assert analyze(engine.services["svc"], "v2", ["v1"]).degraded == []


def test_freed_memory_reopens_closed_services() -> None:
    engine = Engine(caps=Caps(memory_budget_bytes=4 * MIB))
    for index in range(1000):
        engine.observe(f"svc-{index % 4}", "v1", hostile(index), float(index))
    assert engine.memory.closed == {f"svc-{n}" for n in range(4)}
    for name in ("svc-0", "svc-1", "svc-2"):
        engine.evict_service(name)
    assert not engine.memory.closed and not engine.services["svc-3"].miner.closed
    before = len(engine.services["svc-3"].miner)
    engine.observe("svc-3", "v1", hostile(5000), 5000.0)
    assert len(engine.services["svc-3"].miner) == before + 1


def test_a_restart_restores_under_the_same_budget_with_counts_exact(tmp_path: Path) -> None:
    """The store holds what the budget left; a restart with the same budget loads it (a few services at a time)
    within the budget, with every count, and verdicts still say what was given up."""
    budget = 16 * MIB
    state = make_state(tmp_path, memory_budget_bytes=budget)
    for index in range(2000):
        state.engine.observe(f"svc-{index % 40}", "v1", hostile(index), 1000.0 + index)
    events = total_events(state.engine)
    assert events == 2000
    assert state.engine.memory.degradations["templates"] > 0
    running = state.engine.memory.used_bytes
    asyncio.run(state.checkpoint())
    state.store.close()

    restored = make_state(tmp_path, memory_budget_bytes=budget)
    assert total_events(restored.engine) == events
    assert restored.engine.memory.used_bytes <= max(running, budget)
    assert REASONS["templates"] in analyze(restored.engine.services["svc-3"], "v1", ["v1"]).degraded
    restored.store.close()
