"""Scale-out: replicas in one consumer group over the shared PostgreSQL store, with the real broker.

Shippers do not key their records, so every service's events arrive on every partition of the log topic; each
replica routes them through the repartition topic to the replica owning the service (logcanary.ingestion.kafka).
Counts stay exact through a SIGKILL and a new replica joining, and every replica answers the same.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from logcanary.demo.embedded_broker import EmbeddedBroker
from logcanary.live.scale_out import RepartitionCountChanged, ScaleOut
from logcanary.settings import Settings
from logcanary.store.postgres import PostgresStore
from tests.conftest import Launcher, ServiceProcess
from tests.kafka_helpers import create_topics, produce
from tests.postgres_helpers import TEST_URL
from tests.test_store_postgres import pg

SERVICES = ("checkout", "payments", "search", "catalog", "auth", "cart")
NPE = "java.lang.NullPointerException: Cannot invoke EncryptionService.encrypt() because key is null"


def _events(count: int, start: int) -> Iterator[dict[str, Any]]:
    """Unkeyed log records: six services with a stable v1 and a canary v2; checkout's canary throws NPEs."""
    now = datetime.now(UTC).isoformat()
    for i in range(start, start + count):
        service = SERVICES[i % len(SERVICES)]
        deployment = "v2" if i % 5 == 0 else "v1"
        message = f"GET /api/items/{i % 997} 200 in {i % 89} ms"
        if i % 3 == 0:
            message = f"user {i} logged in from 10.0.{i % 250}.{i % 200}"
        level = "info"
        if service == "checkout" and deployment == "v2" and i % 7 == 0:
            message, level = NPE, "error"
        yield {"timestamp": now, "service": service, "deployment": deployment, "host": f"pod-{i % 4}",
               "level": level, "message": message}  # fmt: skip


def _expected(total: int) -> Counter[tuple[str, str]]:
    return Counter((e["service"], e["deployment"]) for e in _events(total, 0))


def _counts(client: httpx.Client) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for info in client.get("/v1/services").json():
        for deployment in info["deployments"]:
            counts[(info["service"], deployment["deployment"])] = deployment["events"]
    return counts


def _wait_exact(replicas: list[ServiceProcess], expected: Counter[tuple[str, str]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen: list[Counter[tuple[str, str]]] = []
    while time.monotonic() < deadline:
        seen = []
        for replica in replicas:
            with replica.client() as client:
                seen.append(_counts(client))
        if all(counts == expected for counts in seen):
            return
        time.sleep(0.5)
    raise AssertionError(f"expected {dict(expected)}, replicas saw {[dict(s) for s in seen]}")


def _scale_out_env(kafka: EmbeddedBroker, schema: str, partitions: int = 6) -> tuple[dict[str, str], str]:
    topic = f"logs-{uuid.uuid4().hex[:8]}"
    create_topics(kafka.bootstrap_servers, topic, partitions=partitions)
    create_topics(kafka.bootstrap_servers, f"{topic}.dead")
    env = {
        "LOGCANARY_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "LOGCANARY_KAFKA_TOPICS": topic,
        "LOGCANARY_KAFKA_DEAD_LETTER_TOPIC": f"{topic}.dead",
        "LOGCANARY_KAFKA_GROUP_ID": f"g-{topic}",
        "LOGCANARY_KAFKA_REPARTITION_PARTITIONS": str(partitions),
        "LOGCANARY_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "LOGCANARY_CHECKPOINT_INTERVAL_SECONDS": "0.5",
        "LOGCANARY_STORE_URL": TEST_URL,
        "LOGCANARY_STORE_SCHEMA": schema,
        "LOGCANARY_PUBLIC_URL": "https://logcanary.example.com",  # one address for people, as behind a load balancer
    }
    return env, topic


def _same_answers(replicas: list[ServiceProcess], path: str, params: dict[str, str] | None = None) -> Any:
    """The body every replica answers (retried while an evaluation lands between two reads)."""
    bodies: list[Any] = []
    for _ in range(10):
        bodies = []
        for replica in replicas:
            with replica.client() as client:
                response = client.get(path, params=params)
                assert response.status_code == 200, response.text
                body = response.json()
                if isinstance(body, dict) and "page" in body and "reason_code" in body:
                    del body["page"]  # a verdict's page fixes the time it was computed at, on each replica its own
                bodies.append(body)
        if all(body == bodies[0] for body in bodies):
            return bodies[0]
        time.sleep(0.3)
    raise AssertionError(f"replicas disagree on {path}: {bodies}")


ANALYSIS = {"service": "checkout", "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}}
VERDICT = {"service": "checkout", "canary": "v2", "baseline": "v1", "window": "all", "compact": "true"}


def _comparable(verdict: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in verdict.items() if key not in ("window_end", "window_start")}


def test_replicas_count_unkeyed_records_exactly_through_a_kill_and_a_join(
    kafka: EmbeddedBroker, service_process: Launcher, pg_schema: str
) -> None:
    total = int(os.environ.get("LOGCANARY_TEST_SCALE_OUT_EVENTS", "300000"))
    first = total // 2
    env, topic = _scale_out_env(kafka, pg_schema)
    replicas = [service_process(env) for _ in range(3)]
    for replica in replicas:
        replica.start(timeout=60)
    assert produce(kafka.bootstrap_servers, topic, _events(first, 0)) == first
    time.sleep(3)  # mid-stream: the replicas are still working through the first half
    replicas[0].kill()
    fourth = service_process(env)
    fourth.start(timeout=60)
    assert produce(kafka.bootstrap_servers, topic, _events(total - first, first)) == total - first
    alive = [*replicas[1:], fourth]
    _wait_exact(alive, _expected(total), timeout=240)
    scraped = ""
    for replica in alive:
        with replica.client() as client:
            scraped += client.get("/metrics").text
    # Lag is reported for both hops: the log topic (routers) and the repartition topic (owners).
    assert f'logcanary_consumer_lag_records{{partition="0",topic="{topic}"}}' in scraped
    assert f'topic="{env["LOGCANARY_KAFKA_GROUP_ID"]}.by-service"' in scraped

    verdicts = [_comparable(v) for v in [_same_answers([r], "/v1/verdict", VERDICT) for r in alive]]
    assert all(v == verdicts[0] for v in verdicts), verdicts
    assert verdicts[0]["verdict"] == "fail"
    assert any("NullPointerException" in str(a) for a in verdicts[0]["anomalies"])
    clean = {**VERDICT, "service": "payments"}
    assert {_same_answers([r], "/v1/verdict", clean)["verdict"] for r in alive} == {"pass"}

    with alive[0].client() as client:
        created = client.post(
            "/v1/analyses",
            json={**ANALYSIS, "duration": "1h"},
        )
        assert created.status_code == 201, created.text
    analysis = _same_answers(alive, f"/v1/analyses/{created.json()['id']}")
    assert analysis["status"] == "running"


def test_another_replica_completes_the_analysis_of_a_replica_killed(
    kafka: EmbeddedBroker, service_process: Launcher, pg_schema: str
) -> None:
    env, topic = _scale_out_env(kafka, pg_schema, partitions=2)
    replicas = [service_process(env) for _ in range(2)]
    for replica in replicas:
        replica.start(timeout=60)
    produce(kafka.bootstrap_servers, topic, _events(600, 0))
    _wait_exact(replicas, _expected(600), timeout=120)
    with replicas[0].client() as client:
        created = client.post(
            "/v1/analyses",
            json={**ANALYSIS, "duration": "20s", "fail_fast": False},
        )
        assert created.status_code == 201, created.text
        analysis_id = created.json()["id"]
    # Events stamped after the analysis started: its window (event time) holds the canary's NPEs.
    produce(kafka.bootstrap_servers, topic, _events(6_000, 600))
    _wait_exact(replicas, _expected(6_600), timeout=120)
    # The replica that created it holds its lease: kill it while the analysis runs.
    replicas[0].kill()
    deadline = time.monotonic() + 90
    body: dict[str, Any] = {}
    with replicas[1].client() as client:
        while time.monotonic() < deadline:
            body = client.get(f"/v1/analyses/{analysis_id}").json()
            if body["status"] == "completed":
                break
            time.sleep(0.5)
        assert body["status"] == "completed", body
        assert body["verdict"]["verdict"] == "fail"
        metrics = client.get("/metrics").text
        assert f'analysis="{analysis_id}"' not in metrics  # completed: its series are gone everywhere


@pytest.mark.parametrize("replicas", [2])
def test_http_events_and_feedback_reach_every_replica(
    kafka: EmbeddedBroker, service_process: Launcher, pg_schema: str, replicas: int
) -> None:
    env, _ = _scale_out_env(kafka, pg_schema, partitions=4)
    processes = [service_process(env) for _ in range(replicas)]
    for process in processes:
        process.start(timeout=60)
    events = list(_events(2_000, 0))
    with processes[0].client() as client:
        answer = client.post("/v1/events", json=events)
        assert answer.status_code == 202, answer.text
        assert answer.json()["accepted"] == 2_000
    _wait_exact(processes, _expected(2_000), timeout=60)

    # Feedback given on one replica is listed by every replica at once and changes every replica's verdict.
    verdict = _same_answers(processes, "/v1/verdict", VERDICT)
    assert verdict["verdict"] == "fail", verdict
    npe = next(a for a in verdict["anomalies"] if "NullPointerException" in str(a))
    with processes[0].client() as client:
        given = client.post(
            "/v1/feedback",
            json={"service": "checkout", "action": "ignore", "template_id": npe["template_ids"][0], "author": "qa"},
        )
        assert given.status_code == 201, given.text
    assert [f["id"] for f in _same_answers(processes, "/v1/feedback")] == [given.json()["id"]]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if {_same_answers([p], "/v1/verdict", VERDICT)["verdict"] for p in processes} == {"pass"}:
            break
        time.sleep(0.5)
    assert {_same_answers([p], "/v1/verdict", VERDICT)["verdict"] for p in processes} == {"pass"}


def test_a_keyed_retry_on_another_replica_counts_once(
    kafka: EmbeddedBroker, service_process: Launcher, pg_schema: str
) -> None:
    """A load balancer sends the retry of a timed-out POST to another replica: the Idempotency-Key, saved in the
    shared store with the first answer, makes it a replay there too."""
    env, _ = _scale_out_env(kafka, pg_schema, partitions=2)
    processes = [service_process(env) for _ in range(2)]
    for process in processes:
        process.start(timeout=60)
    events = list(_events(500, 0))
    headers = {"Idempotency-Key": "batch-0001"}
    with processes[0].client() as first, processes[1].client() as second:
        answer = first.post("/v1/events", json=events, headers=headers)
        assert answer.status_code == 202, answer.text
        retry = second.post("/v1/events", json=events, headers=headers)
        assert retry.status_code == 202 and retry.headers.get("Idempotent-Replayed") == "true", retry.text
        assert retry.content == answer.content
        other = second.post("/v1/events", json=events[:10], headers=headers)
        assert other.status_code == 422  # the same key with another body
    _wait_exact(processes, _expected(500), timeout=60)


def test_the_same_keyed_request_on_two_replicas_at_once_counts_once(
    kafka: EmbeddedBroker, service_process: Launcher, pg_schema: str
) -> None:
    """A load balancer retries a slow POST on another replica while the first still runs: the key is claimed in
    the shared store before any event is sent, so the second waits for the first's answer and replays it. Ten
    keys, each sent to replica A and 50 ms later to replica B: every batch counted exactly once."""
    env, _ = _scale_out_env(kafka, pg_schema, partitions=2)
    processes = [service_process(env) for _ in range(2)]
    for process in processes:
        process.start(timeout=60)
    keys, per = 10, 2_000
    answers: dict[tuple[int, int], httpx.Response] = {}
    batches = [orjson.dumps(list(_events(per, index * per))) for index in range(keys)]  # one body per key

    def send(replica: int, index: int, delay: float) -> None:
        time.sleep(delay)
        with processes[replica].client() as client:
            answers[(replica, index)] = client.post(
                "/v1/events",
                content=batches[index],
                headers={"Idempotency-Key": f"racing-{index:04d}", "Content-Type": "application/json"},
                timeout=30,
            )

    threads = [
        threading.Thread(target=send, args=(replica, index, 0.05 * replica))
        for index in range(keys)
        for replica in (0, 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(keys):
        first, second = answers[(0, index)], answers[(1, index)]
        assert {first.status_code, second.status_code} == {202}, (first.text, second.text)
        assert first.content == second.content
        replayed = [r.headers.get("Idempotent-Replayed") == "true" for r in (first, second)]
        assert sorted(replayed) == [False, True], replayed  # one counted it, the other replayed its answer
    _wait_exact(processes, _expected(keys * per), timeout=60)


@pytest.mark.chaos
def test_chaos_replicas_killed_again_and_again_count_exactly(
    kafka: EmbeddedBroker, service_process: Launcher, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make chaos`: 3 replicas take 300,000 unkeyed events in 10 slices; after each slice a random replica is
    SIGKILLed and a new one started in its place (routers and owners die mid-batch, partitions move again and
    again). Every count is exact on every replica at the end, and every replica gives the same verdict."""
    import random

    total, slices = 300_000, 10
    rng = random.Random(11)
    env, topic = _scale_out_env(kafka, pg_schema)
    replicas = [service_process(env) for _ in range(3)]
    for replica in replicas:
        replica.start(timeout=60)
    started = time.monotonic()
    per = total // slices
    for index in range(slices):
        produce(kafka.bootstrap_servers, topic, _events(per, index * per))
        time.sleep(rng.uniform(0.5, 3.0))
        victim = rng.randrange(len(replicas))
        replicas[victim].kill()
        replicas[victim] = service_process(env)
        replicas[victim].start(timeout=60)
    _wait_exact(replicas, _expected(total), timeout=300)
    seconds = time.monotonic() - started
    verdicts = [_comparable(_same_answers([r], "/v1/verdict", VERDICT)) for r in replicas]
    assert all(v == verdicts[0] for v in verdicts) and verdicts[0]["verdict"] == "fail"
    with capsys.disabled():
        print(f"\n[scale-out chaos] {total} events, {slices} SIGKILLs, exact on 3 replicas after {seconds:.0f}s")


def test_a_checkpoint_never_fences_out_a_partition_being_adopted(tmp_path: Path, pg_schema: str) -> None:
    """A rebalance that keeps partition 0 here bumps its epoch in the store before the adoption finishes loading
    the partitions gained; a checkpoint due meanwhile must wait for the adoption, not write with the old epoch
    (that write is refused, partition 0 is dropped from memory and its offsets start again from zero)."""
    state: ScaleOut = pg(
        tmp_path, pg_schema, kafka_bootstrap_servers="127.0.0.1:1",
        kafka_repartition_partitions=2,
    )  # fmt: skip
    topic = state.topic
    kept = next(name for name in (f"svc-{n}" for n in range(50)) if state.shard_of(name) == 0)
    asyncio.run(state.adopt([0]))
    state.live.observe_values(kept, "v1", "request served in 5 ms", time.time(), "h", "info", ())
    state.shards[0].offset = 1
    asyncio.run(state.checkpoint(force=True))
    state.live.observe_values(kept, "v1", "request served in 7 ms", time.time(), "h", "info", ())
    state.shards[0].offset = 2  # counted, not saved yet
    store = state.store
    assert isinstance(store, PostgresStore)
    service_names = store.service_names  # what an adoption reads first (then the state, if it has services)
    loading = threading.Event()

    def slow_names() -> Any:
        loading.set()
        time.sleep(0.5)
        return service_names()

    store.service_names = slow_names  # type: ignore[method-assign]

    async def rebalance_with_a_checkpoint_due() -> bool:
        adoption = asyncio.create_task(state.adopt([0, 1]))
        while not loading.is_set():
            await asyncio.sleep(0.01)
        saved = await state.checkpoint(force=True)
        await adoption
        return saved

    assert asyncio.run(rebalance_with_a_checkpoint_due())
    assert state.owned == {0, 1} and not state.fenced
    assert state.shards[0].offset == 2
    assert state.engine.services[kept].deployments["v1"].events == 2
    assert store.load_offsets()[(topic, 0)] == 2
    store.close()


def test_an_owner_counts_nothing_fetched_past_its_next_offset(
    kafka: EmbeddedBroker, tmp_path: Path, pg_schema: str
) -> None:
    """A batch in hand while an adoption moved the partition back (its records start past the next expected
    offset) is not counted: the consumer goes back to the expected offset and counts from there. The same jump
    found again right after that seek is real (retention deleted the records): passed, and counted as lost."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from logcanary.ingestion.kafka import Owner
    from logcanary.ingestion.kafka.metrics import IngestMetrics

    state: ScaleOut = pg(
        tmp_path, pg_schema, kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_repartition_partitions=1, kafka_group_id=f"g-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    topic = state.topic
    create_topics(kafka.bootstrap_servers, topic, partitions=1)
    row = ["svc", "v1", "request served", time.time(), "h", "info", []]
    assert produce(kafka.bootstrap_servers, topic, (orjson.dumps([row]) for _ in range(20))) == 20
    tp = TopicPartition(topic, 0)

    def counted() -> int:
        service = state.engine.services.get("svc")
        return service.deployments["v1"].events if service else 0

    async def run() -> None:
        await state.adopt([0])
        ingestor = Owner(Settings(), state, IngestMetrics(state.metrics.registry, lambda: False), 5.0, 20.0)
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([tp])
            ingestor.consumer = consumer
            state.shards[0].offset = 5  # restored: the next record to count is offset 5
            consumer.seek(tp, 12)  # the batch in hand was fetched from 12
            stale = await consumer.getmany(tp, timeout_ms=5000)
            assert stale[tp][0].offset == 12
            await ingestor.process(stale)
            assert counted() == 0 and state.shards[0].offset == 5
            assert await consumer.position(tp) == 5  # sent back
            batch = await consumer.getmany(tp, timeout_ms=5000, max_records=5)
            await ingestor.process(batch)
            assert counted() == 5 and state.shards[0].offset == 10

            consumer.seek(tp, 15)  # as if offsets 10-14 were deleted: the seek back finds the same jump
            await ingestor.process(await consumer.getmany(tp, timeout_ms=5000))
            assert counted() == 5 and await consumer.position(tp) == 10
            consumer.seek(tp, 15)
            await ingestor.process(await consumer.getmany(tp, timeout_ms=5000))
            assert counted() == 10 and state.shards[0].offset == 20
            assert ingestor.metrics.lost._value.get() == 5
        finally:
            await consumer.stop()

    asyncio.run(run())
    state.store.close()


def test_a_changed_repartition_partition_count_is_refused_by_name(
    kafka: EmbeddedBroker, tmp_path: Path, pg_schema: str
) -> None:
    """The store records the repartition topic's partition count its state was built with; a replica that finds
    the topic with another count (services would map to other partitions than their stored state and offsets)
    refuses to route or count, saying what to do, instead of mixing the two."""
    from logcanary.ingestion.kafka import client_options, repartition

    state: ScaleOut = pg(
        tmp_path, pg_schema, kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_group_id=f"g-{uuid.uuid4().hex[:8]}", kafka_repartition_partitions=3,
    )  # fmt: skip
    config = Settings(kafka_bootstrap_servers=kafka.bootstrap_servers, kafka_repartition_partitions=3)
    topic = state.topic
    store = state.store
    options = client_options(config)
    config = config.model_copy(update={"kafka_repartition_topic": topic})
    asyncio.run(repartition.ensure_repartition_topic(config, options, state))  # creates it: 3, recorded
    assert state.partitions == 3 and store.record_partitions(topic, 3) == 3
    asyncio.run(repartition.ensure_repartition_topic(config, options, state))  # a restart: the same count

    other = f"{topic}.recreated"
    create_topics(kafka.bootstrap_servers, other, partitions=4)  # the topic recreated with more partitions
    assert store.record_partitions(other, 3) == 3  # what the state was built with
    moved: ScaleOut = pg(
        tmp_path / "b", pg_schema, kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_repartition_topic=other, kafka_repartition_partitions=3,
    )  # fmt: skip
    with pytest.raises(RepartitionCountChanged, match="has 4 partitions, but the state in the store was"):
        moved_config = config.model_copy(update={"kafka_repartition_topic": other})
        asyncio.run(repartition.ensure_repartition_topic(moved_config, options, moved))
    assert moved.partitions == 3  # nothing mapped by the new count
    store.close()
    moved.store.close()


def test_a_release_is_judged_alike_by_every_replica(
    kafka: EmbeddedBroker, service_process: Launcher, pg_schema: str
) -> None:
    """Analyses of one release started on two replicas, and an Argo measurement kept on a third service's behalf:
    every replica reads the release from the shared store (its release column) and judges it alike."""
    env, _ = _scale_out_env(kafka, pg_schema, partitions=4)
    processes = [service_process(env) for _ in range(2)]
    for process in processes:
        process.start(timeout=60)
    with processes[0].client() as client:
        assert client.post("/v1/events", json=list(_events(2_000, 0))).status_code == 202
    _wait_exact(processes, _expected(2_000), timeout=60)
    meta = {"environment": "qa", "release": "so-1", "duration": "8s"}
    started = []
    for process, service in zip(processes, ("checkout", SERVICES[1]), strict=True):
        with process.client() as client:
            body = {**ANALYSIS, "service": service, **meta}
            answer = client.post("/v1/analyses", json=body)
            assert answer.status_code == 201, answer.text
            started.append(answer.json()["id"])
    with processes[1].client() as client:  # in their windows: checkout's canary throws its NullPointerExceptions
        assert client.post("/v1/events", json=list(_events(2_000, 2_000))).status_code == 202
        measured = {"service": "checkout", "canary": "v2", "baseline": "v1", "window": "all", "compact": "true"}
        answer = client.post("/v1/verdict", params=measured | {"release": "so-2", "requested_by": "argo"})
        assert answer.json()["verdict"] == "fail"
    deadline = time.monotonic() + 30
    while _same_answers(processes, "/v1/releases/so-1")["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    release = _same_answers(processes, "/v1/releases/so-1")
    assert sorted(s["analysis_id"] for s in release["services"]) == sorted(started)
    assert (release["verdict"], release["environments"], release["reason"]) == ("fail", ["qa"], "checkout failed")
    argo = _same_answers(processes, "/v1/releases/so-2")
    assert [(s["service"], s["verdict"], s["requested_by"]) for s in argo["services"]] == [("checkout", "fail", "argo")]
    listed = _same_answers(processes, "/v1/analyses", {"environment": "qa"})
    assert sorted(a["id"] for a in listed) == sorted(started)
