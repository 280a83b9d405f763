"""Checkpoints: what changed is saved with the offsets; evicted deployments leave the store too."""

from __future__ import annotations

import asyncio
from pathlib import Path

from logcanary.live.single_node import SingleNode
from logcanary.settings import Settings
from logcanary.store.sqlite import SqliteStore


def make_state(tmp_path: Path, **settings: object) -> SingleNode:
    config = Settings(state_dir=tmp_path, **settings)  # type: ignore[arg-type]
    state = SingleNode(config, config, SqliteStore(config.state_file))
    state.load()
    return state


def test_checkpoint_round_trip_with_offsets_and_evictions(tmp_path: Path) -> None:
    state = make_state(tmp_path, max_deployments_per_service=2)
    for index, deployment in enumerate(["v1", "v2", "v3"]):
        for n in range(10):
            state.engine.observe("svc", deployment, f"request {n} served", float(index * 100 + n))
    state.offsets[("logs", 0)] = 30
    asyncio.run(state.checkpoint())
    state.store.close()

    restored = make_state(tmp_path, max_deployments_per_service=2)
    service = restored.engine.services["svc"]
    assert {name: model.events for name, model in service.deployments.items()} == {"v2": 10, "v3": 10}
    assert restored.offsets == {("logs", 0): 30}
    assert restored.engine.evicted == []
    restored.store.close()


def test_nothing_changed_writes_nothing(tmp_path: Path) -> None:
    state = make_state(tmp_path)
    state.engine.observe("svc", "v1", "hello", 1.0)
    asyncio.run(state.checkpoint())
    first = state.last_checkpoint
    asyncio.run(state.checkpoint())
    assert state.last_checkpoint == first
    state.store.close()
