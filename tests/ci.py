"""Real parts a test needs that this machine may lack: skipped here, saying why, but an error under CI=true."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(what: str, reason: str) -> NoReturn:
    """Fails with CI=true (CI installs every part), else skips naming what is missing and why."""
    if in_ci():
        pytest.fail(f"CI=true and {what} is unavailable: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable (set CI=true to make this an error): {reason}")
