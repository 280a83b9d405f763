"""The incremental cursor: where a followed query stands, small enough to checkpoint with the engine state.

A store like Loki accepts lines *late*: with a timestamp older than lines it already holds (Loki: up to an
hour behind its stream's newest line, and any age for a new stream). A cursor that only moved a time
position forward would miss them. So each follow re-scans the last ``lateness`` before its position and a
dedupe set drops what was already delivered.

Guarantee: a line is delivered at most once per cursor, and every line with a timestamp at or after
``floor`` that the store holds when a follow scans past it is delivered. ``floor`` is ``position -
lateness``, unless the dedupe set reached ``max_seen`` keys: then the floor rises (a ``lateness_shrunk``
notice says so) and lines arriving later than that, older than the floor, are not picked up. Keys are 64-bit
BLAKE2b digests of (labels, timestamp, line): stable across processes, so a restored cursor still dedupes,
and a false match (a line dropped as seen) has a probability below 1e-13 per line with the default cap.
"""

from __future__ import annotations

import base64
import sys
import zlib
from array import array
from collections.abc import Mapping
from hashlib import blake2b
from typing import Any

import orjson

from logcanary.sources.base import NS_PER_SECOND, Notice, PulledLine

DEFAULT_LATENESS = 120 * NS_PER_SECOND
DEFAULT_MAX_SEEN = 100_000  # about 10 MB in memory, 1.6 MB serialised; a 2-minute window at 800 lines/s
_FORMAT = 1


class Cursor:
    """Where a followed query stands: ``position`` (scanned up to, exclusive), ``floor`` and the dedupe set."""

    __slots__ = ("_seen", "floor", "lateness", "max_seen", "position", "query")

    def __init__(
        self, query: str, start: int, *, lateness: int = DEFAULT_LATENESS, max_seen: int = DEFAULT_MAX_SEEN
    ) -> None:
        if lateness < 0 or max_seen < 1:
            raise ValueError("lateness must be >= 0 and max_seen >= 1")
        self.query = query
        self.position = start
        self.floor = start
        self.lateness = lateness
        self.max_seen = max_seen
        self._seen: dict[int, int] = {}  # key -> timestamp

    def __repr__(self) -> str:
        return f"Cursor(position={self.position}, floor={self.floor}, seen={len(self._seen)})"

    @property
    def seen(self) -> int:
        """How many keys the dedupe set holds."""
        return len(self._seen)

    def admit(self, lines: list[PulledLine], through: int) -> tuple[list[PulledLine], list[Notice]]:
        """The lines of a scanned batch not delivered before (now recorded), then ``position`` to ``through``."""
        seen = self._seen
        floor = self.floor
        fresh: list[PulledLine] = []
        streams: dict[int, bytes] = {}
        for line in lines:
            timestamp = line.timestamp
            if timestamp < floor:  # outside the guarantee (the floor rose while this scan was under way)
                continue
            if line.metadata:
                stream = _canonical({**line.labels, **line.metadata})
            else:
                stream = streams.get(id(line.labels)) or streams.setdefault(id(line.labels), _canonical(line.labels))
            key = line_key(stream, timestamp, line.line)
            if key in seen:
                continue
            seen[key] = timestamp
            fresh.append(line)
        if through > self.position:
            self.position = through
        self.floor = max(self.floor, self.position - self.lateness)
        return fresh, self._prune() if len(seen) > self.max_seen else []

    def settle(self, until: int) -> list[Notice]:
        """A follow scanned everything before ``until``: moves there and forgets keys below the new floor."""
        self.position = max(self.position, until)
        self.floor = max(self.floor, self.position - self.lateness)
        return self._prune()

    def _prune(self) -> list[Notice]:
        floor = self.floor
        self._seen = {key: ts for key, ts in self._seen.items() if ts >= floor}
        if len(self._seen) <= self.max_seen:
            return []
        keep = self.max_seen * 3 // 4  # room for the next batches before the set must be cut again
        stamps = sorted(self._seen.values())
        self.floor = stamps[len(stamps) - keep] if keep else self.position
        self._seen = {key: ts for key, ts in self._seen.items() if ts >= self.floor}
        lost = (self.floor - (self.position - self.lateness)) / NS_PER_SECOND
        return [
            Notice(
                "lateness_shrunk",
                f"the dedupe set reached {self.max_seen} lines: late lines are picked up {lost:.3f} s less far "
                "back than the lateness window (raise max_seen or lower lateness)",
            )
        ]

    # --- serialisation ----------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as decimal strings: nanoseconds exceed what a JSON double holds exactly)."""
        floor = self.floor
        kept = [(ts, key) for key, ts in self._seen.items() if ts >= floor]
        kept.sort()
        offsets = array("Q", [ts - floor for ts, _ in kept])
        keys = array("Q", [key for _, key in kept])
        if sys.byteorder == "big":
            offsets.byteswap()
            keys.byteswap()
        packed = zlib.compress(offsets.tobytes() + keys.tobytes(), 1)
        return {
            "v": _FORMAT,
            "query": self.query,
            "position": str(self.position),
            "floor": str(floor),
            "lateness": str(self.lateness),
            "max_seen": self.max_seen,
            "seen": base64.b64encode(packed).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cursor:
        """The cursor :meth:`to_json` described; ``ValueError`` for anything else."""
        try:
            if data["v"] != _FORMAT:
                raise ValueError(f"unknown cursor format {data['v']!r}")
            cursor = cls(
                str(data["query"]), int(data["floor"]), lateness=int(data["lateness"]), max_seen=int(data["max_seen"])
            )
            cursor.position = int(data["position"])
            raw = zlib.decompress(base64.b64decode(data["seen"], validate=True))
        except (KeyError, TypeError, ValueError, zlib.error) as exc:
            raise ValueError(f"not a cursor: {exc}") from None
        if len(raw) % 16:
            raise ValueError("not a cursor: truncated dedupe set")
        half = len(raw) // 2
        offsets, keys = array("Q"), array("Q")
        offsets.frombytes(raw[:half])
        keys.frombytes(raw[half:])
        if sys.byteorder == "big":
            offsets.byteswap()
            keys.byteswap()
        cursor._seen = {key: cursor.floor + offset for offset, key in zip(offsets, keys, strict=True)}
        return cursor

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> Cursor:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not a cursor: {exc}") from None
        if not isinstance(parsed, dict):
            raise ValueError("not a cursor: expected a JSON object")
        return cls.from_json(parsed)


def _canonical(labels: Mapping[str, str]) -> bytes:
    return orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)


def line_key(stream: bytes, timestamp: int, line: str) -> int:
    """The dedupe key of one line: a 64-bit digest of its labels (canonical JSON), timestamp and text."""
    data = b"%b\x00%d\x00%b" % (stream, timestamp, line.encode("utf-8", "surrogatepass"))
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")
