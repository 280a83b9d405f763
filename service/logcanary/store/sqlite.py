"""The embedded default store: one SQLite file in WAL mode under the state directory."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from logcanary.schemas import DeploymentMark, Feedback
from logcanary.store.base import AnalysisRecord, Checkpoint, StoreOpenError
from logcanary.store.codec import StoredState

__all__ = ["SqliteStore", "StoreOpenError"]

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS miners (service TEXT PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS miner_groups (
    service TEXT NOT NULL, key TEXT NOT NULL, state BLOB NOT NULL, PRIMARY KEY (service, key)
);
CREATE TABLE IF NOT EXISTS deployments (
    service TEXT NOT NULL, deployment TEXT NOT NULL, state BLOB NOT NULL, PRIMARY KEY (service, deployment)
);
CREATE TABLE IF NOT EXISTS deployment_templates (
    service TEXT NOT NULL, deployment TEXT NOT NULL, template TEXT NOT NULL, state BLOB NOT NULL,
    PRIMARY KEY (service, deployment, template)
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY, created_at REAL NOT NULL, fingerprint TEXT NOT NULL, status INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_at);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY, service TEXT NOT NULL, created_at TEXT NOT NULL, body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_service ON feedback (service);
CREATE TABLE IF NOT EXISTS analyses (id TEXT PRIMARY KEY, service TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS deployment_marks (
    service TEXT NOT NULL, deployment TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (service, deployment)
);
"""
# Upgrades are additive: every table is created IF NOT EXISTS when a file is opened, so a file written by an
# older version gains the new ones (deployment_marks, miner_groups, deployment_templates), and blobs without
# newer keys (a deployment's identities) decode with defaults. Engine state written before rows (one blob per
# miner and per deployment, codec format 1) is read as such and rewritten as rows by the next checkpoint.

WAL_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default, set explicitly: the WAL is copied back every ~4 MB
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # a WAL grown past this by a large transaction is truncated back after it
VACUUM_PAGES = 2048  # free pages returned to the file system per maintenance pass (8 MB of 4 KiB pages)


class SqliteStore:
    """Thread-safe (one connection behind a lock); WAL keeps readers off the writer's back."""

    def __init__(self, path: Path, setting: str | None = None) -> None:
        """``setting`` names what chose the file in errors (default: LOGCANARY_STATE_DIR, the file's folder)."""
        self.path = path
        self._lock = threading.Lock()
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
            self._db.executescript(SCHEMA)
            with self._transaction():  # the write lock can be taken: the file and its folder are writable
                self._db.execute("DELETE FROM offsets WHERE 0")  # and the file itself takes writes (not read-only)
        except (OSError, sqlite3.Error) as exc:
            named = setting or f"LOGCANARY_STATE_DIR={path.parent}"
            raise StoreOpenError(
                f"cannot open the state file {path} for writing ({exc}); {named} "
                "must name a folder this process can create files in"
            ) from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
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

    def load_state(self) -> StoredState:
        """Engine state: headers (or format-1 blobs) and rows, rows in key order."""
        stored = StoredState()
        with self._lock:
            stored.miners = dict(self._db.execute("SELECT service, state FROM miners").fetchall())
            for service, key, state in self._db.execute(
                "SELECT service, key, state FROM miner_groups ORDER BY service, key"
            ):
                stored.groups.setdefault(service, []).append((key, state))
            for service, deployment, state in self._db.execute("SELECT service, deployment, state FROM deployments"):
                stored.deployments[(service, deployment)] = state
            for service, deployment, template, state in self._db.execute(
                "SELECT service, deployment, template, state FROM deployment_templates"
            ):
                stored.templates.setdefault((service, deployment), []).append((template, state))
        return stored

    def _write_idempotency(self, checkpoint: Checkpoint) -> None:
        """POST /v1/events answers, in the checkpoint's transaction (with the events they counted); bounded."""
        db = self._db
        db.executemany(
            "INSERT OR REPLACE INTO idempotency_keys (key, created_at, fingerprint, status, body) "
            "VALUES (?, ?, ?, ?, ?)",
            [(r.key, r.created_at, r.fingerprint, r.status, r.body) for r in checkpoint.idempotency],
        )
        db.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (checkpoint.idempotency_horizon,))
        db.execute(
            "DELETE FROM idempotency_keys WHERE key IN "
            "(SELECT key FROM idempotency_keys ORDER BY created_at DESC LIMIT -1 OFFSET ?)",
            (checkpoint.idempotency_max_keys,),
        )

    def load_idempotency_keys(self, since: float) -> list[tuple[str, float, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, created_at, fingerprint FROM idempotency_keys WHERE created_at >= ?", (since,)
            ).fetchall()
        return [(key, created_at, fingerprint) for key, created_at, fingerprint in rows]

    def load_idempotency_result(self, key: str) -> tuple[int, bytes] | None:
        with self._lock:
            row = self._db.execute("SELECT status, body FROM idempotency_keys WHERE key = ?", (key,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def load_offsets(self) -> dict[tuple[str, int], int]:
        with self._lock:
            rows = self._db.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        db = self._db
        with self._lock, self._transaction():
            for service in checkpoint.dropped_services:
                for table in ("miners", "miner_groups", "deployments", "deployment_templates"):
                    db.execute(f"DELETE FROM {table} WHERE service = ?", (service,))  # fixed table names
            db.executemany("DELETE FROM deployments WHERE service = ? AND deployment = ?", checkpoint.dropped)
            db.executemany(
                "DELETE FROM deployment_templates WHERE service = ? AND deployment = ?",
                [*checkpoint.dropped, *checkpoint.deployments_replaced],
            )
            db.executemany("DELETE FROM miner_groups WHERE service = ?", [(s,) for s in checkpoint.miners_replaced])
            db.executemany(
                "DELETE FROM deployment_templates WHERE service = ? AND deployment = ? AND template = ?",
                checkpoint.templates_gone,
            )
            db.executemany(
                "INSERT INTO miners (service, state) VALUES (?, ?) "
                "ON CONFLICT (service) DO UPDATE SET state = excluded.state",
                checkpoint.miners.items(),
            )
            db.executemany(
                "INSERT INTO miner_groups (service, key, state) VALUES (?, ?, ?) "
                "ON CONFLICT (service, key) DO UPDATE SET state = excluded.state",
                [(service, key, state) for (service, key), state in checkpoint.groups.items()],
            )
            db.executemany(
                "INSERT INTO deployments (service, deployment, state) VALUES (?, ?, ?) "
                "ON CONFLICT (service, deployment) DO UPDATE SET state = excluded.state",
                [(service, deployment, state) for (service, deployment), state in checkpoint.deployments.items()],
            )
            db.executemany(
                "INSERT INTO deployment_templates (service, deployment, template, state) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (service, deployment, template) DO UPDATE SET state = excluded.state",
                [(s, d, template, state) for (s, d, template), state in checkpoint.templates.items()],
            )
            db.executemany(
                "INSERT INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?) "
                "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                [(topic, partition, offset) for (topic, partition), offset in checkpoint.offsets.items()],
            )
            self._write_idempotency(checkpoint)

    def maintain(self) -> None:
        """Keeps the file bounded: WAL copied back and truncated, free pages returned (incremental vacuum)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:  # INCREMENTAL (new files)
                # executescript steps the pragma to the end: execute() would free one page per call.
                self._db.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def delete_analyses(self, ids: list[str]) -> None:
        with self._lock, self._transaction():
            self._db.executemany("DELETE FROM analyses WHERE id = ?", [(i,) for i in ids])

    def add_feedback(self, feedback: Feedback) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO feedback (id, service, created_at, body) VALUES (?, ?, ?, ?)",
                (feedback.id, feedback.service, feedback.created_at.isoformat(), feedback.model_dump_json().encode()),
            )

    def list_feedback(self, service: str | None = None) -> list[Feedback]:
        with self._lock:
            if service is None:
                rows = self._db.execute("SELECT body FROM feedback ORDER BY created_at").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT body FROM feedback WHERE service = ? ORDER BY created_at", (service,)
                ).fetchall()
        return [Feedback.model_validate_json(body) for (body,) in rows]

    def delete_feedback(self, feedback_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM feedback WHERE id = ?", (feedback_id,)).rowcount > 0

    def save_mark(self, mark: DeploymentMark) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO deployment_marks (service, deployment, body) VALUES (?, ?, ?) "
                "ON CONFLICT (service, deployment) DO UPDATE SET body = excluded.body",
                (mark.service, mark.deployment, mark.model_dump_json().encode()),
            )

    def load_marks(self) -> list[DeploymentMark]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM deployment_marks").fetchall()
        return [DeploymentMark.model_validate_json(body) for (body,) in rows]

    def save_analysis(self, record: AnalysisRecord) -> None:
        body = record.to_json()
        with self._lock:
            self._db.execute(
                "INSERT INTO analyses (id, service, body) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                (record.id, record.service, body),
            )

    def load_analyses(self) -> list[AnalysisRecord]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM analyses").fetchall()
        return [AnalysisRecord.from_json(body) for (body,) in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
