"""Writes the store fixtures of today's formats with the code of commit 0f9b04b (before the stores were unified).

That code made SQLite files without ``schema_version`` (every table ``CREATE TABLE IF NOT EXISTS``, ``analyses``
without status or lease columns) and PostgreSQL schemas at migration 4. It writes:

* ``store-sqlite-0f9b04b.sqlite``: three services in two or three deployments, Kafka offsets, idempotency keys,
  feedback, deployment marks, a running and a completed analysis;
* ``store-postgres-v4.sql``: the same in a PostgreSQL schema, plus scale-out rows (partition owners, origin offsets,
  the repartition topic's partition count, a leased analysis), as ``pg_dump --inserts`` prints it (plain SQL any
  client runs; psql's ``\\restrict`` lines left out), schema ``lc_fixture_v4``;
* ``store-fixtures.expected.json``: what both hold, and the released PostgreSQL migrations' SQL.

Usage (PostgreSQL on this machine, pg_dump on PATH):
    git archive 0f9b04b service | tar -x -C SRC
    python tests/data/make_store_fixtures.py OUT_DIR SRC [POSTGRES_URL]
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, sys.argv[2])  # the old code, not this tree's

import orjson
import psycopg
from psycopg import sql

from logcanary.analysis.verdict import analyze
from logcanary.idempotency import IdempotencyRecord
from logcanary.schemas import AnalysisSpec, BaselineRef, CanaryRef, DeploymentMark, Feedback
from logcanary.settings import Settings
from logcanary.state import LiveState
from logcanary.store.base import AnalysisRecord, Checkpoint
from logcanary.store.postgres import MIGRATIONS, PostgresStore
from logcanary.store.sqlite import SqliteStore

SCHEMA = "lc_fixture_v4"
TOPIC = "logcanary.by-service"
T0 = 1_700_000_000.0


def fill(state: LiveState) -> dict[str, Any]:
    """Writes the shared content through today's code; returns what it holds."""
    rng = random.Random(11)
    deployments = {"payments": ["v1", "v2", "v3"], "orders": ["v1", "v2"], "search": ["blue", "green"]}
    for i in range(240):
        service = rng.choice(sorted(deployments))
        message = [
            f"request {i} served in {rng.randrange(900)}ms",
            f"user {rng.choice(['alice', 'bob', 'carol'])} logged in from 10.0.0.{rng.randrange(9)}",
            f"cache {rng.choice(['hit', 'miss'])} for key k{i}",
            f"job {rng.choice(['a', 'b', 'c', 'd'])} finished",
        ][rng.randrange(4)]
        state.engine.observe(service, rng.choice(deployments[service]), message, T0 + i, f"h{i % 3}", "info")
    state.engine.observe("payments", "v3", "java.lang.NullPointerException: x is null", T0 + 300, "h1", "error")
    state.offsets.update({("logs", 0): 180, ("logs", 1): 61})
    assert asyncio.run(state.checkpoint(force=True))
    store: Any = state.store
    keys = [IdempotencyRecord(f"batch-{n}", T0 + 10 * n, f"{n:064x}", 202, b'{"accepted": %d}' % n) for n in range(3)]
    store.write_checkpoint(Checkpoint(idempotency=keys))
    at = datetime.fromtimestamp(T0 + 400, UTC)
    feedback = [
        Feedback(id="f-1", service="payments", action="ignore", template="cache <*> for key <*>", author="ana",
                 created_at=at),
        Feedback(id="f-2", service="orders", action="priority", template="job <*> finished", reason="watch it",
                 created_at=at + timedelta(minutes=1)),
    ]  # fmt: skip
    for rule in feedback:
        store.add_feedback(rule)
    marks = [DeploymentMark(service="payments", deployment="v1", bad=True, author="ana", reason="NPE", marked_at=at)]
    for mark in marks:
        store.save_mark(mark)
    spec = AnalysisSpec(
        service="payments", canary=CanaryRef(deployment="v3"), baseline=BaselineRef(deployment="v2"), duration=600.0,
        sensitivity="medium",
    )  # fmt: skip
    verdict = analyze(state.engine.service("payments"), canary="v3", baseline=["v2"], history=False,
                      sensitivity="medium")  # fmt: skip
    analyses = [
        AnalysisRecord("a-running", "payments", spec, "running", T0 + 500, T0 + 1100, verdict),
        AnalysisRecord("a-done", "payments", spec, "completed", T0, T0 + 600, verdict, T0 + 600, [[T0 + 60, 12.5]]),
    ]
    for record in analyses:
        store.save_analysis(record)
    return {
        "engine": {
            f"{name}/{deployment}": {
                "events": model.events,
                "other": model.other.count,
                "templates": {template.template_id: stats.count for template, stats in model.templates().items()},
            }
            for name, service in state.engine.services.items()
            for deployment, model in service.deployments.items()
        },
        "miners": {name: service.miner.to_state() for name, service in state.engine.services.items()},
        "offsets": sorted([topic, partition, offset] for (topic, partition), offset in state.offsets.items()),
        "idempotency": [[k.key, k.created_at, k.fingerprint, k.status, k.body.decode()] for k in keys],
        "feedback": [rule.model_dump(mode="json") for rule in feedback],
        "marks": [mark.model_dump(mode="json") for mark in marks],
        "analyses": {record.id: orjson.loads(record.to_json()) for record in analyses},
    }


def scale_out(store: PostgresStore) -> dict[str, Any]:
    """The rows only scale-out writes: partition owners (one claimed twice), origin offsets, a lease."""
    held = store.claim_shards(TOPIC, [0, 1, 2], "replica-a")
    store.claim_shards(TOPIC, [2], "replica-b")
    store.record_partitions(TOPIC, 12)
    store.write_checkpoint(
        Checkpoint(
            offsets={(TOPIC, 0): 40},
            fence=(TOPIC, {0: held[0], 1: held[1]}),
            origins={(0, "logs", 0): 180, (0, "logs", 1): 61, (1, "logs", 0): 7},
        )
    )
    leased = store.lease_analyses("replica-a", now=T0 + 700, until=T0 + 710)
    return {
        "shard_owners": [[TOPIC, 0, 1, "replica-a"], [TOPIC, 1, 1, "replica-a"], [TOPIC, 2, 2, "replica-b"]],
        "origin_offsets": [[0, "logs", 0, 180], [0, "logs", 1, 61], [1, "logs", 0, 7]],
        "repartition_topics": {TOPIC: 12},
        "leases": {record.id: ["replica-a", T0 + 710] for record in leased},
        "offsets": [[TOPIC, 0, 40]],
    }


def main() -> None:
    out = Path(sys.argv[1])
    url = sys.argv[3] if len(sys.argv) > 3 else "postgresql://postgres@127.0.0.1:5432/test"
    out.mkdir(parents=True, exist_ok=True)
    expected: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(state_dir=Path(folder), max_deployments_per_service=3)
        state = LiveState(settings, SqliteStore(settings.state_file))
        state.load()
        expected["sqlite"] = fill(state)
        state.store.close()
        (out / "store-sqlite-0f9b04b.sqlite").write_bytes(settings.state_file.read_bytes())

        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        settings = Settings(state_dir=Path(folder) / "pg", max_deployments_per_service=3, store_url=url,
                            store_schema=SCHEMA)  # fmt: skip
        store = PostgresStore(url, SCHEMA)
        state = LiveState(settings, store)
        state.load()
        expected["postgres"] = fill(state)
        shared = scale_out(store)
        expected["postgres"]["offsets"] = sorted(expected["postgres"]["offsets"] + shared.pop("offsets"))
        expected["postgres"].update(shared)
        store.close()
    dump = subprocess.run(
        ["pg_dump", f"--schema={SCHEMA}", "--no-owner", "--no-privileges", "--inserts", "--no-comments", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    plain = "".join(line for line in dump.splitlines(keepends=True) if not line.startswith("\\"))
    (out / "store-postgres-v4.sql").write_text(plain)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(SCHEMA)))
    expected["postgres"]["schema"] = SCHEMA
    expected["postgres"]["migrations"] = {str(version): text for version, _, text in MIGRATIONS}
    (out / "store-fixtures.expected.json").write_text(json.dumps(expected, indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
