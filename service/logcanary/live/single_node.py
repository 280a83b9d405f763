"""One process holds every service: the offsets of the log topics it consumes are saved with the whole engine."""

from __future__ import annotations

from collections.abc import Iterable

from logcanary.engine.model import ServiceModel
from logcanary.live.restoring import restore_streaming
from logcanary.live.state import LiveState
from logcanary.settings import LimitSettings, StoreSettings
from logcanary.store.base import Checkpoint, Store


class SingleNode(LiveState):
    def __init__(self, config: StoreSettings, limits: LimitSettings, store: Store) -> None:
        super().__init__(config, limits, store)
        self.store: Store = store
        self.offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset to count
        self._saved_offsets: dict[tuple[str, int], int] = {}

    def _restore(self) -> None:
        rewrite = restore_streaming(self.engine, self.store.load_state, self.store.service_names())
        self.offsets = self.store.load_offsets()
        self._saved_offsets = dict(self.offsets)
        self.rows.restored(self.engine, self.engine.services, rewrite)

    def owns(self, service: str) -> bool:
        return True

    async def read_services(self, names: Iterable[str]) -> dict[str, ServiceModel | None]:
        return {name: self.engine.services.get(name) for name in names}

    async def service_names(self) -> list[str]:
        return sorted(self.engine.services)

    def _positions(self, checkpoint: Checkpoint) -> None:
        checkpoint.offsets = dict(self.offsets)

    def _positions_moved(self, checkpoint: Checkpoint) -> bool:
        return checkpoint.offsets != self._saved_offsets

    def _positions_saved(self, checkpoint: Checkpoint) -> None:
        self._saved_offsets = checkpoint.offsets
