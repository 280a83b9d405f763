"""Releases: the analyses that share a ``release`` id, judged together.

A release of several services passes only when every service's canary passed. The rules, in order (README,
"Releases"):

1. Each service counts once: by its newest analysis in the release (a re-run replaces the one before).
2. ``fail`` when any service's verdict is ``fail`` (the current one while it runs: with ``fail_fast`` it completes
   at once; without, the gate waits for the end, and the fail it reports is final).
3. Otherwise ``inconclusive`` when any service is inconclusive, was cancelled, or has no verdict yet: one service
   not judged means the release is not judged.
4. Otherwise ``pass``.

The release is ``running`` while any of its counted analyses runs, ``completed`` once none does; only then is its
verdict final.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from logcanary.schemas import VerdictName
from logcanary.store.base import AnalysisRecord
from logcanary.verification.history import AnalysisFilter

ReleaseStatus = Literal["running", "completed"]


@dataclass(frozen=True, slots=True)
class ReleaseJudgement:
    """A release's counted analyses (one per service, by service name) and what they make together."""

    release: str
    analyses: list[AnalysisRecord]
    verdict: VerdictName
    status: ReleaseStatus
    reason: str


def service_verdict(record: AnalysisRecord) -> VerdictName:
    """One service's part in its release: a cancelled analysis, or one not evaluated yet, is inconclusive."""
    if record.status == "cancelled" or record.verdict is None:
        return "inconclusive"
    return record.verdict.verdict


def counted(records: Iterable[AnalysisRecord]) -> list[AnalysisRecord]:
    """The newest analysis of each service, by service name."""
    newest: dict[str, AnalysisRecord] = {}
    for record in records:
        held = newest.get(record.service)
        if held is None or (record.started_at, record.id) > (held.started_at, held.id):
            newest[record.service] = record
    return [newest[service] for service in sorted(newest)]


def judge_release(release: str, records: Iterable[AnalysisRecord]) -> ReleaseJudgement | None:
    """The combined verdict of a release's analyses (None: it has none)."""
    analyses = counted(records)
    if not analyses:
        return None
    verdicts = {record.service: service_verdict(record) for record in analyses}
    status: ReleaseStatus = "running" if any(r.status == "running" for r in analyses) else "completed"
    failed = [service for service, verdict in verdicts.items() if verdict == "fail"]
    open_ = [service for service, verdict in verdicts.items() if verdict == "inconclusive"]
    if failed:
        verdict: VerdictName = "fail"
        reason = f"{_names(failed)} failed"
    elif open_:
        verdict = "inconclusive"
        reason = f"{_names(open_)} not judged (inconclusive, cancelled or not evaluated yet)"
    else:
        verdict = "pass"
        reason = f"all {len(analyses)} service{'s' if len(analyses) != 1 else ''} passed"
    if status == "running":
        reason += "; still running"
    return ReleaseJudgement(release, analyses, verdict, status, reason)


def _names(services: list[str]) -> str:
    return ", ".join(services) if len(services) <= 5 else f"{', '.join(services[:5])} and {len(services) - 5} more"


def judge_releases(
    records: Iterable[AnalysisRecord], query: AnalysisFilter, limit: int | None = None
) -> list[ReleaseJudgement]:
    """The newest ``limit`` releases with an analysis that ``query`` lets through (but its verdict: a release is
    judged on all of its analyses, and kept when its combined verdict is the one asked for), newest start first.
    Only the releases shown are judged."""
    chosen = dataclasses.replace(query, verdict=None)
    members: dict[str, list[AnalysisRecord]] = {}
    wanted: set[str] = set()
    for record in records:
        release = record.request.release
        if release is None:
            continue
        members.setdefault(release, []).append(record)
        if release not in wanted and chosen.matches(record):
            wanted.add(release)
    starts = {release: min(r.started_at for r in members[release]) for release in wanted}
    judged: list[ReleaseJudgement] = []
    for release in sorted(wanted, key=lambda name: (starts[name], name), reverse=True):
        judgement = judge_release(release, members[release])
        if judgement is not None and (query.verdict is None or judgement.verdict == query.verdict):
            judged.append(judgement)
            if limit is not None and len(judged) == limit:
                break
    return judged
