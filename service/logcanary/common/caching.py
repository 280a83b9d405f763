"""A refresh-ahead, single-flight cache: verdicts by question and other replicas' services share it.

A value is served for at most ``max_age`` seconds after its load *began* (never fresher than it is). Past
:data:`REFRESH_AFTER` of that age it is still served while one new load runs in the background, so a steady
poller never waits for a load. Concurrent askers of a key being loaded share that load, and an asker that gives
up (a client timeout) never cancels it for the others. A value carries the ``version`` it was loaded under (the
rules a verdict was computed with): asked under another version, it is not served. At most ``max_entries`` keys
are kept, the least recently used going first, and expired ones are dropped whenever one is added, so the memory
held is that of the keys asked within ``max_age``. With ``max_age`` 0 nothing is kept or shared.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

REFRESH_AFTER = 0.75  # of max_age: past it, served while a fresh load runs in the background


@dataclass(frozen=True, slots=True)
class Cached(Generic[V]):
    """A value with when its load began."""

    value: V
    loaded_at: float  # epoch seconds
    monotonic: float  # the cache's clock then
    version: Hashable


class RefreshAheadCache(Generic[K, V]):
    def __init__(
        self, max_age: float, max_entries: int = 256, clock: Callable[[], float] = time.monotonic, what: str = "value"
    ) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self.clock = clock
        self.what = what  # for the log line of a failed background refresh
        self._entries: OrderedDict[K, Cached[V]] = OrderedDict()
        self._loading: dict[K, tuple[Hashable, asyncio.Future[dict[K, Cached[V]]]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forgets every kept value (loads in flight go on, and keep what they load)."""
        self._entries.clear()

    def peek(self, key: K, version: Hashable = None) -> Cached[V] | None:
        """The value kept for ``key`` if it may still be served (expired or other-version entries are dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.version != version or self.clock() - entry.monotonic > self.max_age:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    async def get(self, key: K, load: Callable[[], Awaitable[V]], version: Hashable = None) -> Cached[V]:
        """The value of ``key``: kept, being loaded, or loaded now by ``load()``."""

        async def load_one(keys: list[K]) -> dict[K, V]:
            return {key: await load()}

        return (await self.get_many([key], load_one, version))[key]

    async def get_many(
        self, keys: Sequence[K], load: Callable[[list[K]], Awaitable[dict[K, V]]], version: Hashable = None
    ) -> dict[K, Cached[V]]:
        """The values of ``keys``; those neither kept nor being loaded are loaded together by one ``load(keys)``,
        which returns a value for each key it was given."""
        if self.max_age <= 0:  # always loaded afresh, never shared nor kept
            return await self._load(list(keys), load, version)
        found: dict[K, Cached[V]] = {}
        waiting: dict[K, asyncio.Future[dict[K, Cached[V]]]] = {}
        missing: list[K] = []
        stale: list[K] = []
        for key in keys:
            entry = self.peek(key, version)
            running = self._loading.get(key)
            if running is not None and running[0] != version:
                running = None
            if entry is not None:
                found[key] = entry
                if self.clock() - entry.monotonic > self.max_age * REFRESH_AFTER and running is None:
                    stale.append(key)
            elif running is not None:
                waiting[key] = running[1]
            else:
                missing.append(key)
        if missing:
            future = self._start(missing, load, version)
            waiting.update(dict.fromkeys(missing, future))
        if stale:
            self._start(stale, load, version)  # in the background: the answers above are within their bound
        for key, future in waiting.items():
            found[key] = (await asyncio.shield(future))[key]
        return found

    async def _load(
        self, keys: list[K], load: Callable[[list[K]], Awaitable[dict[K, V]]], version: Hashable
    ) -> dict[K, Cached[V]]:
        loaded_at, monotonic = time.time(), self.clock()
        values = await load(keys)
        return {key: Cached(values[key], loaded_at, monotonic, version) for key in keys}

    def _start(
        self, keys: list[K], load: Callable[[list[K]], Awaitable[dict[K, V]]], version: Hashable
    ) -> asyncio.Future[dict[K, Cached[V]]]:
        future = asyncio.ensure_future(self._load(keys, load, version))
        for key in keys:
            self._loading[key] = (version, future)

        def done(future: asyncio.Future[dict[K, Cached[V]]]) -> None:
            for key in keys:
                if self._loading.get(key, (None, None))[1] is future:
                    del self._loading[key]
            if future.cancelled():
                return
            if (error := future.exception()) is not None:  # awaited askers get it too; a refresh only logs it
                log.warning("loading %s failed: %r", self.what, error)
                return
            for key, entry in future.result().items():
                self._put(key, entry)

        future.add_done_callback(done)
        return future

    def _put(self, key: K, entry: Cached[V]) -> None:
        current = self._entries.get(key)
        if current is not None and current.monotonic >= entry.monotonic:
            return  # a newer answer is kept already
        now = self.clock()
        for old in [k for k, e in self._entries.items() if now - e.monotonic > self.max_age]:
            del self._entries[old]
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
