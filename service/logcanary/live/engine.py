"""The engine this process holds, and the one lock that orders its writers and its threaded readers.

Everything that changes the engine (ingestion from any source, retention, restores, releases) holds the engine
lock while it changes it, and so do verdicts computed in worker threads (:meth:`LiveEngine.read_in_thread`): a
reader never sees the engine change under it. Reads never change the engine (merged templates are folded by the
writer that merged them). A writer applies events and moves its position (an offset, a cursor) with no await in
between, so a checkpoint — taken under the same lock — always holds both or neither.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from logcanary.engine.model import Engine
from logcanary.settings import LimitSettings

T = TypeVar("T")
DAY = 86_400.0


#: Longest the loop runs engine writes before it serves others: a write checks :meth:`EngineWrite.due` between
#: events and pauses once its slice is used up. Each event's cost is bounded (linear masking, capped tokens and
#: messages), so the loop answers probes, verdicts and metrics within about one slice whatever streams in. A request
#: waits behind a slice of each stream for each of its loop turns: with two HTTP clients posting, 10 ms slices gave a
#: `/healthz` p99 of 50-54 ms, 5 ms slices 42-48 ms, at the same rate (bench/RESULTS.md).
SLICE_SECONDS = 0.005


class EngineWrite:
    """The engine lock held by a write done in slices; :meth:`pause` lets the loop, and a reader waiting for the
    lock, run between two slices (the lock is released on exit only if it is held, even after a cancellation)."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self.lock = lock
        self.held = False
        self._slice_started = 0.0

    async def __aenter__(self) -> EngineWrite:
        await self.lock.acquire()
        self.held = True
        self._slice_started = time.perf_counter()
        return self

    def due(self) -> bool:
        """The slice is used up: pause at the next consistent point (between two events, or two records)."""
        return time.perf_counter() - self._slice_started >= SLICE_SECONDS

    async def __aexit__(self, *exc: object) -> None:
        if self.held:
            self.lock.release()
            self.held = False

    async def pause(self) -> None:
        self.lock.release()
        self.held = False
        await asyncio.sleep(0)
        await self.lock.acquire()
        self.held = True
        self._slice_started = time.perf_counter()


class LiveEngine:
    """The live engine and its lock: where events enter (the :class:`~logcanary.ingestion.sink.EventSink` every
    source feeds), and what verdicts read."""

    def __init__(self, limits: LimitSettings, on_clamp: Callable[[], None] = lambda: None) -> None:
        self.limits = limits
        self.engine = self.new_engine()
        self.lock = asyncio.Lock()
        self._on_clamp = on_clamp  # counts an event stamped in the future

    def new_engine(self) -> Engine:
        """An engine with the service's caps (the live one, or one to read a service another replica owns)."""
        return Engine(tuple(self.limits.mask_patterns), self.limits.caps)

    def writing(self) -> EngineWrite:
        """``async with live.writing() as write``: a change of the engine, in chunks (``await write.pause()``)."""
        return EngineWrite(self.lock)

    async def read_in_thread(self, read: Callable[[], T], live: bool = True) -> T:
        """``read()`` in a worker thread, so the loop goes on serving while it runs; with ``live`` (it reads the
        live engine, not a snapshot of another replica's services) writers wait until it is done. The lock is
        held until the thread returns, even if the caller is cancelled meanwhile."""
        if not live:
            return await asyncio.to_thread(read)
        await self.lock.acquire()
        try:
            future = asyncio.get_running_loop().run_in_executor(None, read)
        except BaseException:
            self.lock.release()
            raise
        future.add_done_callback(lambda _: self.lock.release())
        return await asyncio.shield(future)

    # -- the seam where events enter ------------------------------------------------------------------------

    def observe_values(
        self,
        service: str,
        deployment: str,
        message: str,
        timestamp: float,
        host: str,
        level: str,
        identities: Sequence[str],
    ) -> None:
        """One event, as its fields (what the repartition topic and log stores carry). Hold the lock."""
        received = time.time()
        if timestamp > received + self.limits.max_clock_skew_seconds:
            # A stamp from the future (a wrong clock, 2099) would sit in every "last N minutes" window for ever.
            timestamp = received
            self._on_clamp()
        self.engine.observe(service, deployment, message, timestamp, host, level, identities)

    def observe_many(
        self,
        events: Sequence[tuple[str, str, str, float, str, str, Sequence[str]]],
        start: int,
        stop: int,
        due: Callable[[], bool] | None = None,
    ) -> int:
        """``events[start:stop]`` (``ingestion.sink.EventValues``) as :meth:`observe_values` counts them, in one
        loop; stops after the event at which ``due()`` says the slice is used up. Returns the index of the next
        event. Hold the lock. The clock is read again only for a stamp ahead of the bound it last gave."""
        observe = self.engine.observe
        skew = self.limits.max_clock_skew_seconds
        bound = time.time() + skew
        for index in range(start, stop):
            service, deployment, message, timestamp, host, level, identities = events[index]
            if timestamp > bound:
                received = time.time()
                bound = received + skew
                if timestamp > bound:
                    timestamp = received
                    self._on_clamp()
            observe(service, deployment, message, timestamp, host, level, identities)
            if due is not None and due():
                return index + 1
        return stop

    # -- retention ------------------------------------------------------------------------------------------

    def prune(self, now: float, days: float) -> list[tuple[str, str | None]]:
        """Drops what saw no event within ``days``, through the engine's eviction: whole services
        (``(service, None)``), else single deployments. The next checkpoint deletes their rows. Hold the lock."""
        if days <= 0:
            return []
        cutoff = now - days * DAY
        old: list[tuple[str, str | None]] = []
        for name, service in list(self.engine.services.items()):
            if service.last_seen < cutoff:  # every deployment is old (or none is left): the miner goes too
                self.engine.evict_service(name)
                old.append((name, None))
                continue
            for deployment, model in list(service.deployments.items()):
                if model.last_seen < cutoff:
                    self.engine.evict(name, deployment)
                    old.append((name, deployment))
        return old
