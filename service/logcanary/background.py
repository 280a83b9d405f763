"""The service's background loops besides ingestion: checkpoints (when no Kafka consumer paces them), retention and
store maintenance, the event loop's lag, the garbage collector's pauses, and (scale-out) the cluster's settings."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

from logcanary.live.cluster import ClusterSettings
from logcanary.live.state import LiveState
from logcanary.store.base import SharedStore
from logcanary.verification.analyses import Analyses

log = logging.getLogger(__name__)

LOOP_LAG_PERIOD = 0.1
CLUSTER_WATCH_SECONDS = 5.0
GC_FREEZE_SECONDS = 10.0
GC_FULL_SECONDS = 3600.0


async def loop_lag_monitor(state: LiveState) -> None:
    """Sleeps 100 ms again and again; how late each wake-up comes is the time the loop was blocked."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(LOOP_LAG_PERIOD)
        state.metrics.loop_lag.observe(max(0.0, loop.time() - started - LOOP_LAG_PERIOD))


async def gc_loop() -> None:
    """Keeps the garbage collector's full passes short: they stop the whole process, loop included.

    The engine's state is millions of long-lived objects, and CPython's full (generation 2) collection walks
    every one of them: with 5 services of 400 templates that took 80-100 ms, every second or two while
    ingesting 10,000 events/s, and every request waiting then (bench/bench_verdicts.py). Every 10 s the young
    garbage is collected (cheap) and what survives is frozen (``gc.freeze``: never walked again), so a full
    pass only walks what is younger than 10 s. Frozen objects freed by reference counting go as always; only
    cyclic garbage among them waits for the hourly ``unfreeze`` and full collection (one such pause an hour).
    """
    last_full = time.monotonic()
    while True:
        await asyncio.sleep(GC_FREEZE_SECONDS)
        if time.monotonic() - last_full >= GC_FULL_SECONDS:
            gc.unfreeze()
            gc.collect()
            last_full = time.monotonic()
        else:
            gc.collect(1)
        gc.freeze()


async def maintain(state: LiveState, analyses: Analyses) -> None:
    """Retention, then a bounded file: old deployments and analyses go, the WAL is truncated, free pages returned."""
    now = time.time()
    async with state.live.writing():
        state.prune(now)  # through the engine's eviction; the next checkpoint deletes their rows
    forgotten = analyses.prune(now)
    await state.checkpoint()
    if forgotten:
        await analyses.write(analyses.repository.delete_analyses, forgotten)
    await asyncio.to_thread(state.store.maintain)


async def maintenance_loop(state: LiveState, analyses: Analyses, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await maintain(state, analyses)
        except Exception:
            log.exception("store maintenance failed")


async def checkpoint_loop(state: LiveState, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await state.checkpoint()
        except Exception:
            log.exception("checkpoint failed")


async def cluster_watch(
    store: SharedStore, mine: ClusterSettings, where: str, refuse: Callable[[str], None], interval: float
) -> None:
    """Stops this replica once the cluster's settings are no longer its own (``logcanary cluster adopt`` changed
    them): a replica never keeps counting and answering with settings its peers do not share."""
    while True:
        await asyncio.sleep(interval)
        try:
            stored = await asyncio.to_thread(store.load_cluster)
        except Exception as exc:  # the store is down: checkpoints say so; this check waits for it
            log.debug("cluster settings not read: %s", exc)
            continue
        if stored is not None and stored[0] != mine.fingerprint:
            reason = mine.refusal(ClusterSettings.parse(stored[1]), where)
            refuse(f"the cluster adopted other settings: this replica stops. {reason}")
            return
