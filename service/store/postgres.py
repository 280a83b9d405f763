"""The PostgreSQL store (``LOGCANARY_STORE_URL=postgresql://...``): the same interface and exactly-once contract as
the SQLite store. A checkpoint's engine rows, Kafka offsets and idempotency keys are written in ONE transaction.

The schema is created and upgraded by the service itself at start: ``MIGRATIONS`` are numbered, each applied at
most once and recorded in ``schema_version``, all pending ones in one transaction under a PostgreSQL advisory lock,
so two replicas starting at once never both migrate and a failed migration leaves the previous schema intact.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from service.schemas import DeploymentMark, Feedback
from service.store.base import AnalysisRecord, Checkpoint, StoreOpenError
from service.store.codec import StoredState

log = logging.getLogger(__name__)

# (version, what it does, SQL). Append only: a released migration is never edited, a change is a new one.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "engine rows (codec format 2), offsets, idempotency keys, feedback, analyses, deployment marks",
        """
        CREATE TABLE miners (service TEXT PRIMARY KEY, state BYTEA NOT NULL);
        CREATE TABLE miner_groups (
            service TEXT NOT NULL, key TEXT NOT NULL, state BYTEA NOT NULL, PRIMARY KEY (service, key)
        );
        CREATE TABLE deployments (
            service TEXT NOT NULL, deployment TEXT NOT NULL, state BYTEA NOT NULL, PRIMARY KEY (service, deployment)
        );
        CREATE TABLE deployment_templates (
            service TEXT NOT NULL, deployment TEXT NOT NULL, template TEXT NOT NULL, state BYTEA NOT NULL,
            PRIMARY KEY (service, deployment, template)
        );
        CREATE TABLE idempotency_keys (
            key TEXT PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL, fingerprint TEXT NOT NULL,
            status INTEGER NOT NULL, body BYTEA NOT NULL
        );
        CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
        CREATE TABLE offsets (
            topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset BIGINT NOT NULL,
            PRIMARY KEY (topic, partition)
        );
        CREATE TABLE feedback (
            id TEXT PRIMARY KEY, service TEXT NOT NULL, created_at TEXT NOT NULL, body BYTEA NOT NULL
        );
        CREATE INDEX feedback_service ON feedback (service);
        CREATE TABLE analyses (id TEXT PRIMARY KEY, service TEXT NOT NULL, body BYTEA NOT NULL);
        CREATE TABLE deployment_marks (
            service TEXT NOT NULL, deployment TEXT NOT NULL, body BYTEA NOT NULL, PRIMARY KEY (service, deployment)
        );
        """,
    ),
    (
        2,
        "analyses: status and finished_at as columns (filled from the stored bodies), indexed for SQL queries",
        """
        ALTER TABLE analyses ADD COLUMN status TEXT, ADD COLUMN finished_at DOUBLE PRECISION;
        UPDATE analyses SET
            status = convert_from(body, 'UTF8')::jsonb ->> 'status',
            finished_at = (convert_from(body, 'UTF8')::jsonb ->> 'finished_at')::double precision;
        ALTER TABLE analyses ALTER COLUMN status SET NOT NULL;
        CREATE INDEX analyses_status ON analyses (status, finished_at);
        """,
    ),
)
LATEST = MIGRATIONS[-1][0]
CONNECT_TIMEOUT_SECONDS = 10


def redacted(url: str) -> str:
    """The URL with its password (if any) replaced by ***, for messages and logs."""
    return re.sub(r"^(\w+://[^:/@]*):[^@/]*@", r"\1:***@", url)


def _lock_key(schema: str | None) -> int:
    """The advisory lock of one schema's migrations: a signed 64-bit number derived from its name."""
    digest = hashlib.blake2b(f"logcanary-migrations\x1f{schema or ''}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def migrate(db: psycopg.Connection[Any], schema: str | None, target: int = LATEST) -> list[int]:
    """Applies the migrations newer than the schema's version, up to ``target``; returns those applied.

    One transaction under ``pg_advisory_xact_lock``: a second process starting at the same time waits, then finds
    nothing left to do. A database migrated past ``target`` by a newer logcanary is refused, not guessed at.
    With a ``schema``, the connection's search_path is set to it (and stays so): the tables live there only.
    """
    applied: list[int] = []
    if schema is not None:
        db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(schema),))
        if schema is not None:
            db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        current = int(row[0]) if row else 0
        if current > LATEST:
            raise StoreOpenError(
                f"the PostgreSQL store is at schema version {current}, newer than this logcanary knows ({LATEST}): "
                "run a logcanary at least as new as the one that migrated it (LOGCANARY_STORE_URL, "
                "LOGCANARY_STORE_SCHEMA)"
            )
        for version, description, statements in MIGRATIONS:
            if current < version <= target:
                db.execute(statements.encode())  # several statements: no parameters, sent as one simple query
                db.execute("INSERT INTO schema_version (version, description) VALUES (%s, %s)", (version, description))
                applied.append(version)
    if applied:
        log.info("PostgreSQL store migrated to schema version %d (applied %s)", applied[-1], applied)
    return applied


class PostgresStore:
    """One connection behind a lock (as the SQLite store), reopened after it breaks; autocommit outside the
    explicit transactions."""

    def __init__(self, url: str, schema: str | None = None) -> None:
        self.url = url
        self.schema = schema
        self._lock = threading.Lock()
        self._db: psycopg.Connection[Any] | None = None
        try:
            db = self._connection()
            migrate(db, schema)
        except psycopg.Error as exc:
            if self._db is not None:
                self._db.close()
            where = f"LOGCANARY_STORE_URL={redacted(url)}" + (
                f", LOGCANARY_STORE_SCHEMA={schema}" if schema is not None else ""
            )
            raise StoreOpenError(f"cannot open the PostgreSQL store ({where}): {str(exc).strip()}") from exc

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection, or a new one when there is none or it broke (a server restart, a failover)."""
        db = self._db
        if db is not None and not db.closed and not db.broken:
            return db
        if db is not None:
            log.warning("PostgreSQL connection lost; reconnecting")
            db.close()
        options: dict[str, Any] = {"autocommit": True, "application_name": "logcanary"}
        if "connect_timeout" not in self.url:
            options["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        db = psycopg.connect(self.url, **options)
        if self.schema is not None:
            db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        self._db = db
        return db

    def load_state(self) -> StoredState:
        stored = StoredState()
        with self._lock:
            db = self._connection()
            with db.transaction():  # one snapshot of every table (REPEATABLE READ below)
                db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                stored.miners = {s: bytes(b) for s, b in db.execute("SELECT service, state FROM miners")}
                for service, key, state in db.execute(
                    'SELECT service, key, state FROM miner_groups ORDER BY service, key COLLATE "C"'
                ):
                    stored.groups.setdefault(service, []).append((key, bytes(state)))
                for service, deployment, state in db.execute("SELECT service, deployment, state FROM deployments"):
                    stored.deployments[(service, deployment)] = bytes(state)
                for service, deployment, template, state in db.execute(
                    "SELECT service, deployment, template, state FROM deployment_templates"
                ):
                    stored.templates.setdefault((service, deployment), []).append((template, bytes(state)))
        return stored

    def load_offsets(self) -> dict[tuple[str, int], int]:
        with self._lock:
            rows = self._connection().execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def load_idempotency_keys(self, since: float) -> list[tuple[str, float, str]]:
        with self._lock:
            rows = (
                self._connection()
                .execute("SELECT key, created_at, fingerprint FROM idempotency_keys WHERE created_at >= %s", (since,))
                .fetchall()
            )
        return [(key, created_at, fingerprint) for key, created_at, fingerprint in rows]

    def load_idempotency_result(self, key: str) -> tuple[int, bytes] | None:
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT status, body FROM idempotency_keys WHERE key = %s", (key,))
                .fetchone()
            )
        return None if row is None else (int(row[0]), bytes(row[1]))

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Deletions first, then upserts, offsets and idempotency keys: all in one transaction."""
        with self._lock:
            db = self._connection()
            with db.transaction(), db.cursor() as cur:

                def many(query: str, rows: Iterable[tuple[Any, ...]]) -> None:
                    params = list(rows)
                    if params:
                        cur.executemany(query.encode(), params)

                if checkpoint.dropped_services:
                    for table in ("miners", "miner_groups", "deployments", "deployment_templates"):
                        cur.execute(
                            sql.SQL("DELETE FROM {} WHERE service = ANY(%s)").format(sql.Identifier(table)),
                            (checkpoint.dropped_services,),
                        )
                many("DELETE FROM deployments WHERE service = %s AND deployment = %s", checkpoint.dropped)
                many(
                    "DELETE FROM deployment_templates WHERE service = %s AND deployment = %s",
                    [*checkpoint.dropped, *checkpoint.deployments_replaced],
                )
                many("DELETE FROM miner_groups WHERE service = %s", [(s,) for s in checkpoint.miners_replaced])
                many(
                    "DELETE FROM deployment_templates WHERE service = %s AND deployment = %s AND template = %s",
                    checkpoint.templates_gone,
                )
                many(
                    "INSERT INTO miners (service, state) VALUES (%s, %s) "
                    "ON CONFLICT (service) DO UPDATE SET state = excluded.state",
                    checkpoint.miners.items(),
                )
                many(
                    "INSERT INTO miner_groups (service, key, state) VALUES (%s, %s, %s) "
                    "ON CONFLICT (service, key) DO UPDATE SET state = excluded.state",
                    [(service, key, state) for (service, key), state in checkpoint.groups.items()],
                )
                many(
                    "INSERT INTO deployments (service, deployment, state) VALUES (%s, %s, %s) "
                    "ON CONFLICT (service, deployment) DO UPDATE SET state = excluded.state",
                    [(s, d, state) for (s, d), state in checkpoint.deployments.items()],
                )
                many(
                    "INSERT INTO deployment_templates (service, deployment, template, state) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (service, deployment, template) DO UPDATE SET state = excluded.state",
                    [(s, d, template, state) for (s, d, template), state in checkpoint.templates.items()],
                )
                many(
                    "INSERT INTO offsets (topic, partition, next_offset) VALUES (%s, %s, %s) "
                    "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                    [(topic, partition, offset) for (topic, partition), offset in checkpoint.offsets.items()],
                )
                many(
                    "INSERT INTO idempotency_keys (key, created_at, fingerprint, status, body) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET created_at = excluded.created_at, "
                    "fingerprint = excluded.fingerprint, status = excluded.status, body = excluded.body",
                    [(r.key, r.created_at, r.fingerprint, r.status, r.body) for r in checkpoint.idempotency],
                )
                cur.execute("DELETE FROM idempotency_keys WHERE created_at < %s", (checkpoint.idempotency_horizon,))
                cur.execute(
                    "DELETE FROM idempotency_keys WHERE key IN "
                    "(SELECT key FROM idempotency_keys ORDER BY created_at DESC OFFSET %s)",
                    (checkpoint.idempotency_max_keys,),
                )

    def maintain(self) -> None:
        """Nothing to do by hand: PostgreSQL's autovacuum reclaims the rows that checkpoints and retention delete.

        A broken connection is reopened here, so a server restart is noticed between checkpoints too."""
        with self._lock:
            self._connection().execute("SELECT 1")

    def add_feedback(self, feedback: Feedback) -> None:
        with self._lock:
            self._connection().execute(
                "INSERT INTO feedback (id, service, created_at, body) VALUES (%s, %s, %s, %s)",
                (feedback.id, feedback.service, feedback.created_at.isoformat(), feedback.model_dump_json().encode()),
            )

    def list_feedback(self, service: str | None = None) -> list[Feedback]:
        with self._lock:
            db = self._connection()
            if service is None:
                rows = db.execute("SELECT body FROM feedback ORDER BY created_at, id").fetchall()
            else:
                rows = db.execute(
                    "SELECT body FROM feedback WHERE service = %s ORDER BY created_at, id", (service,)
                ).fetchall()
        return [Feedback.model_validate_json(bytes(body)) for (body,) in rows]

    def delete_feedback(self, feedback_id: str) -> bool:
        with self._lock:
            return self._connection().execute("DELETE FROM feedback WHERE id = %s", (feedback_id,)).rowcount > 0

    def save_mark(self, mark: DeploymentMark) -> None:
        with self._lock:
            self._connection().execute(
                "INSERT INTO deployment_marks (service, deployment, body) VALUES (%s, %s, %s) "
                "ON CONFLICT (service, deployment) DO UPDATE SET body = excluded.body",
                (mark.service, mark.deployment, mark.model_dump_json().encode()),
            )

    def load_marks(self) -> list[DeploymentMark]:
        with self._lock:
            rows = self._connection().execute("SELECT body FROM deployment_marks").fetchall()
        return [DeploymentMark.model_validate_json(bytes(body)) for (body,) in rows]

    def save_analysis(self, record: AnalysisRecord) -> None:
        body = record.to_json()
        with self._lock:
            self._connection().execute(
                "INSERT INTO analyses (id, service, body, status, finished_at) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET body = excluded.body, status = excluded.status, "
                "finished_at = excluded.finished_at",
                (record.id, record.service, body, record.status, record.finished_at),
            )

    def load_analyses(self) -> list[AnalysisRecord]:
        with self._lock:
            rows = self._connection().execute("SELECT body FROM analyses").fetchall()
        return [AnalysisRecord.from_json(body) for (body,) in rows]

    def delete_analyses(self, ids: list[str]) -> None:
        if ids:
            with self._lock:
                self._connection().execute("DELETE FROM analyses WHERE id = ANY(%s)", (ids,))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
