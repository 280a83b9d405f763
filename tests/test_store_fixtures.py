"""Stores written by today's code open with this one: a SQLite file made before versioned migrations and a
PostgreSQL schema at migration 4 (tests/data/make_store_fixtures.py, commit 0f9b04b) are migrated to the latest
version, hold exactly what was written, take a checkpoint and reopen. Both dialects build the same schema, and
PostgreSQL's released migrations run the SQL they always ran."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

from logcanary.live.single_node import SingleNode
from logcanary.schemas import FeedbackChange
from logcanary.settings import Settings, SettingsError
from logcanary.store.base import AnalysisRecord, Checkpoint, Fenced, SharedStore, Store, StoreOpenError
from logcanary.store.dialect import POSTGRESQL
from logcanary.store.factory import open_shared_store, open_store
from logcanary.store.postgres import PostgresStore
from logcanary.store.schema import LATEST, MIGRATIONS, split
from logcanary.store.sqlite import SqliteStore
from logcanary.verification.history import NO_ENVIRONMENT, AnalysisFilter, summarize
from logcanary.verification.models import AnalysisOut
from tests.postgres_helpers import TEST_URL, fresh_schema
from tests.test_store import counts, without_sizes

DATA = Path(__file__).parent / "data"
EXPECTED: dict[str, Any] = json.loads((DATA / "store-fixtures.expected.json").read_text())
TOPIC = "logcanary.by-service"
T0 = 1_700_000_000.0
# The same column type, spelled by each: SQLite's INTEGER is 64-bit, and it keeps CURRENT_TIMESTAMP as text.
SAME_TYPE = {
    "text": "text",
    "blob": "blob",
    "bytea": "blob",
    "real": "real",
    "double precision": "real",
    "integer": "integer",
    "bigint": "integer",
    "timestamp with time zone": "text",
}
Schema = dict[str, Any]  # table -> [(column, type, not null, primary key position)], plus "indexes"


def sqlite_schema(path: Path) -> Schema:
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        schema: Schema = {
            table: [
                (name, SAME_TYPE[kind.lower()], bool(notnull or pk), pk or None)
                for _, name, kind, notnull, _, pk in db.execute(f"PRAGMA table_info({table})")
            ]
            for table in tables
        }
        indexes = db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        schema["indexes"] = sorted(
            (name, table, [column for _, _, column in db.execute(f"PRAGMA index_info({name})")])
            for name, table in indexes.fetchall()
        )
    return schema


def postgres_schema(name: str) -> Schema:
    with psycopg.connect(TEST_URL, autocommit=True) as db:
        keys = {
            (table, column): position
            for table, column, position in db.execute(
                "SELECT k.table_name, k.column_name, k.ordinal_position FROM information_schema.table_constraints c "
                "JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name) "
                "WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = %s",
                (name,),
            )
        }
        schema: Schema = {}
        for table, column, kind, nullable in db.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = %s ORDER BY table_name, ordinal_position",
            (name,),
        ):
            schema.setdefault(table, []).append((column, SAME_TYPE[kind], nullable == "NO", keys.get((table, column))))
        indexes = db.execute(
            "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = %s AND indexname NOT LIKE %s",
            (name, "%_pkey"),
        )
        schema["indexes"] = sorted(
            (index, table, re.findall(r"\((.*)\)$", definition)[0].split(", ")) for index, table, definition in indexes
        )
    return dict(sorted(schema.items()))


def versions(store: Store) -> list[int]:
    """The versions recorded, read through the store's own connection (the same SQL on both)."""
    assert isinstance(store, SqliteStore | PostgresStore)
    with store._session() as session:
        return [int(v) for (v,) in session.rows("SELECT version FROM schema_version ORDER BY version")]


def opened(state_dir: Path, **settings: Any) -> tuple[SingleNode, Store]:
    config = Settings(state_dir=state_dir, max_deployments_per_service=3, **settings)
    store = open_store(config)
    state = SingleNode(config, config, store)
    state.load()
    return state, store


def assert_holds(state: SingleNode, store: Store, expected: dict[str, Any]) -> None:
    """Everything today's code wrote, as this code reads it."""
    assert counts(state) == expected["engine"]
    miners = {name: without_sizes(miner) for name, miner in expected["miners"].items()}
    assert {name: without_sizes(s.miner.to_state()) for name, s in state.engine.services.items()} == miners
    assert state.offsets == {(topic, partition): offset for topic, partition, offset in expected["offsets"]}
    keys = expected["idempotency"]
    assert sorted(store.load_idempotency_keys(0.0)) == [(key, created, sha) for key, created, sha, _, _ in keys]
    for key, _, _, status, body in keys:
        assert store.load_idempotency_result(key) == (status, body.encode())
    assert [rule.model_dump(mode="json") for rule in store.list_feedback()] == expected["feedback"]
    assert [mark.model_dump(mode="json") for mark in store.load_marks()] == expected["marks"]
    assert {r.id: orjson.loads(r.to_json()) for r in store.load_analyses()} == expected["analyses"]
    old_analyses_have_no_environment(store)
    assert set(store.load_state(["orders"]).miners) == {"orders"}  # one service's rows (scale-out's reads)


def by_id(record: AnalysisRecord) -> str:
    return record.id


def old_analyses_have_no_environment(store: Store) -> None:
    """Analyses stored before migration 7 load, each with no environment, release or labels (shown, not dropped),
    and are listed under no environment; a release column of NULL finds none of them."""
    records = store.load_analyses()
    assert records
    for record in records:
        assert (record.request.environment, record.request.release, record.request.labels) == (None, None, {})
        assert AnalysisOut.of(record).environment is None
    assert [c.key for c in summarize(records, AnalysisFilter(), "environment")] == [NO_ENVIRONMENT]
    assert isinstance(store, SqliteStore | PostgresStore)
    assert store.load_release("anything") == []  # the column exists and is queried
    with store._session() as session:  # migration 7's columns, filled from the bodies: NULL, and the start
        rows = session.rows("SELECT id, environment, release, started_at FROM analyses ORDER BY id")
    assert [tuple(row) for row in rows] == [(r.id, None, None, r.started_at) for r in sorted(records, key=by_id)]


def reviews_work(store: Store) -> None:
    """Migration 5's tables on a migrated store: a rule's audit trail beside the rules it had, the map's places."""
    before = store.list_feedback()[0]
    change = FeedbackChange(
        id="c-1", service=before.service, change="undone", at=datetime.now(UTC), author="ana", reason="", rule=before
    )
    assert store.change_feedback(change)
    assert [c.id for c in store.list_feedback_changes(before.service)] == ["c-1"]
    assert before.id not in {f.id for f in store.list_feedback()}
    assert store.save_places("orders", {"t1": (0.25, 0.5)}) == {"t1": (0.25, 0.5)}
    assert store.save_places("orders", {"t1": (0.9, 0.9), "t2": (0.1, 0.2)}) == {"t1": (0.25, 0.5), "t2": (0.1, 0.2)}
    assert store.load_places("orders") == {"t1": (0.25, 0.5), "t2": (0.1, 0.2)}


def checkpoint_and_reopen(state: SingleNode, store: Store, state_dir: Path, **settings: Any) -> None:
    """The migrated store takes a checkpoint, and a restart loads it exactly."""
    state.engine.observe("orders", "v2", "a brand new kind of event", T0 + 900, "h1", "info")
    state.offsets[("logs", 0)] += 1
    assert asyncio.run(state.checkpoint(force=True))
    expected, offsets = counts(state), dict(state.offsets)
    store.close()
    state, store = opened(state_dir, **settings)
    assert counts(state) == expected and state.offsets == offsets
    store.close()


def test_postgres_migrations_1_to_4_run_the_released_sql() -> None:
    """Rendering changed how PostgreSQL's released migrations are written, never what they run."""
    released = EXPECTED["postgres"]["migrations"]
    assert sorted(map(int, released)) == [1, 2, 3, 4]

    def normalized(statement: str) -> str:
        return re.sub(r"\s+", " ", statement).replace("( ", "(").replace(" )", ")").strip()

    for migration in MIGRATIONS[:4]:
        assert [normalized(s) for s in migration.statements(POSTGRESQL)] == [
            normalized(s) for s in split(released[str(migration.version)])
        ]


def test_a_sqlite_file_of_today_is_adopted_migrated_and_loads_exactly(tmp_path: Path) -> None:
    shutil.copy(DATA / "store-sqlite-0f9b04b.sqlite", tmp_path / "logcanary.sqlite")
    state, store = opened(tmp_path)
    assert versions(store) == list(range(1, LATEST + 1))
    assert_holds(state, store, EXPECTED["sqlite"])
    with contextlib.closing(sqlite3.connect(tmp_path / "logcanary.sqlite")) as db:
        assert db.execute("SELECT id, status, finished_at, lease_owner FROM analyses ORDER BY id").fetchall() == [
            ("a-done", "completed", T0 + 600, None),
            ("a-running", "running", None, None),
        ]  # migration 2's columns, filled from the bodies
        assert "adopted" in db.execute("SELECT description FROM schema_version WHERE version = 1").fetchone()[0]
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # a file keeps its own
    reviews_work(store)
    store.close()
    assert sqlite_schema(tmp_path / "logcanary.sqlite") == sqlite_schema(new_sqlite(tmp_path / "new"))
    checkpoint_and_reopen(*opened(tmp_path), tmp_path)


def new_sqlite(folder: Path) -> Path:
    SqliteStore(folder / "logcanary.sqlite").close()
    return folder / "logcanary.sqlite"


def test_a_failed_sqlite_migration_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """All pending migrations are one transaction: an analysis body without a status fails migration 2's NOT NULL,
    and the file is left as today's code wrote it (no schema_version, the old analyses table)."""
    path = tmp_path / "logcanary.sqlite"
    shutil.copy(DATA / "store-sqlite-0f9b04b.sqlite", path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("INSERT INTO analyses (id, service, body) VALUES ('bad', 'svc', CAST('{}' AS BLOB))")
    before = sqlite_schema(path)
    with pytest.raises(StoreOpenError, match="NOT NULL constraint failed"):
        SqliteStore(path)
    assert sqlite_schema(path) == before and "schema_version" not in before


def test_a_sqlite_file_migrated_past_this_code_is_refused(tmp_path: Path) -> None:
    path = new_sqlite(tmp_path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("INSERT INTO schema_version (version, description) VALUES (?, 'from the future')", (LATEST + 1,))
    with pytest.raises(StoreOpenError, match=re.escape(f"state file {path} is at schema version {LATEST + 1}, newer")):
        SqliteStore(path)


def test_the_sqlite_store_fences_as_postgresql_does(tmp_path: Path) -> None:
    """One implementation: the scale-out operations run on SQLite too (the lock is the file's)."""
    store = SqliteStore(tmp_path / "logcanary.sqlite")
    held = store.claim_shards(TOPIC, [0, 1], "replica-a")
    assert store.claim_shards(TOPIC, [1], "replica-b") == {1: 2}
    with pytest.raises(Fenced) as lost:
        store.write_checkpoint(Checkpoint(offsets={(TOPIC, 0): 5}, fence=(TOPIC, held)))
    assert lost.value.shards == [1] and store.load_offsets() == {}
    store.write_checkpoint(Checkpoint(fence=(TOPIC, {0: 1}), origins={(0, "logs", 2): 9}))
    assert store.load_origin_offsets([0, 1]) == {(0, "logs", 2): 9}
    assert store.record_partitions(TOPIC, 12) == 12 and store.record_partitions(TOPIC, 6) == 12
    store.close()


def restore_dump(schema: str) -> None:
    """tests/data/store-postgres-v4.sql, in ``schema`` instead of the one it was dumped from."""
    text = (DATA / "store-postgres-v4.sql").read_text()
    text = re.sub(rf"\b{EXPECTED['postgres']['schema']}\b", schema, text)
    with psycopg.connect(TEST_URL, autocommit=True) as db:
        db.execute(text.encode())  # no parameters: one simple query of many statements


def test_a_postgresql_schema_at_version_4_is_migrated_and_loads_exactly(tmp_path: Path, pg_schema: str) -> None:
    restore_dump(pg_schema)
    settings: dict[str, Any] = {"store_url": TEST_URL, "store_schema": pg_schema}
    state, store = opened(tmp_path, **settings)
    assert versions(store) == list(range(1, LATEST + 1))
    expected = EXPECTED["postgres"]
    assert_holds(state, store, expected)
    shared = open_shared_store(Settings(**settings))
    assert shared.load_origin_offsets([0, 1, 2]) == {(s, t, p): o for s, t, p, o in expected["origin_offsets"]}
    assert shared.record_partitions(TOPIC, 6) == expected["repartition_topics"][TOPIC]
    [(leased, (owner, until))] = expected["leases"].items()
    assert shared.lease_analyses("replica-b", now=until - 1, until=until + 10) == []  # still replica-a's
    assert [r.id for r in shared.lease_analyses("replica-b", now=until + 1, until=until + 10)] == [leased]
    record = shared.load_analysis(leased)
    assert record is not None and not shared.save_leased_analysis(record, owner)  # replica-a lost it
    assert shared.claim_shards(TOPIC, [2], "replica-c") == {2: 3}
    with pytest.raises(Fenced):  # replica-b claimed partition 2 from replica-a before the dump
        shared.write_checkpoint(Checkpoint(fence=(TOPIC, {0: 1, 2: 1})))
    shared.close()
    with fresh_schema() as other:
        PostgresStore(TEST_URL, other).close()
        assert postgres_schema(pg_schema) == postgres_schema(other)
    checkpoint_and_reopen(state, store, tmp_path, **settings)
    state, store = opened(tmp_path, **settings)
    reviews_work(store)
    store.close()


def test_new_stores_of_both_dialects_have_the_same_schema(tmp_path: Path, pg_schema: str) -> None:
    PostgresStore(TEST_URL, pg_schema).close()
    postgres = postgres_schema(pg_schema)
    assert postgres == sqlite_schema(new_sqlite(tmp_path))
    assert {"schema_version", "analyses", "shard_owners", "origin_offsets", "repartition_topics"} <= set(postgres)
    assert [column for column, *_ in postgres["analyses"]] == [
        "id", "service", "body", "status", "finished_at", "lease_owner", "lease_until", "environment", "release",
        "started_at",
    ]  # fmt: skip


def test_a_shared_store_is_postgresql_only(tmp_path: Path, pg_schema: str) -> None:
    for url in (None, f"sqlite://{tmp_path}/s.sqlite"):
        with pytest.raises(SettingsError, match="LOGCANARY_STORE_URL must name PostgreSQL"):
            open_shared_store(Settings(state_dir=tmp_path, store_url=url))
    store: SharedStore = open_shared_store(Settings(store_url=TEST_URL, store_schema=pg_schema))
    assert isinstance(store, PostgresStore)
    store.close()
    with psycopg.connect(TEST_URL, autocommit=True) as db:  # the schema was made: the store is usable
        db.execute(sql.SQL("SELECT count(*) FROM {}.miners").format(sql.Identifier(pg_schema)))
