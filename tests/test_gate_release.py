"""`logcanary gate` over a release of several services, as a CI step runs it: a subprocess against a real
`logcanary serve`. Each test starts the gate, waits until its analyses exist, then sends events stamped now."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from logcanary.demo.traffic import events

from .conftest import ROOT, ServiceProcess

CI_VARIABLES = {"CI_PIPELINE_URL", "CI_PIPELINE_ID", "GITHUB_RUN_ID", "BUILD_URL", "BUILD_TAG", "BUILDKITE_BUILD_URL"}
CI_VARIABLES |= {"BUILDKITE_BUILD_NUMBER", "CIRCLE_BUILD_URL", "LOGCANARY_API_TOKEN"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    folder = tmp_path_factory.mktemp("gate-release")
    service = ServiceProcess({"LOGCANARY_STATE_DIR": str(folder / "state")}, folder / "service.log")
    service.start()
    send(service, live("payments", "v1", 100, 0) + live("orders", "v1", 100, 0))  # both services exist
    yield service
    service.stop()


def live(service: str, deployment: str, n: int, seed: int, npe_rate: float = 0.0) -> list[dict[str, Any]]:
    start = datetime.now(UTC)
    return list(events(deployment, n, seed=seed, npe_rate=npe_rate, start=start, seconds=1, service=service))


def send(service: ServiceProcess, records: list[dict[str, Any]]) -> None:
    answer = httpx.post(f"{service.url}/v1/events", json=records, timeout=30)
    assert answer.status_code == 202, answer.text


def gate(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The gate as a subprocess, with none of the CI variables of the machine running the tests."""
    environment = {k: v for k, v in os.environ.items() if k not in CI_VARIABLES}
    return subprocess.Popen(
        [sys.executable, "-m", "logcanary.cli", "gate", "--url", url, *args],
        cwd=ROOT,
        env={**environment, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(service: ServiceProcess, release: str, count: int, process: subprocess.Popen[str]) -> list[Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        found = httpx.get(f"{service.url}/v1/analyses", params={"release": release}).json()
        if len(found) == count:
            return list(found)
        time.sleep(0.1)
    raise AssertionError(f"the analyses of {release} did not start")


def finish(process: subprocess.Popen[str], timeout: float = 40) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def test_a_release_with_one_failing_service_exits_1_and_prints_both(server: ServiceProcess) -> None:
    release = "rel-npe-1"
    process = gate(
        server.url,
        *("--service", "payments", "--service", "orders", "--canary", "v2", "--baseline", "v1"),
        *("--environment", "qa", "--release", release, "--label", "team=checkout", "--duration", "4s"),
        *("--poll-interval", "1"),
    )
    started = wait_for(server, release, 2, process)
    send(server, live("payments", "v1", 400, 1) + live("payments", "v2", 400, 2, npe_rate=0.03))
    send(server, live("orders", "v1", 400, 1) + live("orders", "v2", 400, 2))
    code, out, err = finish(process)
    assert code == 1, (out, err)
    assert out.splitlines()[0] == f"logcanary gate: release {release} in qa: 2 services"
    assert f"release {release}: fail  (payments failed)" in out
    [payments] = [line for line in out.splitlines() if line.startswith("  payments ")]
    [orders] = [line for line in out.splitlines() if line.startswith("  orders ")]
    assert " fail " in payments and "canary v2  (completed)" in payments
    assert " pass " in orders and "canary v2  (completed)" in orders
    lines = out.splitlines()
    [example] = [n for n, line in enumerate(lines) if line.startswith("      example: ")]  # payments' only
    assert lines[example + 1].strip().startswith("java.lang.NullPointerException: Cannot invoke")  # verbatim
    assert out.count(f"release page: {server.url}/ui?view=release&release={release}") == 1
    for analysis in started:
        assert (analysis["environment"], analysis["requested_by"], analysis["labels"]) == (
            "qa",
            "gate",
            {"team": "checkout"},
        )
    qa = httpx.get(f"{server.url}/v1/analyses", params={"environment": "qa", "release": release}).json()
    assert {a["service"] for a in qa} == {"payments", "orders"}
    assert httpx.get(f"{server.url}/v1/analyses", params={"environment": "prod", "release": release}).json() == []


def test_a_release_file_of_clean_services_passes_with_the_ci_run(server: ServiceProcess, tmp_path: Path) -> None:
    """A release file names each service's canary; the CI run's variables give the pipeline URL and, with no
    release named, the release id (GitLab: gitlab-<pipeline id>-<environment>)."""
    spec = {
        "environment": "dev",
        "labels": {"train": "dec"},
        "services": [
            {"service": "payments", "canary": "v5", "baseline": "v1"},
            {"service": "orders", "canary": "v6", "baseline": "v1"},
        ],
    }
    (tmp_path / "release.json").write_text(json.dumps(spec))
    ci = {"CI_PIPELINE_ID": "8812", "CI_PIPELINE_URL": "https://gitlab.example.com/shop/-/pipelines/8812"}
    process = gate(
        server.url,
        *("--release-file", str(tmp_path / "release.json"), "--duration", "3s", "--poll-interval", "1", "--json"),
        env=ci,
    )
    release = "gitlab-8812-dev"
    started = wait_for(server, release, 2, process)
    assert {a["pipeline_url"] for a in started} == {ci["CI_PIPELINE_URL"]}
    assert {(a["service"], a["canary"]["deployment"]) for a in started} == {("payments", "v5"), ("orders", "v6")}
    send(server, live("payments", "v1", 400, 3) + live("payments", "v5", 400, 4))
    send(server, live("orders", "v1", 400, 3) + live("orders", "v6", 400, 4))
    code, out, err = finish(process)
    assert code == 0, (out, err)
    document = json.loads(out)  # stdout: the release as JSON; the lines went to stderr
    assert (document["release"], document["verdict"], document["environments"]) == (release, "pass", ["dev"])
    assert f"release {release}: pass" in err and "release page: " in err


def test_sigterm_cancels_every_analysis_of_the_release(server: ServiceProcess) -> None:
    release = "rel-cancel-1"
    process = gate(
        server.url,
        *("--service", "payments", "--service", "orders", "--canary", "v7", "--baseline", "v1"),
        *("--release", release, "--duration", "10m", "--unknown-canary-grace", "10m"),
    )
    started = wait_for(server, release, 2, process)
    process.terminate()
    code, out, err = finish(process, timeout=15)
    assert code == 2, (out, err)
    for analysis in started:
        assert f"cancelled analysis {analysis['id']}" in err
        assert httpx.get(f"{server.url}/v1/analyses/{analysis['id']}").json()["status"] == "cancelled"
    assert httpx.get(f"{server.url}/v1/releases/{release}").json()["verdict"] == "inconclusive"


def test_a_bad_release_file_is_refused_before_anything_starts(server: ServiceProcess, tmp_path: Path) -> None:
    (tmp_path / "release.json").write_text(json.dumps({"services": [{"service": "payments"}]}))
    code, out, err = finish(gate(server.url, "--release-file", str(tmp_path / "release.json")))
    assert code == 2, (out, err)
    assert "services[1] needs service and canary" in err
