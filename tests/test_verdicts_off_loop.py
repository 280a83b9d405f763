"""Verdicts that do not queue (issue 9): cached answers within their bound, whole batches only, the store off the loop.

Latency itself is measured in bench/bench_verdicts.py, never here: these tests check what must hold, not how fast.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import cast

from fastapi.testclient import TestClient

from logcanary.analysis.sensitivity import thresholds
from logcanary.analysis.verdict import _Nearest
from logcanary.common.caching import RefreshAheadCache
from logcanary.engine.caps import Caps
from logcanary.engine.clustering import Cluster, cosine
from logcanary.engine.model import Engine
from logcanary.ingestion import bodies
from logcanary.runtime import Runtime
from logcanary.schemas import Verdict
from logcanary.store.sqlite import SqliteStore
from logcanary.verification.question import VerdictQuestion
from tests.test_api import AUTH, TOKEN, live, make_client, ndjson
from tests.test_state import make_state

QUERY = {"service": "payments", "canary": "v2", "baseline": "v1", "window": "all"}


def runtime(client: TestClient) -> Runtime:
    return cast(Runtime, client.app.state.runtime)  # type: ignore[attr-defined]


def verdict(name: str, risk: float = 0.0) -> Verdict:
    return Verdict.model_validate(
        {
            "verdict": name,
            "risk": risk,
            "reason": "r",
            "reason_code": "no_anomaly",
            "service": "s",
            "canary": "v2",
            "baseline": ["v1"],
            "window_start": None,
            "window_end": None,
            "canary_events": 0,
            "baseline_events": 0,
            "anomalies": [],
            "anomaly_count": 0,
            "vanished": [],
            "thresholds": thresholds("medium"),
        }
    )


def test_nearest_clusters_rank_exactly_as_a_full_sort_by_cosine() -> None:
    """The indexed search must pick the same clusters, in the same order, ties included, as the sort it replaced."""
    rng = random.Random(7)
    words = [f"w{n}" for n in range(30)]
    for _ in range(200):
        clusters = []
        for _ in range(rng.randint(1, 40)):
            cluster = Cluster(None)
            cluster.terms = Counter({rng.choice(words): rng.randint(1, 3) for _ in range(rng.randint(1, 5))})
            clusters.append(cluster)
        clusters.append(clusters[0])  # a duplicate: an exact tie
        nearest = _Nearest(clusters)
        for _ in range(5):
            probe = Cluster(None)
            probe.terms = Counter({rng.choice(words): rng.randint(1, 3) for _ in range(rng.randint(1, 4))})
            expected = sorted(clusters, key=lambda c: cosine(probe.terms, c.terms), reverse=True)[:3]
            assert [id(c) for c in nearest.top(probe, 3)] == [id(c) for c in expected]


def test_the_cache_never_serves_an_answer_older_than_its_bound() -> None:
    now = [100.0]
    cache: RefreshAheadCache[str, Verdict] = RefreshAheadCache(1.0, 2, clock=lambda: now[0])
    computed: list[str] = []

    def compute(name: str) -> Callable[[], Awaitable[Verdict]]:
        async def run() -> Verdict:
            computed.append(name)
            return verdict(name)

        return run

    async def scenario() -> None:
        first = await cache.get("q", compute("pass"), 0)
        now[0] += 0.75  # three quarters of its bound: served, no refresh yet
        assert await cache.get("q", compute("fail"), 0) is first
        now[0] += 0.25  # exactly the bound: still served, and a new answer is computed in the background
        assert await cache.get("q", compute("fail"), 0) is first
        assert await cache.get("q", compute("never"), 0) is first  # one refresh per question at a time
        await asyncio.sleep(0.01)
        refreshed = await cache.get("q", compute("never"), 0)
        assert refreshed.value.verdict == "fail" and refreshed.monotonic == now[0]
        now[0] += 1.001  # past its bound: computed again, and the asker waits for it
        assert (await cache.get("q", compute("pass"), 0)).value.verdict == "pass"
        assert (await cache.get("q", compute("inconclusive"), 1)).value.verdict == "inconclusive"  # new rules
        assert computed == ["pass", "fail", "pass", "inconclusive"]
        for key in ("a", "b", "c"):
            await cache.get(key, compute("pass"), 1)
        assert len(cache) == 2  # bounded, least recently used out first
        now[0] += 2.0
        await cache.get("d", compute("pass"), 1)
        assert len(cache) == 1  # the expired ones went when it was added

        off: RefreshAheadCache[str, Verdict] = RefreshAheadCache(0.0, clock=lambda: now[0])
        await off.get("q", compute("pass"), 0)
        await off.get("q", compute("pass"), 0)
        assert computed[-2:] == ["pass", "pass"] and len(off) == 0

    asyncio.run(scenario())


def test_concurrent_askers_share_one_computation_and_its_failure() -> None:
    cache: RefreshAheadCache[str, Verdict] = RefreshAheadCache(1.0)
    calls: list[int] = []

    async def slow() -> Verdict:
        calls.append(1)
        await asyncio.sleep(0.05)
        return verdict("fail", 60.0)

    async def failing() -> Verdict:
        raise RuntimeError("no")

    async def scenario() -> None:
        answers = await asyncio.gather(*(cache.get("q", slow, 0) for _ in range(10)))
        assert len(calls) == 1 and all(answer is answers[0] for answer in answers)
        results = await asyncio.gather(*(cache.get("x", failing, 0) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(result, RuntimeError) for result in results)
        assert len(cache) == 1  # nothing kept for the failed question

    asyncio.run(scenario())


def test_a_cached_verdict_says_its_age_and_feedback_is_seen_at_once(tmp_path: Path) -> None:
    with make_client(tmp_path, api_token=TOKEN, verdict_max_age_seconds=60.0) as client:
        body = ndjson(live("v1", 1500, 1) + live("v2", 1500, 2, npe_rate=0.02))
        assert client.post("/v1/events", content=body, headers=AUTH).status_code == 202
        first = client.get("/v1/verdict", params=QUERY)
        assert first.json()["verdict"] == "fail"
        computed_at = datetime.fromisoformat(first.headers["Logcanary-Computed-At"])
        assert abs(computed_at.timestamp() - time.time()) < 60
        assert 0 <= float(first.headers["Logcanary-Verdict-Age"]) <= 60
        client.post("/v1/events", content=ndjson(live("v2", 100, 3)), headers=AUTH)
        again = client.get("/v1/verdict", params=QUERY)
        assert again.json() == first.json()  # within its bound, the same answer
        assert again.headers["Logcanary-Computed-At"] == first.headers["Logcanary-Computed-At"]
        compact = client.get("/v1/verdict", params={**QUERY, "compact": "true"})
        assert compact.json()["canary_events"] == first.json()["canary_events"] + 100  # another question
        anomaly = first.json()["anomalies"][0]
        rule = {"service": "payments", "action": "ignore", "template_id": anomaly["template_ids"][0]}
        assert client.post("/v1/feedback", json=rule, headers=AUTH).status_code == 201
        silenced = client.get("/v1/verdict", params=QUERY).json()  # new rules: computed afresh
        assert silenced["verdict"] == "pass" and silenced["canary_events"] == first.json()["canary_events"] + 100


def test_concurrent_verdicts_during_ingestion_see_events_in_order_and_match_one_computed_after(tmp_path: Path) -> None:
    """Twenty clients ask while bodies of 300 events arrive: every answer succeeds and counts a prefix of what was
    sent, in order (a body is applied in 10 ms slices, so a verdict may see part of one: never an event out of
    order); once ingestion stops, concurrent answers equal a verdict computed afterwards on that state."""
    with make_client(tmp_path, api_token=TOKEN) as client:
        bodies = [ndjson(live("v1", 150, 10 + n) + live("v2", 150, 100 + n, npe_rate=0.02)) for n in range(20)]
        client.post("/v1/events", content=bodies[0], headers=AUTH)
        stop = threading.Event()
        seen: list[tuple[int, int, float]] = []

        def ask() -> None:
            while not stop.is_set():
                answer = client.get("/v1/verdict", params=QUERY)
                assert answer.status_code == 200, answer.text
                data = answer.json()
                seen.append((answer.status_code, data["canary_events"], data["baseline_events"]))

        with ThreadPoolExecutor(20) as pool:
            askers = [pool.submit(ask) for _ in range(20)]
            for body in bodies[1:]:
                assert client.post("/v1/events", content=body, headers=AUTH).status_code == 202
            stop.set()
            for asker in askers:
                asker.result()
        assert len(seen) >= 20
        for _, canary, baseline in seen:  # each body's 150 v1 lines are applied before its 150 v2 lines
            assert 0 <= baseline - canary <= 150 and canary <= baseline <= 3000, (canary, baseline)

        rt = runtime(client)
        rt.verdicts.cache.max_age = 60.0  # now the cache is on: concurrent questions share one computation
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda _: client.get("/v1/verdict", params=QUERY).json(), range(40)))
        question = VerdictQuestion("payments", "v2", "v1", window=None)
        judged = rt.verdicts.job(rt.state.engine.services["payments"], question)(None)
        after = judged.verdict.model_dump(mode="json")
        assert after["canary_events"] == 3000
        assert all(answer.pop("page").startswith("http://") for answer in answers)  # the answers link to their page
        del after["page"]  # computed directly, it has none
        assert all(answer == after for answer in answers)


def test_the_loop_stays_responsive_while_a_checkpoint_holds_the_store_lock(tmp_path: Path) -> None:
    """Feedback, marks and analyses wait for the store in a worker thread; verdicts and health do not wait."""
    with make_client(tmp_path, api_token=TOKEN) as client:
        client.post("/v1/events", content=ndjson(live("v1", 500, 1) + live("v2", 500, 2)), headers=AUTH)
        store = cast(SqliteStore, runtime(client).store)
        writes = {
            "feedback": lambda: client.post(
                "/v1/feedback", json={"service": "payments", "action": "ignore", "template": "x <*>"}, headers=AUTH
            ),
            "mark": lambda: client.post(
                "/v1/services/payments/deployments/v1/mark", json={"bad": True, "author": "me"}, headers=AUTH
            ),
            "analysis": lambda: client.post(
                "/v1/analyses",
                json={"service": "payments", "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}},
                headers=AUTH,
            ),
        }
        with ThreadPoolExecutor(len(writes)) as pool:
            with store._lock:  # as a checkpoint's transaction holds it
                pending = {name: pool.submit(write) for name, write in writes.items()}
                time.sleep(0.3)  # the writes reach the store and wait for the lock
                for _ in range(5):
                    started = time.monotonic()
                    assert client.get("/healthz").status_code == 200
                    assert client.get("/v1/verdict", params=QUERY).status_code == 200
                    assert time.monotonic() - started < 2.0
                assert not any(future.done() for future in pending.values())  # they do wait for the store
            assert {name: future.result(timeout=10).status_code for name, future in pending.items()} == {
                "feedback": 201,
                "mark": 200,
                "analysis": 201,
            }
        assert len(store.list_feedback()) == 1 and len(store.load_analyses()) == 1


def test_reads_never_change_the_engine_merged_templates_are_folded_by_the_write() -> None:
    """Verdicts read the engine from worker threads: a read must find nothing left to fold or to learn."""
    engine = Engine((), Caps())
    engine.observe("svc", "v1", "stored as bytes", 1.0)
    engine.observe("svc", "v2", "stored as values", 2.0)
    engine.observe("svc", "v2", "stored as chars", 3.0)  # the third value: one template "stored as <*>"
    service = engine.services["svc"]
    assert service.miner.renamed > 0
    for model in service.deployments.values():
        stats = model.templates()
        assert all(template.merged_into is None for template in stats)
        assert all(template in model.clusterer._of_template for template in stats)  # learnt by the write
        assert model.templates() is stats
    assert sum(stats.count for stats in service.deployments["v2"].templates().values()) == 2


def test_a_verdict_computed_in_a_thread_sees_no_write_and_holds_writers_until_it_returns(tmp_path: Path) -> None:
    state = make_state(tmp_path)
    for n in range(50):
        state.engine.observe("svc", "v1", f"request {n} served", float(n))
    model = state.engine.services["svc"].deployments["v1"]
    started, release = threading.Event(), threading.Event()

    def read() -> tuple[int, int]:
        before = model.events
        started.set()
        release.wait(5)
        return before, model.events

    async def scenario() -> None:
        reader = asyncio.ensure_future(state.live.read_in_thread(read))
        await asyncio.to_thread(started.wait, 5)
        body = ndjson(live("v1", 30, 7))
        writer = asyncio.ensure_future(bodies.ingest(state, state.live.limits, body))
        await asyncio.sleep(0.1)
        assert not writer.done() and model.events == 50  # ingestion waits for the reader
        reader.cancel()  # a cancelled asker: the thread still reads, and the lock stays held until it returns
        await asyncio.sleep(0.1)
        assert not writer.done() and model.events == 50
        release.set()
        outcome = await writer
        assert outcome.accepted == 30

    asyncio.run(scenario())
    assert state.engine.services["payments"].deployments["v1"].events == 30
    state.store.close()
