"""The overview, the page's entry point, in a real headless Chromium driven by real clicks (tests/cdp.py): from
"more failures than usual" on a day to the NullPointerException of the failed release, in four clicks (day ->
release -> the failed service's published verdict -> its red dot, with the verbatim examples); the filters live in
the URL.

With ``LOGCANARY_SAVE_SCREENSHOTS=1`` it writes docs/overview.png and docs/release.png (README).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from logcanary.demo.traffic import events

from .conftest import Launcher, ServiceProcess
from .test_ui_review import RED, OpenBrowser, chromium, dots, ingest, row_of, save, verdict_of  # noqa: F401

RELEASE = "2026.12.07-1"


def live(service: str, deployment: str, n: int, seed: int, npe_rate: float = 0.0) -> list[dict[str, Any]]:
    start = datetime.now(UTC)
    return list(events(deployment, n, seed=seed, npe_rate=npe_rate, start=start, seconds=1, service=service))


def release_of(service: ServiceProcess, release: str, environment: str, traffic: dict[str, list[Any]]) -> None:
    """One analysis per service of ``traffic``, all in ``release``; returns once the release completed."""
    for name in traffic:
        body = {"service": name, "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}, "duration": "4s"}
        body |= {"environment": environment, "release": release}
        assert httpx.post(f"{service.url}/v1/analyses", json=body, timeout=30).status_code == 201
    ingest(service, [record for records in traffic.values() for record in records])
    deadline = time.monotonic() + 60
    while httpx.get(f"{service.url}/v1/releases/{release}", timeout=10).json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_from_the_overview_to_the_exception_in_four_clicks(
    service_process: Launcher,
    chromium: OpenBrowser,  # noqa: F811 (the fixture of test_ui_review)
    tmp_path: Path,
) -> None:
    service = service_process({})
    service.start()
    url = service.url
    ingest(service, live("payments", "v1", 300, 0) + live("orders", "v1", 300, 0))
    npe = live("payments", "v1", 1500, 1) + live("payments", "v2", 1500, 2, npe_rate=0.02)
    release_of(
        service,
        RELEASE,
        "qa",
        {"payments": npe, "orders": live("orders", "v1", 1500, 1) + live("orders", "v2", 1500, 2)},
    )
    release_of(
        service, "2026.12.07-2", "prod", {"orders": live("orders", "v1", 1500, 3) + live("orders", "v2", 1500, 4)}
    )
    today = datetime.now(UTC).date().isoformat()

    browser = chromium(1280, 1000)
    browser.open(f"{url}/ui")  # the entry point
    assert browser.evaluate("document.body.dataset.view") == "overview"
    assert browser.evaluate("document.querySelectorAll('#per-day a.day').length") == 30
    day = f"#per-day a.day[data-day='{today}']"
    label = browser.evaluate(f"document.querySelector(\"{day}\").getAttribute('aria-label')")
    assert label.startswith(f"{today}: 2 releases, 1 failed, 1 passed") and "more failures than usual" in label
    rates = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#environments tbody tr')].map((r) =>"
        " [r.dataset.key, r.lastElementChild.textContent]))"
    )
    assert rates == {"qa": "50%", "prod": "100%"}  # payments failed, orders passed; orders passed in prod
    shot = tmp_path / "overview.png"
    browser.screenshot(shot)
    save(shot, "overview.png")

    # 1: the day with more failures than usual: its releases, the day kept in the URL
    browser.click(f"{day} rect.day-hit")
    browser.wait_for(f"location.search.includes('day={today}') && document.body.dataset.loaded === 'true'")
    rows = browser.evaluate("[...document.querySelectorAll('#releases tbody tr')].map((r) => r.dataset.release)")
    assert sorted(rows) == [RELEASE, "2026.12.07-2"]

    # 2: the failed release: fail, by payments; orders passed
    browser.click(f"#releases tr[data-release='{RELEASE}'] a.release-link")
    browser.wait_for("location.search.includes('view=release') && document.body.dataset.loaded === 'true'")
    assert browser.evaluate("document.getElementById('release').dataset.verdict") == "fail"
    verdicts = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#release-services tbody tr')].map((r) =>"
        " [r.dataset.service, r.dataset.verdict]))"
    )
    assert verdicts == {"payments": "fail", "orders": "pass"}
    assert "NullPointerException" in browser.evaluate(
        "document.querySelector(\"#release-services tr[data-service='payments'] .top-example\").textContent"
    )
    shot = tmp_path / "release.png"
    browser.screenshot(shot, "#release-view")
    save(shot, "release.png")

    # 3: payments' analysis, as it published its verdict (what the deploy tool acted on)
    browser.click("#release-services tr[data-service='payments'] a.service-link")
    browser.wait_for("location.search.includes('analysis=') && document.body.dataset.loaded === 'true'")
    assert verdict_of(browser) == "fail"
    back = browser.evaluate("document.getElementById('release-link').getAttribute('href')")
    assert back == f"ui?view=release&release={RELEASE}"  # and back up to its release

    # 4: the red dot: its cluster open, the verbatim NullPointerException
    found = dots(browser)
    [red] = [template for template, dot in found.items() if dot["fill"] == RED]
    browser.click(f"#map g[data-template-id='{red}'] circle")
    row = row_of(found[red]["cluster"])
    browser.wait_for(f"document.querySelector(\"{row} .expander\").getAttribute('aria-expanded') === 'true'")
    example = browser.evaluate(f'document.querySelector("{row} pre.example").textContent')
    assert "java.lang.NullPointerException" in example and "EncryptionService.encrypt(" in example
    assert browser.errors() == []


def test_the_overviews_filters_live_in_the_url(service_process: Launcher, chromium: OpenBrowser) -> None:  # noqa: F811
    service = service_process({})
    service.start()
    ingest(service, live("orders", "v1", 300, 0))
    release_of(service, "r-prod", "prod", {"orders": live("orders", "v1", 1500, 3) + live("orders", "v2", 1500, 4)})
    browser = chromium()
    browser.open(f"{service.url}/ui?view=overview&environment=qa&days=7")
    assert browser.evaluate("document.getElementById('environment').value") == "qa"
    assert browser.evaluate("document.querySelectorAll('#per-day a.day').length") == 7
    assert browser.evaluate("document.querySelector('#releases tbody td.empty') !== null")  # nothing in qa
    browser.open(f"{service.url}/ui?view=overview&environment=prod&days=7")
    assert browser.evaluate("[...document.querySelectorAll('#releases tbody tr')].map((r) => r.dataset.release)") == [
        "r-prod"
    ]
    # a service's row narrows the overview to it, and the link says so
    browser.click("#services tbody tr[data-key='orders'] a")
    browser.wait_for("location.search.includes('service=orders') && document.body.dataset.loaded === 'true'")
    assert browser.evaluate("document.getElementById('service').value") == "orders"
    assert "environment=prod" in browser.evaluate("location.search") and "days=7" in browser.evaluate("location.search")
    # the verdict page's own links still open it, not the overview
    browser.send("Page.navigate", url=f"{service.url}/ui?view=verdict")
    browser.wait_for("document.body.dataset.view === 'verdict' && document.body.dataset.loaded === 'true'")
    assert "view=overview" not in browser.evaluate("location.search")
    assert browser.errors() == []


def test_a_services_history_names_each_analysis_release(service_process: Launcher, chromium: OpenBrowser) -> None:  # noqa: F811
    service = service_process({})
    service.start()
    ingest(service, live("orders", "v1", 300, 0))
    release_of(service, "r-qa-7", "qa", {"orders": live("orders", "v1", 1500, 3) + live("orders", "v2", 1500, 4)})
    browser = chromium()
    browser.open(f"{service.url}/ui?view=history&service=orders")
    cell = "document.querySelector('#analyses tbody tr .release-cell')"
    assert browser.evaluate(f"{cell}.textContent") == "r-qa-7 (qa)"
    browser.click("#analyses tbody tr .release-cell a")
    browser.wait_for("location.search.includes('view=release') && document.body.dataset.loaded === 'true'")
    assert browser.evaluate("document.getElementById('release').dataset.verdict") == "pass"
    assert browser.errors() == []
