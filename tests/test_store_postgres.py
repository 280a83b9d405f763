"""The PostgreSQL store on this machine's server: what the SQLite store guarantees (tests/test_store.py runs the
shared ones on both), plus what is PostgreSQL's own: migrations (upgrade from the previous schema, idempotent,
two processes at once, a newer schema refused), a failing checkpoint leaves nothing half-written, a lost
connection is reopened, a bad URL is named, and a real `logcanary serve` SIGKILLed mid-stream counts exactly."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from psycopg import sql

from logcanary.idempotency import IdempotencyRecord
from logcanary.live.scale_out import ScaleOut
from logcanary.schemas import DeploymentMark, Feedback
from logcanary.settings import Settings, SettingsError, load_settings
from logcanary.store.base import AnalysisRecord, Checkpoint, StoreOpenError, StoreUnavailable
from logcanary.store.postgres import LATEST, MIGRATIONS, PostgresStore, migrate, redacted
from tests.conftest import ROOT, Launcher
from tests.postgres_helpers import TEST_URL
from tests.test_store import a_spec, a_verdict, counts, make_state


def connect(schema: str) -> psycopg.Connection[Any]:
    db = psycopg.connect(TEST_URL, autocommit=True)
    db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return db


def versions(schema: str) -> list[int]:
    with connect(schema) as db:
        return [v for (v,) in db.execute("SELECT version FROM schema_version ORDER BY version")]


def pg(tmp_path: Path, schema: str, **settings: Any) -> Any:
    """A loaded state on a PostgreSQL schema: a single node, or a scale-out replica when Kafka is named too."""
    config = Settings(state_dir=tmp_path, store_url=TEST_URL, store_schema=schema, **settings)
    if config.mode == "single":
        return make_state(tmp_path, store_url=TEST_URL, store_schema=schema, **settings)
    state = ScaleOut(config, config, config, PostgresStore(TEST_URL, schema))
    state.load()
    return state


def test_checkpoint_that_fails_midway_leaves_nothing_half_written(tmp_path: Path, pg_schema: str) -> None:
    """The last statements (offsets) fail after the engine rows were sent: the transaction rolls back whole,
    the state stays dirty, and the next checkpoint saves it all with its offsets."""
    state = pg(tmp_path, pg_schema)
    for n in range(200):
        state.engine.observe("svc", "v1", f"request {n} served in {n}ms", float(n))
    state.offsets[("logs", 0)] = 200
    assert asyncio.run(state.checkpoint())
    saved = counts(state)

    for n in range(300):
        state.engine.observe("svc", "v2" if n % 2 else "v1", f"cache miss {n} for key k{n}", 1000.0 + n)
    checkpoint, _ = state.snapshot()
    assert checkpoint.templates and checkpoint.groups
    bad = dataclasses.replace(checkpoint, offsets={("logs", 2**40): 1})
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        state.store.write_checkpoint(bad)  # partition past INTEGER: the offsets insert fails after the rows
    with connect(pg_schema) as db:
        assert db.execute("SELECT deployment FROM deployments ORDER BY deployment").fetchall() == [("v1",)]
        assert db.execute("SELECT topic, partition, next_offset FROM offsets").fetchall() == [("logs", 0, 200)]
    assert counts(pg(tmp_path, pg_schema)) == saved  # a restart now loads the last good checkpoint exactly

    state.offsets[("logs", 0)] = 500
    assert asyncio.run(state.checkpoint(force=True))  # the same store connection works on
    expected = counts(state)
    state.store.close()
    restored = pg(tmp_path, pg_schema)
    assert counts(restored) == expected
    assert restored.offsets == {("logs", 0): 500}
    restored.store.close()


def test_idempotency_keys_are_saved_with_the_checkpoint_and_bounded(pg_schema: str) -> None:
    store = PostgresStore(TEST_URL, pg_schema)
    records = [IdempotencyRecord(f"k{n}", 100.0 + n, f"sha{n}", 202, b'{"accepted": %d}' % n) for n in range(10)]
    store.write_checkpoint(Checkpoint(idempotency=records[:6], idempotency_horizon=0.0))
    assert store.load_idempotency_result("k3") == (202, b'{"accepted": 3}')
    assert store.load_idempotency_result("nope") is None
    # Older than the horizon (k0, k1) and past the newest 5 go, in the same transaction.
    store.write_checkpoint(Checkpoint(idempotency=records[6:], idempotency_horizon=102.0, idempotency_max_keys=5))
    assert sorted(store.load_idempotency_keys(0.0)) == [(f"k{n}", 100.0 + n, f"sha{n}") for n in range(5, 10)]
    assert store.load_idempotency_keys(108.0) == [("k8", 108.0, "sha8"), ("k9", 109.0, "sha9")]
    store.close()


def test_analyses_feedback_and_marks(pg_schema: str) -> None:
    store = PostgresStore(TEST_URL, pg_schema)
    record = AnalysisRecord("a1", "svc", a_spec(), "running", 10.0, 610.0)
    store.save_analysis(record)
    record.status, record.verdict, record.finished_at = "completed", a_verdict(), 620.0
    store.save_analysis(record)
    assert store.load_analyses() == [record]
    with connect(pg_schema) as db:  # migration 2's columns follow the body
        assert db.execute("SELECT status, finished_at FROM analyses").fetchall() == [("completed", 620.0)]
    store.delete_analyses(["a1"])
    assert store.load_analyses() == []

    now = datetime.now(UTC)
    first = Feedback(id="f1", service="svc", action="ignore", template="a <*>", author="ana", created_at=now)
    second = Feedback(id="f2", service="other", action="priority", template="b <*>", created_at=now + timedelta(1))
    store.add_feedback(first)
    store.add_feedback(second)
    assert store.list_feedback() == [first, second]
    assert store.list_feedback("svc") == [first]
    assert store.delete_feedback("f1") and not store.delete_feedback("f1")

    mark = DeploymentMark(service="svc", deployment="v2", bad=True, author="ana", reason="NPE", marked_at=now)
    store.save_mark(mark)
    store.save_mark(mark.model_copy(update={"bad": False}))
    assert store.load_marks() == [mark.model_copy(update={"bad": False})]
    store.close()


def test_upgrade_from_the_previous_schema(pg_schema: str) -> None:
    """A database made by migration 1 only, with rows in it, is migrated at start: rows kept, the new columns
    filled from them; opening again applies nothing."""
    with psycopg.connect(TEST_URL, autocommit=True) as db:
        assert migrate(db, pg_schema, target=1) == [1]
        for status, finished in (("running", None), ("completed", 99.5)):
            body = orjson.dumps(
                {"id": status, "service": "svc", "request": a_spec().model_dump(mode="json"), "status": status,
                 "started_at": 1.0, "ends_at": 2.0, "verdict": None, "finished_at": finished}
            )  # fmt: skip
            db.execute("INSERT INTO analyses (id, service, body) VALUES (%s, 'svc', %s)", (status, body))
        db.execute("INSERT INTO offsets VALUES ('logs', 3, 1234)")
        db.execute("INSERT INTO miners VALUES ('svc', %s)", (b'{"format": 2, "overflow": 0}',))
    assert versions(pg_schema) == [1]

    store = PostgresStore(TEST_URL, pg_schema)
    assert versions(pg_schema) == [v for v, _, _ in MIGRATIONS] == list(range(1, LATEST + 1))
    assert sorted((r.id, r.status, r.finished_at) for r in store.load_analyses()) == [
        ("completed", "completed", 99.5),
        ("running", "running", None),
    ]
    assert store.load_offsets() == {("logs", 3): 1234}
    assert store.load_state().miners == {"svc": b'{"format": 2, "overflow": 0}'}
    with connect(pg_schema) as db:
        rows = db.execute("SELECT id, status, finished_at FROM analyses ORDER BY id").fetchall()
        assert rows == [("completed", "completed", 99.5), ("running", "running", None)]
    store.close()
    PostgresStore(TEST_URL, pg_schema).close()
    assert versions(pg_schema) == list(range(1, LATEST + 1))  # idempotent


def test_replicas_starting_at_once_migrate_once(pg_schema: str) -> None:
    """Eight stores open one new schema at the same moment: the advisory lock lets one migrate, the rest wait
    and find it done (without it, CREATE SCHEMA/TABLE race and fail)."""
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []
    stores: list[PostgresStore] = []

    def start() -> None:
        barrier.wait()
        try:
            stores.append(PostgresStore(TEST_URL, pg_schema))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert versions(pg_schema) == list(range(1, LATEST + 1))
    for store in stores:
        store.close()


def test_a_newer_schema_is_refused(pg_schema: str) -> None:
    PostgresStore(TEST_URL, pg_schema).close()
    with connect(pg_schema) as db:
        db.execute("INSERT INTO schema_version (version, description) VALUES (%s, 'from the future')", (LATEST + 1,))
    with pytest.raises(StoreOpenError, match=f"schema version {LATEST + 1}, newer"):
        PostgresStore(TEST_URL, pg_schema)


def test_a_lost_connection_is_reopened(tmp_path: Path, pg_schema: str) -> None:
    """The server ends the session (a restart, a failover): one checkpoint fails and stays dirty, the next one
    reconnects and saves everything."""
    state = pg(tmp_path, pg_schema)
    state.engine.observe("svc", "v1", "hello", 1.0)
    assert asyncio.run(state.checkpoint())
    with psycopg.connect(TEST_URL, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'logcanary' "
            "AND pid <> pg_backend_pid() AND pid = %s",
            (state.store._db.info.backend_pid,),
        )
    state.engine.observe("svc", "v1", "hello again", 2.0)
    assert not asyncio.run(state.checkpoint(force=True))
    assert asyncio.run(state.checkpoint(force=True))
    expected = counts(state)
    state.store.close()
    assert counts(pg(tmp_path, pg_schema)) == expected


def test_bad_store_urls_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGCANARY_STORE_URL", "mysql://root@db/logcanary")
    with pytest.raises(SettingsError, match="LOGCANARY_STORE_URL"):
        load_settings()
    monkeypatch.setenv("LOGCANARY_STORE_URL", "sqlite://")
    with pytest.raises(SettingsError, match="LOGCANARY_STORE_URL"):
        load_settings()
    assert redacted("postgresql://lc:s3cret@db:5432/x") == "postgresql://lc:***@db:5432/x"
    with pytest.raises(StoreOpenError, match=r"LOGCANARY_STORE_URL=postgresql://lc:\*\*\*@127.0.0.1:1/x") as info:
        PostgresStore("postgresql://lc:s3cret@127.0.0.1:1/x")
    assert "s3cret" not in str(info.value)

    env = {**os.environ, "LOGCANARY_STORE_URL": "postgresql://lc:s3cret@127.0.0.1:1/x", "LOGCANARY_PORT": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "logcanary.cli", "serve"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr
    assert "LOGCANARY_STORE_URL" in result.stderr and "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_postgres_sigkilled_mid_stream_counts_exactly(
    service_process: Launcher, pg_schema: str, tmp_path: Path
) -> None:
    """A real `logcanary serve` on PostgreSQL: batches with idempotency keys, SIGKILLed mid-stream twice,
    retried after each restart; the final count is exact, and nothing was written to the SQLite state dir."""
    env = {
        "LOGCANARY_STORE_URL": TEST_URL,
        "LOGCANARY_STORE_SCHEMA": pg_schema,
        "LOGCANARY_CHECKPOINT_INTERVAL_SECONDS": "0.2",
    }
    start = datetime.now(UTC) - timedelta(minutes=1)
    batches, per_batch = 100, 100

    def body(index: int) -> list[dict[str, object]]:
        return [
            {
                "timestamp": (start + timedelta(milliseconds=index * per_batch + n)).isoformat(),
                "service": "orders",
                "deployment": "v1",
                "message": f"order {index}-{n} accepted for customer {n * 7919 % 1000}",
            }
            for n in range(per_batch)
        ]

    pending = list(range(batches))
    left_after_kills: list[int] = []
    for run in range(3):
        service = service_process(env)
        service.start()
        killer = threading.Timer(0.05, service.kill)  # killed with requests in flight
        with service.client() as client:
            for posted, index in enumerate(list(pending)):
                if run < 2 and posted == 20:
                    killer.start()
                try:
                    answer = client.post("/v1/events", json=body(index), headers={"Idempotency-Key": f"b{index}"})
                except httpx.TransportError:
                    break
                assert answer.status_code == 202, answer.text
                pending.remove(index)
        if killer.is_alive() or killer.finished.is_set():
            killer.join()
            if service.process is not None and service.process.poll() is None:
                service.kill()  # the timer fired after the last answer: a kill all the same
            left_after_kills.append(len(pending))
    assert not pending
    service.stop()
    print(f"\nPostgreSQL store: {batches} batches, batches left after each SIGKILL: {left_after_kills}")
    assert left_after_kills[0] > 0  # the first kill (at least) came mid-stream

    service = service_process(env)
    service.start()
    with service.client() as client:
        [orders] = [s for s in client.get("/v1/services").json() if s["service"] == "orders"]
        again = client.post("/v1/events", json=body(0), headers={"Idempotency-Key": "b0"})
    service.stop()
    assert orders["events"] == batches * per_batch
    assert again.headers.get("Idempotent-Replayed") == "true"  # the key was saved in PostgreSQL with its events
    assert not (tmp_path / "state" / "logcanary.sqlite").exists()
    assert versions(pg_schema) == list(range(1, LATEST + 1))


def test_a_sqlite_url_names_the_file(tmp_path: Path) -> None:
    """sqlite:// + the path (three slashes: absolute); an unusable one is named by LOGCANARY_STORE_URL."""
    from logcanary.settings import Settings
    from logcanary.store.factory import open_store
    from logcanary.store.sqlite import SqliteStore

    store = open_store(Settings(state_dir=tmp_path / "unused", store_url=f"sqlite://{tmp_path}/elsewhere/s.sqlite"))
    assert isinstance(store, SqliteStore) and store.path == tmp_path / "elsewhere" / "s.sqlite"
    store.close()
    assert (tmp_path / "elsewhere" / "s.sqlite").is_file() and not (tmp_path / "unused").exists()
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(StoreOpenError, match="LOGCANARY_STORE_URL=sqlite://"):
        open_store(Settings(store_url=f"sqlite://{tmp_path}/a-file/s.sqlite"))


def test_a_replica_that_lost_its_partitions_cannot_write_them(pg_schema: str) -> None:
    """Scale-out fencing: each claim of a repartition partition bumps its epoch; a checkpoint carrying an older
    epoch writes nothing at all (state, offsets, origin offsets), and names the partitions lost."""
    from logcanary.store.base import Fenced

    first, second = PostgresStore(TEST_URL, pg_schema), PostgresStore(TEST_URL, pg_schema)
    try:
        held = first.claim_shards("by-service", [0, 1], "replica-a")
        assert held == {0: 1, 1: 1}
        write = Checkpoint(
            miners={"svc": b'{"format": 2, "overflow": 0}'},
            offsets={("by-service", 0): 10},
            fence=("by-service", held),
            origins={(0, "logs", 3): 100},
        )
        first.write_checkpoint(write)
        assert second.claim_shards("by-service", [1], "replica-b") == {1: 2}  # Kafka moved partition 1
        late = dataclasses.replace(write, offsets={("by-service", 0): 20}, origins={(0, "logs", 3): 200})
        with pytest.raises(Fenced) as lost:
            first.write_checkpoint(late)
        assert lost.value.shards == [1]
        assert second.load_offsets() == {("by-service", 0): 10}  # nothing of the refused checkpoint
        assert second.load_origin_offsets([0, 1]) == {(0, "logs", 3): 100}
        assert second.service_names() == ["svc"]
        assert second.load_state(["other"]).miners == {}
    finally:
        first.close()
        second.close()


def test_one_replica_at_a_time_evaluates_a_running_analysis(pg_schema: str) -> None:
    """Leases: a running analysis goes to one replica; another takes it only once the lease ran out, and the
    former holder's saves are refused from then on."""
    store = PostgresStore(TEST_URL, pg_schema)
    try:
        record = AnalysisRecord("a1", "svc", a_spec(), "running", 1.0, 2.0)
        store.save_analysis(record)
        store.save_analysis(AnalysisRecord("done", "svc", a_spec(), "completed", 1.0, 2.0, finished_at=2.0))
        assert [r.id for r in store.lease_analyses("replica-a", now=100.0, until=110.0)] == ["a1"]
        assert store.lease_analyses("replica-b", now=105.0, until=115.0) == []  # held by a
        assert [r.id for r in store.lease_analyses("replica-a", now=106.0, until=116.0)] == ["a1"]  # renewed
        assert [r.id for r in store.lease_analyses("replica-b", now=117.0, until=127.0)] == ["a1"]  # a went quiet
        record.verdict = a_verdict()
        assert not store.save_leased_analysis(record, "replica-a")
        record.status, record.finished_at = "completed", 120.0
        assert store.save_leased_analysis(record, "replica-b")
        stored = store.load_analysis("a1")
        assert stored is not None and stored.status == "completed"
        assert store.lease_analyses("replica-a", now=200.0, until=210.0) == []  # completed: no one evaluates it
    finally:
        store.close()


def test_a_replica_reads_services_it_does_not_own_from_their_last_checkpoint(tmp_path: Path, pg_schema: str) -> None:
    """Scale-out reads: a service another replica owns is restored from the store, once for twenty concurrent
    readers, reused for one checkpoint interval, and many are read in one go (GET /v1/services)."""
    writer = pg(tmp_path / "a", pg_schema)
    for n in range(300):
        writer.engine.observe(f"svc-{n % 3}", "v1", f"request {n} served in {n % 7} ms", 1000.0 + n, "h", "info")
    asyncio.run(writer.checkpoint(force=True))
    reader = pg(tmp_path / "b", pg_schema, kafka_bootstrap_servers="127.0.0.1:1", checkpoint_interval_seconds=60)
    assert reader.owned == set()  # scale-out, owning nothing yet: every service is another replica's
    loads: list[list[str]] = []
    load = reader._load_snapshots

    def counted(names: list[str]) -> Any:
        loads.append(list(names))
        return load(names)

    reader._load_snapshots = counted

    async def twenty_gates() -> list[Any]:
        return await asyncio.gather(*(reader.read_service("svc-1") for _ in range(20)))

    models = asyncio.run(twenty_gates())
    assert loads == [["svc-1"]] and all(model is models[0] for model in models)
    assert models[0].deployments["v1"].events == 100
    assert asyncio.run(reader.service_names()) == ["svc-0", "svc-1", "svc-2"]
    many = asyncio.run(reader.read_services(["svc-0", "svc-1", "svc-2", "gone"]))
    assert loads == [["svc-1"], ["svc-0", "svc-2", "gone"]]  # svc-1 reused; the rest in one read
    assert many["gone"] is None and many["svc-1"] is models[0]
    assert sum(m.deployments["v1"].events for m in many.values() if m is not None) == 300
    assert not reader.engine.services  # nothing of the others' state became this replica's

    def unreachable(names: list[str]) -> Any:
        raise psycopg.OperationalError("connection refused")

    reader._load_snapshots = unreachable
    with pytest.raises(StoreUnavailable, match="unreachable now"):  # a 503 with Retry-After, not a 500
        asyncio.run(reader.read_service("svc-9"))
    writer.store.close()
    reader.store.close()


def test_a_snapshot_is_read_again_ahead_of_its_bound_and_no_asker_waits_for_it(tmp_path: Path, pg_schema: str) -> None:
    """A non-owner's snapshot of another replica's service, past 3/4 of the checkpoint interval, is still answered
    at once while one background load replaces it; an asker that gives up never cancels the load others wait for
    (before, the first asker's timeout cancelled the shared load and the 19 other gates failed with it)."""
    writer = pg(tmp_path / "a", pg_schema)
    for n in range(30):
        writer.engine.observe("svc-1", "v1", f"request {n} served in {n % 7} ms", 1000.0 + n, "h", "info")
    asyncio.run(writer.checkpoint(force=True))
    reader = pg(tmp_path / "b", pg_schema, kafka_bootstrap_servers="127.0.0.1:1", checkpoint_interval_seconds=1.0)
    loads: list[list[str]] = []
    load = reader._load_snapshots

    def slow(names: list[str]) -> Any:
        loads.append(list(names))
        time.sleep(0.3)
        return load(names)

    reader._load_snapshots = slow

    async def scenario() -> None:
        first = await reader.read_service("svc-1")  # nothing held yet: this one waits for the load
        assert first is not None and first.deployments["v1"].events == 30 and len(loads) == 1
        await asyncio.sleep(0.5)  # stamped when its 0.3 s load started: now past 3/4 of the 1 s interval, within it
        asked = time.monotonic()
        again = await reader.read_service("svc-1")
        assert again is first and time.monotonic() - asked < 0.2  # answered at once, not after a load
        await asyncio.sleep(0.05)
        assert len(loads) == 2  # one load runs in the background
        await asyncio.sleep(0.5)  # and has landed
        asked = time.monotonic()
        fresh = await reader.read_service("svc-1")
        assert fresh is not first and fresh is not None and len(loads) == 2 and time.monotonic() - asked < 0.2
        reader._snapshots.clear()
        quitter = asyncio.create_task(reader.read_service("svc-1"))
        others = asyncio.gather(*(reader.read_service("svc-1") for _ in range(5)))
        await asyncio.sleep(0.05)
        quitter.cancel()
        models = await others
        assert models[0] is not None and all(model is models[0] for model in models) and len(loads) == 3

    asyncio.run(scenario())
    writer.store.close()
    reader.store.close()


def test_a_replica_whose_completion_the_store_refused_neither_counts_nor_notifies_it(
    tmp_path: Path, pg_schema: str
) -> None:
    """Scale-out: a replica completes an analysis but its lease ran out meanwhile (the store refuses its save):
    the end is the new holder's to count and notify. Once the store keeps a completion, it is announced once."""
    from logcanary.runtime import Runtime
    from logcanary.verification.models import AnalysisIn

    writer = pg(tmp_path / "a", pg_schema)  # another replica, which counted the service
    for n in range(50):
        writer.engine.observe("svc", "v1" if n % 2 else "v2", f"request {n} served", time.time() - 1, "h", "info")
    asyncio.run(writer.checkpoint(force=True))
    writer.store.close()
    runtime = Runtime(
        Settings(state_dir=tmp_path, store_url=TEST_URL, store_schema=pg_schema, kafka_bootstrap_servers="127.0.0.1:1")
    )
    state, analyses, store = runtime.state, runtime.analyses, runtime.store
    assert isinstance(store, PostgresStore)
    announced: list[str] = []
    analyses.on_end = lambda record: announced.append(record.id)
    save = store.save_leased_analysis
    refused: list[str] = []

    def lease_lost(record: AnalysisRecord, owner: str) -> bool:
        refused.append(record.status)
        return False

    def counted() -> float:
        return sum(
            float(sample.value)
            for metric in state.metrics.registry.collect()
            if metric.name == "logcanary_analyses"
            for sample in metric.samples
            if sample.name == "logcanary_analyses_total"
        )

    async def scenario() -> str:
        store.save_leased_analysis = lease_lost  # type: ignore[method-assign]
        request = AnalysisIn.model_validate(
            {"service": "svc", "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}, "duration": 0.05}
        )
        record = await analyses.create(request)
        await asyncio.sleep(0.1)
        await analyses.evaluate_running()  # completes it, but the store keeps the other replica's lease
        assert "completed" in refused and announced == [] and counted() == 0
        store.save_leased_analysis = save  # type: ignore[method-assign]
        await analyses.evaluate_running()
        await analyses.evaluate_running()
        return record.id

    analysis_id = asyncio.run(scenario())
    assert announced == [analysis_id] and counted() == 1
    stored = store.load_analysis(analysis_id)
    assert stored is not None and stored.status == "completed"
    runtime.write.close()
    store.close()


def test_a_store_that_refuses_connections_is_a_503_on_every_route_never_a_500(tmp_path: Path, pg_schema: str) -> None:
    """Scale-out reads the store on requests (other replicas' services, keys answered elsewhere): while
    PostgreSQL refuses connections they answer 503 with Retry-After, and work again once it is back."""
    from fastapi.testclient import TestClient

    from logcanary.api.app import create_app

    settings = Settings(
        state_dir=tmp_path, store_url=TEST_URL, store_schema=pg_schema, kafka_bootstrap_servers="127.0.0.1:1"
    )
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        store = runtime.store
        assert isinstance(store, PostgresStore)
        assert client.get("/v1/services").status_code == 200
        store.url, good = TEST_URL.replace(":5432/", ":1/"), store.url  # the server refuses from now on
        assert store._db is not None
        store._db.close()
        answers = {
            "services": client.get("/v1/services"),
            "keyed post": client.post(
                "/v1/events", content=b'{"service":"s","message":"m"}\n', headers={"Idempotency-Key": "k1"}
            ),
            "history": client.get("/v1/services/s/history"),
            "verdict": client.get("/v1/verdict", params={"service": "s", "canary": "v2"}),
        }
        for name, answer in answers.items():
            assert answer.status_code == 503, (name, answer.status_code, answer.text)
            assert answer.headers["Retry-After"] == "5" and answer.json()["error"] == "store_unavailable", name
        store.url = good
        assert client.get("/v1/services").status_code == 200
