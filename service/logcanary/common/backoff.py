"""Capped exponential backoff: the one policy of every retry (checkpoints, Kafka, dead letters, webhooks, stores)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Waits ``first`` seconds after the first failure, doubling up to ``most``; :meth:`reset` after a success.

    ``floor`` (a server's Retry-After) raises one wait, never past ``most``.
    """

    first: float
    most: float
    failures: int = field(default=0)

    def next(self, floor: float | None = None) -> float:
        """The wait after one more failure."""
        self.failures += 1
        wait = self.first * 2.0 ** min(self.failures - 1, 60)
        if floor is not None:
            wait = max(wait, floor)
        return min(wait, self.most)

    def reset(self) -> None:
        self.failures = 0
