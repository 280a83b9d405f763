"""Builds the store named by the settings: the only place that chooses a backend."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from logcanary.settings import SettingsError, StoreSettings
from logcanary.store.base import Store

if TYPE_CHECKING:
    from logcanary.store.postgres import PostgresStore


def open_store(settings: StoreSettings) -> Store:
    """``LOGCANARY_STORE_URL``: unset = the SQLite file in ``LOGCANARY_STATE_DIR``; ``sqlite:///path/file.sqlite``
    (everything after ``sqlite://`` is the path: three slashes for an absolute one); ``postgresql://...`` (libpq URL,
    tables in ``LOGCANARY_STORE_SCHEMA`` when set). Raises SettingsError (StoreOpenError) naming the setting."""
    url = settings.store_url
    if url is None:
        from logcanary.store.sqlite import SqliteStore

        return SqliteStore(settings.state_file)
    if url.startswith("sqlite://"):
        from logcanary.store.sqlite import SqliteStore

        return SqliteStore(Path(url.removeprefix("sqlite://")), setting=f"LOGCANARY_STORE_URL={url}")
    return open_shared_store(settings)


def open_shared_store(settings: StoreSettings) -> PostgresStore:
    """The store replicas share (scale-out): PostgreSQL only."""
    url = settings.store_url
    if url is None or not url.startswith(("postgresql://", "postgres://")):
        raise SettingsError("scale-out needs a postgresql:// LOGCANARY_STORE_URL: replicas share the state there")
    try:
        from logcanary.store.postgres import PostgresStore
    except ImportError as exc:  # the `postgres` extra is not installed
        raise SettingsError(
            f"LOGCANARY_STORE_URL names PostgreSQL but its driver is missing ({exc}): pip install 'logcanary[postgres]'"
        ) from exc
    return PostgresStore(url, settings.store_schema)
