"""The store's schema, one for SQLite and PostgreSQL: numbered migrations, recorded in ``schema_version``.

Append only: a released migration is never edited, a change is a new one. Steps are neutral SQL rendered per
dialect (:mod:`logcanary.store.dialect`); where SQLite cannot say what PostgreSQL says (several columns in one
``ALTER TABLE``, ``SET NOT NULL``, JSON read out of a BYTEA), an :class:`Each` step gives each its own statements.
PostgreSQL has run 1-4 since they were released: their PostgreSQL rendering is that SQL, statement for statement
(tests/test_store_fixtures.py compares it with the released text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from logcanary.store.base import StoreOpenError
from logcanary.store.dialect import Dialect
from logcanary.store.sql import Session


@dataclass(frozen=True, slots=True)
class Each:
    """One step in each dialect's own words (run as written, not rendered)."""

    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]


def split(script: str) -> tuple[str, ...]:
    """A script's statements (none of ours holds a ``;`` in a literal)."""
    return tuple(statement.strip() for statement in script.split(";") if statement.strip())


class Migration(NamedTuple):
    version: int
    description: str
    steps: tuple[str | Each, ...]

    def statements(self, dialect: Dialect) -> list[str]:
        """The statements this migration runs on ``dialect``, in order."""
        out: list[str] = []
        for step in self.steps:
            out.extend(getattr(step, dialect.name) if isinstance(step, Each) else [dialect.render(step)])
        return out


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "engine rows (codec format 2), offsets, idempotency keys, feedback, analyses, deployment marks",
        split(
            """
            CREATE TABLE miners (service TEXT PRIMARY KEY, state {blob} NOT NULL);
            CREATE TABLE miner_groups (
                service TEXT NOT NULL, key TEXT NOT NULL, state {blob} NOT NULL, PRIMARY KEY (service, key)
            );
            CREATE TABLE deployments (
                service TEXT NOT NULL, deployment TEXT NOT NULL, state {blob} NOT NULL,
                PRIMARY KEY (service, deployment)
            );
            CREATE TABLE deployment_templates (
                service TEXT NOT NULL, deployment TEXT NOT NULL, template TEXT NOT NULL, state {blob} NOT NULL,
                PRIMARY KEY (service, deployment, template)
            );
            CREATE TABLE idempotency_keys (
                key TEXT PRIMARY KEY, created_at {double} NOT NULL, fingerprint TEXT NOT NULL,
                status INTEGER NOT NULL, body {blob} NOT NULL
            );
            CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
            CREATE TABLE offsets (
                topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset {bigint} NOT NULL,
                PRIMARY KEY (topic, partition)
            );
            CREATE TABLE feedback (
                id TEXT PRIMARY KEY, service TEXT NOT NULL, created_at TEXT NOT NULL, body {blob} NOT NULL
            );
            CREATE INDEX feedback_service ON feedback (service);
            CREATE TABLE analyses (id TEXT PRIMARY KEY, service TEXT NOT NULL, body {blob} NOT NULL);
            CREATE TABLE deployment_marks (
                service TEXT NOT NULL, deployment TEXT NOT NULL, body {blob} NOT NULL, PRIMARY KEY (service, deployment)
            );
            """
        ),
    ),
    Migration(
        2,
        "analyses: status and finished_at as columns (filled from the stored bodies), indexed for SQL queries",
        (
            Each(
                # No ALTER COLUMN in SQLite: the table is rebuilt with the columns, filled from the JSON bodies.
                sqlite=split(
                    """
                    CREATE TABLE analyses_v2 (
                        id TEXT PRIMARY KEY, service TEXT NOT NULL, body BLOB NOT NULL, status TEXT NOT NULL,
                        finished_at REAL
                    );
                    INSERT INTO analyses_v2 (id, service, body, status, finished_at)
                        SELECT id, service, body, json_extract(CAST(body AS TEXT), '$.status'),
                            json_extract(CAST(body AS TEXT), '$.finished_at')
                        FROM analyses;
                    DROP TABLE analyses;
                    ALTER TABLE analyses_v2 RENAME TO analyses;
                    CREATE INDEX analyses_status ON analyses (status, finished_at);
                    """
                ),
                postgresql=split(
                    """
                    ALTER TABLE analyses ADD COLUMN status TEXT, ADD COLUMN finished_at DOUBLE PRECISION;
                    UPDATE analyses SET
                        status = convert_from(body, 'UTF8')::jsonb ->> 'status',
                        finished_at = (convert_from(body, 'UTF8')::jsonb ->> 'finished_at')::double precision;
                    ALTER TABLE analyses ALTER COLUMN status SET NOT NULL;
                    CREATE INDEX analyses_status ON analyses (status, finished_at);
                    """
                ),
            ),
        ),
    ),
    Migration(
        3,
        "scale-out: owners of the repartition topic's partitions (fencing epochs), the origin offsets each "
        "partition's state has counted (duplicates dropped), analysis leases",
        (
            *split(
                """
                CREATE TABLE shard_owners (
                    topic TEXT NOT NULL, shard INTEGER NOT NULL, epoch {bigint} NOT NULL, owner TEXT NOT NULL,
                    PRIMARY KEY (topic, shard)
                );
                CREATE TABLE origin_offsets (
                    shard INTEGER NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                    next_offset {bigint} NOT NULL, PRIMARY KEY (shard, topic, partition)
                );
                """
            ),
            Each(
                sqlite=(
                    "ALTER TABLE analyses ADD COLUMN lease_owner TEXT",
                    "ALTER TABLE analyses ADD COLUMN lease_until REAL",
                ),
                postgresql=(
                    "ALTER TABLE analyses ADD COLUMN lease_owner TEXT, ADD COLUMN lease_until DOUBLE PRECISION",
                ),
            ),
        ),
    ),
    Migration(
        4,
        "scale-out: the repartition topic's partition count the state was built with (services map to partitions "
        "by it)",
        ("CREATE TABLE repartition_topics (topic TEXT PRIMARY KEY, partitions INTEGER NOT NULL)",),
    ),
    Migration(
        5,
        "the reviewer's view: the audit trail of feedback rules (created, changed, undone), the cluster map's places "
        "(given once per service and template, then kept)",
        split(
            """
            CREATE TABLE feedback_changes (
                id TEXT PRIMARY KEY, service TEXT NOT NULL, feedback_id TEXT NOT NULL, at TEXT NOT NULL,
                body {blob} NOT NULL
            );
            CREATE INDEX feedback_changes_service ON feedback_changes (service, at);
            CREATE TABLE map_places (
                service TEXT NOT NULL, template TEXT NOT NULL, x {double} NOT NULL, y {double} NOT NULL,
                PRIMARY KEY (service, template)
            );
            """
        ),
    ),
    Migration(
        6,
        "scale-out: the settings every replica must share (one row: their fingerprint and values)",
        (
            "CREATE TABLE cluster_settings (id INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL, body TEXT NOT NULL, "
            "adopted_at {timestamp} NOT NULL DEFAULT {now})",
        ),
    ),
    Migration(
        7,
        "analyses: environment, release and started_at as columns (filled from the stored bodies: none for an "
        "analysis stored before it had them), indexed for history and release queries",
        (
            Each(
                sqlite=(
                    "ALTER TABLE analyses ADD COLUMN environment TEXT",
                    "ALTER TABLE analyses ADD COLUMN release TEXT",
                    "ALTER TABLE analyses ADD COLUMN started_at REAL",
                    "UPDATE analyses SET environment = json_extract(CAST(body AS TEXT), '$.request.environment'), "
                    "release = json_extract(CAST(body AS TEXT), '$.request.release'), "
                    "started_at = json_extract(CAST(body AS TEXT), '$.started_at')",
                ),
                postgresql=(
                    "ALTER TABLE analyses ADD COLUMN environment TEXT, ADD COLUMN release TEXT, "
                    "ADD COLUMN started_at DOUBLE PRECISION",
                    "UPDATE analyses SET "
                    "environment = convert_from(body, 'UTF8')::jsonb -> 'request' ->> 'environment', "
                    "release = convert_from(body, 'UTF8')::jsonb -> 'request' ->> 'release', "
                    "started_at = (convert_from(body, 'UTF8')::jsonb ->> 'started_at')::double precision",
                ),
            ),
            "CREATE INDEX analyses_environment ON analyses (environment, started_at)",
            "CREATE INDEX analyses_release ON analyses (release)",
        ),
    ),
)
LATEST = MIGRATIONS[-1].version

SCHEMA_VERSION = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
    "applied_at {timestamp} NOT NULL DEFAULT {now})"
)
RECORD_VERSION = "INSERT INTO schema_version (version, description) VALUES (?, ?)"


def upgrade(session: Session, dialect: Dialect, store: str, settings: str, target: int = LATEST) -> list[int]:
    """Applies the migrations newer than the recorded version, up to ``target``, in the caller's transaction (which
    must exclude other migrators); returns those applied. ``store`` and ``settings`` name it for the operator.

    A schema migrated past what this code knows is refused, not guessed at: roll forward, not back."""
    session.run(dialect.render(SCHEMA_VERSION))
    row = session.one("SELECT coalesce(max(version), 0) FROM schema_version")
    current = int(row[0]) if row else 0
    if current > LATEST:
        raise StoreOpenError(
            f"{store} is at schema version {current}, newer than this logcanary knows ({LATEST}): "
            f"run a logcanary at least as new as the one that migrated it ({settings})"
        )
    applied: list[int] = []
    for migration in MIGRATIONS:
        if current < migration.version <= target:
            for statement in migration.statements(dialect):
                session.run(statement)
            session.run(dialect.render(RECORD_VERSION), (migration.version, migration.description))
            applied.append(migration.version)
    return applied
