"""Durable state behind a small interface: the embedded SQLite store, or another
implementation (e.g. PostgreSQL for several replicas) with the same methods."""

from service.store.base import AnalysisRecord, Checkpoint, Store
from service.store.sqlite import SqliteStore

__all__ = ["AnalysisRecord", "Checkpoint", "SqliteStore", "Store"]
