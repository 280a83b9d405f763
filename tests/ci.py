"""Real parts a test needs that this machine may lack: skipped here, saying why, but an error under CI=true."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(what: str, reason: str) -> NoReturn:
    """Fails with CI=true (CI installs every part), else skips naming what is missing and why."""
    if in_ci():
        pytest.fail(f"CI=true and {what} is unavailable: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable (set CI=true to make this an error): {reason}")


def cache_folder(variable: str, default_name: str) -> Path:
    """Where a tool installer caches (and the tests find) what it built: ``variable`` if set, else
    ``$XDG_CACHE_HOME`` (or ``~/.cache``) / ``default_name``, as the installer itself defaults."""
    configured = os.environ.get(variable)
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / default_name
