"""The reviewer's path through /ui in a real headless Chromium, driven like a person (tests/cdp.py): find the red dot
on the cluster map, open it, read the exception, mark it not a risk, watch the verdict change, undo the rule from the
history page, watch it fail again; dots keep their place; the controls default to the gate's question.

With ``LOGCANARY_SAVE_SCREENSHOTS=1`` the tests write docs/cluster-map.png and docs/history.png (README).
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from logcanary.api.routers.review import get_map
from logcanary.api.routers.verdicts import VerdictQuery
from logcanary.demo.traffic import events

from .cdp import Chromium
from .conftest import ROOT, Launcher, ServiceProcess

PNG = b"\x89PNG\r\n\x1a\n"
RED = "rgb(217, 48, 37)"  # .dot-anomalous fill in ui.css

OpenBrowser = Callable[..., Chromium]


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[OpenBrowser]:
    """Opens headless Chromium (closed after the test); skips without it (``make browser`` installs it)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium not installed: run make browser")
    opened: list[Chromium] = []

    def open_browser(width: int = 1280, height: int = 900) -> Chromium:
        browser = Chromium(binary, tmp_path / f"profile-{len(opened)}", width, height)
        opened.append(browser)
        return browser

    yield open_browser
    for browser in opened:
        browser.close()


def live(deployment: str, n: int, seed: int, npe_rate: float = 0.0) -> list[dict[str, Any]]:
    return list(events(deployment, n, seed=seed, npe_rate=npe_rate, start=datetime.now(UTC), seconds=1))


def ingest(service: ServiceProcess, records: list[dict[str, Any]]) -> None:
    assert httpx.post(f"{service.url}/v1/events", json=records, timeout=30).status_code == 202


def analyse(service: ServiceProcess, duration: str, traffic: Callable[[], list[dict[str, Any]]]) -> dict[str, Any]:
    """Runs an analysis of v2 against v1 while ``traffic`` is logged; returns it once completed."""
    body = {
        "service": "payments",
        "canary": {"deployment": "v2"},
        "baseline": {"deployment": "v1"},
        "duration": duration,
    }
    created = httpx.post(f"{service.url}/v1/analyses", json=body, timeout=30)
    assert created.status_code == 201, created.text
    ingest(service, traffic())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        analysis: dict[str, Any] = httpx.get(f"{service.url}/v1/analyses/{created.json()['id']}", timeout=10).json()
        if analysis["status"] == "completed":
            return analysis
        time.sleep(0.5)
    raise AssertionError(f"analysis did not complete: {analysis}")


def save(screenshot: Path, name: str) -> None:
    assert screenshot.read_bytes()[:8] == PNG
    assert 10_000 < screenshot.stat().st_size < 400_000  # a rendered page, and small enough to commit
    if os.environ.get("LOGCANARY_SAVE_SCREENSHOTS") == "1":
        shutil.copyfile(screenshot, ROOT / "docs" / name)


def dots(browser: Chromium) -> dict[str, dict[str, Any]]:
    """The map's dots by template id: state, fill colour, position, radius, accessible name, tooltip."""
    found: dict[str, dict[str, Any]] = browser.evaluate(
        """Object.fromEntries([...document.querySelectorAll('#map g.dot')].map((g) => {
            const c = g.querySelector('circle');
            return [g.dataset.templateId, {
                state: g.dataset.state, cluster: g.dataset.clusterId, fill: getComputedStyle(c).fill,
                cx: c.getAttribute('cx'), cy: c.getAttribute('cy'), r: Number(c.getAttribute('r')),
                label: g.getAttribute('aria-label'), title: g.querySelector('title').textContent,
                tabindex: g.getAttribute('tabindex'), role: g.getAttribute('role'),
            }];
        }))"""
    )
    return found


def verdict_of(browser: Chromium) -> str:
    return str(browser.evaluate("document.getElementById('verdict').dataset.verdict"))


def test_reviewer_marks_the_npe_not_a_risk_then_undoes_it(
    service_process: Launcher, chromium: OpenBrowser, tmp_path: Path
) -> None:
    service = service_process({})
    service.start()
    url = service.url
    ingest(service, live("v1", 600, 1))
    failed = analyse(service, "5s", lambda: live("v1", 1500, 3) + live("v2", 1500, 2, npe_rate=0.02))
    assert failed["verdict"]["verdict"] == "fail"

    browser = chromium()
    browser.open(f"{url}/ui?service=payments&canary=v2&baseline=v1")
    assert verdict_of(browser) == "fail"
    assert browser.evaluate("document.getElementById('window').value") == "5m"  # the gate's window

    # the red dot: one, the NullPointerException, drawn red; every other dot grey
    found = dots(browser)
    red = [t for t, d in found.items() if d["fill"] == RED]
    assert len(red) == 1, found
    [npe] = red
    assert found[npe]["state"] == "anomalous"
    assert all(d["state"] == "known" for t, d in found.items() if t != npe)
    assert "NullPointerException" in found[npe]["title"]  # the hover text is the template
    assert found[npe]["label"].startswith("anomalous (unknown, score")
    assert (found[npe]["tabindex"], found[npe]["role"]) == ("0", "button")
    browser.hover(f"#map g[data-template-id='{npe}']")
    assert "NullPointerException" in browser.evaluate("document.getElementById('map-caption').textContent")
    shot = tmp_path / "cluster-map.png"
    browser.screenshot(shot, "#map-section")
    save(shot, "cluster-map.png")

    # open it: the drill-down of its cluster, with the verbatim exception
    browser.click(f"#map g[data-template-id='{npe}'] circle")
    cluster = found[npe]["cluster"]
    row = f"#clusters tbody[data-cluster-id='{cluster}']"
    browser.wait_for(f"document.querySelector(\"{row} .expander\").getAttribute('aria-expanded') === 'true'")
    assert browser.evaluate("document.activeElement.classList.contains('expander')")
    example = browser.evaluate(f'document.querySelector("{row} pre.example").textContent')
    assert "java.lang.NullPointerException" in example
    assert "EncryptionService.encrypt(EncryptionService.java:" in example

    # mark it not a risk, with author and reason: the verdict passes, the dot is muted
    browser.click(f"{row} .judge-form input[value=not_a_risk]")
    browser.type(f"{row} .judge-form input[name=author]", "ana")
    browser.type(f"{row} .judge-form input[name=reason]", "keys rotate in staging only")
    browser.click(f"{row} .judge-form .judge-submit")
    browser.wait_for("document.getElementById('verdict').dataset.verdict === 'pass'")
    browser.wait_for("document.body.dataset.loaded === 'true'")
    assert dots(browser)[npe]["state"] == "ignored"
    assert "not a risk in v2" in browser.evaluate("document.getElementById('message').textContent")
    [rule] = httpx.get(f"{url}/v1/feedback", params={"service": "payments"}).json()
    assert (rule["action"], rule["deployment"], rule["author"], rule["reason"]) == (
        "not_a_risk",
        "v2",
        "ana",
        "keys rotate in staging only",
    )
    # the gate asking now passes too, and a new analysis publishes pass
    gate = httpx.get(f"{url}/v1/verdict", params={"service": "payments", "canary": "v2", "baseline": "v1"}).json()
    assert gate["verdict"] == "pass"
    assert gate["suppressed"][0]["feedback_id"] == rule["id"]
    passed = analyse(service, "3s", lambda: live("v1", 600, 5) + live("v2", 600, 6, npe_rate=0.02))
    assert passed["verdict"]["verdict"] == "pass"

    # history: the analyses with their verdicts and risk over time, the rule with who gave it
    browser.open(f"{url}/ui?view=history&service=payments")
    rows = browser.evaluate(
        """[...document.querySelectorAll('#analyses tbody tr')].map((tr) => ({
            id: tr.dataset.analysisId, verdict: tr.dataset.verdict,
            points: tr.querySelector('polyline').getAttribute('points').trim().split(' ').length,
            chart: tr.querySelector('svg.spark').getAttribute('aria-label'),
        }))"""
    )
    assert [(r["id"], r["verdict"]) for r in rows] == [(passed["id"], "pass"), (failed["id"], "fail")]
    history = httpx.get(f"{url}/v1/services/payments/history").json()
    samples = {a["id"]: len(a["risk_history"]) for a in history["analyses"]}
    assert samples[failed["id"]] >= 2
    assert [r["points"] for r in rows] == [samples[passed["id"]], samples[failed["id"]]]
    assert all(r["chart"].startswith("Risk over time: ") for r in rows)
    rules = browser.evaluate(
        """[...document.querySelectorAll('#feedback tbody tr[data-feedback-id]')].map((tr) =>
            [tr.dataset.feedbackId, tr.dataset.action, ...[...tr.cells].slice(1, 4).map((c) => c.textContent)])"""
    )
    assert rules == [[rule["id"], "not_a_risk", "ana", "Not a risk", "canary v2"]]
    shot = tmp_path / "history.png"
    browser.screenshot(shot, "#history-view")
    save(shot, "history.png")

    # the analysis id links to exactly the verdict it published: fail, though the live verdict passes now
    browser.click(f"#analyses tr[data-analysis-id='{failed['id']}'] a.analysis-link")
    browser.wait_for(f"location.search === '?analysis={failed['id']}' && document.body.dataset.loaded === 'true'")
    assert verdict_of(browser) == "fail"
    assert float(browser.evaluate("document.getElementById('verdict').dataset.risk")) == failed["verdict"]["risk"]
    assert failed["id"] in browser.evaluate("document.getElementById('analysis-note').textContent")
    assert browser.evaluate("document.getElementById('window').value") == "analysis"
    assert dots(browser)[npe]["state"] == "anomalous"

    # undo the rule from the feedback list: the verdict fails again
    browser.open(f"{url}/ui?view=history&service=payments")
    browser.click(f"#feedback button.undo[data-feedback-id='{rule['id']}']")
    browser.wait_for("!document.querySelector('#feedback tbody tr[data-feedback-id]')")
    assert httpx.get(f"{url}/v1/feedback", params={"service": "payments"}).json() == []
    browser.open(f"{url}/ui?service=payments&canary=v2&baseline=v1")
    assert verdict_of(browser) == "fail"
    assert dots(browser)[npe]["fill"] == RED
    assert browser.errors() == []


def positions(found: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {template: (d["cx"], d["cy"]) for template, d in found.items()}


def test_dots_keep_their_place_between_refreshes_deployments_and_restarts(
    service_process: Launcher, chromium: OpenBrowser
) -> None:
    service = service_process({})
    service.start()
    ingest(service, live("v1", 1500, 1) + live("v2", 1500, 2, npe_rate=0.02))
    browser = chromium()
    browser.open(f"{service.url}/ui?service=payments&canary=v2&baseline=v1")
    first = dots(browser)
    assert len(first) >= 10
    assert len(set(positions(first).values())) == len(first)  # spread out, not piled up

    # refreshing (the Refresh button, then reloading the page) moves nothing
    browser.evaluate("document.body.dataset.loaded = 'stale'")
    browser.click("#pick button[type=submit]")
    browser.wait_for("document.body.dataset.loaded === 'true'")
    assert positions(dots(browser)) == positions(first)
    browser.open(f"{service.url}/ui?service=payments&canary=v2&baseline=v1")
    assert positions(dots(browser)) == positions(first)

    # the next deployment: the clusters it shares with v2 stay where they were; its new event gets a place of its own
    new_event = [
        {**e, "message": f"Feature flag fast-checkout enabled for tenant {n}"} for n, e in enumerate(live("v3", 30, 9))
    ]
    ingest(service, live("v3", 1500, 3) + new_event)
    browser.open(f"{service.url}/ui?service=payments&canary=v3&baseline=v2")
    third = dots(browser)
    shared = set(first) & set(third)
    assert len(shared) >= 9
    assert {t: positions(third)[t] for t in shared} == {t: positions(first)[t] for t in shared}
    [npe] = [t for t, d in first.items() if d["state"] == "anomalous"]
    assert third[npe]["state"] == "vanished"  # v2's exception, gone from v3: hollow
    assert browser.evaluate(
        f"getComputedStyle(document.querySelector(\"g[data-template-id='{npe}'] circle\")).fill"
    ) == ("rgb(255, 255, 255)")
    [flag] = [t for t, d in third.items() if "Feature flag" in d["title"]]
    assert positions(third)[flag] not in positions(first).values()

    # keyboard: a dot takes focus and Enter opens its cluster, as a click does
    browser.evaluate(f"document.querySelector(\"#map g[data-template-id='{flag}']\").focus()")
    browser.press("Enter")
    expander = f"document.querySelector(\"tbody[data-cluster-id='{third[flag]['cluster']}'] .expander\")"
    browser.wait_for(f"{expander}.getAttribute('aria-expanded') === 'true'")

    # the API's positions survive a restart (state reloaded from the store) and agree with the page
    before = httpx.get(f"{service.url}/v1/services/payments/map", params={"canary": "v3", "baseline": "v2"}).json()
    service.stop()
    service.start()
    after = httpx.get(f"{service.url}/v1/services/payments/map", params={"canary": "v3", "baseline": "v2"}).json()
    where = {p["template_id"]: (p["x"], p["y"]) for p in before["points"]}
    assert {p["template_id"]: (p["x"], p["y"]) for p in after["points"]} == where
    assert {t: (f"{x * 960:.1f}", f"{y * 400:.1f}") for t, (x, y) in where.items()} == positions(third)
    assert browser.errors() == []


def test_the_page_asks_the_gates_question_by_default() -> None:
    """Window: the Argo AnalysisTemplate's, which is also GET /v1/verdict's and the map's default."""
    template = yaml.safe_load((ROOT / "helm/logcanary/examples/analysistemplate.yaml").read_text())
    [metric] = template["spec"]["metrics"]
    [gate_window] = re.findall(r"[?&]window=([^&]+)", metric["provider"]["web"]["url"])
    script = (ROOT / "service/logcanary/api/static/ui.js").read_text()
    [page_window] = re.findall(r'const GATE_WINDOW = "([^"]+)";', script)
    assert page_window == gate_window == VerdictQuery.model_fields["window"].default
    assert inspect.signature(get_map).parameters["window"].default == gate_window
