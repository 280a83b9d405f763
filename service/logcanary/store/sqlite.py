"""The embedded default store: one SQLite file in WAL mode under the state directory.

What is SQLite's own: the pragmas that keep the file bounded, the write probe at open, ``maintain`` (WAL truncated,
free pages returned), the careful rollback after SQLite rolled back by itself, and the adoption of files made
before versioned migrations (their tables are migration 1's, created ``IF NOT EXISTS``, some missing if older).
Engine state written before rows (codec format 1) is read as such and rewritten as rows by the next checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from logcanary.store.base import StoreOpenError
from logcanary.store.dialect import SQLITE
from logcanary.store.schema import MIGRATIONS, RECORD_VERSION, SCHEMA_VERSION, upgrade
from logcanary.store.sql import Session, SqlStore

__all__ = ["SqliteStore", "StoreOpenError"]

log = logging.getLogger(__name__)

WAL_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default, set explicitly: the WAL is copied back every ~4 MB
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # a WAL grown past this by a large transaction is truncated back after it
VACUUM_PAGES = 2048  # free pages returned to the file system per maintenance pass (8 MB of 4 KiB pages)


class _Session:
    """Statements on the connection itself: autocommit, transactions begun and ended by :meth:`_immediate`."""

    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(query, params).fetchall()

    def one(self, query: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._db.execute(query, params).fetchone()
        return row

    def run(self, query: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(query, params).rowcount

    def many(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        self._db.executemany(query, rows)


def _adopt(session: Session) -> None:
    """Records a file made before versioned migrations at version 1, creating the tables it lacks (older files have
    no miner_groups, deployment_templates, idempotency_keys or deployment_marks); the next ones then apply."""
    first = MIGRATIONS[0]
    for statement in first.statements(SQLITE):
        table_or_index = statement.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS")
        session.run(table_or_index.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS"))
    session.run(SQLITE.render(SCHEMA_VERSION))
    description = f"{first.description} (adopted: a file made before versioned migrations)"
    session.run(SQLITE.render(RECORD_VERSION), (first.version, description))


class SqliteStore(SqlStore):
    """Thread-safe (one connection behind a lock); WAL keeps readers off the writer's back."""

    def __init__(self, path: Path, setting: str | None = None) -> None:
        """``setting`` names what chose the file in errors (default: LOGCANARY_STATE_DIR, the file's folder)."""
        super().__init__(SQLITE)
        self.path = path
        named = setting or f"LOGCANARY_STATE_DIR={path.parent}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists() or path.stat().st_size == 0
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            if new:  # only settable before the first table: files made by older versions keep auto_vacuum off
                self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints in WAL mode, survives process kill
            self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            self._db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            with self._immediate():  # one migrator at a time; and the file and its folder are writable
                session = _Session(self._db)
                tables = {name for (name,) in session.rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "miners" in tables and "schema_version" not in tables:
                    _adopt(session)
                applied = upgrade(session, SQLITE, f"the state file {path}", named)
                session.run("DELETE FROM offsets WHERE 0")  # and the file itself takes writes (not read-only)
        except (OSError, sqlite3.Error) as exc:
            raise StoreOpenError(
                f"cannot open the state file {path} for writing ({exc}); {named} "
                "must name a folder this process can create files in"
            ) from exc
        if applied:
            log.info("state file %s migrated to schema version %d (applied %s)", path, applied[-1], applied)

    @contextlib.contextmanager
    def _immediate(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT; on any error, ROLLBACK only if SQLite has not already rolled back.

        SQLite rolls a transaction back by itself on some errors (SQLITE_FULL, SQLITE_IOERR): a ROLLBACK then
        fails with "no transaction is active" and would hide the real error, so the connection's own
        transaction state decides, and a failing ROLLBACK is logged, never raised over the first error.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error as rollback_error:
                    log.warning("rollback after a failed transaction also failed: %s", rollback_error)
            raise

    @contextlib.contextmanager
    def _session(self) -> Iterator[Session]:
        with self._lock:
            yield _Session(self._db)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._lock, self._immediate():
            yield _Session(self._db)

    def maintain(self) -> None:
        """Keeps the file bounded: WAL copied back and truncated, free pages returned (incremental vacuum)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:  # INCREMENTAL (new files)
                # executescript steps the pragma to the end: execute() would free one page per call.
                self._db.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
