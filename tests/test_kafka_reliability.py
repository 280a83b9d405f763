"""Kafka ingestion under faults: real broker, real `logcanary serve` processes, each test printing its figures.

The quick variants run in `make test`; the long ones (10 fresh starts and kills, a 60 s broker pause) are
marked `chaos` and run with `make chaos`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from logcanary.demo.embedded_broker import EmbeddedBroker
from logcanary.demo.traffic import events
from logcanary.ingestion.kafka.dead_letters import HEADER_ORIGINAL_BYTES, HEADER_REASON, HEADER_SOURCE

from .conftest import Launcher, ServiceProcess
from .kafka_helpers import consume_all, deployment_events, topic_env

chaos = pytest.mark.chaos

BAD_RECORDS = (
    b"this is not json {",
    b'{"message": "caf\xe9"}',
    b'{"message": "no service here"}',
    b'{"service": "x", "message": ""}',
)


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker of the test's own: it gets paused, which the session's broker must never be."""
    with EmbeddedBroker() as broker:
        yield broker


def figures(capsys: pytest.CaptureFixture[str], name: str, **values: Any) -> None:
    with capsys.disabled():
        print(f"\n[{name}] " + ", ".join(f"{key}={value}" for key, value in values.items()))


def setup_topic(broker: EmbeddedBroker, **extra: str) -> tuple[dict[str, str], str, str]:
    return topic_env(broker, "0.3", **extra)


def with_bad_records(good: list[dict[str, Any]], every: int = 100) -> tuple[list[bytes], int]:
    """The good events as JSON with one bad record after every ``every - 1`` good ones (1%)."""
    out: list[bytes] = []
    bad = 0
    for index, event in enumerate(good):
        out.append(orjson.dumps(event))
        if index % (every - 1) == every - 2:
            out.append(BAD_RECORDS[bad % len(BAD_RECORDS)])
            bad += 1
    return out, bad


def produce_big(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Like kafka_helpers.produce, with a request limit that lets records over 1 MiB through."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=8 * 1024 * 1024)
        await producer.start()
        try:
            futures = [await producer.send(topic, value) for value in values]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(run())


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    produce_big(bootstrap, topic, values)


def stored_offsets(state_dir: Path) -> dict[tuple[str, int], int]:
    path = state_dir / "logcanary.sqlite"
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            rows = db.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
    except sqlite3.Error:
        return {}
    return {(topic, partition): offset for topic, partition, offset in rows}


class OffsetWatch:
    """Samples the stored offsets and fails on any that moves backwards."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.highest: dict[tuple[str, int], int] = {}
        self.samples = 0

    def sample(self) -> None:
        for key, offset in stored_offsets(self.state_dir).items():
            assert offset >= self.highest.get(key, 0), (
                f"stored offset of {key} moved back: {self.highest[key]} -> {offset}"
            )
            self.highest[key] = offset
        self.samples += 1


def metric(client: httpx.Client, name: str) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith((name + " ", name + "{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_counted(
    client: httpx.Client, service: str, total: int, timeout: float = 90.0, watch: OffsetWatch | None = None
) -> int:
    deadline = time.monotonic() + timeout
    counted = 0
    while time.monotonic() < deadline:
        counted = sum(deployment_events(client, service).values())
        if watch is not None:
            watch.sample()
        if counted >= total:
            return counted
        time.sleep(0.1)
    raise AssertionError(f"only {counted} of {total} events for {service} after {timeout}s")


def settle(client: httpx.Client, service: str, seconds: float = 1.5) -> int:
    """Counts once nothing more arrives (a double count would show up here)."""
    time.sleep(seconds)
    return sum(deployment_events(client, service).values())


# -- fresh starts and kills -----------------------------------------------------------------------------


@pytest.mark.parametrize("starts", [3, pytest.param(10, marks=chaos)])
def test_fresh_starts_with_bad_records_never_count_twice(
    kafka: EmbeddedBroker, service_process: Launcher, tmp_path: Path, capsys: pytest.CaptureFixture[str], starts: int
) -> None:
    """Each start has an empty state: every record is read from the beginning while the group assigns."""
    env, topic, dead = setup_topic(kafka, LOGCANARY_KAFKA_MAX_BATCH_RECORDS="250")
    good = list(events("v1", 3000, seed=21, service="fresh"))
    stream, bad = with_bad_records(good)
    produce(kafka.bootstrap_servers, topic, stream)
    began = time.monotonic()
    doubles = skipped = 0
    for start in range(starts):
        state_dir = tmp_path / f"fresh-{start}"
        service = service_process(
            {**env, "LOGCANARY_STATE_DIR": str(state_dir), "LOGCANARY_KAFKA_GROUP_ID": f"g{start}-{topic}"}
        )
        service.start()
        watch = OffsetWatch(state_dir)
        with service.client() as client:
            wait_counted(client, "fresh", len(good), watch=watch)
            counted = settle(client, "fresh")
            watch.sample()
            doubles += counted - len(good)
            skipped += int(metric(client, "logcanary_ingest_records_skipped_total"))
        service.stop()
        watch.sample()
        assert sum(watch.highest.values()) == len(stream), watch.highest
        assert counted == len(good), f"start {start}: {counted} counted for {len(good)} events"
    dead_records = consume_all(kafka.bootstrap_servers, dead, expected=bad * starts, timeout=20)
    figures(
        capsys,
        "fresh starts",
        starts=starts,
        produced=len(stream),
        bad=bad,
        counted_per_start=len(good),
        double_counted=doubles,
        refetched_and_dropped=skipped,
        dead_lettered=len(dead_records),
        seconds=round(time.monotonic() - began, 1),
    )
    assert doubles == 0
    assert len({dict(r.headers)[HEADER_SOURCE] for r in dead_records}) == bad


@pytest.mark.parametrize("kills", [3, pytest.param(10, marks=chaos)])
def test_sigkills_with_bad_records_lose_nothing_and_count_nothing_twice(
    kafka: EmbeddedBroker, service_process: Launcher, tmp_path: Path, capsys: pytest.CaptureFixture[str], kills: int
) -> None:
    """SIGKILL lands mid-stream `kills` times (the first start is a fresh one); then the last run finishes."""
    env, topic, dead = setup_topic(kafka, LOGCANARY_KAFKA_MAX_BATCH_RECORDS="300")
    good = [*events("v1", 15_000 * kills // 3, seed=31, service="kills")]
    stream, bad = with_bad_records(good)
    produce(kafka.bootstrap_servers, topic, stream)
    watch = OffsetWatch(tmp_path / "state")
    began = time.monotonic()
    step = len(good) // (kills + 1)
    for kill in range(kills):
        service = service_process(env)
        service.start()
        with service.client() as client:
            wait_counted(client, "kills", step * (kill + 1) // 2 + 1, watch=watch)
        service.kill()
        watch.sample()
    service = service_process(env)
    service.start()
    with service.client() as client:
        wait_counted(client, "kills", len(good), watch=watch)
        counted = settle(client, "kills")
    watch.sample()
    dead_records = consume_all(kafka.bootstrap_servers, dead, expected=bad, timeout=20)
    sources = {dict(r.headers)[HEADER_SOURCE] for r in dead_records}
    figures(
        capsys,
        "SIGKILLs",
        kills=kills,
        produced=len(stream),
        good=len(good),
        counted=counted,
        lost=max(0, len(good) - counted),
        duplicated=max(0, counted - len(good)),
        bad=bad,
        dead_letter_records=len(dead_records),
        dead_lettered_distinct=len(sources),
        seconds=round(time.monotonic() - began, 1),
    )
    assert counted == len(good)
    assert len(sources) == bad  # at least once: a record may be dead-lettered again after a kill


# -- poison records ----------------------------------------------------------------------------------------


def test_poison_records_over_the_producer_limit_are_dead_lettered_truncated(
    kafka: EmbeddedBroker, service_process: Launcher, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,048,560 bytes (under MAX_RECORD_BYTES, not JSON) and 1.2 MB (too large): neither stops ingestion,
    before or after a restart that reads them again."""
    env, topic, dead = setup_topic(kafka)
    good = [orjson.dumps(e) for e in events("v1", 300, seed=41, service="poison")]
    poison = [b"x" * 1_048_560, orjson.dumps({"service": "poison", "message": "y" * 1_200_000})]
    produce_big(kafka.bootstrap_servers, topic, [*good[:100], poison[0], *good[100:200], poison[1], *good[200:]])
    began = time.monotonic()
    for run in range(2):  # the second run starts fresh and meets both records again
        service = service_process({**env, "LOGCANARY_STATE_DIR": str(tmp_path / f"run{run}")})
        service.start()
        with service.client() as client:
            wait_counted(client, "poison", 300, timeout=60)
            assert settle(client, "poison", 0.5) == 300
            truncated = metric(client, "logcanary_dead_letters_truncated_total")
            failed = metric(client, "logcanary_dead_letters_failed_total")
            restarts = metric(client, "logcanary_ingest_restarts_total")
            assert (truncated, failed) == (2, 0)
        service.stop()
    records = consume_all(kafka.bootstrap_servers, dead, expected=4, timeout=20)
    figures(
        capsys,
        "poison records",
        produced=len(good) + 2,
        counted=300,
        dead_lettered=len(records),
        sizes=sorted(len(r.value) for r in records),
        restarts=restarts,
        seconds=round(time.monotonic() - began, 1),
    )
    assert len(records) == 4
    reasons = sorted(dict(r.headers)[HEADER_REASON].decode() for r in records)
    assert reasons == ["not_json", "not_json", "too_large", "too_large"]
    assert sorted(int(dict(r.headers)[HEADER_ORIGINAL_BYTES]) for r in records) == [
        1_048_560,
        1_048_560,
        len(poison[1]),
        len(poison[1]),
    ]
    assert all(len(r.value) == 256 * 1024 for r in records)
    assert {r.value for r in records} == {p[: 256 * 1024] for p in poison}


# -- broker outages -----------------------------------------------------------------------------------------


def pause(broker: EmbeddedBroker) -> None:
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGSTOP)


def resume(broker: EmbeddedBroker) -> None:
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGCONT)


def readyz(client: httpx.Client) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    response = client.get("/readyz")
    assert response.status_code == 200, response.text  # verdicts are still served from the state
    body: dict[str, Any] = response.json()
    return body, time.monotonic() - started


@pytest.mark.parametrize("outage", [10.0, pytest.param(65.0, marks=chaos)])
def test_broker_paused_then_back_ingestion_resumes_without_a_restart(
    own_broker: EmbeddedBroker, service_process: Launcher, capsys: pytest.CaptureFixture[str], outage: float
) -> None:
    env, topic, dead = setup_topic(own_broker, LOGCANARY_KAFKA_STALL_SECONDS="3")
    first, bad1 = with_bad_records(list(events("v1", 2000, seed=51, service="outage")))
    second, bad2 = with_bad_records(list(events("v2", 2000, seed=52, service="outage")))
    service = service_process(env)
    service.start()
    assert service.process is not None
    pid = service.process.pid
    began = time.monotonic()
    with service.client() as client:
        produce(own_broker.bootstrap_servers, topic, first)
        wait_counted(client, "outage", 2000)
        pause(own_broker)
        paused_at = time.monotonic()
        slowest = 0.0
        seen: set[str] = set()
        try:
            while time.monotonic() - paused_at < outage:
                body, took = readyz(client)
                slowest = max(slowest, took)
                seen.add(body["ingest"]["state"])
                assert client.get("/healthz").status_code == 200
                verdict = client.get("/v1/verdict", params={"service": "outage", "canary": "v1", "window": "all"})
                assert verdict.status_code == 200
                time.sleep(0.5)
            stalled, _ = readyz(client)
        finally:
            resume(own_broker)
        assert stalled["kafka"] is False and stalled["ingest"]["state"] == "stalled", stalled
        produce(own_broker.bootstrap_servers, topic, second)
        wait_counted(client, "outage", 4000, timeout=max(90.0, outage))
        resumed_after = time.monotonic() - paused_at - outage
        counted = settle(client, "outage")
        deadline = time.monotonic() + 15
        while readyz(client)[0]["ingest"]["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        after, _ = readyz(client)
        restarts = metric(client, "logcanary_ingest_restarts_total")
        failed = metric(client, "logcanary_dead_letters_failed_total")
    dead_records = consume_all(own_broker.bootstrap_servers, dead, expected=bad1 + bad2, timeout=20)
    figures(
        capsys,
        "broker paused",
        outage_seconds=outage,
        produced=len(first) + len(second),
        counted=counted,
        dead_lettered=len(dead_records),
        dead_letters_failed=failed,
        ingest_restarts=restarts,
        states_seen_during_outage=sorted(seen),
        slowest_readyz_seconds=round(slowest, 3),
        resumed_seconds_after_broker_back=round(resumed_after, 1),
        seconds=round(time.monotonic() - began, 1),
    )
    assert counted == 4000
    assert service.process.pid == pid and service.process.poll() is None  # the same process: no restart
    assert after["kafka"] is True and after["ingest"]["state"] == "running", after
    assert slowest < 1.0
    assert len({dict(r.headers)[HEADER_SOURCE] for r in dead_records}) == bad1 + bad2


def test_sigterm_with_the_broker_unreachable_exits_in_time_and_checkpoints(
    own_broker: EmbeddedBroker, service_process: Launcher, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env, topic, _ = setup_topic(
        own_broker, LOGCANARY_SHUTDOWN_TIMEOUT_SECONDS="6", LOGCANARY_CHECKPOINT_INTERVAL_SECONDS="3600"
    )
    stream, _ = with_bad_records(list(events("v1", 3000, seed=61, service="term")))
    service = service_process(env)
    service.start()
    with service.client() as client:
        produce(own_broker.bootstrap_servers, topic, stream)
        wait_counted(client, "term", 3000)
    pause(own_broker)
    try:
        time.sleep(1.0)
        assert service.process is not None
        started = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        code = service.process.wait(60)
        took = time.monotonic() - started
    finally:
        resume(own_broker)
    offsets = stored_offsets(tmp_path / "state")
    # The checkpoint interval is an hour: only the shutdown checkpoint can have saved these.
    http_only = ServiceProcess({"LOGCANARY_STATE_DIR": str(tmp_path / "state")}, tmp_path / "after.log")
    http_only.start()
    try:
        with http_only.client() as client:
            counted = sum(deployment_events(client, "term").values())
    finally:
        http_only.stop()
    figures(
        capsys,
        "SIGTERM, broker unreachable",
        shutdown_timeout=6,
        exit_code=code,
        exit_seconds=round(took, 1),
        stored_next_offsets=sum(offsets.values()),
        counted_after_restart=counted,
    )
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
    assert "Application shutdown complete" in service.log.read_text()
    assert took < 6 + 3  # the deadline, plus uvicorn's own start of shutdown
    assert sum(offsets.values()) == len(stream)
    assert counted == 3000
