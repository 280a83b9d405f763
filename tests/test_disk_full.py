"""A real `logcanary serve` whose state directory fills up, then gets its space back.

HTTP ingestion goes on throughout: events it kept are never answered with an error (202, or 503 only when
nothing of the request was applied), a client's retry of a 503 counts once, checkpoints fail, are counted and
retried, and resume once space is freed; after a restart the counts are exact.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from logcanary.demo.embedded_broker import EmbeddedBroker
from tests.conftest import Launcher
from tests.kafka_helpers import produce
from tests.test_kafka_reliability import settle, setup_topic, stored_offsets, wait_counted
from tests.test_store import fill, small_filesystem

BATCH = 400


def batch(index: int) -> bytes:
    """NDJSON events; every batch brings new kinds of event, so the state (and its checkpoints) keep growing."""
    lines = []
    for n in range(BATCH):
        words = " ".join(f"w{index}x{(n * 7 + k) % 97}" for k in range(12))
        message = f"batch {index} step {n % 40} kind{index}k{n % 50} {words}"
        lines.append(
            orjson.dumps(
                {
                    "service": "svc",
                    "deployment": "v1",
                    "message": message,
                    "timestamp": 1_800_000_000 + index,
                    "host": "h",
                }
            )
        )
    return b"\n".join(lines)


def events(client: httpx.Client) -> int:
    services = client.get("/v1/services").json()
    return sum(d["events"] for s in services if s["service"] == "svc" for d in s["deployments"])


def metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_full_disk_then_freed_counts_every_event_once(tmp_path: Path, service_process: Launcher) -> None:
    with small_filesystem(tmp_path / "disk", "6m") as disk:
        service = service_process(
            {"LOGCANARY_STATE_DIR": str(disk / "state"), "LOGCANARY_CHECKPOINT_INTERVAL_SECONDS": "0.5"}
        )
        service.start()
        statuses: dict[int, list[int]] = {}
        accepted = 0
        with service.client() as client:

            def post(index: int) -> int:
                nonlocal accepted
                answer = client.post(
                    "/v1/events", content=batch(index), headers={"content-type": "application/x-ndjson"}
                )
                statuses.setdefault(answer.status_code, []).append(index)
                if answer.status_code == 202:
                    accepted += answer.json()["accepted"]
                return answer.status_code

            for index in range(3):
                assert post(index) == 202
            filler = fill(disk)
            waiting = []  # batches answered 503: the client retries them later
            for index in range(3, 40):
                if post(index) == 503:
                    waiting.append(index)
            assert waiting, f"the disk never filled up: {statuses}"
            assert set(statuses) <= {202, 503}, statuses
            assert metric(client, "logcanary_checkpoint_failures_total") >= 1
            assert client.get("/healthz").status_code == 200

            filler.unlink()
            for index in waiting:  # the retries, now that there is space
                assert post(index) == 202
            for index in range(40, 43):
                assert post(index) == 202
            assert events(client) == accepted == BATCH * 43
            saved = metric(client, "logcanary_checkpoint_duration_seconds_count")
            assert post(43) == 202  # its checkpoint succeeds: checkpoints resumed by themselves
            assert metric(client, "logcanary_checkpoint_duration_seconds_count") > saved
            failed = metric(client, "logcanary_checkpoint_failures_total")
            print(f"answers { ({s: len(i) for s, i in statuses.items()}) }, {failed:.0f} failed checkpoints")
        service.stop()
        assert "Application shutdown complete" in service.log.read_text()
        restarted = service_process({"LOGCANARY_STATE_DIR": str(disk / "state")})
        restarted.start()
        with restarted.client() as client:
            assert events(client) == BATCH * 44
        restarted.stop()


def kinds(service: str, start: int, count: int, new_kinds: bool) -> list[bytes]:
    """Kafka records; with ``new_kinds`` every one is an event type never seen (so checkpoints need space)."""
    out = []
    for n in range(start, start + count):
        if new_kinds:
            words = " ".join(f"k{n}w{k}" for k in range(30))
            message = f"event{n} kind{n} happened in {words}"
        else:
            message = f"request {n % 10} served in {n}ms"
        event = {"service": service, "deployment": "v1", "message": message, "timestamp": 1_800_000_000 + n}
        out.append(orjson.dumps(event))
    return out


def test_kafka_full_disk_then_freed_resumes_and_counts_exactly(
    kafka: EmbeddedBroker, service_process: Launcher, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8, item 2: Kafka ingestion went on counting while checkpoints failed, and checkpoints resumed by
    themselves once space was freed: the stored offsets reach the end and a SIGKILL then loses nothing."""
    with small_filesystem(tmp_path / "disk", "16m") as disk:
        state_dir = disk / "state"
        env, topic, _ = setup_topic(kafka)
        service = service_process({**env, "LOGCANARY_STATE_DIR": str(state_dir)})
        service.start()
        produced = 0
        with service.client() as client:
            produced += produce(kafka.bootstrap_servers, topic, kinds("kdisk", 0, 2000, new_kinds=False))
            wait_counted(client, "kdisk", produced)
            filler = fill(disk)
            produced += produce(kafka.bootstrap_servers, topic, kinds("kdisk", produced, 1500, new_kinds=True))
            wait_counted(client, "kdisk", produced)  # counted while the disk is full
            deadline = time.monotonic() + 20
            while metric(client, "logcanary_checkpoint_failures_total") < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            failed = metric(client, "logcanary_checkpoint_failures_total")
            assert failed >= 3, "the disk never filled up"  # retried with backoff: 0.5 s, 1 s, 2 s, ...
            assert sum(stored_offsets(state_dir).values()) < produced  # not saved yet
            filler.unlink()
            freed = time.monotonic()
            produced += produce(kafka.bootstrap_servers, topic, kinds("kdisk", produced, 2000, new_kinds=False))
            wait_counted(client, "kdisk", produced)
            while sum(stored_offsets(state_dir).values()) < produced and time.monotonic() < freed + 40:
                time.sleep(0.1)
            saved_after = time.monotonic() - freed
            assert sum(stored_offsets(state_dir).values()) == produced, "checkpoints did not resume"
            counted = settle(client, "kdisk")
        service.kill()  # no shutdown checkpoint: what is stored was saved by the resumed checkpoints
        restarted = service_process({**env, "LOGCANARY_STATE_DIR": str(state_dir)})
        restarted.start()
        with restarted.client() as client:
            after_restart = settle(client, "kdisk")
        restarted.stop()
        with capsys.disabled():
            print(
                f"\n[kafka full disk] produced={produced} counted={counted} failed_checkpoints={failed:.0f} "
                f"saved_after_freeing={saved_after:.1f}s after_sigkill_restart={after_restart}"
            )
        assert counted == after_restart == produced
