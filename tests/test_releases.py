"""Releases and history through the API (in-process, the real app and store): analysis metadata, a release of two
services judged together, history filtered and paged, the summary, retention, and what is refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from logcanary.api.app import create_app
from logcanary.demo.traffic import events
from logcanary.engine.model import Engine
from logcanary.metrics import MAX_ENVIRONMENT_LABELS, Metrics
from logcanary.schemas import AnalysisSpec
from logcanary.settings import Settings
from logcanary.store.base import AnalysisRecord
from logcanary.store.postgres import PostgresStore
from logcanary.store.sqlite import SqliteStore
from logcanary.verification.gauges import AnalysisGauges
from tests.test_analysis_metrics import scrape

RELEASE = "2026.12.07-1"
PUBLIC = "https://logcanary.example.com"


def make_client(tmp_path: Path, **settings: Any) -> TestClient:
    settings.setdefault("verdict_max_age_seconds", 0.0)
    return TestClient(create_app(Settings(state_dir=tmp_path, public_url=PUBLIC, **settings)))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path) as test_client:
        yield test_client


def live(service: str, deployment: str, count: int, seed: int, npe_rate: float = 0.0) -> list[dict[str, Any]]:
    start = datetime.now(UTC)
    return list(events(deployment, count, seed=seed, npe_rate=npe_rate, start=start, seconds=1, service=service))


def post(client: TestClient, records: list[dict[str, Any]]) -> None:
    body = b"".join(orjson.dumps(r) + b"\n" for r in records)
    answer = client.post("/v1/events", content=body)
    assert answer.status_code == 202, answer.text


def start(client: TestClient, service: str, **metadata: Any) -> dict[str, Any]:
    body = {"service": service, "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}, "duration": "3s"}
    answer = client.post("/v1/analyses", json=body | metadata)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def completed(client: TestClient, release: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (answer := client.get(f"/v1/releases/{release}").json())["status"] != "completed":
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)
    return dict(answer)


def npe_release(client: TestClient) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """payments' canary throws the new NullPointerException, orders' is clean; both in qa, release RELEASE."""
    post(client, live("payments", "v1", 50, 0) + live("orders", "v1", 50, 0))  # both services exist
    meta = {"environment": "qa", "release": RELEASE, "pipeline_url": "https://ci.example.com/p/8812"}
    payments = start(client, "payments", **meta, labels={"team": "pay"})
    orders = start(client, "orders", **meta, labels={"team": "ops"})
    post(client, live("payments", "v1", 1500, 1) + live("payments", "v2", 1500, 2, npe_rate=0.02))
    post(client, live("orders", "v1", 1500, 1) + live("orders", "v2", 1500, 2))
    return payments, orders, completed(client, RELEASE)


def ids(answer: Any) -> set[str]:
    return {analysis["id"] for analysis in answer.json()}


def test_a_release_fails_by_its_failing_service_and_history_finds_it(client: TestClient) -> None:
    payments, orders, release = npe_release(client)
    assert (payments["environment"], payments["release"], payments["labels"]) == ("qa", RELEASE, {"team": "pay"})
    assert (payments["requested_by"], payments["pipeline_url"]) == ("api", "https://ci.example.com/p/8812")
    assert payments["measured"] is False

    assert (release["verdict"], release["status"], release["environments"]) == ("fail", "completed", ["qa"])
    assert release["reason"] == "payments failed"
    assert release["page"] == f"{PUBLIC}/ui?view=release&release={RELEASE}"
    by_service = {s["service"]: s for s in release["services"]}
    assert {name: s["verdict"] for name, s in by_service.items()} == {"orders": "pass", "payments": "fail"}
    assert by_service["orders"]["top_anomaly"] is None
    top = by_service["payments"]["top_anomaly"]
    assert "NullPointerException" in top["example"]
    assert by_service["payments"]["page"] == f"{PUBLIC}/ui?analysis={payments['id']}&expand={top['cluster_id']}"
    assert release["finished_at"] is not None and release["started_at"] <= release["finished_at"]

    assert ids(client.get("/v1/analyses", params={"environment": "qa", "release": RELEASE})) == {
        payments["id"],
        orders["id"],
    }
    assert client.get("/v1/analyses", params={"environment": "prod"}).json() == []
    assert ids(client.get("/v1/analyses", params={"verdict": "fail"})) == {payments["id"]}
    assert ids(client.get("/v1/analyses", params={"label": "team=ops"})) == {orders["id"]}
    assert ids(client.get("/v1/analyses", params={"service": "orders", "label": "team=pay"})) == set()
    after = datetime.now(UTC).isoformat()
    assert client.get("/v1/analyses", params={"since": after}).json() == []
    assert len(client.get("/v1/analyses", params={"until": after}).json()) == 2

    metrics = client.get("/metrics").text  # counted once each, by final verdict and environment
    assert 'logcanary_analyses_total{environment="qa",verdict="fail"} 1.0' in metrics
    assert 'logcanary_analyses_total{environment="qa",verdict="pass"} 1.0' in metrics

    listed = client.get("/v1/releases", params={"environment": "qa"}).json()
    assert [(r["release"], r["verdict"]) for r in listed] == [(RELEASE, "fail")]
    assert client.get("/v1/releases", params={"verdict": "pass"}).json() == []
    assert client.get("/v1/releases", params={"environment": "prod"}).json() == []


def test_the_summary_agrees_with_the_analyses(client: TestClient) -> None:
    npe_release(client)
    post(client, live("orders", "v1", 10, 5))
    legacy = start(client, "orders")  # no environment, no release: counted under "(none)"
    client.delete(f"/v1/analyses/{legacy['id']}")
    analyses = client.get("/v1/analyses").json()
    by_env = client.get("/v1/analyses/summary", params={"by": "environment"}).json()
    groups = {g["key"]: g for g in by_env["groups"]}
    assert set(groups) == {"qa", "(none)"}
    assert {k: groups["qa"][k] for k in ("analyses", "passed", "failed", "inconclusive", "success_rate")} == {
        "analyses": 2,
        "passed": 1,
        "failed": 1,
        "inconclusive": 0,
        "success_rate": 0.5,
    }
    assert (groups["(none)"]["cancelled"], groups["(none)"]["success_rate"]) == (1, None)
    assert by_env["total"]["analyses"] == len(analyses) == 3
    for analysis in analyses:
        assert analysis["environment"] in (None, "qa")
    by_service = client.get("/v1/analyses/summary", params={"by": "service", "environment": "qa"}).json()
    assert {g["key"]: (g["passed"], g["failed"]) for g in by_service["groups"]} == {
        "orders": (1, 0),
        "payments": (0, 1),
    }
    by_day = client.get("/v1/analyses/summary", params={"by": "day"}).json()
    today = datetime.now(UTC).date().isoformat()
    assert [(g["key"], g["analyses"]) for g in by_day["groups"]] == [(today, 3)]
    fails = [a for a in analyses if a["status"] == "completed" and a["verdict"]["verdict"] == "fail"]
    assert by_day["total"]["failed"] == len(fails) == 1


def test_history_pages_with_a_cursor(client: TestClient) -> None:
    post(client, live("payments", "v1", 10, 0))
    made = [start(client, "payments", environment="dev", release=f"r{n}")["id"] for n in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"environment": "dev", "limit": 2} | ({"cursor": cursor} if cursor else {})
        answer = client.get("/v1/analyses", params=params)
        pages += 1
        seen += [a["id"] for a in answer.json()]
        cursor = answer.headers.get("Logcanary-Next-Cursor")
        if cursor is None:
            assert "Link" not in answer.headers
            break
        assert answer.headers["Link"].endswith('; rel="next"') and f"cursor={cursor}" in answer.headers["Link"]
        start(client, "payments", environment="dev")  # a newer analysis never shifts the pages being read
    assert pages == 3
    assert seen == made[::-1]
    bad = client.get("/v1/analyses", params={"cursor": "not-a-cursor"})
    assert (bad.status_code, bad.json()["error"]) == (400, "bad_request")


def test_metadata_is_validated(tmp_path: Path) -> None:
    with make_client(tmp_path, environments="dev,qa,prod") as client:
        post(client, live("payments", "v1", 10, 0))
        refused = client.post(
            "/v1/analyses",
            json={"service": "payments", "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}}
            | {"environment": "staging"},
        )
        assert refused.status_code == 422
        assert refused.json() == {
            "error": "invalid_environment",
            "detail": "environment 'staging' is not one of LOGCANARY_ENVIRONMENTS (dev, qa, prod)",
        }
        assert start(client, "payments", environment="prod")["environment"] == "prod"
        for bad in (
            {"environment": "q a"},
            {"environment": "x" * 64},
            {"release": "-leading-dash"},
            {"release": "a/b"},
            {"labels": {f"k{n}": "v" for n in range(17)}},
            {"labels": {"team": "x" * 129}},
            {"labels": {"bad key": "v"}},
            {"pipeline_url": "javascript:alert(1)"},
            {"requested_by": "someone"},
        ):
            answer = client.post(
                "/v1/analyses",
                json={"service": "payments", "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}} | bad,
            )
            assert answer.status_code == 422, bad
        assert client.get("/v1/releases/nothing-here").status_code == 404
        assert client.get("/v1/analyses/summary", params={"by": "week"}).status_code == 422
        assert client.get("/v1/analyses", params={"label": "novalue"}).status_code == 400


def test_a_get_verdict_keeps_nothing_and_only_a_post_keeps_a_measurement(client: TestClient) -> None:
    """GET /v1/verdict is a read: naming a release (or environment, labels, pipeline_url, requested_by, even empty)
    it is refused with 422 recording_needs_post, and keeps no analysis and moves no metric. The same query POSTed
    with no body (Argo Rollouts' web provider with method: POST) keeps the measurement as the release's analysis."""
    post(client, live("payments", "v1", 1500, 1) + live("payments", "v2", 1500, 2, npe_rate=0.02))
    question = {"service": "payments", "canary": "v2", "baseline": "v1", "window": "5m", "compact": "true"}
    recording = {"environment": "qa", "release": RELEASE, "requested_by": "argo"}
    before = scrape(client)
    for extra in (
        recording,
        {"release": RELEASE},
        {"release": ""},
        {"environment": "qa"},
        {"labels": "team=pay"},
        {"pipeline_url": "https://ci.example.com/p/8812"},
        {"requested_by": "argo"},
    ):
        refused = client.get("/v1/verdict", params=question | extra)
        assert (refused.status_code, refused.json()["error"]) == (422, "recording_needs_post"), extra
        assert "POST /v1/verdict" in refused.json()["detail"] and all(key in refused.json()["detail"] for key in extra)
    assert client.get("/v1/analyses").json() == []
    assert client.get(f"/v1/releases/{RELEASE}").status_code == 404
    assert scrape(client) == before
    read = client.get("/v1/verdict", params=question)  # the question alone is answered, and keeps nothing
    assert (read.status_code, read.json()["verdict"]) == (200, "fail")
    assert client.get("/v1/analyses").json() == []
    assert scrape(client) == before

    for _ in range(2):  # Argo measures every interval: one analysis, the latest measurement
        kept = client.post("/v1/verdict", params=question | recording)
        assert (kept.status_code, kept.json()["verdict"]) == (200, "fail"), kept.text
    [analysis] = client.get("/v1/analyses").json()
    assert (analysis["release"], analysis["environment"], analysis["requested_by"]) == (RELEASE, "qa", "argo")
    assert (analysis["status"], analysis["verdict"]["verdict"], analysis["measured"]) == ("completed", "fail", True)
    assert client.get(f"/v1/releases/{RELEASE}").json()["verdict"] == "fail"
    assert scrape(client) == before  # kept, but neither counted nor notified: the deploy tool decides
    both = client.post("/v1/verdict", params=recording, json=question)
    assert (both.status_code, both.json()["detail"][0]["type"]) == (422, "query_and_body")
    assert len(client.get("/v1/analyses").json()) == 1


def test_metadata_survives_a_restart(tmp_path: Path) -> None:
    with make_client(tmp_path) as client:
        post(client, live("payments", "v1", 10, 0))
        made = start(client, "payments", environment="qa", release=RELEASE, labels={"team": "pay"})
    with make_client(tmp_path) as client:
        [again] = client.get("/v1/analyses", params={"release": RELEASE}).json()
        assert {k: again[k] for k in ("id", "environment", "release", "labels")} == {
            k: made[k] for k in ("id", "environment", "release", "labels")
        }
        assert client.get(f"/v1/releases/{RELEASE}").json()["services"][0]["analysis_id"] == made["id"]


def test_retention_keeps_ended_analyses_bounded(tmp_path: Path) -> None:
    """Ended analyses go after LOGCANARY_RETENTION_ANALYSES_DAYS (90 by default), and past
    LOGCANARY_RETENTION_ANALYSES_MAX the oldest-ended go first; a running one stays."""
    assert Settings().retention_analyses_days == 90
    with make_client(tmp_path, retention_analyses_max=100) as client:
        analyses = client.app.state.runtime.analyses  # type: ignore[attr-defined]
        spec = AnalysisSpec.model_validate(
            {"service": "s", "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}}
            | {"duration": 60, "sensitivity": "medium"}
        )
        now = time.time()
        day = 86_400.0
        for n in range(102):
            ended = now - (100 - n) * 60 if n < 101 else now - 91 * day
            analyses.records[f"a{n:03}"] = AnalysisRecord(
                f"a{n:03}", "s", spec, "completed", ended - 60, ended, finished_at=ended
            )
        analyses.records["running"] = AnalysisRecord("running", "s", spec, "running", now - 91 * day, now)
        gone = analyses.prune(now)
        assert sorted(gone) == ["a000", "a101"]  # the oldest-ended past the 100 kept; one older than 90 days
        assert len(analyses.records) == 101 and "running" in analyses.records


def test_the_environment_label_is_bounded() -> None:
    """At most MAX_ENVIRONMENT_LABELS environments get series of their own, the rest '(other)'; with
    LOGCANARY_ENVIRONMENTS, exactly those."""
    free = AnalysisGauges(Metrics(Engine))
    labels = [free.environment_label(f"env{n}") for n in range(MAX_ENVIRONMENT_LABELS + 5)]
    assert labels[:MAX_ENVIRONMENT_LABELS] == [f"env{n}" for n in range(MAX_ENVIRONMENT_LABELS)]
    assert set(labels[MAX_ENVIRONMENT_LABELS:]) == {"(other)"}
    assert free.environment_label("env0") == "env0" and free.environment_label(None) == "(none)"
    fixed = AnalysisGauges(Metrics(Engine), ["dev", "qa", "prod"])
    assert [fixed.environment_label(e) for e in ("qa", "staging", None)] == ["qa", "(other)", "(none)"]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_both_stores_keep_the_metadata_and_find_a_release(dialect: str, tmp_path: Path, request: Any) -> None:
    """Scale-out reads a release from the store (its indexed column), so both dialects keep and find it; an analysis
    stored with no metadata is stored as before (no new keys in its body)."""
    from tests.postgres_helpers import TEST_URL

    if dialect == "sqlite":
        store: Any = SqliteStore(tmp_path / "logcanary.sqlite")
    else:
        store = PostgresStore(TEST_URL, request.getfixturevalue("pg_schema"))
    base = {"service": "s", "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}, "duration": 60}
    tagged = AnalysisSpec.model_validate(
        base | {"sensitivity": "medium", "environment": "qa", "release": RELEASE, "labels": {"team": "pay"}}
    )
    plain = AnalysisSpec.model_validate(base | {"sensitivity": "medium"})
    store.save_analysis(AnalysisRecord("a1", "s", tagged, "running", 10.0, 70.0))
    store.save_analysis(AnalysisRecord("a2", "t", tagged, "completed", 20.0, 80.0, finished_at=80.0))
    store.save_analysis(AnalysisRecord("a3", "s", plain, "completed", 30.0, 90.0, finished_at=90.0))
    found = sorted(store.load_release(RELEASE), key=lambda r: r.id)
    assert [(r.id, r.request.environment, r.request.labels) for r in found] == [
        ("a1", "qa", {"team": "pay"}),
        ("a2", "qa", {"team": "pay"}),
    ]
    [old] = [r for r in store.load_analyses() if r.id == "a3"]
    assert not {"environment", "release", "labels", "requested_by", "pipeline_url"} & set(
        orjson.loads(old.to_json())["request"]
    )
    with store._session() as session:
        rows = session.rows("SELECT id, environment, release, started_at FROM analyses ORDER BY id")
    assert [tuple(row) for row in rows] == [
        ("a1", "qa", RELEASE, 10.0),
        ("a2", "qa", RELEASE, 20.0),
        ("a3", None, None, 30.0),
    ]
    store.close()
