"""What the chart's monitoring reads, against a real exposition: `promtool check metrics` on the /metrics of a real
`logcanary serve` consuming from a real broker, and every query of the Grafana dashboard (files/dashboard.json)
answered by a real Prometheus scraping that service.

promtool and prometheus come with Debian's `prometheus` package, which `make prometheus` installs when it can;
without them these tests skip, saying why, except with CI=true: then they fail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from logcanary.demo.embedded_broker import EmbeddedBroker
from logcanary.demo.traffic import events
from tests.ci import in_ci
from tests.conftest import ROOT, Launcher
from tests.kafka_helpers import produce, topic_env
from tests.test_api import ndjson
from tests.test_prometheus import (
    PROMETHEUS,
    prometheus,  # noqa: F401  (the fixture, requested by name below)
    query,
)

CHART = ROOT / "helm" / "logcanary"
DASHBOARD: dict[str, Any] = json.loads((CHART / "files" / "dashboard.json").read_text())
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SERVICE = "shop"
# Labelled counters of failures only: no series until one happens (the panel shows the rest of its queries).
QUIET = {"logcanary_dead_letters_failed_total"}


def need(path: str) -> None:
    if not Path(path).exists():
        reason = f"no {Path(path).name}: `make prometheus` installs Debian's prometheus package (needs root, apt-get)"
        if in_ci():
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(f"{reason}; set CI=true to make this an error")


def targets() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of the dashboard."""
    return [
        (panel["title"], target["expr"])
        for panel in DASHBOARD["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def as_prometheus_sees_it(expr: str, interval: str = "5s") -> str:
    """A panel's query with Grafana's variables filled in: all jobs and instances, the given rate interval."""
    for variable, value in (("$__rate_interval", interval), ("$__range", "1h"), ("$job", ".*"), ("$instance", ".*")):
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def check_metrics(exposition: str) -> subprocess.CompletedProcess[str]:
    command = [PROMTOOL, "check", "metrics"]
    return subprocess.run(command, input=exposition, capture_output=True, text=True, timeout=60, check=False)


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\blogcanary_[a-z0-9_]+", expr))


def families(exposition: str) -> set[str]:
    """Names of the metric families in an exposition (counters with their _total)."""
    return set(re.findall(r"^# TYPE (\S+) ", exposition, re.M))


# -- the dashboard, statically ------------------------------------------------------------------------


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    titles = {panel["title"]: panel for panel in DASHBOARD["panels"]}
    wanted = {
        "Ingestion rate": "logcanary_events_ingested_total",
        "Consumer lag": "logcanary_consumer_lag_records",
        "Dead letters": "logcanary_events_dead_lettered_total",
        "Verdicts of running analyses": "logcanary_analysis_verdict",
        "Completed analyses by verdict": "logcanary_analyses_total",
        "Risk per analysis": "logcanary_analysis_risk",
    }
    for title, metric in wanted.items():
        assert any(metric in target["expr"] for target in titles[title]["targets"]), title
    completed = titles["Completed analyses by verdict"]
    assert "by (verdict, environment)" in completed["targets"][0]["expr"]
    [link] = completed["fieldConfig"]["defaults"]["links"]  # from a point to the overview of its environment
    assert link["url"] == "${logcanary_url}/ui?view=overview&environment=${__field.labels.environment}"
    risk = titles["Risk per analysis"]
    assert "by (service, canary, analysis)" in risk["targets"][0]["expr"]
    assert {"color": "red", "value": 50} in risk["fieldConfig"]["defaults"]["thresholds"]["steps"]  # fail threshold


def test_the_dashboard_is_portable() -> None:
    """Any Prometheus data source (a variable), unique panel ids, a layout inside Grafana's 24 columns."""
    variables = {variable["name"]: variable for variable in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= set(variables)
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            for target in panel["targets"]:
                assert 'job=~"$job", instance=~"$instance"' in target["expr"], panel["title"]
    assert DASHBOARD["uid"] == "logcanary"


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule), so a typo cannot ship."""
    need(PROMTOOL)
    rules = [
        {"record": f"dashboard:query_{number}", "expr": as_prometheus_sees_it(expr)}
        for number, (_, expr) in enumerate(targets())
    ]
    (tmp_path / "dashboard.rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(tmp_path / "dashboard.rules.yaml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


# -- a real exposition ------------------------------------------------------------------------------------------


def test_promtool_checks_a_real_exposition_and_the_dashboard_has_data(
    kafka: EmbeddedBroker,
    service_process: Launcher,
    prometheus: Callable[[str], str],  # noqa: F811  (the fixture imported above)
) -> None:
    """The service consumes from Kafka (good and bad records), takes events over HTTP and runs two analyses, one
    still running and one completed with a failing verdict: every metric family is then in /metrics, promtool finds
    nothing to say about it, and every dashboard query gets a series from the Prometheus scraping it."""
    need(PROMTOOL)
    need(PROMETHEUS)
    env, topic, _ = topic_env(kafka)
    service = service_process(env)
    service.start()
    prometheus_url = prometheus(service.url.removeprefix("http://"))
    now = datetime.now(UTC)
    with service.client() as client:
        baseline = list(events("v1", 500, seed=1, service=SERVICE, start=now, seconds=1))
        client.post("/v1/events", content=ndjson(baseline)).raise_for_status()
        analysis = {"service": SERVICE, "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}}
        running = client.post("/v1/analyses", json={**analysis, "duration": "10m"})
        short = client.post("/v1/analyses", json={**analysis, "duration": "3s"})
        assert running.status_code == short.status_code == 201, running.text + short.text
        canary = list(events("v2", 500, seed=2, npe_rate=0.05, service=SERVICE, start=datetime.now(UTC), seconds=1))
        client.post("/v1/events", content=ndjson(canary)).raise_for_status()
        produce(kafka.bootstrap_servers, topic, [*baseline[:50], b"this is not json"])

        deadline = time.monotonic() + 30
        while client.get(f"/v1/analyses/{short.json()['id']}").json()["status"] != "completed":
            assert time.monotonic() < deadline, "the 3 s analysis did not complete"
            time.sleep(0.25)
        deadline = time.monotonic() + 30
        while True:
            exposition = client.get("/metrics").text
            if 'logcanary_events_dead_lettered_total{reason="not_json"} 1.0' in exposition:
                break
            assert time.monotonic() < deadline, "the bad Kafka record was not dead-lettered"
            time.sleep(0.25)
        assert client.get(f"/v1/analyses/{short.json()['id']}").json()["verdict"]["verdict"] == "fail"

    # promtool: the exposition as Prometheus scrapes it.
    lint = check_metrics(exposition)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout.strip() == "" and lint.stderr.strip() == "", lint.stdout + lint.stderr
    # promtool saw what matters: every family the dashboard and the alerting rules read, Kafka's included.
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    read = {name for _, expr in targets() for name in metric_names(expr)}
    read |= {name for group in rules["groups"] for rule in group["rules"] for name in metric_names(rule["expr"])}
    exposed = families(exposition)
    assert {re.sub(r"_bucket$", "", name) for name in read} - exposed == set()
    assert {"logcanary_consumer_lag_records", "logcanary_ingest_stalled", "logcanary_dead_letters_failed_total"} <= read
    # Control: promtool judges (a counter without _total and without help is reported).
    bad = exposition + "# HELP logcanary_bad_counter \n# TYPE logcanary_bad_counter counter\nlogcanary_bad_counter 1\n"
    refused = check_metrics(bad)
    assert refused.returncode != 0 and "logcanary_bad_counter" in refused.stdout + refused.stderr

    # Every dashboard query has a series: its metrics exist, and its labels and functions fit them.
    for name in QUIET:
        assert f"# TYPE {name} counter" in exposition and f"\n{name}{{" not in exposition, name
    for title, expr in targets():
        if metric_names(expr) <= QUIET:
            continue
        promql = as_prometheus_sees_it(expr)
        deadline = time.monotonic() + 30
        while not query(prometheus_url, promql):
            assert time.monotonic() < deadline, f"{title}: no series for {promql}"
            time.sleep(0.5)
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] == "query":
            selector = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
            assert selector is not None, variable
            assert query(prometheus_url, as_prometheus_sees_it(f"count by ({selector[2]}) ({selector[1]})"))
