"""Builds the store named by the settings: the only place that chooses a backend."""

from __future__ import annotations

from pathlib import Path

from logcanary.settings import SettingsError, StoreSettings
from logcanary.store.base import SharedStore, Store

POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")


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
    if url.startswith(POSTGRESQL_SCHEMES):
        return _postgres(url, settings.store_schema)
    raise SettingsError("LOGCANARY_STORE_URL must start with sqlite:// or postgresql://")


def open_shared_store(settings: StoreSettings) -> SharedStore:
    """The store several replicas share (scale-out): only PostgreSQL, since a SQLite file belongs to one process.
    Raises SettingsError naming LOGCANARY_STORE_URL otherwise, or StoreOpenError as :func:`open_store`."""
    url = settings.store_url
    if url is None or not url.startswith(POSTGRESQL_SCHEMES):
        raise SettingsError(
            "several replicas share one store: LOGCANARY_STORE_URL must name PostgreSQL (postgresql://...), "
            f"not {'the SQLite file in LOGCANARY_STATE_DIR' if url is None else url.split('://')[0] + '://...'}"
        )
    return _postgres(url, settings.store_schema)


def _postgres(url: str, schema: str | None) -> SharedStore:
    try:
        from logcanary.store.postgres import PostgresStore
    except ImportError as exc:  # the `postgres` extra is not installed
        raise SettingsError(
            f"LOGCANARY_STORE_URL names PostgreSQL but its driver is missing ({exc}): pip install 'logcanary[postgres]'"
        ) from exc
    return PostgresStore(url, schema)  # typed: mypy proves PostgresStore is a SharedStore
