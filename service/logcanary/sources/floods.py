"""Every Loki line at one nanosecond, when more lines share it than one page holds.

Loki pages by time only: with more than ``limit`` lines at one timestamp, a query returns ``limit`` of
them (the first ingested, measured) and no offset reaches the rest; ``direction=backward`` returns the
*same* lines when they span several streams. So the lines at that nanosecond are split by their text, with
line filters Loki evaluates itself:

* a part is the lines whose text lies in ``[low, high)`` (code point order), minus some exact texts. Two
  regex filters say so (``|~ "at least low"`` and ``!~ "at least high"``), built to nest only past the
  prefix that ``low`` and ``high`` share, which every line between them shares too;
* a part that fills a page is cut at the median of the lines Loki returned, at the shortest prefix that
  separates the median from its neighbour: both halves are smaller, so the split ends;
* when all the lines returned have one text, that text becomes a part of its own (``^text$``) and is
  excluded from the rest. If that part is still full (the same text in many streams), its streams
  (``/loki/api/v1/series``) are halved by the values of the label that tells most of them apart
  (``pod=~"a|b"``), down to single streams: a few queries for thousands of streams, not one each.

Parts are disjoint and cover the timestamp, so each line is delivered once. What cannot be split is said,
never skipped: more than ``limit`` lines of *one* stream with one timestamp and one text (Loki keeps those
when their structured metadata differ) raise :class:`SourceLimitExceeded`, as does a split needing more than
``max_split_queries`` queries or a bound nesting deeper than Go's regex parser allows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from logcanary.sources import logql
from logcanary.sources.base import PulledLine, SourceError, SourceLimitExceeded

if TYPE_CHECKING:
    from logcanary.sources.loki import LokiSource, Page

MAX_NESTING = 500  # Go's regexp parser refuses nesting deeper than 1000


@dataclass(frozen=True, slots=True)
class Streams:
    """The streams (of ``members``, the series at the timestamp) whose labels have the allowed values."""

    members: tuple[Mapping[str, str], ...]
    allowed: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (label, values; "" = the label is absent)

    def matchers(self) -> list[str]:
        return [logql.label_matcher(name, list(values)) for name, values in self.allowed]

    def halves(self) -> list[Streams]:
        """Two disjoint groups covering these streams, split by the label with the most distinct values."""
        names = {name for labels in self.members for name in labels}
        best = max(sorted(names), key=lambda name: len({labels.get(name, "") for labels in self.members}))
        values = sorted({labels.get(best, "") for labels in self.members})
        kept = [(name, allowed) for name, allowed in self.allowed if name != best]
        groups = []
        for part in (values[: len(values) // 2], values[len(values) // 2 :]):
            members = tuple(labels for labels in self.members if labels.get(best, "") in part)
            groups.append(Streams(members, (*kept, (best, tuple(part)))))
        return groups


@dataclass(frozen=True, slots=True)
class Part:
    """Lines at the timestamp with ``low <= text < high`` (no ``high``: unbounded) minus ``excluded``, or
    exactly the text ``exact``; in the ``streams`` group only, if given."""

    low: str = ""
    high: str | None = None
    excluded: tuple[str, ...] = ()
    exact: str | None = None
    streams: Streams | None = None

    def query(self, query: str) -> str:
        base = query if self.streams is None else logql.narrow(query, self.streams.matchers())
        if self.exact is not None:
            return f"{base} |~ {logql.quote_string(logql.exactly(self.exact))}"
        common = logql.common_prefix(self.low, self.high) if self.high is not None else ""
        filters = [base]
        if self.low:
            filters.append(f"|~ {logql.quote_string(logql.at_least(self.low, common))}")
        if self.high is not None:
            filters.append(f"!~ {logql.quote_string(logql.at_least(self.high, common))}")
        filters += [f"!~ {logql.quote_string(logql.exactly(text))}" for text in self.excluded]
        return " ".join(filters)


async def drain_timestamp(source: LokiSource, query: str, page: Page) -> AsyncIterator[list[PulledLine]]:
    """Every line of ``query`` at ``page.last``, given a full ``page`` of lines all at that timestamp."""
    timestamp = page.last
    stack: list[tuple[Part, Page | None]] = [(Part(), page)]
    queries = 0
    while stack:
        part, known = stack.pop()
        if known is None:
            queries += 1
            if queries > source.max_split_queries:
                raise SourceLimitExceeded(
                    f"splitting the lines at timestamp {timestamp} took more than {source.max_split_queries} "
                    "queries: narrow the query",
                    source=source.kind,
                )
            known = await source.query_range(part.query(query), timestamp, timestamp + 1, source.page_limit)
        if not known.full:
            if known.count:
                yield source.lines(known)
            continue
        children = await _split(source, query, timestamp, part, known.texts())
        stack.extend((child, None) for child in reversed(children))


async def _split(source: LokiSource, query: str, timestamp: int, part: Part, texts: list[str]) -> list[Part]:
    if part.exact is not None:
        group = part.streams or Streams(tuple(await source.series(query, timestamp, timestamp + 1)))
        if len(group.members) > 1:
            return [dataclasses.replace(part, streams=half) for half in group.halves()]
        if not group.members:
            raise SourceError(
                f"Loki listed no stream at timestamp {timestamp} it returned lines of", source=source.kind
            )
        raise SourceLimitExceeded(
            f"more than {source.page_limit} lines of one stream share timestamp {timestamp} and the text "
            f"{_clip(part.exact)!r} (they differ only in structured metadata): Loki returns no more of them",
            source=source.kind,
        )
    texts.sort()
    if texts[0] == texts[-1]:
        text = texts[0]
        return [Part(exact=text), dataclasses.replace(part, excluded=(*part.excluded, text))]
    cut = _cut(texts)
    bound = texts[cut][: len(logql.common_prefix(texts[cut - 1], texts[cut])) + 1]
    below = logql.common_prefix(part.low, bound)
    above = logql.common_prefix(bound, part.high) if part.high is not None else ""
    if len(bound) - min(len(below), len(above)) > MAX_NESTING:
        raise SourceLimitExceeded(
            f"the lines at timestamp {timestamp} share prefixes longer than {MAX_NESTING} characters: "
            "Loki's regex filters cannot split them",
            source=source.kind,
        )
    return [
        Part(part.low, bound, tuple(t for t in part.excluded if t < bound)),
        Part(bound, part.high, tuple(t for t in part.excluded if t >= bound)),
    ]


def _cut(texts: list[str]) -> int:
    """The index nearest the middle of sorted ``texts`` (not all equal) where the text changes."""
    middle = len(texts) // 2
    for offset in range(len(texts)):
        for index in (middle - offset, middle + offset):
            if 0 < index < len(texts) and texts[index - 1] < texts[index]:
                return index
    raise ValueError("all texts are equal")


def _clip(text: str, size: int = 120) -> str:
    return text if len(text) <= size else text[:size] + "…"
