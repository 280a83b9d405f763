"""How often one template occurred in one deployment: counts, 10-second buckets, hosts, highest level, a few
verbatim examples and the values logged at its variable positions, each bounded (``MAX_*``); and the severity ranks
levels are counted by.

What a template's stats grow by is returned to the engine (:mod:`logcanary.engine.memory`), so its estimate of the
state follows it without walking anything.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from logcanary.common.text import truncate_bytes
from logcanary.engine.masking import WILDCARD, mask_values
from logcanary.engine.memory import BUCKET_BYTES, HOST_BYTES, VALUE_KEY_BYTES, short_example

BUCKET_SECONDS = 10
MAX_EXAMPLES = 5
MAX_EXAMPLE_BYTES = 4096  # an example keeps this head of a longer message (UTF-8), marked truncated
_SURELY_SHORT = MAX_EXAMPLE_BYTES // 4  # characters: a UTF-8 character is at most 4 bytes
MAX_HOSTS = 64
MAX_BUCKETS = 720  # two hours of 10-second buckets per template and deployment: enough for any window
MAX_VALUE_POSITIONS = 8  # a template's variable positions whose values are counted, at most (the first ones)
MAX_VALUES = 64  # distinct combinations of those values counted per template and deployment
MAX_POSITION_VALUES = 32  # a position showing more distinct values holds ids or numbers: no longer counted

_SEVERITY = {
    "trace": 0, "debug": 0, "fine": 0, "finer": 0, "finest": 0,
    "info": 1, "information": 1, "notice": 1, "": 1,
    "warn": 2, "warning": 2,
    "error": 3, "err": 3, "severe": 3, "exception": 3,
    "fatal": 4, "critical": 4, "crit": 4, "alert": 4, "emerg": 4, "emergency": 4, "panic": 4,
}  # fmt: skip
SEVERITY_NAMES = ("debug", "info", "warn", "error", "fatal")
_SEVERITY_SEEN: dict[str, int] = {}


def clip_example(message: str) -> str:
    """The message as an example keeps it: whole, or its first ``MAX_EXAMPLE_BYTES`` (UTF-8) followed by
    `` …[truncated N bytes]``, the marker ingestion uses for messages past LOGCANARY_MAX_MESSAGE_BYTES. N counts
    from the original message: a message ingestion already cut adds the bytes its marker says were dropped."""
    return truncate_bytes(message, MAX_EXAMPLE_BYTES, recut=True)[0]


def severity(level: str) -> int:
    """0 debug, 1 info, 2 warn, 3 error, 4 fatal; unknown levels count as info."""
    rank = _SEVERITY_SEEN.get(level)
    if rank is None:
        rank = _SEVERITY.get(level.strip().lower(), 1)
        if len(_SEVERITY_SEEN) < 1024:  # level spellings are few; a flood of junk levels is not cached
            _SEVERITY_SEEN[level] = rank
    return rank


@dataclass(slots=True)
class TemplateStats:
    """How often one template occurred in one deployment, when, where, and how it looked."""

    count: int = 0
    first_seen: float = float("inf")
    last_seen: float = float("-inf")
    max_severity: int = 0
    hosts: dict[str, int] = field(default_factory=dict)
    other_hosts: int = 0  # occurrences on hosts beyond MAX_HOSTS
    examples: list[str] = field(default_factory=list)
    buckets: dict[int, int] = field(default_factory=dict)  # bucket start (epoch s) -> count
    # Values: the words logged at some variable positions of the template (``positions``, of a template of ``width``
    # tokens), counted by combination (a word for one position, else a tuple), so that one value of a known event
    # rising can be told (logcanary.analysis.values). Positions holding ids or numbers are dropped as they show it.
    positions: tuple[int, ...] = ()
    width: int = 0
    values: dict[Any, int] = field(default_factory=dict)
    value_bytes: int = 0  # the values' estimated memory (logcanary.engine.memory)
    pick: Callable[[Sequence[str]], Any] | None = None  # the positions' words of a message's words

    def track(self, tokens: Sequence[str], words: Sequence[str] | None = None) -> None:
        """Counts values from now on at the template's variable positions whose word (in ``words``, the first
        message's) is not a value alone: numbers, ids, addresses and times are never counted. Without ``words`` (stats
        restored from before values were counted: no first message to tell words from numbers), at every variable
        position: numbers are left out when read, and positions of ids go when crowded."""
        positions = [
            index for index, token in enumerate(tokens) if WILDCARD in token and (words is None or _wordy(words[index]))
        ]
        self.width = len(tokens)
        self._count_at(tuple(positions[:MAX_VALUE_POSITIONS]))

    def _count_at(self, positions: tuple[int, ...]) -> None:
        self.positions = positions
        self.pick = itemgetter(*positions) if positions else None

    def add(
        self,
        timestamp: float,
        host: str,
        level: int,
        message: str,
        short: bool = False,
        words: Sequence[str] | None = None,
    ) -> int:
        """Counts one occurrence; returns the bytes the stats grew by (logcanary.engine.memory), mostly 0.
        ``short``: the memory budget was reached, a new example keeps a short head. ``words``: the message's, one per
        template token (see :meth:`track`)."""
        grown = 0
        pick = self.pick
        if pick is not None and words is not None:
            try:
                value = pick(words)
            except IndexError:  # cannot happen (a template's messages have its width of words); costs nothing if not
                self.forget_values()
            else:
                values = self.values
                seen = values.get(value)
                if seen is None:
                    grown += self._new_value(value, words)
                else:
                    values[value] = seen + 1
        self.count += 1
        # Comparisons, not min()/max(): this runs once per event.
        if timestamp < self.first_seen:
            self.first_seen = timestamp
        if timestamp > self.last_seen:
            self.last_seen = timestamp
        if level > self.max_severity:
            self.max_severity = level
        hosts = self.hosts
        if host in hosts:
            hosts[host] += 1
        elif len(hosts) < MAX_HOSTS:
            hosts[host] = 1
            grown += HOST_BYTES + sys.getsizeof(host)
        else:
            self.other_hosts += 1
        if len(self.examples) < MAX_EXAMPLES and message not in self.examples:
            if short:
                example = short_example(message)
            else:
                example = message if len(message) <= _SURELY_SHORT else clip_example(message)
            if example not in self.examples:
                self.examples.append(example)
                grown += 8 + sys.getsizeof(example)
        bucket = int(timestamp // BUCKET_SECONDS) * BUCKET_SECONDS
        buckets = self.buckets
        seen = buckets.get(bucket)
        if seen is None:
            buckets[bucket] = 1
            if len(buckets) > MAX_BUCKETS:
                del buckets[min(buckets)]
            else:
                grown += BUCKET_BYTES
        else:
            buckets[bucket] = seen + 1
        return grown

    def _new_value(self, value: Any, words: Sequence[str]) -> int:
        """Counts a combination of values not seen before; when they are too many, the positions holding ids or
        numbers are dropped first (:meth:`_crowded`). Returns the bytes the values grew by."""
        before = self.value_bytes
        if len(self.values) >= MAX_VALUES:
            self._crowded()
            if self.pick is None:
                return self.value_bytes - before
            value = self.pick(words)
            if value in self.values:
                self.values[value] += 1
                return self.value_bytes - before
        self.values[value] = 1
        self.value_bytes += _value_bytes(value)
        return self.value_bytes - before

    def _crowded(self) -> None:
        """Too many combinations: drops the positions with more than ``MAX_POSITION_VALUES`` distinct values, then
        the position with the most, until the combinations fit in half the room."""
        while self.positions:
            keys = self._keys()
            distinct = [len({key[i] for key in keys}) for i in range(len(self.positions))]
            kept = tuple(p for p, n in zip(self.positions, distinct, strict=True) if n <= MAX_POSITION_VALUES)
            if kept == self.positions:
                if len(self.values) <= MAX_VALUES // 2:
                    return
                busiest = max(range(len(kept)), key=distinct.__getitem__)
                kept = kept[:busiest] + kept[busiest + 1 :]
            self._reproject(kept)

    def value_rows(self) -> list[tuple[list[str], int]]:
        """The counted combinations as (words, count) rows, for the store."""
        return [(list(key), count) for key, count in zip(self._keys(), self.values.values(), strict=True)]

    def restore_values(self, positions: Sequence[int], width: int, rows: Sequence[tuple[Sequence[str], int]]) -> None:
        """Counts again what :meth:`value_rows` stored (rows of another length than the positions are skipped)."""
        self.width = width
        self._count_at(tuple(positions))
        single = len(self.positions) == 1
        for words, count in rows:
            if len(words) == len(self.positions):
                key = words[0] if single else tuple(words)
                self.values[key] = self.values.get(key, 0) + count
        self.value_bytes = sum(map(_value_bytes, self.values))

    def forget_values(self) -> None:
        """Counts no value any more (and frees what was counted)."""
        self._reproject(())

    def _keys(self) -> list[tuple[str, ...]]:
        """The counted combinations as tuples (one position's are words)."""
        return [key if isinstance(key, tuple) else (key,) for key in self.values]

    def _project(self, key: tuple[str, ...], kept: Sequence[int]) -> Any:
        picked = tuple(word for position, word in zip(self.positions, key, strict=True) if position in kept)
        return picked[0] if len(picked) == 1 else picked

    def _reproject(self, kept: tuple[int, ...]) -> None:
        """Counts the values at ``kept`` only (a subset of the positions), merging the combinations that now agree."""
        merged: dict[Any, int] = {}
        if kept:
            for key, count in zip(self._keys(), self.values.values(), strict=True):
                projected = self._project(key, kept)
                merged[projected] = merged.get(projected, 0) + count
        self.values = merged
        self.value_bytes = sum(map(_value_bytes, merged))
        self._count_at(kept)

    def value_counts(self) -> dict[int, dict[str, int]]:
        """Per counted position, each value's count (derived from the combinations)."""
        positions = self.positions
        if len(positions) == 1:
            return {positions[0]: dict(self.values)}
        out: dict[int, dict[str, int]] = {position: {} for position in positions}
        for key, count in self.values.items():
            for position, word in zip(positions, key):  # noqa: B905 (a key has one word per position)
                found = out[position]
                found[word] = found.get(word, 0) + count
        return out

    def merge(self, other: TemplateStats) -> None:
        """Folds another template's stats into this one (used when templates merge)."""
        self._merge_values(other)
        self.count += other.count
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        self.max_severity = max(self.max_severity, other.max_severity)
        for host, n in other.hosts.items():
            if host in self.hosts or len(self.hosts) < MAX_HOSTS:
                self.hosts[host] = self.hosts.get(host, 0) + n
            else:
                self.other_hosts += n
        self.other_hosts += other.other_hosts
        for example in other.examples:
            if len(self.examples) < MAX_EXAMPLES and example not in self.examples:
                self.examples.append(example)
        for bucket, n in other.buckets.items():
            self.buckets[bucket] = self.buckets.get(bucket, 0) + n

    def _merge_values(self, other: TemplateStats) -> None:
        """Folds another's values in, at the positions both count (a fresh stats takes the other's)."""
        if not self.count:
            self.width = other.width
            self._count_at(other.positions)
            self.values = dict(other.values)
            self.value_bytes = other.value_bytes
            return
        if self.width != other.width:
            self._reproject(())
            return
        kept = tuple(position for position in self.positions if position in other.positions)
        if kept != self.positions:
            self._reproject(kept)
        for key, count in zip(other._keys(), other.values.values(), strict=True):
            projected = other._project(key, kept)
            if projected in self.values:
                self.values[projected] += count
            elif kept:
                self.values[projected] = count
                self.value_bytes += _value_bytes(projected)
        if len(self.values) > MAX_VALUES:
            self._crowded()

    def count_between(self, start: float, end: float) -> int:
        """Occurrences in the buckets that overlap [start, end): exact to a bucket (10 s)."""
        if start <= self.first_seen and self.last_seen < end:
            return self.count
        first_bucket = start - BUCKET_SECONDS
        return sum(n for bucket, n in self.buckets.items() if first_bucket < bucket < end)


def _wordy(word: str) -> bool:
    """Whether a word (a key's value, for ``key=value``) holds letters once its numbers, ids and times are masked: a
    path, a name or a state, not a number, an id or a time alone."""
    if word.isalpha():
        return True
    key, sep, value = word.partition("=")
    if sep and key:
        word = value
    if not any(char.isdigit() for char in word):  # values are masked only where digits are
        return any(char.isalpha() for char in word)
    return any(char.isalpha() for char in mask_values(word).replace(WILDCARD, ""))


def _value_bytes(value: Any) -> int:
    """A combination's entry in the values (its words' strings are counted whole, though often shared)."""
    if isinstance(value, tuple):
        return VALUE_KEY_BYTES + 8 * len(value) + sum(map(sys.getsizeof, value))
    return VALUE_KEY_BYTES + sys.getsizeof(value)
