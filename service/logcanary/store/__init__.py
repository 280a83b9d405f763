"""Durable state behind a small interface: the embedded SQLite store or PostgreSQL (several replicas), chosen by
``LOGCANARY_STORE_URL`` through ``open_store``."""

from logcanary.store.base import AnalysisRecord, Checkpoint, Store, StoreOpenError
from logcanary.store.factory import open_store
from logcanary.store.sqlite import SqliteStore

__all__ = ["AnalysisRecord", "Checkpoint", "SqliteStore", "Store", "StoreOpenError", "open_store"]
