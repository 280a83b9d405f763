"""The HTTP API in-process (FastAPI TestClient runs the lifespan; no Kafka here)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from logcanary.api.app import create_app
from logcanary.demo.traffic import events
from logcanary.settings import Settings

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_client(tmp_path: Path, **settings: object) -> TestClient:
    settings.setdefault("verdict_max_age_seconds", 0.0)  # a verdict right after a POST sees its events
    return TestClient(create_app(Settings(state_dir=tmp_path, **settings)))  # type: ignore[arg-type]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, api_token=SecretStr(TOKEN)) as test_client:
        yield test_client


def ndjson(records: list[dict[str, object]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def live(deployment: str, count: int, seed: int, npe_rate: float = 0.0) -> list[dict[str, object]]:
    return list(events(deployment, count, seed=seed, npe_rate=npe_rate, start=datetime.now(UTC), seconds=1))


def test_health_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["ready"] is True
    spec = client.get("/openapi.json").json()
    for path in ("/v1/events", "/v1/verdict", "/v1/analyses", "/v1/analyses/{analysis_id}", "/v1/feedback",
                 "/v1/feedback/{feedback_id}", "/v1/services", "/v1/services/{service}/clusters"):  # fmt: skip
        assert path in spec["paths"]
        for operation in spec["paths"][path].values():
            assert operation.get("summary")


def test_mutations_need_the_token(client: TestClient) -> None:
    body = ndjson(live("v1", 3, 1))
    missing = client.post("/v1/events", content=body)
    assert missing.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    assert client.post("/v1/events", content=body, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.post("/v1/events", content=body, headers=AUTH).status_code == 202
    assert client.get("/v1/services").status_code == 200  # reads need no token


def test_events_ndjson_array_and_rejections(client: TestClient) -> None:
    accepted = client.post("/v1/events", content=ndjson(live("v1", 50, 1)), headers=AUTH)
    assert accepted.status_code == 202
    assert accepted.json() == {"accepted": 50, "rejected": 0, "errors": []}
    mixed = client.post("/v1/events", json=[*live("v1", 2, 2), {"service": "payments"}, "nope"], headers=AUTH)
    assert mixed.status_code == 202
    assert mixed.json()["accepted"] == 2
    assert [e["index"] for e in mixed.json()["errors"]] == [2, 3]
    none = client.post("/v1/events", content=b"garbage\n{}\n", headers=AUTH)
    assert none.status_code == 400
    assert none.json()["error"] == "no_valid_event"
    assert client.post("/v1/events", content=b"[1, 2", headers=AUTH).status_code == 400
    [service] = client.get("/v1/services").json()
    assert service["events"] == 52
    assert service["deployments"][0]["deployment"] == "v1"


def test_body_size_limit(tmp_path: Path) -> None:
    with make_client(tmp_path, max_request_bytes=2048) as small:
        response = small.post("/v1/events", content=b"x" * 5000)
        assert response.status_code == 413
        assert response.json()["error"] == "too_large"


def test_verdicts_feedback_and_flagger(client: TestClient) -> None:
    client.post("/v1/events", content=ndjson(live("v1", 1500, 1) + live("v2", 1500, 2, npe_rate=0.02)), headers=AUTH)
    query = {"service": "payments", "canary": "v2", "baseline": "v1", "window": "5m"}
    failed = client.get("/v1/verdict", params=query)
    assert failed.status_code == 200
    verdict = failed.json()
    assert verdict["verdict"] == "fail"
    anomaly = verdict["anomalies"][0]
    assert "NullPointerException" in anomaly["template"]

    flat = client.post("/v1/verdict", json={**query, "fail_status": 412})
    assert flat.status_code == 412
    assert flat.json()["verdict"] == "fail"
    flagger = {"name": "payments", "namespace": "prod", "phase": "Progressing", "checksum": "abc",
               "metadata": {"canary": "v2", "baseline": "v1", "window": "5m", "fail_status": "412"}}  # fmt: skip
    assert client.post("/v1/verdict", json=flagger).status_code == 412
    bad_hook = {**flagger, "metadata": {"canary": "v2", "fail_status": "teapot"}}
    assert client.post("/v1/verdict", json=bad_hook).status_code == 422

    created = client.post(
        "/v1/feedback",
        json={"service": "payments", "action": "ignore", "template": anomaly["template"],
              "template_id": anomaly["template_ids"][0], "author": "oncall", "reason": "known issue"},
        headers=AUTH,
    )  # fmt: skip
    assert created.status_code == 201
    feedback_id = created.json()["id"]
    assert [f["id"] for f in client.get("/v1/feedback", params={"service": "payments"}).json()] == [feedback_id]
    silenced = client.get("/v1/verdict", params=query).json()
    assert silenced["verdict"] == "pass"
    assert silenced["suppressed"][0]["feedback_id"] == feedback_id
    assert client.delete(f"/v1/feedback/{feedback_id}", headers=AUTH).status_code == 204
    assert client.delete(f"/v1/feedback/{feedback_id}", headers=AUTH).status_code == 404
    assert client.get("/v1/verdict", params=query).json()["verdict"] == "fail"


def test_verdict_errors(client: TestClient) -> None:
    unknown = client.get("/v1/verdict", params={"service": "nope", "canary": "v2"})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "not_found"
    client.post("/v1/events", content=ndjson(live("v1", 5, 1)), headers=AUTH)
    bad_window = client.get("/v1/verdict", params={"service": "payments", "canary": "v2", "window": "soon"})
    assert bad_window.status_code == 400
    missing = client.get("/v1/verdict", params={"canary": "v2"})
    assert missing.status_code == 422
    assert missing.json()["error"] == "invalid_request"


def test_analysis_lifecycle(client: TestClient) -> None:
    body = {"service": "payments", "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}, "duration": "10m"}
    unknown = client.post("/v1/analyses", json=body, headers=AUTH)  # as /v1/verdict: a service never seen is a 404
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "not_found", "detail": "no events seen for service 'payments'"}
    assert client.get("/v1/verdict", params={"service": "payments", "canary": "v2"}).json() == unknown.json()
    assert client.get("/v1/services").json() == []  # asking does not create a service
    client.post("/v1/events", content=ndjson(live("v0", 5, 3)), headers=AUTH)
    created = client.post("/v1/analyses", json=body, headers=AUTH)
    assert created.status_code == 201
    analysis = created.json()
    assert analysis["status"] == "running"
    assert analysis["sensitivity"] == "medium"
    assert analysis["verdict"]["verdict"] == "inconclusive"  # nothing logged yet
    client.post("/v1/events", content=ndjson(live("v1", 2000, 1) + live("v2", 2000, 2)), headers=AUTH)
    # Reading does not evaluate: the analysis loop does, every 2 s.
    deadline = time.monotonic() + 10
    while (fetched := client.get(f"/v1/analyses/{analysis['id']}").json())["verdict"]["verdict"] != "pass":
        assert time.monotonic() < deadline, fetched["verdict"]
        time.sleep(0.2)
    assert fetched["verdict"]["canary_events"] == 2000
    assert [a["id"] for a in client.get("/v1/analyses", params={"service": "payments"}).json()] == [analysis["id"]]
    cancelled = client.delete(f"/v1/analyses/{analysis['id']}", headers=AUTH)
    assert cancelled.json()["status"] == "cancelled"
    assert client.get("/v1/analyses/missing").status_code == 404
    invalid = client.post("/v1/analyses", json={**body, "baseline": {}, "duration": "forever"}, headers=AUTH)
    assert invalid.status_code == 422
    assert {tuple(p["loc"][-1:]) for p in invalid.json()["detail"]} >= {("duration",)}


def test_state_survives_a_restart(tmp_path: Path) -> None:
    with make_client(tmp_path) as first:
        first.post("/v1/events", content=ndjson(live("v1", 300, 1)))
        first.post("/v1/feedback", json={"service": "payments", "action": "priority", "template": "Card declined"})
        clusters = first.get("/v1/services/payments/clusters", params={"deployment": "v1"}).json()
    with make_client(tmp_path) as second:
        assert second.get("/v1/services").json()[0]["events"] == 300
        assert second.get("/v1/services/payments/clusters", params={"deployment": "v1"}).json() == clusters
        assert len(second.get("/v1/feedback").json()) == 1


def test_clusters_and_metrics(client: TestClient) -> None:
    client.post("/v1/events", content=ndjson(live("v1", 200, 1)), headers=AUTH)
    clusters = client.get("/v1/services/payments/clusters", params={"deployment": "v1"}).json()
    assert sum(c["count"] for c in clusters) == 200
    assert all(t["examples"] for c in clusters for t in c["templates"])
    assert client.get("/v1/services/payments/clusters", params={"deployment": "v9"}).status_code == 404
    text = client.get("/metrics").text
    assert 'logcanary_events_ingested_total{source="http"} 200.0' in text
    assert 'logcanary_templates{service="payments"}' in text
    assert 'logcanary_http_requests_total{method="POST",route="/v1/events",status="202"}' in text


def test_every_route_is_named_in_the_http_metrics(tmp_path: Path) -> None:
    """/openapi.json (a plain Starlette route) and the docs are counted by their route, a 404 as unmatched."""
    with make_client(tmp_path) as client:
        for path in ("/openapi.json", "/docs", "/docs/static/swagger-ui.css", "/ui", "/nowhere"):
            client.get(path)
        lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith("logcanary_http_req")]
        routes = {line.split('route="')[1].split('"')[0] for line in lines if 'route="' in line}
        assert {"/openapi.json", "/docs", "/docs/static/{name}", "/ui", "unmatched"} <= routes
        assert not any('route="unmatched",status="200"' in line for line in lines)
