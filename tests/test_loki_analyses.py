"""Judging canaries from a real Grafana Loki (issue 19): analyses and verdicts through the API, the serverless gate
and `analyze` in-process, Argo Rollouts' own web provider on the Loki template, and what happens when Loki fails.

Loki is the real binary of ../shared/logstores/loki (tests/loki_helpers.py: skipped without it, failed with
CI=true). The demo's payments traffic (an EncryptionService NullPointerException in the bad canary) is pushed with
the labels Promtail or Alloy give pods: app, version, pod, and the level as structured metadata.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from fastapi.testclient import TestClient

from logcanary.api.app import create_app
from logcanary.demo.embedded_broker import EmbeddedBroker
from logcanary.demo.traffic import events
from logcanary.settings import Settings
from tests.conftest import Launcher
from tests.kafka_helpers import create_topics, produce
from tests.loki_helpers import Entry, Loki
from tests.test_contracts import EXAMPLES, Checkers, argo_metric, checkers, run_checker  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parent.parent
NPE = "java.lang.NullPointerException"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def traffic(
    service: str, deployment: str, count: int, seed: int, npe: float, start: datetime, seconds: float
) -> list[dict[str, Any]]:
    return list(events(deployment, count, seed=seed, npe_rate=npe, start=start, seconds=seconds, service=service))


def to_loki(
    records: Iterable[dict[str, Any]], version_label: str = "version"
) -> list[tuple[dict[str, str], list[Entry]]]:
    """The records as Loki streams: one per pod, labelled as Promtail labels pods; the level as structured
    metadata (what Alloy's and the OTel collector's pipelines attach)."""
    streams: dict[tuple[str, str, str], list[Entry]] = {}
    for record in records:
        at = datetime.fromisoformat(record["timestamp"])  # in nanoseconds exactly: a float of them is off by ~100
        stamp = (at - EPOCH) // timedelta(microseconds=1) * 1000  # ns, and the first line fell before a window start
        key = (record["service"], record["deployment"], record["host"])
        streams.setdefault(key, []).append((stamp, record["message"], {"level": record["level"]}))
    return [
        ({"app": app, version_label: deployment, "pod": pod}, sorted(entries))
        for (app, deployment, pod), entries in streams.items()
    ]


def wait_completed(client: TestClient, analysis_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        analysis: dict[str, Any] = client.get(f"/v1/analyses/{analysis_id}").json()
        if analysis["status"] != "running" or time.monotonic() > deadline:
            return analysis
        time.sleep(0.25)


def essence(verdict: dict[str, Any]) -> dict[str, Any]:
    """What two verdicts on the same events must share, wherever the events came from."""
    return {
        "verdict": verdict["verdict"],
        "risk": verdict["risk"],
        "reason_code": verdict["reason_code"],
        "canary_events": verdict["canary_events"],
        "baseline_events": verdict["baseline_events"],
        "anomalies": [
            (a["kind"], a["template"], a["canary_count"], a["baseline_count"], a["score"], sorted(a["hosts"]))
            for a in verdict["anomalies"]
        ],
    }


def analysis_body(service: str, duration: float, **source: Any) -> dict[str, Any]:
    return {
        "service": service,
        "canary": {"deployment": "v2"},
        "baseline": {"deployment": "v1"},
        "duration": duration,
        "source": {"type": "loki", **source},
    }


def test_the_same_events_through_kafka_and_through_loki_give_the_same_verdict(
    loki: Loki, kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    topic = f"logs-{uuid.uuid4().hex[:8]}"
    create_topics(kafka.bootstrap_servers, topic, partitions=2)
    settings = Settings(
        state_dir=tmp_path,
        loki_url=loki.url,
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_topics=[topic],
        kafka_group_id=f"g-{uuid.uuid4().hex[:8]}",
        checkpoint_interval_seconds=0.5,
        verdict_max_age_seconds=0,
    )
    with TestClient(create_app(settings)) as client:
        created = {}
        for service in ("shop-npe", "shop-clean"):
            answer = client.post("/v1/analyses", json=analysis_body(service, 6.0))
            assert answer.status_code == 201, answer.text
            created[service] = answer.json()
        start = datetime.fromisoformat(created["shop-npe"]["started_at"]) + timedelta(seconds=0.5)
        records = []
        for service, npe in (("shop-npe", 0.03), ("shop-clean", 0.0)):
            records += traffic(service, "v1", 1200, 1, 0.0, start, 2.0) + traffic(
                service, "v2", 1200, 2, npe, start, 2.0
            )
        assert loki.push(to_loki(records)) == len(records)
        assert produce(kafka.bootstrap_servers, topic, records) == len(records)
        for service in ("shop-npe", "shop-clean"):
            pulled = wait_completed(client, created[service]["id"])
            assert pulled["status"] == "completed", pulled
            from_loki = pulled["verdict"]
            assert from_loki["source"]["lines"] == {"canary": 1200, "baseline": 1200}
            assert from_loki["source"]["problem"] is None
            deadline = time.monotonic() + 60
            query = {"service": service, "canary": "v2", "baseline": "v1", "window": "all"}
            while (sent := client.get("/v1/verdict", params=query)).json().get("canary_events") != 1200:
                assert time.monotonic() < deadline, sent.text  # Kafka has counted them all
                time.sleep(0.25)
            from_kafka = sent.json()
            assert from_kafka["source"] is None
            assert essence(from_loki) == essence(from_kafka), service
        assert essence(client.get(f"/v1/analyses/{created['shop-npe']['id']}").json()["verdict"])["verdict"] == "fail"
        npe = client.get(f"/v1/analyses/{created['shop-npe']['id']}").json()["verdict"]
        assert any(NPE in example for a in npe["anomalies"] for example in a["examples"])
        assert client.get(f"/v1/analyses/{created['shop-clean']['id']}").json()["verdict"]["verdict"] == "pass"
        metrics = client.get("/metrics").text
        assert 'logcanary_source_lines_pulled_total{source="loki"}' in metrics
        assert 'logcanary_source_requests_total{result="ok",source="loki"}' in metrics
        assert client.get("/readyz").json()["sources"]["loki"]["ok"] is True


def test_a_query_loki_refuses_is_a_422_quoting_loki(loki: Loki, tmp_path: Path) -> None:
    with TestClient(create_app(Settings(state_dir=tmp_path, loki_url=loki.url))) as client:
        bad = analysis_body("shop", 60.0, canary_selector='{app="$service"')
        answer = client.post("/v1/analyses", json=bad)
        assert answer.status_code == 422
        assert answer.json()["error"] == "invalid_source"
        assert "parse error" in answer.json()["detail"]  # Loki's own words
        unknown = client.post("/v1/analyses", json=analysis_body("shop", 60.0, canary_selector='{app="$svc"}'))
        assert unknown.status_code == 422 and "$svc" in unknown.json()["detail"]
        inline = analysis_body("shop", 60.0, auth={"type": "bearer", "token": "s3cret"})
        assert client.post("/v1/analyses", json=inline).status_code == 422  # a secret is never written inline
        query = {"service": "shop", "canary": "v2", "baseline": "v1", "source": "loki", "canary_selector": "{"}
        assert client.get("/v1/verdict", params=query).status_code == 422
        assert client.get("/v1/analyses").json() == []  # nothing was kept


def test_more_than_5000_lines_at_one_timestamp_are_each_counted_once(loki: Loki) -> None:
    """Loki returns at most 5,000 lines a query and cannot page within one nanosecond: every line still counts."""
    import asyncio

    from logcanary.judge import LokiQuestion, analyze_window
    from logcanary.settings import LimitSettings

    stamp = time.time_ns() - 30 * 1_000_000_000
    app = f"flood-{uuid.uuid4().hex[:6]}"
    canary = [(stamp, f"request {n} served in {n % 97} ms") for n in range(6000)]
    baseline = [(stamp + n * 1000, f"request {n} served in {n % 97} ms") for n in range(3000)]
    loki.push(
        [({"app": app, "version": "v2", "pod": "a"}, canary), ({"app": app, "version": "v1", "pod": "b"}, baseline)]
    )
    question = LokiQuestion(url=loki.url, service=app, canary="v2", baseline="v1")
    verdict = asyncio.run(analyze_window(question, stamp / 1e9 - 1, stamp / 1e9 + 1, LimitSettings()))
    assert verdict.canary_events == 6000 and verdict.baseline_events == 3000
    assert verdict.source is not None and verdict.source.lines == {"canary": 6000, "baseline": 3000}
    assert verdict.verdict == "pass"


def test_loki_killed_mid_analysis_never_passes_and_counts_exactly_once_it_returns(loki: Loki, tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, loki_url=loki.url, loki_poll_seconds=0.5)
    with TestClient(create_app(settings)) as client:
        # 40 s: Loki is down from about 4 s to 24 s, and the second batch must land well before the end (with 25 s it
        # raced the end whenever Loki took more than a second to come back on a loaded machine).
        created = client.post("/v1/analyses", json=analysis_body("shop-kill", 40.0)).json()
        start = datetime.fromisoformat(created["started_at"]) + timedelta(seconds=0.2)
        first = traffic("shop-kill", "v1", 600, 1, 0.0, start, 2.0) + traffic(
            "shop-kill", "v2", 600, 2, 0.0, start, 2.0
        )
        loki.push(to_loki(first))
        time.sleep(4)
        loki.stop(__import__("signal").SIGKILL)
        try:
            seen: set[str] = set()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # Loki is down: whatever it says, it never passes
                verdict = client.get(f"/v1/analyses/{created['id']}").json()["verdict"]
                seen.add(verdict["reason_code"])
                assert verdict["verdict"] != "pass" or verdict["source"]["problem"] is None, verdict
                time.sleep(0.5)
        finally:
            loki.start()
        later = start + timedelta(seconds=8)
        second = traffic("shop-kill", "v1", 400, 3, 0.0, later, 2.0) + traffic(
            "shop-kill", "v2", 400, 4, 0.0, later, 2.0
        )
        loki.push(to_loki(second))
        final = wait_completed(client, created["id"], timeout=90)
        assert final["status"] == "completed"
        assert final["verdict"]["source"]["lines"] == {"canary": 1000, "baseline": 1000}, final["verdict"]["source"]
        assert final["verdict"]["canary_events"] == 1000 and final["verdict"]["verdict"] == "pass"
        assert seen & {"source_pending", "source_unavailable"}, seen


@pytest.fixture
def gate_env(loki: Loki) -> Iterator[dict[str, str]]:
    yield {**os.environ, "LOGCANARY_LOKI_URL": loki.url, "NO_COLOR": "1"}


def _gate(service: str, canary: str, env: dict[str, str], out: dict[str, subprocess.CompletedProcess[str]]) -> None:
    command = [sys.executable, "-m", "logcanary.cli", "gate", "--source", "loki", "--service", service]
    command += ["--canary", canary, "--baseline", "v1", "--duration", "8s", "--poll-interval", "2"]
    out[f"{service}/{canary}"] = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_serverless_gate_exits_by_the_verdict(loki: Loki, gate_env: dict[str, str]) -> None:
    """`logcanary gate --source loki`, no logcanary server: 1 for the NPE canary, 0 for the clean one, 2 for a
    canary Loki holds nothing of."""
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    gates = [
        threading.Thread(target=_gate, args=(service, canary, gate_env, results))
        for service, canary in (("gate-npe", "v2"), ("gate-clean", "v2"), ("gate-clean", "v9"))
    ]
    for gate in gates:
        gate.start()
    time.sleep(3)  # the gates' windows start with them; the canaries log after
    start = datetime.now(UTC)
    records = []
    for service, rate in (("gate-npe", 0.03), ("gate-clean", 0.0)):
        records += traffic(service, "v1", 1000, 1, 0.0, start, 2.0) + traffic(service, "v2", 1000, 2, rate, start, 2.0)
    loki.push(to_loki(records))
    for gate in gates:
        gate.join(timeout=150)
    npe, clean, unknown = results["gate-npe/v2"], results["gate-clean/v2"], results["gate-clean/v9"]
    assert npe.returncode == 1, npe.stdout + npe.stderr
    assert NPE in npe.stdout and "pulled from loki" in npe.stdout
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert "source_empty" in unknown.stdout


def test_analyze_judges_a_past_window_from_loki(loki: Loki, gate_env: dict[str, str]) -> None:
    start = datetime.now(UTC) - timedelta(minutes=20)
    records = traffic("past", "v1", 800, 1, 0.0, start, 60.0) + traffic("past", "v2", 800, 2, 0.03, start, 60.0)
    loki.push(to_loki(records))
    window = ["--start", start.isoformat(), "--end", (start + timedelta(minutes=2)).isoformat()]
    command = [sys.executable, "-m", "logcanary.cli", "analyze", "--service", "past", "--canary", "v2"]
    done = subprocess.run(
        [*command, "--baseline", "v1", *window], env=gate_env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    verdict = orjson.loads(done.stdout)
    assert verdict["verdict"] == "fail" and verdict["canary_events"] == 800
    assert verdict["source"]["canary_query"] == '{app="past", version="v2"}'
    refused = subprocess.run(
        [*command, "--baseline", "v1", *window, "--canary-selector", "{"],
        env=gate_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 2 and "refused" in refused.stderr


def test_argo_rollouts_judges_the_loki_template_with_its_own_code(
    loki: Loki,
    service_process: Launcher,
    checkers: Checkers,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """helm/logcanary/examples/analysistemplate-loki.yaml, as shipped, run by Argo Rollouts' web metric provider
    against a real `logcanary serve` that pulls the Rollout's pods' logs from the real Loki."""
    selector = '{app="$service", rollouts_pod_template_hash="$deployment"}'
    service = service_process({"LOGCANARY_LOKI_URL": loki.url, "LOGCANARY_LOKI_CANARY_SELECTOR": selector})
    service.start()
    start = datetime.now(UTC) - timedelta(seconds=60)
    records = []
    for app, rate in (("argo-npe", 0.03), ("argo-clean", 0.0)):
        records += traffic(app, "5f6a7b8c9d", 1500, 1, 0.0, start, 50.0)
        records += traffic(app, "7c9d8e7f6a", 1500, 2, rate, start, 50.0)
    loki.push(to_loki(records, version_label="rollouts_pod_template_hash"))
    documents = list(yaml.safe_load_all((EXAMPLES / "analysistemplate-loki.yaml").read_text()))
    [template] = [d for d in documents if isinstance(d, dict) and d.get("kind") == "AnalysisTemplate"]
    cases = []
    for app, canary in (("argo-npe", "7c9d8e7f6a"), ("argo-clean", "7c9d8e7f6a"), ("argo-clean", "0000000000")):
        args = {"service": app, "stable-hash": "5f6a7b8c9d", "canary-hash": canary, "logcanary-url": service.url}
        args |= {"environment": "qa", "release": "loki-rel-1"} if canary != "0000000000" else {}
        cases.append({"label": f"{app}/{canary}", "metric": argo_metric(template, args)})
    answers = run_checker(checkers.argo, cases, tmp_path)
    assert answers["argo-npe/7c9d8e7f6a"]["phase"] == "Failed", answers["argo-npe/7c9d8e7f6a"]
    assert answers["argo-clean/7c9d8e7f6a"]["phase"] == "Successful", answers["argo-clean/7c9d8e7f6a"]
    unknown = answers["argo-clean/0000000000"]
    assert unknown["phase"] == "Inconclusive" and "source_empty" in unknown["value"], unknown
    assert "rollouts_pod_template_hash" in answers["argo-npe/7c9d8e7f6a"]["value"]  # the answer says its source
    # with a release, each measurement is kept as the release's analysis of the service, pulled from Loki
    release = httpx.get(f"{service.url}/v1/releases/loki-rel-1", timeout=10).json()
    assert {s["service"]: (s["verdict"], s["requested_by"]) for s in release["services"]} == {
        "argo-clean": ("pass", "argo"),
        "argo-npe": ("fail", "argo"),
    }
    kept = httpx.get(f"{service.url}/v1/analyses", params={"release": "loki-rel-1"}, timeout=10).json()
    assert {(a["environment"], a["source"]["type"]) for a in kept} == {("qa", "loki")}


def test_flagger_gates_on_loki_with_its_own_code(
    loki: Loki,
    service_process: Launcher,
    checkers: Checkers,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """A Flagger webhook whose metadata says source=loki, called by Flagger's own code: the NPE canary fails the
    check, the clean one passes; the same metadata on a pre-rollout hook starts an analysis from Loki."""
    service = service_process({"LOGCANARY_LOKI_URL": loki.url})
    service.start()
    start = datetime.now(UTC) - timedelta(seconds=60)
    records = []
    for app, rate in (("flagger-npe", 0.03), ("flagger-clean", 0.0)):
        records += traffic(app, "v1", 1500, 1, 0.0, start, 50.0) + traffic(app, "v2", 1500, 2, rate, start, 50.0)
    loki.push(to_loki(records))
    cases = [
        {
            "label": app,
            "name": app,
            "namespace": "shop",
            "webhook": {
                "name": "logcanary-loki",
                "type": "rollout",
                "url": f"{service.url}/v1/verdict",
                "timeout": "15s",
                "metadata": {"source": "loki", "canary": "v2", "baseline": "v1", "window": "5m"},
            },
        }
        for app in ("flagger-npe", "flagger-clean")
    ]
    answers = run_checker(checkers.flagger, cases, tmp_path)
    assert answers["flagger-npe"]["passed"] is False, answers["flagger-npe"]
    assert answers["flagger-clean"]["passed"] is True, answers["flagger-clean"]
    metadata = {"source": "loki", "canary": "v2", "baseline": "v1", "duration": "1m"}
    hook = {"name": "flagger-npe", "namespace": "shop", "phase": "Progressing", "metadata": metadata}
    started = service.client().post("/v1/analyses", json=hook)
    assert started.status_code == 201, started.text
    assert started.json()["source"]["url"] == loki.url  # the configured store: a webhook names no URL


def test_a_history_baseline_is_pulled_from_earlier_deployments_found_by_label_values(
    loki: Loki, tmp_path: Path
) -> None:
    """No control deployment: the service's earlier deployments (their version label's values before the canary)
    are pulled and weighed as history; a later one is no precedent, and the NPE is new to all of them."""
    app = f"hist-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    # Within the last 3 hours: Loki asks its ingesters only for that long (query_ingesters_within), and lines pushed
    # now, stamped earlier, are not flushed to its store yet.
    records = traffic(app, "v1", 800, 1, 0.0, now - timedelta(hours=2, minutes=30), 600.0)
    records += traffic(app, "v2", 800, 2, 0.0, now - timedelta(hours=1, minutes=30), 600.0)
    loki.push(to_loki(records))
    with TestClient(create_app(Settings(state_dir=tmp_path, loki_url=loki.url, verdict_max_age_seconds=0))) as client:
        body = {
            "service": app,
            "canary": {"deployment": "v3"},
            "baseline": {"history": True},
            "duration": 5.0,
            "source": {"type": "loki"},
        }
        created = client.post("/v1/analyses", json=body).json()
        start = datetime.fromisoformat(created["started_at"]) + timedelta(seconds=0.3)
        loki.push(to_loki(traffic(app, "v3", 800, 3, 0.03, start, 2.0)))
        final = wait_completed(client, created["id"])
        verdict = final["verdict"]
        assert verdict["baseline"] == ["history:v2", "history:v1"], verdict["source"]
        assert verdict["source"]["lines"] == {"canary": 800, "history": 1600}
        assert verdict["verdict"] == "fail" and any(NPE in a["template"] for a in verdict["anomalies"])
