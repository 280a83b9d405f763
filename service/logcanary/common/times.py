"""Epoch seconds as the API writes them: aware UTC datetimes, and RFC 3339 text with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(epoch: float) -> datetime:
    """An aware UTC datetime (pydantic writes it as RFC 3339)."""
    return datetime.fromtimestamp(epoch, tz=UTC)


def rfc3339(epoch: float, timespec: str = "auto") -> str:
    """``2026-12-07T16:14:45.123Z``."""
    return utc(epoch).isoformat(timespec=timespec).replace("+00:00", "Z")
