"""Idempotency keys of ``POST /v1/events``: a retried request counts once and gets the original answer.

A key is remembered with the SHA-256 of its body and the answer. It becomes durable in the same store
transaction as the checkpoint that holds the events it counted, so after a kill either both are saved (a retry
is answered from the store) or neither is (a retry counts the events, once). In memory only the key, its time and
its fingerprint are kept (bounded by ``LOGCANARY_IDEMPOTENCY_MAX_KEYS`` and ``_TTL_SECONDS``); answers not yet
saved are held until the next checkpoint, and saved ones are read back from the store on a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """One remembered request: its key, when it was first answered, the body's SHA-256, and the answer."""

    key: str
    created_at: float
    fingerprint: str
    status: int
    body: bytes


def valid_key(key: str) -> bool:
    """1-255 printable ASCII characters (RFC 9110 field value, no control characters)."""
    return 0 < len(key) <= MAX_KEY_LENGTH and all(" " <= ch <= "~" for ch in key)


class IdempotencyKeys:
    """Known keys (oldest first) and the answers not yet saved; one request per key at a time."""

    def __init__(self, ttl_seconds: float, max_keys: int) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_keys = max_keys
        self._known: OrderedDict[str, tuple[float, str]] = OrderedDict()  # key -> (created_at, fingerprint)
        self._pending: dict[str, IdempotencyRecord] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._known)

    def load(self, rows: Iterable[tuple[str, float, str]]) -> None:
        """Keys read from the store at start: (key, created_at, fingerprint), any order."""
        for key, created_at, fingerprint in sorted(rows, key=lambda row: row[1]):
            self._known[key] = (created_at, fingerprint)
        self._expire(time.time())

    def horizon(self, now: float | None = None) -> float:
        """Keys created before this time are forgotten (in memory and in the store)."""
        return (time.time() if now is None else now) - self.ttl_seconds

    def lookup(self, key: str) -> tuple[str, IdempotencyRecord | None] | None:
        """(fingerprint, the answer if not yet saved) of a known key, else None."""
        self._expire(time.time())
        known = self._known.get(key)
        if known is None:
            return None
        return known[1], self._pending.get(key)

    def remember(self, record: IdempotencyRecord) -> None:
        """A new answer: saved by the next checkpoint, with the events it counted."""
        self._known[record.key] = (record.created_at, record.fingerprint)
        self._known.move_to_end(record.key)
        self._pending[record.key] = record
        self._expire(record.created_at)

    def pending(self) -> list[IdempotencyRecord]:
        return list(self._pending.values())

    def saved(self, records: Iterable[IdempotencyRecord]) -> None:
        """These answers are durable now (their checkpoint committed)."""
        for record in records:
            if self._pending.get(record.key) is record:
                del self._pending[record.key]

    def _expire(self, now: float) -> None:
        horizon = now - self.ttl_seconds
        while self._known:
            key, (created_at, _) = next(iter(self._known.items()))
            if created_at >= horizon and len(self._known) <= self.max_keys:
                break
            del self._known[key]
            self._pending.pop(key, None)  # never saved: the store would prune it at once anyway

    @contextlib.asynccontextmanager
    async def exclusive(self, key: str) -> AsyncIterator[None]:
        """One request per key at a time: a retry arriving while the first is still working waits for it."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
