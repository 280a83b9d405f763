"""History you can query, as a use case: lists, summaries and releases over every analysis, computed in a worker
thread over a snapshot of the analyses taken on the loop. 20,000 kept analyses (LOGCANARY_RETENTION_ANALYSES_MAX)
take tens of milliseconds to filter, sort and count: the loop that ingests and answers must not wait for that.

Answers are JSON bytes, serialised in that thread too: a thousand releases or a hundred analyses with their verdicts
take longer to encode than to find. The snapshot is a list of the records as they are; the analysis loop may
replace a running one's verdict meanwhile, which a read then sees either before or after, never half-changed (a
reference replaced at once)."""

from __future__ import annotations

import asyncio

from pydantic import TypeAdapter

from logcanary.store.base import AnalysisRecord
from logcanary.verification.analyses import Analyses
from logcanary.verification.history import AnalysisFilter, Counts, SummaryBy, page, summarize
from logcanary.verification.models import AnalysesSummary, AnalysisOut, ReleaseOut, SummaryGroup
from logcanary.verification.releases import judge_releases


class History:
    def __init__(self, analyses: Analyses) -> None:
        self.analyses = analyses

    async def _snapshot(self) -> list[AnalysisRecord]:
        await self.analyses.refresh()  # scale-out: what every replica holds
        return list(self.analyses.records.values())

    async def page(
        self, query: AnalysisFilter, limit: int, cursor: str | None, base_url: str | None
    ) -> tuple[bytes, str | None]:
        """One page of analyses (a JSON list of AnalysisOut), newest first, and the next page's cursor (None: the
        last page)."""
        records = await self._snapshot()

        def run() -> tuple[bytes, str | None]:
            chosen, following = page(records, query, limit, cursor)
            return _ANALYSES.dump_json([AnalysisOut.of(record, base_url) for record in chosen]), following

        return await asyncio.to_thread(run)

    async def summary(self, query: AnalysisFilter, by: SummaryBy) -> bytes:
        """An AnalysesSummary, as JSON."""
        records = await self._snapshot()

        def run() -> bytes:
            matching = [record for record in records if query.matches(record)]
            total = Counts("all")
            for record in matching:
                total.add(record)
            groups = [SummaryGroup.of(counts) for counts in summarize(matching, AnalysisFilter(), by)]
            return AnalysesSummary(by=by, groups=groups, total=SummaryGroup.of(total)).model_dump_json().encode()

        return await asyncio.to_thread(run)

    async def releases(self, query: AnalysisFilter, limit: int, base_url: str | None) -> bytes:
        """The newest ``limit`` releases the filter lets through (a JSON list of ReleaseOut)."""
        records = await self._snapshot()

        def run() -> bytes:
            return _RELEASES.dump_json(
                [ReleaseOut.of(judged, base_url) for judged in judge_releases(records, query, limit)]
            )

        return await asyncio.to_thread(run)


_ANALYSES = TypeAdapter(list[AnalysisOut])
_RELEASES = TypeAdapter(list[ReleaseOut])
