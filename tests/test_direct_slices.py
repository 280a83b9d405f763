"""The direct consumer counts a partition's run of records in one go, yet every slice ends between two records."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from logcanary.ingestion.kafka.direct import DirectConsumer
from logcanary.ingestion.kafka.metrics import IngestMetrics
from logcanary.ingestion.records import DecodedBatch
from logcanary.live import engine as live_engine
from logcanary.live.engine import EngineWrite
from logcanary.live.single_node import SingleNode
from logcanary.settings import Settings
from logcanary.store.sqlite import SqliteStore


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int


# (partition, offset, events in the record): records of several events (OTLP batches), none (rejected), one.
RECORDS = [(0, 0, 1), (0, 1, 3), (0, 2, 0), (0, 3, 2), (0, 4, 1), (1, 10, 2), (1, 11, 1), (1, 12, 3)]


def counted(state: SingleNode) -> int:
    return sum(model.events for service in state.engine.services.values() for model in service.deployments.values())


def test_every_slice_ends_between_two_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Settings(state_dir=tmp_path)
    state = SingleNode(config, config, SqliteStore(config.state_file))
    state.load()
    consumer = DirectConsumer(
        config.kafka, config.limits, state, IngestMetrics(state.metrics.registry, stalled=lambda: False), 5.0, 5.0
    )
    keys = {0: ("logs", 0), 1: ("logs", 1)}  # one key object per partition, as RawLogConsumer.process makes them
    fetched: list[tuple[tuple[str, int], Any]] = []
    batch = DecodedBatch()
    for partition, offset, size in RECORDS:
        fetched.append((keys[partition], Record("logs", partition, offset)))
        batch.events += [("svc", "v1", f"event {offset} {n}", 1.7e9, "h", "info", ()) for n in range(size)]
        batch.ends.append(len(batch.events))
    state.offsets = {keys[0]: 0, keys[1]: 11}  # partition 1's first record was counted before
    before = {
        key: {o: sum(s for p, r, s in RECORDS if keys[p] == key and r < o) for o in range(20)} for key in keys.values()
    }
    cuts: list[tuple[dict[tuple[str, int], int], int]] = []
    pause = EngineWrite.pause

    async def recorded(write: EngineWrite) -> None:
        cuts.append((dict(state.offsets), counted(state)))
        await pause(write)

    monkeypatch.setattr(live_engine, "SLICE_SECONDS", 0.0)  # every check says the slice is used up
    monkeypatch.setattr(EngineWrite, "pause", recorded)
    assert asyncio.run(consumer.handle(fetched, batch)) == 1  # partition 1's offset 10
    assert len(cuts) >= 6
    for offsets, events in cuts:  # what a checkpoint taken at any pause would save: whole records, and their offsets
        assert events == sum(before[key][offset] for key, offset in offsets.items()) - before[keys[1]][11]
    assert state.offsets == {keys[0]: 5, keys[1]: 13}
    assert counted(state) == 7 + 4
