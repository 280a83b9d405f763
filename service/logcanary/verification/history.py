"""History you can query: analyses filtered by where they belong (environment, service, release, labels), by
verdict and time, read a page at a time with a cursor, and counted by day, environment or service.

Pure functions over the records an :class:`~logcanary.verification.analyses.Analyses` holds: the filters, the
order and the counts are defined once here, for the list, the summary and the overview page.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import orjson

from logcanary.schemas import AnalysisStatus, VerdictName
from logcanary.store.base import AnalysisRecord
from logcanary.verification.errors import BadQuestion

SummaryBy = Literal["day", "environment", "service"]
NO_ENVIRONMENT = "(none)"  # the group of analyses that name no environment (those stored before they could)


@dataclass(frozen=True, slots=True)
class AnalysisFilter:
    """Which analyses a list or a summary is about; every field left None (or empty) lets all through."""

    environment: str | None = None
    service: str | None = None
    release: str | None = None
    verdict: VerdictName | None = None  # the verdict published: final once completed, the current one while running
    status: AnalysisStatus | None = None
    labels: tuple[tuple[str, str], ...] = ()  # each key=value must be among the analysis' labels
    since: float | None = None  # started at or after (epoch seconds)
    until: float | None = None  # started before

    def matches(self, record: AnalysisRecord) -> bool:
        request = record.request
        verdict = record.verdict.verdict if record.verdict is not None else None
        return (
            (self.environment is None or request.environment == self.environment)
            and (self.service is None or record.service == self.service)
            and (self.release is None or request.release == self.release)
            and (self.verdict is None or verdict == self.verdict)
            and (self.status is None or record.status == self.status)
            and all(request.labels.get(key) == value for key, value in self.labels)
            and (self.since is None or record.started_at >= self.since)
            and (self.until is None or record.started_at < self.until)
        )


def parse_labels(values: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``key=value`` filters; BadQuestion (400) for one without ``=``."""
    labels = []
    for value in values:
        key, equals, wanted = value.partition("=")
        if not equals or not key:
            raise BadQuestion(f"label filter {value!r}: give key=value")
        labels.append((key, wanted))
    return tuple(labels)


def newest_first(records: Iterable[AnalysisRecord]) -> list[AnalysisRecord]:
    """The history's one order: newest start first, ties by id (so a cursor never skips or repeats one)."""
    return sorted(records, key=lambda r: (r.started_at, r.id), reverse=True)


def encode_cursor(record: AnalysisRecord) -> str:
    """An opaque cursor: the list goes on after this record (its start and id)."""
    return base64.urlsafe_b64encode(orjson.dumps([record.started_at, record.id])).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        started_at, analysis_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return float(started_at), str(analysis_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise BadQuestion(f"cursor {cursor!r} is not one this service gave") from exc


def page(
    records: Iterable[AnalysisRecord], query: AnalysisFilter, limit: int, cursor: str | None = None
) -> tuple[list[AnalysisRecord], str | None]:
    """One page of the matching records, newest first, after ``cursor``; and the cursor of the next page (None:
    this is the last). An analysis created meanwhile never shifts a page: cursors are positions, not offsets."""
    after = _decode_cursor(cursor) if cursor else None
    chosen: list[AnalysisRecord] = []
    for record in newest_first(r for r in records if query.matches(r)):
        if after is not None and (record.started_at, record.id) >= after:
            continue
        if len(chosen) == limit:
            return chosen, encode_cursor(chosen[-1])
        chosen.append(record)
    return chosen, None


def day_of(at: float) -> str:
    """The UTC day of an epoch time, as 2026-12-07."""
    return datetime.fromtimestamp(at, UTC).date().isoformat()


@dataclass(slots=True)
class Counts:
    """Analyses of one group: by the verdict they published, and how many are running or were cancelled."""

    key: str
    analyses: int = 0
    passed: int = 0
    failed: int = 0
    inconclusive: int = 0
    running: int = 0
    cancelled: int = 0

    def add(self, record: AnalysisRecord) -> None:
        self.analyses += 1
        if record.status == "running":
            self.running += 1
        elif record.status == "cancelled":
            self.cancelled += 1
        elif record.verdict is None or record.verdict.verdict == "inconclusive":
            self.inconclusive += 1
        elif record.verdict.verdict == "pass":
            self.passed += 1
        else:
            self.failed += 1

    @property
    def success_rate(self) -> float | None:
        """Passed among the completed (pass, fail, inconclusive): running and cancelled ones are not decided."""
        decided = self.passed + self.failed + self.inconclusive
        return None if decided == 0 else self.passed / decided


def summarize(records: Iterable[AnalysisRecord], query: AnalysisFilter, by: SummaryBy) -> list[Counts]:
    """The matching analyses counted per day (UTC, of their start; oldest first), environment or service (most
    analyses first)."""
    groups: dict[str, Counts] = {}
    days: dict[int, str] = {}  # UTC day number -> its name, formatted once per day
    for record in records:
        if not query.matches(record):
            continue
        if by == "day":
            number = int(record.started_at // 86_400)
            key = days.get(number) or days.setdefault(number, day_of(number * 86_400.0))
        elif by == "environment":
            key = record.request.environment or NO_ENVIRONMENT
        else:
            key = record.service
        groups.setdefault(key, Counts(key)).add(record)
    if by == "day":
        return sorted(groups.values(), key=lambda c: c.key)
    return sorted(groups.values(), key=lambda c: (-c.analyses, c.key))
