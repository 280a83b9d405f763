"""Restoring the engine from the store a few services at a time, under the memory budget: a restart never needs
more memory than running with the same state did (issue 18).

Loading every row first and then building the engine held the rows and the engine at once (2,653 MB to reload
what ran in 2,108 MB). Here one batch of services' rows is loaded, restored and dropped before the next, and the
budget's steps (:mod:`logcanary.engine.memory`) run after each batch, as they would have while ingesting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from logcanary.engine.model import Engine
from logcanary.store.codec import Restored, StoredState, restore

SERVICES_PER_BATCH = 5  # at most 5 services' rows (and their decoded JSON) in memory beside the engine


def batches(names: Sequence[str], size: int = SERVICES_PER_BATCH) -> Iterator[list[str]]:
    for start in range(0, len(names), size):
        yield list(names[start : start + size])


def restore_batch(engine: Engine, stored: StoredState, rewrite: Restored) -> None:
    """One batch into the engine, then the budget's steps; what must be rewritten is added to ``rewrite``."""
    restored = restore(engine, stored)
    rewrite.services |= restored.services
    rewrite.deployments |= restored.deployments
    engine.memory.settle(engine)


def restore_streaming(engine: Engine, load: Callable[[list[str]], StoredState], names: Sequence[str]) -> Restored:
    """Restores ``names`` (blocking), ``load``-ing a batch of services at a time."""
    rewrite = Restored()
    for batch in batches(names):
        restore_batch(engine, load(batch), rewrite)
    return rewrite
