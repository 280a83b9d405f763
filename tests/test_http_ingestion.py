"""POST /v1/events: idempotency keys, per-record results, chunked application, name hygiene, clock-skew
clamping; /metrics series bounded and never created by reads; the loop-lag metric."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from fastapi.testclient import TestClient

from logcanary.api.app import create_app
from logcanary.settings import Settings


def make_client(tmp_path: Path, **settings: Any) -> TestClient:
    return TestClient(create_app(Settings(state_dir=tmp_path, **settings)))


def event(service: str = "pay", deployment: str = "v1", message: str = "user 1 logged in", **extra: Any) -> Any:
    return {"service": service, "deployment": deployment, "message": message, "timestamp": time.time(), **extra}


def ndjson(events: list[Any]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def counted(client: TestClient, service: str = "pay") -> int:
    for info in client.get("/v1/services").json():
        if info["service"] == service:
            return int(info["events"])
    return 0


def metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not on /metrics")


def series(client: TestClient) -> list[str]:
    return [line for line in client.get("/metrics").text.splitlines() if line and not line.startswith("#")]


def test_a_retry_with_the_same_key_counts_once_and_gets_the_original_answer(tmp_path: Path) -> None:
    body = ndjson([event() for _ in range(30)] + [{"service": "pay"}])
    headers = {"Idempotency-Key": "batch-0001"}
    with make_client(tmp_path) as client:
        first = client.post("/v1/events", content=body, headers=headers)
        assert first.status_code == 202
        assert first.json()["accepted"] == 30
        again = client.post("/v1/events", content=body, headers=headers)
        assert (again.status_code, again.content) == (202, first.content)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert counted(client) == 30
        reused = client.post("/v1/events", content=ndjson([event()]), headers=headers)
        assert (reused.status_code, reused.json()["error"]) == (422, "idempotency_key_reused")
        assert client.post("/v1/events", content=body, headers={"Idempotency-Key": "\x01"}).status_code == 400
        assert client.post("/v1/events", content=body).status_code == 202  # no key: counted again
        assert counted(client) == 60
        assert metric(client, "logcanary_idempotent_replays_total") == 1
    # The key was saved with the events it counted: after a restart, the retry is still answered, not counted.
    with make_client(tmp_path) as client:
        assert counted(client) == 60
        after = client.post("/v1/events", content=body, headers=headers)
        assert (after.status_code, after.content, after.headers["Idempotent-Replayed"]) == (202, first.content, "true")
        assert counted(client) == 60


def test_idempotency_keys_are_bounded_by_count_and_age(tmp_path: Path) -> None:
    with make_client(tmp_path, idempotency_max_keys=3) as client:
        for n in range(5):
            assert client.post("/v1/events", content=ndjson([event()]), headers={"Idempotency-Key": f"k{n}"}).is_success
        state = client.app.state.runtime.state  # type: ignore[attr-defined]
        assert len(state.idempotency) == 3
        rows = state.store.load_idempotency_keys(0.0)
        assert sorted(key for key, _, _ in rows) == ["k2", "k3", "k4"]
        # k0 was forgotten: the same key now counts as a new request.
        assert (
            "Idempotent-Replayed"
            not in client.post("/v1/events", content=ndjson([event()]), headers={"Idempotency-Key": "k0"}).headers
        )
        assert counted(client) == 6
    with make_client(tmp_path, idempotency_ttl_seconds=0.001) as client:
        time.sleep(0.01)
        state = client.app.state.runtime.state  # type: ignore[attr-defined]
        assert len(state.idempotency) == 0  # older than the TTL: not even loaded


def test_partly_counted_records_are_reported_exactly(tmp_path: Path) -> None:
    otlp = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "pay"}}]},
                "scopeLogs": [
                    {
                        "logRecords": [
                            {"timeUnixNano": str(time.time_ns()), "body": {"stringValue": "card charged"}},
                            {"timeUnixNano": str(time.time_ns()), "body": {"stringValue": ""}},
                            {"timeUnixNano": str(time.time_ns()), "body": {"stringValue": "card refused"}},
                        ]
                    }
                ],
            }
        ]
    }
    with make_client(tmp_path) as client:
        answer = client.post("/v1/events", content=orjson.dumps([event(), otlp, {"message": "no service"}]))
        assert answer.status_code == 202
        result = answer.json()
        assert (result["accepted"], result["rejected"]) == (3, 2)
        assert result["partial"] == [{"index": 1, "accepted": 2, "rejected": 1}]
        assert [(e["index"], e["reason"]) for e in result["errors"]] == [(1, "missing_message"), (2, "missing_service")]
        assert counted(client) == 3


def test_a_body_is_applied_in_chunks_and_counted_exactly(tmp_path: Path) -> None:
    with make_client(tmp_path, ingest_chunk_events=7) as client:
        array = orjson.dumps([event(message=f"request {n} served") for n in range(100)])
        assert client.post("/v1/events", content=array).json()["accepted"] == 100
        assert client.post("/v1/events", content=ndjson([event() for _ in range(50)])).json()["accepted"] == 50
        assert counted(client) == 150
        assert client.post("/v1/events", content=b"[1, 2").status_code == 400  # not JSON: nothing counted
        assert counted(client) == 150


def test_names_outside_the_rule_are_rejected_with_a_reason(tmp_path: Path) -> None:
    bad = [
        event(service="../../etc/passwd"),
        event(service="pay\x00"),
        event(service="pay", deployment="v1\nv2"),
        event(service="x" * 254),
        event(service="pay", deployment="a/../b"),
    ]
    good = [event(service="team/pay.api@eu-1:v2+b-3_x", deployment="sha256:abc/1.2.3")]
    with make_client(tmp_path) as client:
        answer = client.post("/v1/events", content=ndjson(bad + good))
        assert answer.status_code == 202
        result = answer.json()
        assert result["accepted"] == 1
        assert [e["reason"] for e in result["errors"]] == ["invalid_name"] * len(bad)
        assert [s["service"] for s in client.get("/v1/services").json()] == ["team/pay.api@eu-1:v2+b-3_x"]
        assert metric(client, 'logcanary_events_rejected_total{reason="invalid_name",source="http"}') == 5


def test_future_timestamps_are_clamped_to_the_receive_time(tmp_path: Path) -> None:
    now = time.time()
    with make_client(tmp_path, max_clock_skew_seconds=60) as client:
        body = [event(timestamp="2099-01-01T00:00:00Z"), event(timestamp=now + 30), event(timestamp=now + 600)]
        assert client.post("/v1/events", content=ndjson(body)).json()["accepted"] == 3
        assert metric(client, "logcanary_timestamps_clamped_total") == 2
        deployment = client.get("/v1/services").json()[0]["deployments"][0]
        assert now - 1 <= deployment["last_seen"] <= time.time() + 61  # not 2099: it cannot pin a window


def test_metric_series_are_bounded_and_reads_create_none(tmp_path: Path) -> None:
    with make_client(tmp_path, metrics_max_services=5, metrics_max_deployments=8) as client:
        body = [event(service=f"svc-{n}", deployment=f"v{d}") for n in range(40) for d in range(n % 3 + 1)]
        body += [event(service="svc-0") for _ in range(50)]  # the busiest
        assert client.post("/v1/events", content=ndjson(body)).json()["accepted"] == len(body)
        lines = series(client)
        templates = [line for line in lines if line.startswith("logcanary_templates{")]
        events = [line for line in lines if line.startswith("logcanary_deployment_events{")]
        assert len(templates) == 6  # five services and (other)
        assert 'logcanary_templates{service="svc-0"} 1.0' in templates
        assert len(events) <= 8 + 5 + 1
        total = sum(float(line.rsplit(" ", 1)[1]) for line in events)
        assert total == len(body)  # the rest adds up under (other): nothing is lost
        assert any('service="(other)"' in line and 'deployment="(other)"' in line for line in events)
        # Reads (verdicts for names never seen) add no series.
        client.get("/v1/verdict", params={"service": "ghost-1", "canary": "v9"})  # the route's status series
        client.get("/v1/verdict", params={"service": "svc-0", "canary": "nope-1"})
        before = len(series(client))
        for n in range(2, 20):
            client.get("/v1/verdict", params={"service": f"ghost-{n}", "canary": f"v{n}"})
            client.get("/v1/verdict", params={"service": "svc-0", "canary": f"nope-{n}"})
        assert len(series(client)) == before

        # 100,000 one-event services (stand-ins for the engine's models; bench/bench_http.py ingests them for real)
        engine = client.app.state.runtime.state.engine  # type: ignore[attr-defined]
        for n in range(100_000):
            deployment = SimpleNamespace(events=1, clusterer=[0])
            engine.services[f"many-{n}"] = SimpleNamespace(miner=[0], deployments={"v1": deployment})
        scraped = series(client)
        assert len(scraped) < 10_000
        assert len([line for line in scraped if line.startswith("logcanary_deployment_events{")]) <= 8 + 5 + 1
        for n in range(100_000):
            del engine.services[f"many-{n}"]


def test_loop_lag_is_measured(tmp_path: Path) -> None:
    with make_client(tmp_path) as client:
        time.sleep(0.35)
        assert metric(client, "logcanary_event_loop_lag_seconds_count") >= 2
