"""The risk gauge means one thing: one series per running analysis, set by the analysis alone.

Flagger's Prometheus gate reads ``logcanary_analysis_risk``: a read must not move it, a finished analysis must
not linger in ``max(...)``, and a restart must not leave a gap ("no values found" is a failed check).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.test_api import AUTH, TOKEN, live, make_client, ndjson

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]
RISK = "logcanary_analysis_risk"
ANALYSIS = {"service": "payments", "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}}


def scrape(client: TestClient) -> Series:
    """Every sample of /metrics, keyed by name and sorted labels. Left out: HTTP request counters, and
    what the process measures of itself on a clock (event-loop lag), which no request drives."""
    out: Series = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name.startswith(("logcanary_http_", "logcanary_event_loop_")):
            continue
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def analysis_series(series: Series) -> dict[str, float]:
    """analysis id -> its logcanary_analysis_risk."""
    return {dict(labels)["analysis"]: value for (name, labels), value in series.items() if name == RISK}


def verdict_series(series: Series) -> dict[str, str]:
    """analysis id -> the verdict whose logcanary_analysis_verdict series is 1 (the others are 0)."""
    out = {}
    for (name, labels), value in series.items():
        if name == "logcanary_analysis_verdict":
            found = dict(labels)
            assert value in (0.0, 1.0)
            if value == 1.0:
                assert found["analysis"] not in out
                out[found["analysis"]] = found["verdict"]
    return out


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, api_token=TOKEN) as test_client:
        # The service exists; the deployments log after the analyses start (their window begins at the start).
        test_client.post("/v1/events", content=ndjson(live("v0", 5, 1)), headers=AUTH)
        yield test_client


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Reads never evaluate an analysis (the loop does, every 2 s): wait for the loop to get there."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the analysis loop did not get there in time"
        time.sleep(0.1)


def status(client: TestClient, analysis: str) -> str:
    return str(client.get(f"/v1/analyses/{analysis}").json()["status"])


def test_reads_change_no_metric(client: TestClient) -> None:
    client.post("/v1/events", content=ndjson(live("v1", 1500, 1) + live("v2", 1500, 2, npe_rate=0.02)), headers=AUTH)
    before = scrape(client)
    for index in range(30):
        verdict = client.get("/v1/verdict", params={"service": "payments", "canary": f"c{index}", "window": "all"})
        assert verdict.status_code == 200
    failing = client.get("/v1/verdict", params={"service": "payments", "canary": "v2", "baseline": "v1"})
    assert failing.json()["verdict"] == "fail"
    flagger = {"name": "payments", "metadata": {"canary": "v2", "baseline": "v1", "fail_status": "412"}}
    assert client.post("/v1/verdict", json=flagger).status_code == 412
    client.get("/v1/services")
    client.get("/v1/analyses")
    assert scrape(client) == before
    assert analysis_series(before) == {}


def test_one_series_per_running_analysis_from_creation_to_end(client: TestClient) -> None:
    created = client.post("/v1/analyses", json={**ANALYSIS, "duration": "10m", "fail_fast": True}, headers=AUTH)
    assert created.status_code == 201
    first = created.json()["id"]
    series = scrape(client)
    assert analysis_series(series) == {first: 0.0}  # present before the canary logged anything
    assert verdict_series(series) == {first: "inconclusive"}
    labels = next(dict(key[1]) for key in series if key[0] == RISK)
    assert labels == {"service": "payments", "canary": "v2", "analysis": first}

    second = client.post("/v1/analyses", json={**ANALYSIS, "duration": "1s"}, headers=AUTH).json()["id"]
    third = client.post("/v1/analyses", json={**ANALYSIS, "duration": "10m"}, headers=AUTH).json()["id"]
    assert set(analysis_series(scrape(client))) == {first, second, third}

    client.post("/v1/events", content=ndjson(live("v1", 1500, 1) + live("v2", 1500, 2, npe_rate=0.02)), headers=AUTH)
    eventually(lambda: status(client, second) == "completed" and status(client, first) == "completed")
    failed = client.get(f"/v1/analyses/{first}").json()
    assert (failed["status"], failed["verdict"]["verdict"]) == ("completed", "fail")  # fail_fast
    assert client.get(f"/v1/analyses/{third}").json()["status"] == "running"
    running = analysis_series(scrape(client))
    assert list(running) == [third]
    assert running[third] > 50
    assert verdict_series(scrape(client)) == {third: "fail"}

    assert client.delete(f"/v1/analyses/{third}", headers=AUTH).json()["status"] == "cancelled"
    after = scrape(client)
    assert analysis_series(after) == {}
    assert verdict_series(after) == {}
    # Completed analyses are counted once, by their final verdict; the cancelled one is not.
    assert after[("logcanary_analyses_total", (("environment", "(none)"), ("verdict", "fail")))] == 2.0
    assert after[("logcanary_anomalies_total", (("kind", "unknown"),))] >= 2.0


def test_cancelling_a_completed_analysis_is_a_conflict(client: TestClient) -> None:
    analysis = client.post("/v1/analyses", json={**ANALYSIS, "duration": "0.5s"}, headers=AUTH).json()
    eventually(lambda: status(client, analysis["id"]) == "completed")
    conflict = client.delete(f"/v1/analyses/{analysis['id']}", headers=AUTH)
    assert conflict.status_code == 409
    assert conflict.json()["error"] == "conflict"
    assert "already completed" in conflict.json()["detail"]
    assert client.get(f"/v1/analyses/{analysis['id']}").json()["status"] == "completed"


def test_running_analyses_are_capped(tmp_path: Path) -> None:
    with make_client(tmp_path, max_running_analyses=2) as client:
        client.post("/v1/events", content=ndjson(live("v1", 10, 1)))
        ids = [client.post("/v1/analyses", json={**ANALYSIS, "duration": "1h"}).json()["id"] for _ in range(2)]
        refused = client.post("/v1/analyses", json={**ANALYSIS, "duration": "1h"})
        assert refused.status_code == 429
        assert refused.json()["error"] == "too_many_analyses"
        assert "LOGCANARY_MAX_RUNNING_ANALYSES" in refused.json()["detail"]
        assert set(analysis_series(scrape(client))) == set(ids)
        client.delete(f"/v1/analyses/{ids[0]}")
        assert client.post("/v1/analyses", json={**ANALYSIS, "duration": "1h"}).status_code == 201


def test_running_analyses_publish_again_after_a_restart(tmp_path: Path) -> None:
    with make_client(tmp_path) as first:
        first.post("/v1/events", content=ndjson(live("v0", 5, 1)))
        running = first.post("/v1/analyses", json={**ANALYSIS, "duration": "1h"}).json()
        ended = first.post("/v1/analyses", json={**ANALYSIS, "duration": "1h"}).json()
        first.delete(f"/v1/analyses/{ended['id']}")
        first.post("/v1/events", content=ndjson(live("v1", 1500, 1) + live("v2", 1500, 2, npe_rate=0.02)))
        eventually(lambda: analysis_series(scrape(first)).get(running["id"], 0.0) > 50)
        risk = analysis_series(scrape(first))[running["id"]]
    with make_client(tmp_path) as second:  # the first scrape after the start already has the series
        assert analysis_series(scrape(second)) == {running["id"]: risk}
        assert verdict_series(scrape(second)) == {running["id"]: "fail"}
