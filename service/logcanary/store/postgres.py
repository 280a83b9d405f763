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
from collections.abc import Collection, Iterable
from typing import Any

import psycopg
from psycopg import sql

from logcanary.schemas import DeploymentMark, Feedback
from logcanary.store.base import AnalysisRecord, Checkpoint, Fenced, StoreOpenError
from logcanary.store.codec import StoredState

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
    (
        3,
        "scale-out: owners of the repartition topic's partitions (fencing epochs), the origin offsets each "
        "partition's state has counted (duplicates dropped), analysis leases",
        """
        CREATE TABLE shard_owners (
            topic TEXT NOT NULL, shard INTEGER NOT NULL, epoch BIGINT NOT NULL, owner TEXT NOT NULL,
            PRIMARY KEY (topic, shard)
        );
        CREATE TABLE origin_offsets (
            shard INTEGER NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset BIGINT NOT NULL,
            PRIMARY KEY (shard, topic, partition)
        );
        ALTER TABLE analyses ADD COLUMN lease_owner TEXT, ADD COLUMN lease_until DOUBLE PRECISION;
        """,
    ),
    (
        4,
        "scale-out: the repartition topic's partition count the state was built with (services map to partitions "
        "by it)",
        """
        CREATE TABLE repartition_topics (topic TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
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

    def load_state(self, services: Collection[str] | None = None) -> StoredState:
        """Every service's rows, or only those of ``services`` (a replica's share, a read elsewhere)."""
        stored = StoredState()
        where, params = ("", ()) if services is None else (" WHERE service = ANY(%s)", (list(services),))
        with self._lock:
            db = self._connection()
            with db.transaction():  # one snapshot of every table (REPEATABLE READ below)
                db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                stored.miners = {
                    s: bytes(b) for s, b in db.execute(f"SELECT service, state FROM miners{where}".encode(), params)
                }
                for service, key, state in db.execute(
                    f'SELECT service, key, state FROM miner_groups{where} ORDER BY service, key COLLATE "C"'.encode(),
                    params,
                ):
                    stored.groups.setdefault(service, []).append((key, bytes(state)))
                for service, deployment, state in db.execute(
                    f"SELECT service, deployment, state FROM deployments{where}".encode(), params
                ):
                    stored.deployments[(service, deployment)] = bytes(state)
                for service, deployment, template, state in db.execute(
                    f"SELECT service, deployment, template, state FROM deployment_templates{where}".encode(), params
                ):
                    stored.templates.setdefault((service, deployment), []).append((template, bytes(state)))
        return stored

    def service_names(self) -> list[str]:
        with self._lock:
            rows = self._connection().execute("SELECT service FROM miners ORDER BY service").fetchall()
        return [name for (name,) in rows]

    # -- scale-out: ownership of the repartition topic's partitions, fenced ----------------------------------

    def claim_shards(self, topic: str, shards: Collection[int], owner: str) -> dict[int, int]:
        """Takes the partitions Kafka assigned to ``owner``: each one's epoch goes up by one, and the checkpoints
        of a former owner that still holds the old epoch are refused from now on (:class:`Fenced`)."""
        epochs: dict[int, int] = {}
        with self._lock:
            db = self._connection()
            with db.transaction():
                for shard in sorted(shards):  # one order for every replica: no deadlock between two claims
                    row = db.execute(
                        "INSERT INTO shard_owners (topic, shard, epoch, owner) VALUES (%s, %s, 1, %s) "
                        "ON CONFLICT (topic, shard) DO UPDATE SET epoch = shard_owners.epoch + 1, "
                        "owner = excluded.owner RETURNING epoch",
                        (topic, shard, owner),
                    ).fetchone()
                    assert row is not None
                    epochs[shard] = int(row[0])
        return epochs

    def record_partitions(self, topic: str, partitions: int) -> int:
        """The repartition topic's partition count the stored state was built with: ``partitions`` if none was
        recorded yet (it is recorded now), else the recorded one."""
        with self._lock:
            db = self._connection()
            with db.transaction():
                db.execute(
                    "INSERT INTO repartition_topics (topic, partitions) VALUES (%s, %s) ON CONFLICT (topic) DO NOTHING",
                    (topic, partitions),
                )
                row = db.execute("SELECT partitions FROM repartition_topics WHERE topic = %s", (topic,)).fetchone()
        assert row is not None
        return int(row[0])

    def load_origin_offsets(self, shards: Collection[int]) -> dict[tuple[int, str, int], int]:
        """(shard, origin topic, origin partition) -> the next origin offset that shard's state has not counted."""
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "SELECT shard, topic, partition, next_offset FROM origin_offsets WHERE shard = ANY(%s)",
                    (list(shards),),
                )
                .fetchall()
            )
        return {(shard, topic, partition): offset for shard, topic, partition, offset in rows}

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

    def load_idempotency_key(self, key: str) -> tuple[str, int, bytes] | None:
        """(fingerprint, status, body) of a key any replica saved: a retry may reach another replica."""
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT fingerprint, status, body FROM idempotency_keys WHERE key = %s", (key,))
                .fetchone()
            )
        return None if row is None else (str(row[0]), int(row[1]), bytes(row[2]))

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Deletions first, then upserts, offsets and idempotency keys: all in one transaction."""
        with self._lock:
            db = self._connection()
            with db.transaction(), db.cursor() as cur:

                def many(query: str, rows: Iterable[tuple[Any, ...]]) -> None:
                    params = list(rows)
                    if params:
                        cur.executemany(query.encode(), params)

                if checkpoint.fence is not None:
                    topic, epochs = checkpoint.fence
                    # Locks the owner rows: a claim by the next owner waits for this transaction, or this one
                    # finds the claim and writes nothing.
                    current = dict(
                        cur.execute(
                            "SELECT shard, epoch FROM shard_owners WHERE topic = %s AND shard = ANY(%s) FOR UPDATE",
                            (topic, list(epochs)),
                        ).fetchall()
                    )
                    lost = sorted(shard for shard, epoch in epochs.items() if current.get(shard) != epoch)
                    if lost:
                        raise Fenced(lost)
                many(
                    "INSERT INTO origin_offsets (shard, topic, partition, next_offset) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (shard, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                    [
                        (shard, topic, partition, offset)
                        for (shard, topic, partition), offset in checkpoint.origins.items()
                    ],
                )

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

    def load_analysis(self, analysis_id: str) -> AnalysisRecord | None:
        with self._lock:
            row = self._connection().execute("SELECT body FROM analyses WHERE id = %s", (analysis_id,)).fetchone()
        return None if row is None else AnalysisRecord.from_json(row[0])

    def lease_analyses(self, owner: str, now: float, until: float) -> list[AnalysisRecord]:
        """The running analyses ``owner`` may evaluate until ``until``: those it holds, and those whose lease
        ran out (their evaluator died or stopped), taken over. One evaluator at a time per analysis."""
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "UPDATE analyses SET lease_owner = %s, lease_until = %s WHERE status = 'running' AND "
                    "(lease_owner IS NULL OR lease_owner = %s OR lease_until < %s) RETURNING body",
                    (owner, until, owner, now),
                )
                .fetchall()
            )
        return [AnalysisRecord.from_json(body) for (body,) in rows]

    def save_leased_analysis(self, record: AnalysisRecord, owner: str) -> bool:
        """Saves an evaluation only while ``owner`` still holds the lease (False: another replica took over)."""
        with self._lock:
            cursor = self._connection().execute(
                "UPDATE analyses SET body = %s, status = %s, finished_at = %s WHERE id = %s AND lease_owner = %s "
                "AND status = 'running'",
                (record.to_json(), record.status, record.finished_at, record.id, owner),
            )
            return cursor.rowcount > 0

    def delete_analyses(self, ids: list[str]) -> None:
        if ids:
            with self._lock:
                self._connection().execute("DELETE FROM analyses WHERE id = ANY(%s)", (ids,))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
