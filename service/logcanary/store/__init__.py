"""Durable state behind a small interface: the embedded SQLite store or PostgreSQL (several replicas), chosen by
``LOGCANARY_STORE_URL`` through ``open_store`` (``open_shared_store`` for scale-out: PostgreSQL only)."""

from logcanary.store.base import AnalysisRecord, Checkpoint, SharedStore, Store, StoreOpenError
from logcanary.store.factory import open_shared_store, open_store
from logcanary.store.sqlite import SqliteStore

__all__ = [
    "AnalysisRecord",
    "Checkpoint",
    "SharedStore",
    "SqliteStore",
    "Store",
    "StoreOpenError",
    "open_shared_store",
    "open_store",
]
