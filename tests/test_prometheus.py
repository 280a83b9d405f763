"""The Flagger MetricTemplate example against a real Prometheus scraping a real `logcanary serve`.

Flagger evaluates the template's PromQL query through Prometheus' HTTP API and counts "no values found" as a
failed check, so the series must exist from the analysis' creation, cross the threshold for a bad canary, and
vanish when the analysis ends (a finished analysis must not gate the next rollout). Debian's `prometheus` is
installed by `make prometheus` when possible; without it these tests skip, saying why.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from logcanary.demo.embedded_broker import free_port
from tests.conftest import ROOT, Launcher
from tests.test_api import live, ndjson

EXAMPLE = ROOT / "helm" / "logcanary" / "examples" / "flagger-metrictemplate.yaml"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
SCRAPE_SECONDS = 1
TARGET = "payments"  # Flagger's {{ target }}: the Canary's targetRef name, here also the service's name
NAMESPACE = "shop"

pytestmark = pytest.mark.skipif(
    not Path(PROMETHEUS).exists(),
    reason="no prometheus binary: `make prometheus` installs Debian's package (needs root and apt-get)",
)


def metric_templates() -> dict[str, str]:
    """name -> query of each MetricTemplate in the example, rendered as Flagger renders it."""
    queries = {}
    for document in yaml.safe_load_all(EXAMPLE.read_text()):
        if document and document.get("kind") == "MetricTemplate":
            query = document["spec"]["query"]
            for variable, value in (("target", TARGET), ("namespace", NAMESPACE), ("interval", "1m")):
                query = query.replace("{{ " + variable + " }}", value)
            assert "{{" not in query, query
            queries[document["metadata"]["name"]] = query
    return queries


def flagger_webhooks() -> dict[str, dict[str, Any]]:
    """name -> webhook of the example's Canary (the commented excerpt is valid YAML once uncommented)."""
    text = EXAMPLE.read_text()
    excerpt = text[text.index("# apiVersion: flagger.app/v1beta1\n# kind: Canary") :]
    canary = yaml.safe_load("\n".join(line[2:] for line in excerpt.splitlines() if line.startswith("#")))
    return {hook["name"]: hook for hook in canary["spec"]["analysis"]["webhooks"]}


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Starts Prometheus and yields a function that registers the service's address as its scrape target."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    process: subprocess.Popen[bytes] | None = None
    log = tmp_path / "prometheus.log"

    def start(target: str) -> str:
        nonlocal process
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
                    "scrape_configs": [{"job_name": "logcanary", "static_configs": [{"targets": [target]}]}],
                }
            )
        )
        command = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
        command += [f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
        process = subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after 30 s:\n{log.read_text()[-3000:]}")

    yield start
    if process is not None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def query(prometheus_url: str, promql: str) -> list[float]:
    """The values of an instant query, as Flagger's Prometheus provider asks for them."""
    answer = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert answer["status"] == "success", answer
    return [float(item["value"][1]) for item in answer["data"]["result"]]


def wait_for(
    prometheus_url: str, promql: str, check: Callable[[list[float]], bool], timeout: float = 15
) -> list[float]:
    deadline = time.monotonic() + timeout
    values = query(prometheus_url, promql)
    while not check(values):
        if time.monotonic() > deadline:
            raise AssertionError(f"{promql} stayed {values}")
        time.sleep(0.25)
        values = query(prometheus_url, promql)
    return values


def test_flagger_metric_template_follows_the_analysis(
    service_process: Launcher, prometheus: Callable[[str], str]
) -> None:
    started = time.monotonic()
    service = service_process({})
    service.start()
    prometheus_url = prometheus(service.url.removeprefix("http://"))
    templates = metric_templates()
    risk, inconclusive = templates["logcanary-risk"], templates["logcanary-inconclusive"]
    hook = flagger_webhooks()["logcanary-analysis"]
    assert hook["type"] == "pre-rollout" and hook["url"].endswith("/v1/analyses")

    with service.client() as client:
        # The stable deployment (Flagger's primary) has logged; the canary has not yet.
        client.post("/v1/events", content=ndjson(live(f"{TARGET}-primary", 5, 1))).raise_for_status()
        assert query(prometheus_url, risk) == []  # no analysis: no series (Flagger: a failed check)

        # Flagger's pre-rollout webhook, with the body Flagger sends, starts the analysis.
        body = {"name": TARGET, "namespace": NAMESPACE, "phase": "Progressing", "checksum": "c1",
                "metadata": hook.get("metadata", {})}  # fmt: skip
        created = client.post(hook["url"].replace("http://logcanary.logcanary.svc.cluster.local:8080", ""), json=body)
        assert created.status_code == 201, created.text
        analysis = created.json()
        assert (analysis["canary"]["deployment"], analysis["baseline"]["deployment"]) == (TARGET, f"{TARGET}-primary")

        # Present from creation, below the threshold, and inconclusive (nothing logged by the canary yet).
        assert wait_for(prometheus_url, risk, lambda v: v != []) == [0.0]
        assert query(prometheus_url, inconclusive) == [1.0]

        # The canary throws NullPointerExceptions: the risk crosses Flagger's thresholdRange (max 49.9).
        events = live(f"{TARGET}-primary", 1500, 1) + live(TARGET, 1500, 2, npe_rate=0.02)
        client.post("/v1/events", content=ndjson(events)).raise_for_status()
        [value] = wait_for(prometheus_url, risk, lambda v: bool(v) and v[0] > 49.9)
        assert value > 90
        assert query(prometheus_url, inconclusive) == [0.0]
        # Reads do not move the gate: a verdict for another canary name adds no series.
        client.get("/v1/verdict", params={"service": TARGET, "canary": "other", "window": "all"})

        # The analysis ends: its series go, so a finished analysis cannot gate the next rollout.
        assert client.delete(f"/v1/analyses/{analysis['id']}").json()["status"] == "cancelled"
        wait_for(prometheus_url, risk, lambda v: v == [])
        assert query(prometheus_url, inconclusive) == []
        assert query(prometheus_url, "count(logcanary_analysis_risk)") == []
    assert time.monotonic() - started < 60
