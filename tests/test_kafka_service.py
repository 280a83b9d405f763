"""The service against a real broker: exact counts, verdicts over HTTP, dead letters, crash recovery."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pytest
from confluent_kafka import Producer

from logcanary.demo.embedded_broker import EmbeddedBroker, free_port
from logcanary.demo.traffic import events
from logcanary.ingestion.kafka.dead_letters import HEADER_ACCEPTED, HEADER_REASON, HEADER_REJECTED

from .conftest import Launcher
from .kafka_helpers import consume_all, deployment_events, produce, topic_env, wait_for_events


def test_100k_events_are_counted_exactly_and_verdicts_follow(kafka: EmbeddedBroker, service_process: Launcher) -> None:
    env, topic, _ = topic_env(kafka)
    service = service_process(env)
    service.start()
    stream = [
        *events("v1", 40_000, seed=1, service="payments"),
        *events("v2", 40_000, seed=2, npe_rate=0.002, service="payments"),
        *events("v1", 10_000, seed=3, service="orders"),
        *events("v2", 10_000, seed=4, service="orders"),
    ]
    assert produce(kafka.bootstrap_servers, topic, stream) == 100_000
    with service.client() as client:
        assert wait_for_events(client, "payments", 80_000) == {"v1": 40_000, "v2": 40_000}
        assert wait_for_events(client, "orders", 20_000) == {"v1": 10_000, "v2": 10_000}
        time.sleep(1.0)  # nothing more arrives: no double counting
        assert deployment_events(client, "payments") == {"v1": 40_000, "v2": 40_000}

        bad = client.get(
            "/v1/verdict", params={"service": "payments", "canary": "v2", "baseline": "v1", "window": "all"}
        )
        assert bad.status_code == 200
        assert bad.json()["verdict"] == "fail"
        assert "NullPointerException" in bad.json()["anomalies"][0]["template"]
        good = client.get(
            "/v1/verdict", params={"service": "orders", "canary": "v2", "baseline": "v1", "window": "all"}
        )
        assert good.json()["verdict"] == "pass"

        # Live analyses over HTTP: created first, then the canaries log (event time = now).
        created = {
            name: client.post(
                "/v1/analyses",
                json={
                    "service": name,
                    "canary": {"deployment": "v3"},
                    "baseline": {"deployment": "v1"},
                    "duration": "4s",
                },
            )
            for name in ("payments", "orders")
        }
        assert all(response.status_code == 201 for response in created.values())
        now = datetime.now(UTC)
        live = [
            *events("v1", 2000, seed=5, service="payments", start=now, seconds=2),
            *events("v3", 2000, seed=6, npe_rate=0.01, service="payments", start=now, seconds=2),
            *events("v1", 2000, seed=7, service="orders", start=now, seconds=2),
            *events("v3", 2000, seed=8, service="orders", start=now, seconds=2),
        ]
        produce(kafka.bootstrap_servers, topic, live)
        results = {}
        deadline = time.monotonic() + 60  # the analysis loop completes them (every 2 s) once their 4 s are up
        for name, response in created.items():
            while (analysis := client.get(f"/v1/analyses/{response.json()['id']}").json())["status"] == "running":
                assert time.monotonic() < deadline, analysis
                time.sleep(0.5)
            assert analysis["status"] == "completed"
            results[name] = analysis["verdict"]["verdict"]
        assert results == {"payments": "fail", "orders": "pass"}
        metrics = client.get("/metrics").text
        assert 'logcanary_events_ingested_total{source="kafka"} 108000.0' in metrics
        # Completed analyses are counted by final verdict (the verdict requests above count nothing), and their
        # risk series are gone: a finished analysis gates nothing.
        assert 'logcanary_analyses_total{environment="(none)",verdict="fail"} 1.0' in metrics
        assert 'logcanary_analyses_total{environment="(none)",verdict="pass"} 1.0' in metrics
        assert "logcanary_analysis_risk{" not in metrics
    service.stop()  # SIGTERM: finish the batch, checkpoint, leave the group
    assert "Application shutdown complete" in service.log.read_text()


def test_bad_records_go_to_the_dead_letter_topic_with_reasons(kafka: EmbeddedBroker, service_process: Launcher) -> None:
    env, topic, dead = topic_env(kafka, LOGCANARY_MAX_RECORD_BYTES="2048")
    service = service_process(env)
    service.start()
    good = next(events("v1", 1, service="dlq"))
    bad = [
        b"this is not json",
        b'{"message": "caf\xe9"}',
        orjson.dumps({k: v for k, v in good.items() if k != "service"}),
        orjson.dumps({**good, "message": ""}),
        orjson.dumps({**good, "message": "x" * 4000}),
    ]
    partial = orjson.dumps([good, {**good, "message": ""}])  # one event counted, one rejected
    produce(kafka.bootstrap_servers, topic, [good, *bad, partial, good])
    with service.client() as client:
        assert wait_for_events(client, "dlq", 3) == {"v1": 3}
        records = consume_all(kafka.bootstrap_servers, dead, expected=6)
        reasons = sorted(dict(r.headers)[HEADER_REASON].decode() for r in records)
        expected = ["not_json", "invalid_utf8", "missing_service", "missing_message", "too_large", "missing_message"]
        assert reasons == sorted(expected)
        assert {r.value for r in records} == {*bad, partial}
        [partly] = [dict(r.headers) for r in records if r.value == partial]
        assert (partly[HEADER_ACCEPTED], partly[HEADER_REJECTED]) == (b"1", b"1")  # the replayer knows 1 was counted
        assert all(HEADER_ACCEPTED not in dict(r.headers) for r in records if r.value != partial)
        metrics = client.get("/metrics").text
        assert 'logcanary_events_rejected_total{reason="not_json",source="kafka"} 1.0' in metrics
        assert 'logcanary_events_dead_lettered_total{reason="too_large"} 1.0' in metrics


def test_events_from_librdkafka_and_shipper_shapes(kafka: EmbeddedBroker, service_process: Launcher) -> None:
    env, topic, _ = topic_env(kafka)
    service = service_process(env)
    service.start()
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5})
    for index in range(500):
        fluent_bit = {
            "log": f"GET /cart/{index} 200 {index % 90}ms\n",
            "time": "2026-11-26T12:00:00.000000Z",
            "stream": "stdout",
            "kubernetes": {
                "pod_name": f"cart-7d9f-{index % 3}",
                "labels": {"app": "cart", "rollouts-pod-template-hash": "7d9f"},
            },
        }
        producer.produce(topic, orjson.dumps(fluent_bit))
    for index in range(500):
        producer.produce(topic, orjson.dumps({**next(events("v1", 1, seed=index)), "service": "cart"}))
    assert producer.flush(30) == 0
    with service.client() as client:
        assert wait_for_events(client, "cart", 1000) == {"7d9f": 500, "v1": 500}


@pytest.mark.parametrize("restarts", [1])
def test_sigkill_mid_stream_then_restart_counts_exactly(
    kafka: EmbeddedBroker, service_process: Launcher, restarts: int
) -> None:
    env, topic, _ = topic_env(kafka, LOGCANARY_KAFKA_MAX_BATCH_RECORDS="500")
    stream = [
        *events("v1", 75_000, seed=11, service="crash"),
        *events("v2", 75_000, seed=12, npe_rate=0.01, service="crash"),
    ]
    npe_expected = sum("NullPointerException" in e["message"] for e in stream)
    produce(kafka.bootstrap_servers, topic, stream)
    service = service_process(env)
    service.start()
    with service.client() as client:
        seen = 0
        deadline = time.monotonic() + 60
        while not seen >= 20_000 and time.monotonic() < deadline:
            seen = sum(deployment_events(client, "crash").values())
            time.sleep(0.05)
    assert 0 < seen < len(stream), "the kill must land mid-stream"
    service.kill()
    restarted = service_process(env)
    restarted.start()
    with restarted.client() as client:
        counts = wait_for_events(client, "crash", len(stream))
        time.sleep(1.5)
        assert deployment_events(client, "crash") == {"v1": 75_000, "v2": 75_000} == counts
        clusters = client.get("/v1/services/crash/clusters", params={"deployment": "v2"}).json()
        npe = sum(t["count"] for c in clusters for t in c["templates"] if "NullPointerException" in t["template"])
        assert npe == npe_expected


def test_unreachable_kafka_makes_the_service_unready_not_dead(service_process: Launcher) -> None:
    closed = free_port()
    service = service_process({"LOGCANARY_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}"})
    service.start(probe="/healthz")
    with service.client() as client:
        ready = client.get("/readyz")
        # Verdicts are served from the state while Kafka is away; the body says what ingestion is doing.
        assert ready.status_code == 200
        body = ready.json()
        assert (body["ready"], body["state_loaded"], body["kafka"]) == (True, True, False)
        assert body["ingest"]["state"] in ("connecting", "backing_off")
        assert client.get("/healthz").status_code == 200
        accepted = client.post("/v1/events", json=list(events("v1", 10, service="http-only")))
        assert accepted.json()["accepted"] == 10
    service.stop()
    assert "Application shutdown complete" in service.log.read_text()
