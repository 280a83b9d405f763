"""Capped exponential backoff: the one policy of every retry (checkpoints, Kafka, dead letters, webhooks, stores)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


def capped(first: float, most: float, failures: int) -> float:
    """The wait after ``failures`` failures in a row: ``first``, doubling each time, at most ``most``."""
    return min(most, first * 2.0 ** min(max(failures - 1, 0), 60))


def jittered(wait: float) -> float:
    """Half fixed, half random: clients that failed together do not retry together."""
    return wait / 2 + random.uniform(0, wait / 2)


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
        wait = capped(self.first, self.most, self.failures)
        if floor is not None:
            wait = min(max(wait, floor), self.most)
        return wait

    def reset(self) -> None:
        self.failures = 0
