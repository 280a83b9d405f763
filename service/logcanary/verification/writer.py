"""One thread for every store call the use cases make from the loop.

The event loop also ingests, so it never waits on the store: calls (analyses, feedback, marks) run in one
dedicated thread, in the order the loop asked for them (a later save of a record never lands before an earlier
one). The store's lock may be held by a checkpoint for a while; only that thread waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class StoreWriter:
    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logcanary-store-writer")

    async def __call__(self, call: Callable[..., T], *args: Any) -> T:
        """Runs a store call after those asked before it, and awaits its result."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, call, *args)

    def close(self) -> None:
        """Waits for the calls asked so far (before the store is closed)."""
        self._thread.shutdown(wait=True)
