"""The chart's alerting rules (helm/logcanary/files/alerts.yaml), checked and unit-tested by promtool.

templates/prometheusrule.yaml embeds that very file, so what promtool checks here is what the PrometheusRule holds.
promtool comes with Debian's `prometheus` package, which `make prometheus` installs when it can; without it these
tests skip, saying why, except with CI=true: then they fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ci import in_ci
from tests.conftest import ROOT

CHART = ROOT / "helm" / "logcanary"
RULES = CHART / "files" / "alerts.yaml"
UNIT_TESTS = ROOT / "tests" / "data" / "alerts_test.yaml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
HEALTHY = "a healthy pod raises no alert"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    if not Path(PROMTOOL).exists():
        reason = "no promtool: `make prometheus` installs Debian's prometheus package (needs root and apt-get)"
        if in_ci():
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(f"{reason}; set CI=true to make this an error")
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def alerts() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def unit_tests() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    return tests


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_fail_when_no_alert_can_fire(tmp_path: Path) -> None:
    """The unit tests judge the rules: with every expression made silent, promtool reports each firing case."""
    silenced = re.sub(r"expr: >-\n(?:          .*\n)+|expr: .*\n", "expr: vector(1) == 0\n", RULES.read_text())
    (tmp_path / "alerts.yaml").write_text(silenced)
    assert promtool("check", "rules", tmp_path / "alerts.yaml").returncode == 0
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = ["alerts.yaml"]
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", tmp_path / "alerts_test.yaml")
    assert result.returncode != 0
    for rule in alerts():
        assert f"alertname: {rule['alert']}" in result.stdout + result.stderr, rule["alert"]


def test_each_alert_fires_in_a_case_and_stays_silent_when_healthy() -> None:
    names = {rule["alert"] for rule in alerts()}
    assert names == {
        "LogcanaryIngestStalled",
        "LogcanaryIngestRestarting",
        "LogcanaryConsumerLagGrowing",
        "LogcanaryDeadLetterRateHigh",
        "LogcanaryDeadLettersLost",
        "LogcanaryRepartitionRecordsLost",
        "LogcanaryCheckpointsFailing",
        "LogcanaryAnalysisFailing",
        "LogcanaryEventLoopLagging",
    }
    fired = {
        check["alertname"]
        for case in unit_tests()
        if case["name"] != HEALTHY
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert fired == names
    healthy = next(case for case in unit_tests() if case["name"] == HEALTHY)
    silent = {check["alertname"] for check in healthy["alert_rule_test"] if check["exp_alerts"] == []}
    assert silent == names
    assert all(check["exp_alerts"] == [] for check in healthy["alert_rule_test"])


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    for rule in alerts():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def exposed_metric_names() -> set[str]:
    """Every metric name the service declares (prometheus-client adds _total to counters)."""
    names = set()
    for source in (ROOT / "service").rglob("*.py"):
        names |= set(re.findall(r"\"(logcanary_[a-z0-9_]+)\"", source.read_text()))
    return names


def test_the_rules_use_only_metrics_the_service_exposes_and_documents() -> None:
    declared = exposed_metric_names()
    readme = (ROOT / "README.md").read_text()
    used = {name for rule in alerts() for name in re.findall(r"\blogcanary_[a-z0-9_]+", rule["expr"])}
    assert len(used) >= 8, used
    for name in used:
        base = re.sub(r"_(total|bucket|sum|count)$", "", name)
        assert name in declared or base in declared, f"{name}: no such metric in service/"
        documented = name if name.endswith("_total") else base
        assert f"`{documented}" in readme, f"{name}: not in README Metrics"


def test_the_chart_embeds_the_same_file() -> None:
    template = (CHART / "templates" / "prometheusrule.yaml").read_text()
    assert '.Files.Get "files/alerts.yaml"' in template
    assert "if .Values.prometheusRule.enabled" in template
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["prometheusRule"]["enabled"] is False
