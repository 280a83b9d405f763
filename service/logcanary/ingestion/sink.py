"""The seam where events enter the engine, whatever brought them: Kafka records, HTTP bodies, lines pulled from a
log store. Every source feeds the same :class:`EventSink` (the live engine,
:class:`logcanary.live.engine.LiveEngine`), so an event is masked, mined, clustered and counted the same way
whichever door it came through.

A source applies its events inside ``async with sink.writing() as write`` and moves its own position (an offset,
a cursor) inside the same hold, with no await in between: a checkpoint, taken under the same lock, then holds
both or neither. ``if write.due(): await write.pause()`` between events lets the loop and waiting readers run:
a write never holds the loop for more than a slice (``live.engine.SLICE_SECONDS``). ``observe_many`` counts a
run of events in one call, checking ``write.due`` after each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

EventValues = tuple[str, str, str, float, str, str, Sequence[str]]
"""(service, deployment, message, epoch seconds, host, level, identities): an event without its envelope."""


class Write(Protocol):
    def due(self) -> bool:
        """This write has held the engine for its slice: pause at the next consistent point."""

    async def pause(self) -> None:
        """Lets others run between two slices of one write."""


class EventSink(Protocol):
    def writing(self) -> AbstractAsyncContextManager[Write]:
        """The engine, held for a write."""

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
        """Counts one event given as its fields (inside :meth:`writing`)."""

    def observe_many(
        self, events: Sequence[EventValues], start: int, stop: int, due: Callable[[], bool] | None = None
    ) -> int:
        """Counts ``events[start:stop]`` (inside :meth:`writing`), stopping after the event at which ``due()``
        says the slice is used up; returns the index of the next event."""
