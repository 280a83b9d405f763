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
import subprocess
import sys
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


def row_of(cluster: str) -> str:
    return f"#clusters tbody[data-cluster-id='{cluster}']"


def test_reviewer_marks_the_npe_not_a_risk_then_undoes_it(
    service_process: Launcher, chromium: OpenBrowser, tmp_path: Path
) -> None:
    """The reviewer's story, by clicks and keys: the red dot, the NullPointerException, not a risk (the verdict is
    scrolled to and its change announced), a contradicting priority refused, the published verdict unchanged, the
    undo from History with a reason, and the audit trail; the verdict fails again."""
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
    assert browser.evaluate("location.search") == "?service=payments&canary=v2&baseline=v1&window=5m"  # the question

    # the red dot: one, the NullPointerException, drawn red; every other dot grey
    found = dots(browser)
    red = [t for t, d in found.items() if d["fill"] == RED]
    assert len(red) == 1, found
    [npe] = red
    assert found[npe]["state"] == "anomalous"
    assert all(d["state"] == "known" for t, d in found.items() if t != npe)
    assert "NullPointerException" in found[npe]["title"]  # the hover text is the template
    assert found[npe]["label"].startswith("anomalous (unknown, score")
    assert (found[npe]["tabindex"], found[npe]["role"]) == ("0", "button")  # the map's one Tab stop
    assert [d["tabindex"] for t, d in found.items() if t != npe] == ["-1"] * (len(found) - 1)
    counts = browser.evaluate("document.querySelector('#verdict .counts').textContent")
    assert "1 anomaly at the fail score (1 event type, the red dots)" in counts  # one unit, verdict and map
    browser.hover(f"#map g[data-template-id='{npe}']")
    assert "NullPointerException" in browser.evaluate("document.getElementById('map-caption').textContent")
    shot = tmp_path / "cluster-map.png"
    browser.screenshot(shot, "#map-section")
    save(shot, "cluster-map.png")

    # open it: the drill-down of its cluster, with the verbatim exception
    browser.click(f"#map g[data-template-id='{npe}'] circle")
    cluster = found[npe]["cluster"]
    row = row_of(cluster)
    browser.wait_for(f"document.querySelector(\"{row} .expander\").getAttribute('aria-expanded') === 'true'")
    assert browser.evaluate("document.activeElement.classList.contains('expander')")
    example = browser.evaluate(f'document.querySelector("{row} pre.example").textContent')
    assert "java.lang.NullPointerException" in example
    assert "EncryptionService.encrypt(EncryptionService.java:" in example
    assert browser.evaluate(f'document.querySelectorAll("{row} .judge-form input:checked").length') == 0

    # mark it not a risk, with author and reason: the verdict passes, is scrolled to, focused and announced
    browser.click(f"{row} .judge-form input[value=not_a_risk]")
    browser.type(f"{row} .judge-form input[name=author]", "ana")
    browser.type(f"{row} .judge-form input[name=reason]", "keys rotate in staging only")
    browser.click(f"{row} .judge-form .judge-submit")
    browser.wait_for("document.getElementById('verdict').dataset.verdict === 'pass'")
    browser.wait_for("document.body.dataset.loaded === 'true' && document.activeElement.id === 'verdict'")
    announced = browser.evaluate("document.getElementById('announce').textContent")
    assert "The verdict changed from FAIL (risk" in announced and "to PASS (risk 0)" in announced
    assert browser.evaluate("document.getElementById('announce').getAttribute('aria-live')") == "polite"
    top = browser.evaluate("document.getElementById('verdict').getBoundingClientRect().top")
    assert 0 <= top < 900  # in view, not 1,800 px up the page
    assert dots(browser)[npe]["state"] == "ignored"
    assert dots(browser)[npe]["label"].startswith("not a risk: ")
    assert browser.evaluate(f'document.querySelector("{row}").dataset.status') == "ignored"
    assert browser.evaluate(f'document.querySelector("{row} .summary .tag").textContent') == "not a risk"  # as the map
    assert "not a risk in v2" in browser.evaluate("document.getElementById('message').textContent")
    [rule] = httpx.get(f"{url}/v1/feedback", params={"service": "payments"}).json()
    assert (rule["action"], rule["deployment"], rule["author"], rule["reason"]) == (
        "not_a_risk",
        "v2",
        "ana",
        "keys rotate in staging only",
    )

    # the form under the pointer chose nothing: a second click saves nothing; priority would contradict: refused
    assert browser.evaluate(f'document.querySelectorAll("{row} .judge-form input:checked").length') == 0
    standing = browser.evaluate(f'document.querySelector("{row} .standing").textContent')
    assert "Not a risk in v2, by ana" in standing and "keys rotate in staging only" in standing
    browser.click(f"{row} .judge-form .judge-submit")
    assert not browser.evaluate(f'document.querySelector("{row} .judge-form").checkValidity()')
    browser.click(f"{row} .judge-form input[value=priority]")
    browser.click(f"{row} .judge-form .judge-submit")
    browser.wait_for("document.getElementById('message').dataset.kind === 'error'")
    refusal = browser.evaluate("document.getElementById('message').textContent")
    assert refusal.startswith("Not saved: a priority contradicts a standing rule")
    assert f"rule {rule['id']}" in refusal and "undo it" in refusal
    assert browser.evaluate("document.getElementById('message').getAttribute('role')") == "alert"
    assert [r["id"] for r in httpx.get(f"{url}/v1/feedback").json()] == [rule["id"]]
    assert verdict_of(browser) == "pass"

    # the gate asking now passes too, and a new analysis publishes pass
    gate = httpx.get(f"{url}/v1/verdict", params={"service": "payments", "canary": "v2", "baseline": "v1"}).json()
    assert gate["verdict"] == "pass"
    assert gate["suppressed"][0]["feedback_id"] == rule["id"]
    passed = analyse(service, "3s", lambda: live("v1", 600, 5) + live("v2", 600, 6, npe_rate=0.02))
    assert passed["verdict"]["verdict"] == "pass"

    # history, by the page's own link: the question travels with it; analyses with their risk over time
    browser.click("#nav-history")
    browser.wait_for("document.body.dataset.view === 'history' && document.body.dataset.loaded === 'true'")
    assert browser.evaluate("location.search").startswith("?view=history&service=payments&canary=v2&baseline=v1")
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

    # the analysis id links to exactly the verdict it published, its anomaly open: fail, though live passes now
    browser.click(f"#analyses tr[data-analysis-id='{failed['id']}'] a.analysis-link")
    browser.wait_for(
        f"location.search === '?analysis={failed['id']}&expand={cluster}' && document.body.dataset.loaded === 'true'"
    )
    assert verdict_of(browser) == "fail"
    assert float(browser.evaluate("document.getElementById('verdict').dataset.risk")) == failed["verdict"]["risk"]
    assert failed["id"] in browser.evaluate("document.getElementById('analysis-note').textContent")
    assert browser.evaluate("document.getElementById('window').value") == "analysis"
    assert dots(browser)[npe]["state"] == "anomalous"
    assert browser.evaluate(f"document.querySelector(\"{row} .expander\").getAttribute('aria-expanded')") == "true"
    live_link = browser.evaluate("document.getElementById('live-link').getAttribute('href')")
    assert live_link == "ui?service=payments&canary=v2&baseline=v1&window=5m&sensitivity=medium"

    # undo the rule from the feedback list, saying why: the trail shows who made it and who undid it, and why
    browser.open(f"{url}/ui?view=history&service=payments")
    browser.type(f"#feedback tr[data-feedback-id='{rule['id']}'] input.undo-reason", "fixed the key rotation")
    browser.click(f"#feedback button.undo[data-feedback-id='{rule['id']}']")
    browser.wait_for("!document.querySelector('#feedback tbody tr[data-feedback-id]')")
    browser.wait_for("document.querySelectorAll('#changes tbody tr[data-change]').length === 2")
    assert httpx.get(f"{url}/v1/feedback", params={"service": "payments"}).json() == []
    trail = browser.evaluate(
        """[...document.querySelectorAll('#changes tbody tr[data-change]')].map((tr) =>
            [tr.dataset.change, tr.dataset.feedbackId, ...[...tr.cells].slice(1).map((c) => c.textContent)])"""
    )
    template = history["feedback"][0]["template"]
    head = "\n".join(template.split("\n")[:2]) + ("\n…" if template.count("\n") >= 2 else "")
    assert trail == [
        ["undone", rule["id"], "ana", "undone", "Not a risk in v2", head, "fixed the key rotation"],
        ["created", rule["id"], "ana", "created", "Not a risk in v2", head, "keys rotate in staging only"],
    ]
    audit = httpx.get(f"{url}/v1/feedback/audit", params={"service": "payments"}).json()
    assert [(c["change"], c["author"], c["reason"]) for c in audit] == [
        ("undone", "ana", "fixed the key rotation"),
        ("created", "ana", "keys rotate in staging only"),
    ]
    shot = tmp_path / "history.png"
    browser.screenshot(shot, "#history-view")
    save(shot, "history.png")
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


def test_a_gates_link_opened_after_the_canary_stopped_logging_shows_the_gates_verdict(
    service_process: Launcher, chromium: OpenBrowser
) -> None:
    """`logcanary gate` fails the NPE canary and prints its details: link. Once the canary stopped logging, the live
    question judges an empty window (inconclusive, 0 events); the link still opens the verdict the gate acted on,
    the exception open, with the live verdict one click away; and the live page says its rows were not judged."""
    service = service_process({"LOGCANARY_VERDICT_MAX_AGE_SECONDS": "0"})
    service.start()
    url = service.url
    ingest(service, live("v1", 300, 1))
    command = [sys.executable, "-m", "logcanary.cli", "gate", "--url", url, "--service", "payments", "--canary", "v2"]
    gate = subprocess.Popen(
        [*command, "--baseline", "v1", "--duration", "3s", "--poll-interval", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "LOGCANARY_API_TOKEN"},
    )
    deadline = time.monotonic() + 30
    while not httpx.get(f"{url}/v1/analyses", params={"service": "payments"}).json():
        assert gate.poll() is None and time.monotonic() < deadline, gate.communicate()
        time.sleep(0.1)
    ingest(service, live("v1", 1500, 3) + live("v2", 1500, 2, npe_rate=0.02))
    out, err = gate.communicate(timeout=60)
    assert gate.returncode == 1, (out, err)
    [link] = re.findall(r"^details: (\S+)$", out, re.MULTILINE)
    [analysis] = httpx.get(f"{url}/v1/analyses", params={"service": "payments"}).json()
    cluster = analysis["verdict"]["anomalies"][0]["cluster_id"]
    assert link == f"{url}/ui?analysis={analysis['id']}&expand={cluster}"

    # what Argo Rollouts would store now (GET /v1/verdict): a verdict with its page, the window's end fixed
    question = {"service": "payments", "canary": "v2", "baseline": "v1", "window": "15s"}
    argo = httpx.get(f"{url}/v1/verdict", params={**question, "compact": "true"}).json()
    assert argo["verdict"] == "fail" and "until=" in argo["page"]

    # the canary stopped logging (a rollback): over a window of 15 s, the live question soon finds no canary event
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/v1/verdict", params=question).json()["reason_code"] != "no_canary_events":
        assert time.monotonic() < deadline
        time.sleep(1)

    browser = chromium()
    browser.open(link)
    assert verdict_of(browser) == "fail"
    assert float(browser.evaluate("document.getElementById('verdict').dataset.risk")) == analysis["verdict"]["risk"]
    assert "NullPointerException" in browser.evaluate("document.querySelector('#verdict .reason').textContent")
    row = row_of(cluster)
    assert browser.evaluate(f"document.querySelector(\"{row} .expander\").getAttribute('aria-expanded')") == "true"
    assert "java.lang.NullPointerException" in browser.evaluate(
        f'document.querySelector("{row} pre.example").textContent'
    )
    assert browser.evaluate(f'document.querySelector("{row}").dataset.status') == "anomalous"
    note = browser.evaluate("document.getElementById('analysis-note').textContent")
    assert analysis["id"] in note and "what the deploy tool acted on, v2 vs v1" in note

    # the measurement's page: the same window, fixed, still the verdict Argo stored
    browser.open(argo["page"])
    assert verdict_of(browser) == "fail"
    assert float(browser.evaluate("document.getElementById('verdict').dataset.risk")) == argo["risk"]
    assert "the window a deploy tool asked about" in browser.evaluate(
        "document.getElementById('analysis-note').textContent"
    )
    assert browser.evaluate(f"document.querySelector(\"{row} .expander\").getAttribute('aria-expanded')") == "true"
    browser.open(link)

    # one click away, the live verdict of the same question: the page asks it over 15 s by its URL
    browser.click("#live-link")
    browser.wait_for("location.search.startsWith('?service=payments') && document.body.dataset.loaded === 'true'")
    assert browser.evaluate("location.search") == "?service=payments&canary=v2&baseline=v1&window=5m&sensitivity=medium"
    browser.open(f"{url}/ui?service=payments&canary=v2&baseline=v1&window=15s")
    assert verdict_of(browser) == "inconclusive"
    assert browser.evaluate("document.getElementById('window').value") == "15s"
    statuses = browser.evaluate("[...document.querySelectorAll('#clusters tbody')].map((t) => t.dataset.status)")
    assert statuses and set(statuses) == {"unjudged"}  # never "known": nothing was judged
    labels = browser.evaluate("[...document.querySelectorAll('#clusters .summary .tag')].map((t) => t.textContent)")
    assert set(labels) == {"not judged: no_canary_events"}
    assert browser.errors() == []


def test_the_keyboard_reaches_the_first_anomaly_and_the_verdict_change_is_announced(
    service_process: Launcher, chromium: OpenBrowser
) -> None:
    """A skip link first; the map is one Tab stop, on the strongest anomaly, and the arrow keys walk the dots; Enter
    opens the anomaly's cluster. Judging by keyboard, the verdict's change is announced and focused."""
    service = service_process({})
    service.start()
    names = [f"Subsystem{chr(97 + n // 26)}{chr(97 + n % 26)}" for n in range(40)]  # 40 event types
    many = [{**e, "message": f"{names[n % 40]} reported ready"} for n, e in enumerate(live("v1", 400, 4))]
    canary = [{**e, "deployment": "v2"} for e in many]  # both log them
    ingest(service, live("v1", 1500, 1) + many + live("v2", 1500, 2, npe_rate=0.02) + canary)
    browser = chromium()
    browser.open(f"{service.url}/ui?service=payments&canary=v2&baseline=v1")
    found = dots(browser)
    assert len(found) > 40
    [npe] = [t for t, d in found.items() if d["state"] == "anomalous"]

    browser.press("Tab")  # from the top of the page
    assert browser.evaluate("document.activeElement.id") == "skip"
    browser.press("Enter")
    assert browser.evaluate("document.activeElement.dataset.templateId") == npe

    # from the last control before the map, at most 3 Tabs to the red dot (one stop for the whole map)
    browser.evaluate("document.querySelector('#pick button[type=submit]').focus()")
    tabs = 0
    while browser.evaluate("document.activeElement.dataset.templateId") != npe:
        browser.press("Tab")
        tabs += 1
        assert tabs <= 3, browser.evaluate("document.activeElement.outerHTML.slice(0, 200)")
    browser.press("Tab")  # and one more leaves the map: its other dots are not Tab stops
    assert browser.evaluate("document.activeElement.closest('#map') === null")

    # the arrow keys walk the dots in the map's order; Home comes back to the anomaly, Enter opens its cluster
    browser.evaluate(f"document.querySelector(\"#map g[data-template-id='{npe}']\").focus()")
    browser.press("ArrowRight")
    second = browser.evaluate("document.activeElement.dataset.templateId")
    assert second != npe and second in found
    assert browser.evaluate("document.activeElement.getAttribute('tabindex')") == "0"
    browser.press("Home")
    assert browser.evaluate("document.activeElement.dataset.templateId") == npe
    browser.press("Enter")
    row = row_of(found[npe]["cluster"])
    browser.wait_for(f"document.querySelector(\"{row} .expander\").getAttribute('aria-expanded') === 'true'")

    # judge it with the keyboard: Tab to the judgements (none chosen), an arrow picks one, Tab, type, Enter saves
    first_choice = f'document.activeElement.matches("{row} .judge-form input[value=not_a_risk]")'
    for _ in range(40):
        if browser.evaluate(first_choice):
            break
        browser.press("Tab")
    assert browser.evaluate(first_choice)
    assert browser.evaluate(f'document.querySelectorAll("{row} .judge-form input:checked").length') == 0
    browser.press("ArrowRight")  # the radio group's next judgement: ignore, now chosen
    assert browser.evaluate(f'document.querySelector("{row} .judge-form input:checked").value') == "ignore"
    browser.press("Tab")
    assert browser.evaluate("document.activeElement.name") == "author"
    browser.send("Input.insertText", text="bo")
    browser.press("Enter")
    browser.wait_for("document.activeElement.id === 'verdict' && document.body.dataset.loaded === 'true'")
    assert verdict_of(browser) == "pass"
    assert "The verdict changed from FAIL" in browser.evaluate("document.getElementById('announce').textContent")
    assert browser.errors() == []


def test_a_drop_is_judged_from_the_page(service_process: Launcher, chromium: OpenBrowser, tmp_path: Path) -> None:
    """Established events that stopped in the canary (a silent failure) are listed with their baseline lines; each
    is judged from its own form, and once all three are not a risk in this canary, the verdict passes."""
    service = service_process({})
    service.start()
    gone = ["Volume {n} attached to instance i-{n}", "iSCSI session opened for target {n}", "Privsep daemon ran {n}"]
    kept = ["Request served in {n} ms", "Cache refreshed with {n} entries", "Heartbeat sent to peer {n}"]
    flows = gone + kept
    baseline = [{**e, "message": flows[n % 6].format(n=n), "level": "INFO"} for n, e in enumerate(live("v1", 1200, 1))]
    canary = [{**e, "message": kept[n % 3].format(n=n), "level": "INFO"} for n, e in enumerate(live("v2", 600, 2))]
    ingest(service, baseline + canary)
    browser = chromium()
    browser.open(f"{service.url}/ui?service=payments&canary=v2&baseline=v1")
    assert verdict_of(browser) == "fail"
    items = browser.evaluate(
        "[...document.querySelectorAll('#drop-list li.tpl-anomalous')].map((li) => li.dataset.templateIds)"
    )
    assert len(items) == 3
    assert browser.evaluate("document.querySelector('#drop-list .examples pre').textContent").startswith(
        ("Volume", "iSCSI", "Privsep")
    )
    for index, template_ids in enumerate(items):
        item = f"#drop-list li[data-template-ids='{template_ids}']"
        assert browser.evaluate(f'[...document.querySelectorAll("{item} input[type=radio]")].map((r) => r.value)') == [
            "not_a_risk",
            "ignore",
        ]
        browser.click(f"{item} input[value=not_a_risk]")
        if index == 0:
            browser.type(f"{item} input[name=author]", "cy")
        browser.type(f"{item} input[name=reason]", "v2 no longer attaches volumes")
        browser.click(f"{item} .judge-submit")
        browser.wait_for(f"document.querySelectorAll('#drop-list li.tpl-judged').length === {index + 1}")
        browser.wait_for("document.body.dataset.loaded === 'true'")
    assert verdict_of(browser) == "pass"
    judged = browser.evaluate(
        "[...document.querySelectorAll('#drop-list li.tpl-judged')].map((li) => [li.querySelector('.tpl-head .tag')"
        ".textContent, li.querySelector('.standing').textContent])"
    )
    assert [tag for tag, _ in judged] == ["not a risk"] * 3
    assert all("by cy" in note and "v2 no longer attaches volumes" in note for _, note in judged)  # with its Undo
    rules = httpx.get(f"{service.url}/v1/feedback", params={"service": "payments"}).json()
    assert {(r["action"], r["deployment"], r["author"]) for r in rules} == {("not_a_risk", "v2", "cy")}
    assert {r["template_id"] for r in rules} == {i.split()[0] for i in items}
    shown = dots(browser)
    assert {shown[t.split()[0]]["state"] for t in items} == {"ignored"}
    assert browser.errors() == []
