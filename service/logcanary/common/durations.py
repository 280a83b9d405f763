"""The duration grammar every door shares (HTTP queries, analyses, the gate): ``300``, ``"90s"``, ``"5m"``, ``"1h"``."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

MAX_DURATION_SECONDS = 7 * 86400
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object, most: float = MAX_DURATION_SECONDS) -> float:
    """Seconds from 300, "300", "90s", "5m", "1.5h" or "2d": more than 0, at most ``most``; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"invalid duration {value!r}: use seconds or a number with ms, s, m, h or d")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not 0 < seconds <= most:
        raise ValueError(f"duration must be more than 0 and at most {most:g} s")
    return seconds


def parse_window(value: str) -> float | None:
    """A look-back window: ``"all"`` is None (every event), anything else a duration."""
    return None if value == "all" else parse_duration(value)


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A pydantic field in seconds that also takes the grammar above."""
