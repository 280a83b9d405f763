"""How often one template occurred in one deployment: counts, 10-second buckets, hosts, highest level and a few
verbatim examples, each bounded (``MAX_*``); and the severity ranks levels are counted by.

What a template's stats grow by is returned to the engine (:mod:`logcanary.engine.memory`), so its estimate of the
state follows it without walking anything.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from logcanary.common.text import truncate_bytes
from logcanary.engine.memory import BUCKET_BYTES, HOST_BYTES, short_example

BUCKET_SECONDS = 10
MAX_EXAMPLES = 5
MAX_EXAMPLE_BYTES = 4096  # an example keeps this head of a longer message (UTF-8), marked truncated
_SURELY_SHORT = MAX_EXAMPLE_BYTES // 4  # characters: a UTF-8 character is at most 4 bytes
MAX_HOSTS = 64
MAX_BUCKETS = 720  # two hours of 10-second buckets per template and deployment: enough for any window

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

    def add(self, timestamp: float, host: str, level: int, message: str, short: bool = False) -> int:
        """Counts one occurrence; returns the bytes the stats grew by (logcanary.engine.memory), mostly 0.
        ``short``: the memory budget was reached, a new example keeps a short head."""
        grown = 0
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

    def merge(self, other: TemplateStats) -> None:
        """Folds another template's stats into this one (used when templates merge)."""
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

    def count_between(self, start: float, end: float) -> int:
        """Occurrences in the buckets that overlap [start, end): exact to a bucket (10 s)."""
        if start <= self.first_seen and self.last_seen < end:
            return self.count
        first_bucket = start - BUCKET_SECONDS
        return sum(n for bucket, n in self.buckets.items() if first_bucket < bucket < end)
