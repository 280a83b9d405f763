"""Scale-out analyses: the shared store is the truth, and each running analysis is evaluated by one replica at a
time, the one holding its lease (renewed at every pass, :data:`LEASE_SECONDS` long). When that replica dies or
stops, its lease runs out and another takes the analysis over, from the verdict last saved. Only the holder
publishes the analysis' gauges, and an end is counted and notified only once the store kept that replica's
completion (a replica whose lease ran out may have completed it too)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from logcanary.engine.model import ServiceModel
from logcanary.live.scale_out import ScaleOut
from logcanary.settings import AnalysisSettings
from logcanary.store.base import AnalysisRecord, SharedRepository
from logcanary.verification.analyses import Analyses, Retention
from logcanary.verification.errors import UnknownAnalysis
from logcanary.verification.pulling import Pulls
from logcanary.verification.rules import Rules
from logcanary.verification.verdicts import Verdicts
from logcanary.verification.writer import StoreWriter

LEASE_SECONDS = 10.0  # a running analysis whose evaluator was silent this long is taken over


class LeasedAnalyses(Analyses):
    def __init__(
        self,
        state: ScaleOut,
        repository: SharedRepository,
        write: StoreWriter,
        verdicts: Verdicts,
        rules: Rules,
        config: AnalysisSettings,
        retention: Retention,
        pulls: Pulls,
    ) -> None:
        super().__init__(state, repository, write, verdicts, rules, config, retention, pulls)
        self.node = state
        self.shared: SharedRepository = repository

    def load(self) -> None:
        """Reads analyses, feedback and marks; the analysis loop leases running analyses (no gauges until then)."""
        self._read()

    async def refresh(self) -> None:
        """Reads analyses, feedback and marks again, so a list answers what another replica just added."""
        await self.write(self._read)

    async def find(self, analysis_id: str) -> AnalysisRecord:
        """An analysis as every replica sees it, read from the store (another replica may have created it, or
        evaluated it since)."""
        record = await self.write(self.shared.load_analysis, analysis_id)
        if record is None:
            raise UnknownAnalysis(f"no analysis {analysis_id!r}")
        self.records[record.id] = record
        return record

    async def release(self, release: str) -> list[AnalysisRecord]:
        """The analyses of one release as every replica sees them, read from the store by its release column."""
        records = await self.write(self.shared.load_release, release)
        self.records.update((record.id, record) for record in records)
        return records

    async def _created(self, record: AnalysisRecord, model: ServiceModel, now: float) -> None:
        """Evaluated once without gauges, saved, then leased by whichever replica takes it (this one, unless busy
        elsewhere)."""
        done = await self._evaluate(record, now, model, publish=False)
        await self._save(record)
        if done:
            self._announce(record)
        await self.evaluate_running()

    async def evaluate_running(self) -> None:
        await self.write(self._read)
        node = self.node
        now = time.time()
        leased = await self.write(self.shared.lease_analyses, node.replica_id, now, now + LEASE_SECONDS)
        held = set()
        for record in leased:
            model = await node.read_service(record.service) or node.engine.peek_service(record.service)
            self.records[record.id] = record
            held.add(record.id)
            completed = record.status == "running" and await self._evaluate(record, time.time(), model)
            if completed:
                held.discard(record.id)
            saved = await self.write(self.shared.save_leased_analysis, dataclasses.replace(record), node.replica_id)
            if not saved:  # another replica took it over (this one stalled past the lease): its gauges go, and
                held.discard(record.id)  # the end is that replica's to count and notify
                self.gauges.unpublish(record)
                await self.pulls.drop(record.id)
            elif completed:
                self._announce(record)  # the store kept this replica's completion: counted and notified once
            await asyncio.sleep(0)
        for analysis_id in self.gauges.published - held:
            lost = self.records.get(analysis_id)
            if lost is not None:
                self.gauges.unpublish(lost)
            await self.pulls.drop(analysis_id)  # its new holder pulls the window afresh
