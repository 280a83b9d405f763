"""The store: rows written only when changed, eviction never loses events, files of older versions upgrade,
a full disk neither masks its error nor loses state, and an unwritable state directory is named."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from logcanary.analysis.verdict import analyze
from logcanary.engine.model import Engine
from logcanary.live.single_node import SingleNode
from logcanary.schemas import AnalysisSpec, BaselineRef, CanaryRef, Verdict
from logcanary.settings import Settings
from logcanary.store.base import Checkpoint
from logcanary.store.factory import open_store
from logcanary.store.sqlite import SqliteStore, StoreOpenError
from tests.postgres_helpers import TEST_URL

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent


def a_spec(service: str = "svc", canary: str = "v2") -> AnalysisSpec:
    """What an analysis of ``canary`` against v1 watches, as stored."""
    return AnalysisSpec(
        service=service, canary=CanaryRef(deployment=canary), baseline=BaselineRef(deployment="v1"), duration=600.0,
        sensitivity="medium",
    )  # fmt: skip


def a_verdict(service: str = "svc") -> Verdict:
    """A real (inconclusive: nothing ingested) verdict."""
    return analyze(Engine().service(service), canary="v2", baseline=["v1"], history=False, sensitivity="medium")


def make_state(state_dir: Path, **settings: Any) -> SingleNode:
    """A loaded state on the store the settings name (``**backend`` adds the PostgreSQL ones)."""
    config = Settings(state_dir=state_dir, **settings)
    state = SingleNode(config, config, open_store(config))
    state.load()
    return state


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """Store settings: none (the SQLite file in the state dir), or a fresh PostgreSQL schema on this machine."""
    if request.param == "sqlite":
        return {}
    schema: str = request.getfixturevalue("pg_schema")
    return {"store_url": TEST_URL, "store_schema": schema}


def query(state_dir: Path, backend: dict[str, str], text: str) -> list[tuple[Any, ...]]:
    """Rows of a read-only query on the store's tables, whichever the backend."""
    if not backend:
        with contextlib.closing(sqlite3.connect(state_dir / "logcanary.sqlite")) as db:
            return db.execute(text).fetchall()
    import psycopg
    from psycopg import sql

    with psycopg.connect(backend["store_url"], autocommit=True) as pg:
        pg.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(backend["store_schema"])))
        return pg.execute(text.encode()).fetchall()


def counts(state: SingleNode) -> dict[str, Any]:
    """Events, other and per-template counts of every deployment: what must survive a restart exactly."""
    return {
        f"{name}/{deployment}": {
            "events": model.events,
            "other": model.other.count,
            "templates": {template.template_id: stats.count for template, stats in model.templates().items()},
        }
        for name, service in state.engine.services.items()
        for deployment, model in service.deployments.items()
    }


def without_sizes(miner_state: dict[str, Any]) -> list[Any]:
    """A miner's state with template sizes left out (saved only when their group changes otherwise)."""
    groups = [
        {**group, "templates": sorted((t["tokens"], t["aliases"]) for t in group["templates"])}
        for group in miner_state["groups"]
    ]
    return sorted(groups, key=orjson.dumps)


def messages(rng: random.Random, n: int) -> Iterator[str]:
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
    for i in range(n):
        kind = rng.randrange(5)
        if kind == 0:
            yield f"request {i} served in {rng.randrange(900)}ms"
        elif kind == 1:
            yield f"job {rng.choice(words)} finished with {rng.choice(words)}"
        elif kind == 2:
            yield f"{rng.choice(words)} {rng.choice(words)} {rng.choice(words)} failed"
        elif kind == 3:
            yield f"cache {rng.choice(['hit', 'miss', 'load'])} for key k{i}"
        else:
            yield f"unique event number {rng.choice(words)}{i % 50} happened"


def test_checkpoints_write_only_changed_rows(tmp_path: Path, backend: dict[str, str]) -> None:
    state = make_state(tmp_path, **backend)
    for n in range(50):
        state.engine.observe("svc", "v1", f"request {n} served", float(n))
        state.engine.observe("svc", "v1", f"job {n % 7} started by worker", float(n))
        state.engine.observe("svc", "v2", f"cache miss for key {n}", float(n))
    assert asyncio.run(state.checkpoint())

    state.engine.observe("svc", "v1", "request 51 served", 60.0)  # a known template of one deployment
    checkpoint, _ = state.snapshot()
    assert not checkpoint.groups and not checkpoint.miners  # the miner learnt nothing
    assert list(checkpoint.deployments) == [("svc", "v1")]  # one header
    assert len(checkpoint.templates) == 1  # and one template's stats
    assert not (checkpoint.miners_replaced or checkpoint.deployments_replaced or checkpoint.dropped)

    state.engine.observe("svc", "v1", "a brand new kind of event", 61.0)
    checkpoint, _ = state.snapshot()
    assert len(checkpoint.groups) == 1  # the new group only, not the service's whole miner
    assert list(checkpoint.miners) == ["svc"]
    assert asyncio.run(state.checkpoint())
    state.store.close()


def test_random_streams_restore_exactly(tmp_path: Path, backend: dict[str, str]) -> None:
    rng = random.Random(3)
    state = make_state(tmp_path, **backend, max_deployments_per_service=3)
    for n, message in enumerate(messages(rng, 4000)):
        service = rng.choice(["a", "b"])
        state.engine.observe(service, rng.choice(["v1", "v2", "v3", "v4"]), message, float(n), f"h{n % 3}")
        if rng.random() < 0.01:
            assert asyncio.run(state.checkpoint())
    assert asyncio.run(state.checkpoint())
    expected = counts(state)
    miners = {name: without_sizes(service.miner.to_state()) for name, service in state.engine.services.items()}
    state.store.close()

    restored = make_state(tmp_path, **backend, max_deployments_per_service=3)
    assert counts(restored) == expected
    assert {name: without_sizes(s.miner.to_state()) for name, s in restored.engine.services.items()} == miners
    restored.store.close()


def test_eviction_and_recreation_before_a_checkpoint_loses_nothing(tmp_path: Path, backend: dict[str, str]) -> None:
    """Issue 8, item 4: v1 evicted and re-created with the same event count used to be deleted, not rewritten."""
    state = make_state(tmp_path, **backend, max_deployments_per_service=2)
    state.engine.observe("svc", "v1", "hello from v1", 1.0)
    state.engine.observe("svc", "v2", "hello from v2", 2.0)
    assert asyncio.run(state.checkpoint())
    state.engine.observe("svc", "v3", "hello from v3", 3.0)  # evicts v1 (least recently seen)
    state.engine.observe("svc", "v1", "hello again from v1", 4.0)  # re-creates v1 with 1 event, evicts v2
    assert asyncio.run(state.checkpoint())
    expected = counts(state)
    assert {key: value["events"] for key, value in expected.items()} == {"svc/v3": 1, "svc/v1": 1}
    state.store.close()

    restored = make_state(tmp_path, **backend, max_deployments_per_service=2)
    assert counts(restored) == expected
    restored.store.close()
    rows = query(tmp_path, backend, "SELECT deployment, template FROM deployment_templates ORDER BY deployment")
    assert [deployment for deployment, _ in rows] == ["v1", "v3"]  # v1's old template row went with it


def test_evicted_service_leaves_the_store(tmp_path: Path, backend: dict[str, str]) -> None:
    state = make_state(tmp_path, **backend)
    state.engine.observe("gone", "v1", "hello", 1.0)
    state.engine.observe("kept", "v1", "hello", 1.0)
    assert asyncio.run(state.checkpoint())
    del state.engine.services["gone"]  # however the engine drops a service, the store follows
    state.engine.forget_routes()
    assert asyncio.run(state.checkpoint())
    state.store.close()
    restored = make_state(tmp_path, **backend)
    assert list(restored.engine.services) == ["kept"]
    restored.store.close()


def test_retention_drops_old_deployments_and_analyses(tmp_path: Path, backend: dict[str, str]) -> None:
    state = make_state(tmp_path, **backend, retention_deployments_days=30)
    now = 100 * 86_400.0
    state.engine.observe("svc", "old", "hello", now - 31 * 86_400)
    state.engine.observe("svc", "new", "hello", now - 29 * 86_400)
    state.engine.observe("quiet", "v1", "hello", now - 40 * 86_400)
    assert state.prune(now) == [("svc", "old"), ("quiet", None)]
    assert asyncio.run(state.checkpoint())
    state.store.maintain()
    state.store.close()
    restored = make_state(tmp_path, **backend)
    assert list(restored.engine.services) == ["svc"]
    assert list(restored.engine.services["svc"].deployments) == ["new"]
    restored.store.close()
    assert query(tmp_path, backend, "SELECT count(*) FROM miner_groups WHERE service = 'quiet'") == [(0,)]


def test_upgrade_from_a_format1_file(tmp_path: Path) -> None:
    """A file written by the code before rows (tests/data/make_state_format1.py, commit 0443c61) loads exactly,
    is rewritten as rows by the first checkpoint, and loads exactly again."""
    shutil.copy(DATA / "state-format1.sqlite", tmp_path / "logcanary.sqlite")
    expected = json.loads((DATA / "state-format1.expected.json").read_text())
    miners = {name: without_sizes(state) for name, state in expected.pop("_miners").items()}

    state = make_state(tmp_path, max_deployments_per_service=3)
    assert counts(state) == expected
    assert state.offsets == {("logs", 0): 3000}
    assert asyncio.run(state.checkpoint())  # nothing new was ingested: the rewrite alone is due
    state.store.close()

    with contextlib.closing(sqlite3.connect(tmp_path / "logcanary.sqlite")) as db:
        headers = [orjson.loads(blob) for (blob,) in db.execute("SELECT state FROM miners")]
        assert headers and all("groups" not in header and header["format"] == 2 for header in headers)
        blobs = [orjson.loads(blob) for (blob,) in db.execute("SELECT state FROM deployments")]
        assert blobs and all("templates" not in blob for blob in blobs)
        assert db.execute("SELECT count(*) FROM miner_groups").fetchone()[0] > 0
    restored = make_state(tmp_path, max_deployments_per_service=3)
    assert counts(restored) == expected
    assert {name: without_sizes(s.miner.to_state()) for name, s in restored.engine.services.items()} == miners
    checkpoint, _ = restored.snapshot()
    assert checkpoint.is_empty()  # nothing left to rewrite
    restored.store.close()


def test_new_files_vacuum_incrementally(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "logcanary.sqlite")
    store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "logcanary.sqlite")) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unwritable_state_dir_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreOpenError, match="LOGCANARY_STATE_DIR"):
        SqliteStore(blocker / "state" / "logcanary.sqlite")
    env = {**os.environ, "LOGCANARY_STATE_DIR": str(blocker / "state"), "LOGCANARY_PORT": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "logcanary.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert "LOGCANARY_STATE_DIR" in result.stderr
    assert "Traceback" not in result.stderr


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A size-limited tmpfs mounted at ``path`` (needs root); skips the test with the reason otherwise."""
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs a size-limited file system: mounting tmpfs needs root and mount(8)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Takes every free byte of the file system holding ``path``."""
    filler = path / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(descriptor, b"\0" * 4096)
    finally:
        os.close(descriptor)
    return filler


def test_full_disk_checkpoint_fails_cleanly_and_resumes(tmp_path: Path) -> None:
    """A checkpoint on a full disk raises SQLite's own error (never "no transaction is active"), keeps the
    state dirty and counts the failure; once space is freed the next checkpoint saves everything, exactly."""
    with small_filesystem(tmp_path / "disk", "2m") as disk:
        state = make_state(disk)
        rng = random.Random(5)
        for n, message in enumerate(messages(rng, 500)):
            state.engine.observe("svc", "v1", message, float(n))
        assert asyncio.run(state.checkpoint())
        filler = fill(disk)
        for n, message in enumerate(messages(rng, 3000)):
            state.engine.observe("svc", "v2" if n % 2 else "v1", message + " more", float(1000 + n))
        state.offsets[("logs", 0)] = 3500
        errors: list[BaseException] = []
        try:
            state.store.write_checkpoint(state.snapshot()[0])
        except sqlite3.OperationalError as exc:
            errors.append(exc)
        assert errors, "the disk was not full"
        assert "no transaction is active" not in str(errors[0])
        assert "full" in str(errors[0]) or "disk" in str(errors[0]) or "I/O" in str(errors[0])
        # A large transaction spills to the WAL before COMMIT and SQLite rolls it back itself: the old code's
        # ROLLBACK then raised "cannot rollback - no transaction is active" over the real error.
        with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
            state.store.write_checkpoint(Checkpoint(groups={("svc", "big"): os.urandom(3_000_000)}))
        assert not asyncio.run(state.checkpoint(force=True))
        assert state.checkpoint_failures == 1
        assert not asyncio.run(state.checkpoint())  # within the backoff: not tried again
        assert state.metrics.registry.get_sample_value("logcanary_checkpoint_failures_total") == 1
        expected = counts(state)

        filler.unlink()
        assert asyncio.run(state.checkpoint(force=True))
        assert state.checkpoint_failures == 0
        state.store.close()
        restored = make_state(disk)
        assert counts(restored) == expected
        assert restored.offsets == {("logs", 0): 3500}
        restored.store.close()


def test_maintenance_truncates_the_wal_and_returns_free_pages(tmp_path: Path) -> None:
    state = make_state(tmp_path, retention_deployments_days=1)
    rng = random.Random(9)
    for n, message in enumerate(messages(rng, 5000)):
        state.engine.observe(f"svc{n % 5}", "v1", message + f" padding{n}" * 20, float(n))
    assert asyncio.run(state.checkpoint())
    state.store.maintain()
    full = (tmp_path / "logcanary.sqlite").stat().st_size
    assert state.prune(10 * 86_400.0) == [(f"svc{k}", None) for k in range(5)]  # everything is old
    assert asyncio.run(state.checkpoint())
    assert (tmp_path / "logcanary.sqlite-wal").stat().st_size > 0
    state.store.maintain()
    assert (tmp_path / "logcanary.sqlite-wal").stat().st_size == 0  # TRUNCATE
    empty = tmp_path / "empty" / "logcanary.sqlite"
    SqliteStore(empty).close()
    assert (tmp_path / "logcanary.sqlite").stat().st_size <= empty.stat().st_size < full / 2  # left: the empty tables
    state.store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "logcanary.sqlite")) as db:
        assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0


def test_completed_analyses_past_retention_are_forgotten(tmp_path: Path, backend: dict[str, str]) -> None:
    from logcanary.runtime import Runtime
    from logcanary.store.base import AnalysisRecord

    config: dict[str, Any] = {"state_dir": tmp_path, "retention_analyses_days": 30, **backend}
    runtime = Runtime(Settings(**config))
    store = runtime.store  # the backend plays both roles
    day = 86_400.0
    now = 100 * day
    records = [
        AnalysisRecord("old", "svc", a_spec(), "completed", now - 40 * day, now - 39 * day, None, now - 39 * day),
        AnalysisRecord("recent", "svc", a_spec(), "cancelled", now - 2 * day, now - day, None, now - day),
    ]
    for record in records:
        store.save_analysis(record)
    analyses = runtime.analyses
    analyses.load()
    forgotten = analyses.prune(now)
    assert forgotten == ["old"]
    store.delete_analyses(forgotten)
    assert [record.id for record in store.load_analyses()] == ["recent"]
    assert list(analyses.records) == ["recent"]
    store.close()


def test_a_template_renamed_by_another_deployment_is_not_counted_twice_after_restarts(
    tmp_path: Path, backend: dict[str, str]
) -> None:
    """v1's template generalises (a new id) through v2's messages while v1 logs nothing: v1's row under the old id
    must not survive beside the new one, or two restarts later both would be loaded and added up."""
    state = make_state(tmp_path, **backend)
    state.engine.observe("svc", "v1", "stored as bytes", 1.0)
    state.engine.observe("svc", "v1", "stored as bytes", 2.0)
    assert asyncio.run(state.checkpoint())
    for n, kind in enumerate(["values", "chars", "words", "lines"]):
        state.engine.observe("svc", "v2", f"stored as {kind}", 3.0 + n)  # "stored as <*>" from the third value on
    assert asyncio.run(state.checkpoint())
    state.store.close()

    state = make_state(tmp_path, **backend)
    state.engine.observe("svc", "v1", "stored as bytes", 10.0)
    assert asyncio.run(state.checkpoint())
    expected = counts(state)
    state.store.close()
    restored = make_state(tmp_path, **backend)
    assert counts(restored) == expected
    assert expected["svc/v1"]["events"] == 3
    assert sum(expected["svc/v1"]["templates"].values()) == 3
    restored.store.close()


def letters(n: int) -> str:
    """A word of letters only (the masker leaves those alone): 0 -> a, 25 -> z, 26 -> ab, ..."""
    out = ""
    while True:
        n, digit = divmod(n, 26)
        out += "abcdefghijklmnopqrstuvwxyz"[digit]
        if not n:
            return out


@pytest.mark.parametrize(("seed", "cap", "services"), [(1, 3, 9), (2, 3, 9), (3, 3, 9), (4, 2, 9), (5, 2, 1)])
def test_random_streams_across_many_restarts_restore_exactly(
    tmp_path: Path, backend: dict[str, str], seed: int, cap: int, services: int
) -> None:
    """Restart after every segment: what a process held at its last checkpoint is what the next one loads.

    Many event families generalise at different times (a word position becomes ``<*>`` at its third value), so
    templates get new ids through some deployments while others are idle, and log again after a restart. With a
    cap of 2 deployments, deployments are evicted and re-created all along too; with a cap of 1 service, services."""
    rng = random.Random(seed)
    state = make_state(tmp_path, **backend, max_deployments_per_service=cap, max_services=services)
    clock = 0.0
    for segment in range(15):
        active = rng.sample(["v1", "v2", "v3"], rng.randrange(1, 3))  # the others are idle for this segment
        for _ in range(150):
            family = rng.randrange(40)
            value = rng.choice([0] * 30 + [1] * 30 + [2, 3, 4, 5])  # a third value (and a new id) comes late
            message = f"start{letters(family)} job stored as {letters(value + 100 * family)}"
            deployment = rng.choice(active)
            state.engine.observe(rng.choice(["a", "b"]), deployment, message, clock)
            clock += 1.0
            if rng.random() < 0.02:
                assert asyncio.run(state.checkpoint())
        assert asyncio.run(state.checkpoint())
        expected = counts(state)
        state.store.close()
        state = make_state(tmp_path, **backend, max_deployments_per_service=cap, max_services=services)
        assert counts(state) == expected, f"segment {segment}"
    state.store.close()
