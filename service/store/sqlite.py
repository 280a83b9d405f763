"""The embedded default store: one SQLite file in WAL mode under the state directory."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import orjson

from service.schemas import DeploymentMark, Feedback
from service.store.base import AnalysisRecord, Checkpoint

SCHEMA = """
CREATE TABLE IF NOT EXISTS miners (service TEXT PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (
    service TEXT NOT NULL, deployment TEXT NOT NULL, state BLOB NOT NULL, PRIMARY KEY (service, deployment)
);
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
# older version gains the new ones (deployment_marks), and blobs without newer keys (a deployment's identities)
# decode with defaults.


class SqliteStore:
    """Thread-safe (one connection behind a lock); WAL keeps readers off the writer's back."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints in WAL mode, survives process kill
        self._db.executescript(SCHEMA)

    def load_miners(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._db.execute("SELECT service, state FROM miners").fetchall())

    def load_deployments(self) -> dict[tuple[str, str], bytes]:
        with self._lock:
            rows = self._db.execute("SELECT service, deployment, state FROM deployments").fetchall()
        return {(service, deployment): state for service, deployment, state in rows}

    def load_offsets(self) -> dict[tuple[str, int], int]:
        with self._lock:
            rows = self._db.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM deployments WHERE service = ? AND deployment = ?", checkpoint.dropped)
                self._db.executemany(
                    "INSERT INTO miners (service, state) VALUES (?, ?) "
                    "ON CONFLICT (service) DO UPDATE SET state = excluded.state",
                    checkpoint.miners.items(),
                )
                self._db.executemany(
                    "INSERT INTO deployments (service, deployment, state) VALUES (?, ?, ?) "
                    "ON CONFLICT (service, deployment) DO UPDATE SET state = excluded.state",
                    [(service, deployment, state) for (service, deployment), state in checkpoint.deployments.items()],
                )
                self._db.executemany(
                    "INSERT INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?) "
                    "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                    [(topic, partition, offset) for (topic, partition), offset in checkpoint.offsets.items()],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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
        body = orjson.dumps(
            {
                "id": record.id,
                "service": record.service,
                "request": record.request,
                "status": record.status,
                "started_at": record.started_at,
                "ends_at": record.ends_at,
                "verdict": record.verdict,
                "finished_at": record.finished_at,
            }
        )
        with self._lock:
            self._db.execute(
                "INSERT INTO analyses (id, service, body) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                (record.id, record.service, body),
            )

    def load_analyses(self) -> list[AnalysisRecord]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM analyses").fetchall()
        return [AnalysisRecord(**orjson.loads(body)) for (body,) in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
