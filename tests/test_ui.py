"""The web page at /ui, run by a real headless Chromium against the service as a process.

Chromium's ``--dump-dom`` runs the page's script and prints the resulting DOM; the tests parse it
with the standard library. Without ``chromium`` on the PATH (``make browser`` installs it) they skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from logcanary.api.app import create_app
from logcanary.demo.traffic import events
from logcanary.settings import Settings

from .cdp import HEADLESS
from .conftest import ROOT, Launcher, ServiceProcess

FLAGS = [*HEADLESS, "--virtual-time-budget=8000"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    """An element of the dumped DOM."""

    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        return [n for n in self.iter() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)]

    def by_id(self, element_id: str) -> Node:
        [node] = [n for n in self.iter() if n.attrs.get("id") == element_id]
        return node


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


Browser = Callable[..., str]


@pytest.fixture
def browser(tmp_path: Path) -> Browser:
    """Runs headless Chromium on a URL with extra flags (a fresh profile each time); returns its stdout."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium not installed: run make browser")
    runs = count()

    def run(url: str, *extra: str) -> str:
        profile = tmp_path / f"chromium-{next(runs)}"
        result = subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *extra, url],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    return run


def test_page_and_its_files_are_served_outside_the_api_schema(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(state_dir=tmp_path))) as client:
        page = client.get("/ui?view=verdict")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert 'src="ui/static/ui.js"' in page.text
        for entry in ("/ui", "/ui?view=overview&environment=qa", "/ui?view=release&release=r1"):  # the overview
            overview = client.get(entry)
            assert 'src="ui/static/overview.js"' in overview.text, entry
            assert overview.headers["content-security-policy"] == page.headers["content-security-policy"]
        for verdict in ("/ui?service=payments", "/ui?analysis=abc", "/ui?view=history&service=payments"):
            assert 'src="ui/static/ui.js"' in client.get(verdict).text, verdict
        assert client.get("/ui/static/overview.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/ui/static/ui.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/ui/static/ui.css").headers["content-type"].startswith("text/css")
        for missing in ("index.html", "..%2Fui.py", "nope.js"):
            assert client.get(f"/ui/static/{missing}").status_code == 404
        spec = client.get("/openapi.json").json()
        assert not [path for path in spec["paths"] if path.startswith("/ui")]
        assert "(/ui)" in spec["info"]["description"]


def start_with(service_process: Launcher, records: list[dict[str, Any]]) -> ServiceProcess:
    service = service_process({})
    service.start()
    assert httpx.post(f"{service.url}/v1/events", json=records, timeout=30).status_code == 202
    return service


def live(deployment: str, n: int, seed: int, npe_rate: float = 0.0) -> list[dict[str, Any]]:
    return list(events(deployment, n, seed=seed, npe_rate=npe_rate, start=datetime.now(UTC), seconds=1))


def selected(doc: Node, select_id: str) -> str:
    [option] = [o for o in doc.by_id(select_id).find_all("option") if "selected" in o.attrs]
    return option.attrs["value"]


def test_page_shows_the_verdict_and_the_clusters(service_process: Launcher, browser: Browser, tmp_path: Path) -> None:
    service = start_with(service_process, live("v1", 1500, 1) + live("v2", 1500, 2, npe_rate=0.02))
    clusters = httpx.get(f"{service.url}/v1/services/payments/clusters", params={"deployment": "v2"}).json()
    page = f"{service.url}/ui?service=payments&canary=v2&baseline=v1"

    doc = parse(browser(page, "--dump-dom"))
    assert doc.find_all("body")[0].attrs["data-loaded"] == "true"
    banner = doc.by_id("verdict")
    assert banner.attrs["data-verdict"] == "fail"
    assert "FAIL" in banner.text()
    assert "never-seen" in banner.text()
    rows = doc.find_all("tbody", "cluster")
    assert len(rows) == len(clusters)
    red = [r for r in rows if "cluster-anomalous" in r.classes]
    grey = [r for r in rows if "cluster-known" in r.classes]
    assert len(red) == 1
    assert rows[0] is red[0]  # anomalous first
    assert len(grey) == len(clusters) - 1
    assert "NullPointerException" in red[0].text()
    assert "unknown" in red[0].text()
    assert "score" in red[0].text()
    assert red[0].find_all("button", "judge")
    assert all("known" in r.text() and not r.find_all("button", "judge") for r in grey)
    red_id = red[0].attrs["data-cluster-id"]
    [npe] = [c for c in clusters if c["cluster_id"] == red_id]
    expected = [x for t in npe["templates"] for x in t["examples"]]
    assert not doc.find_all("pre", "example")  # examples appear only once expanded
    assert expected[0] not in doc.text()
    assert red[0].find_all("button", "expander")[0].attrs["aria-expanded"] == "false"

    expanded = parse(browser(f"{page}&expand={red_id}", "--dump-dom"))
    [red_row] = expanded.find_all("tbody", "cluster-anomalous")
    assert red_row.find_all("button", "expander")[0].attrs["aria-expanded"] == "true"
    assert "hidden" not in red_row.find_all("tr", "detail")[0].attrs
    shown = [pre.text() for pre in red_row.find_all("pre", "example")]
    assert shown == expected  # verbatim, multi-line stack traces included
    assert "\n\tat com.acme.payments.crypto.EncryptionService.encrypt(" in shown[0]

    defaults = parse(browser(f"{service.url}/ui?view=verdict", "--dump-dom"))  # bare /ui: the overview
    assert (selected(defaults, "service"), selected(defaults, "canary"), selected(defaults, "baseline")) == (
        "payments",
        "v2",
        "v1",
    )

    screenshot = tmp_path / "ui.png"
    browser(f"{page}&expand={red_id}", f"--screenshot={screenshot}", "--window-size=1280,900")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one


HOSTILE = [
    "<script>document.documentElement.setAttribute('data-pwned', 'script')</script> in request {n}",
    "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned', 'img')\"> for user {n}",
]


def test_log_text_is_shown_as_text_never_as_html(service_process: Launcher, browser: Browser) -> None:
    hostile = [
        {**live("v2", 1, 3)[0], "message": message.format(n=n), "level": "error", "host": '<b id="host">pod-1</b>'}
        for n in range(20)
        for message in HOSTILE
    ]
    service = start_with(service_process, live("v1", 300, 1) + live("v2", 300, 2) + hostile)
    clusters = httpx.get(f"{service.url}/v1/services/payments/clusters", params={"deployment": "v2"}).json()
    ids = [c["cluster_id"] for c in clusters if "<" in c["templates"][0]["template"]]
    assert ids
    query = "".join(f"&expand={i}" for i in ids)

    raw = browser(f"{service.url}/ui?service=payments&canary=v2&baseline=v1{query}", "--dump-dom")
    doc = parse(raw)
    assert doc.find_all("body")[0].attrs["data-loaded"] == "true"
    assert not doc.find_all("img")
    assert not [n for n in doc.find_all("b") if n.attrs.get("id") == "host"]
    assert all(s.attrs.get("src") for s in doc.find_all("script"))  # only the page's own script
    assert "data-pwned" not in doc.find_all("html")[0].attrs
    examples = [pre.text() for pre in doc.find_all("pre", "example")]
    stored = [x for c in clusters if c["cluster_id"] in ids for t in c["templates"] for x in t["examples"]]
    assert sorted(examples) == sorted(stored)
    assert {message.format(n=0) for message in HOSTILE} <= set(examples)
    assert '&lt;b id="host"&gt;pod-1&lt;/b&gt;' in raw
    assert "&lt;script&gt;document.documentElement" in raw


def test_events_that_stopped_are_shown_with_baseline_examples(service_process: Launcher, browser: Browser) -> None:
    now = datetime.now(UTC).isoformat()

    def flows(deployment: str, kinds: str) -> list[dict[str, Any]]:
        return [
            {"timestamp": now, "service": "volumes", "deployment": deployment, "host": "pod-1",
             "message": f"flow{kind} step completed for item {n}"}
            for n in range(100)
            for kind in kinds
        ]  # fmt: skip

    service = start_with(service_process, flows("v1", "abcdefgh") + flows("v2", "abcd"))
    doc = parse(browser(f"{service.url}/ui?service=volumes&canary=v2&baseline=v1", "--dump-dom"))
    assert doc.by_id("verdict").attrs["data-verdict"] == "fail"
    section = doc.by_id("drops")
    assert "hidden" not in section.attrs
    items = section.find_all("li", "tpl-anomalous")
    assert len(items) == 4
    assert {"flowe", "flowf", "flowg", "flowh"} == {i.find_all("pre", "template")[0].text().split()[0] for i in items}
    assert all(i.find_all("pre", "example") for i in items)  # verbatim baseline lines


APP_FRAMES = [
    "\tat com.acme.orders.crypto.KeyStore.current(KeyStore.java:31)",
    "\tat com.acme.orders.OrderService.sign(OrderService.java:88)",
    "\tat com.acme.orders.api.OrderController.create(OrderController.java:57)",
]
FRAMEWORK_FRAMES = [
    "\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)",
    *[f"\tat org.springframework.web.filter.Chain{n}.doFilter(Chain{n}.java:{n + 10})" for n in range(40)],
    "\tat java.base/java.lang.Thread.run(Thread.java:1583)",
]
FRAMEWORK_FRAMES[20] = "\tat com.acme.orders.web.AuthFilter.doFilter(AuthFilter.java:12)"  # deep in the chain: folded


def npe(request: int) -> str:
    return "\n".join(
        [
            f"Failed to create order {request}",
            'java.lang.NullPointerException: Cannot invoke "Key.getEncoded()" because "key" is null',
            *APP_FRAMES,
            *FRAMEWORK_FRAMES,
        ]
    )


def test_many_hosts_and_long_traces_stay_readable(service_process: Launcher, browser: Browser, tmp_path: Path) -> None:
    now = datetime.now(UTC).isoformat()
    hosts = [f"orders-7c9d5-{n:02d}" for n in range(64)]

    def records(deployment: str, with_npe: bool) -> list[dict[str, Any]]:
        ok = [
            {"timestamp": now, "service": "orders", "deployment": deployment, "host": "pod-1",
             "message": f"order {n} created"}
            for n in range(300)
        ]  # fmt: skip
        failing = [
            {"timestamp": now, "service": "orders", "deployment": deployment, "host": host, "level": "error",
             "message": npe(n)}
            for n, host in enumerate(hosts)
        ]  # fmt: skip
        return ok + (failing if with_npe else [])

    service = start_with(service_process, records("v1", False) + records("v2", True))
    clusters = httpx.get(f"{service.url}/v1/services/orders/clusters", params={"deployment": "v2"}).json()
    [cluster] = [c for c in clusters if "NullPointerException" in c["templates"][0]["template"]]
    [template] = cluster["templates"]
    assert sorted(template["hosts"]) == hosts
    page = f"{service.url}/ui?service=orders&canary=v2&baseline=v1&expand={cluster['cluster_id']}"

    doc = parse(browser(page, "--dump-dom"))
    assert doc.find_all("body")[0].attrs["data-loaded"] == "true"
    [row] = [r for r in doc.find_all("tbody", "cluster") if r.attrs["data-cluster-id"] == cluster["cluster_id"]]
    [tpl] = row.find_all("li", "tpl")

    # 64 hosts: a count with a toggle in the head; the hidden list holds every one of them
    head = tpl.find_all("p", "tpl-head")[0]
    assert hosts[0] not in head.text()
    [toggle] = head.find_all("button", "hosts-toggle")
    assert toggle.text() == "64 hosts"
    assert toggle.attrs["aria-expanded"] == "false"
    listed = tpl.by_id(toggle.attrs["aria-controls"])
    assert listed.tag == "ul" and "hidden" in listed.attrs
    assert sorted(li.text() for li in listed.find_all("li")) == hosts

    # a long NPE trace: headline, exception and application frames shown; the framework frames folded
    stored = template["examples"]
    assert stored and all("…[truncated" not in x for x in stored)
    pres = tpl.find_all("pre", "example")
    assert [pre.text() for pre in pres] == stored  # the whole text, exactly, in the <pre>
    for pre in pres:
        assert "example-folded" in pre.classes
        shown, [rest] = pre.children[0], pre.find_all("span", "fold-rest")
        assert isinstance(shown, str)
        assert "hidden" in rest.attrs
        assert shown.split("\n")[1].startswith("java.lang.NullPointerException: ")
        assert shown.endswith("\n".join(APP_FRAMES))
        assert "org.springframework" not in shown
        assert rest.text() == "\n" + "\n".join(FRAMEWORK_FRAMES)
        [fold] = [b for b in tpl.find_all("button", "fold-toggle") if b.attrs["aria-controls"] == pre.attrs["id"]]
        assert fold.attrs["aria-expanded"] == "false"
        assert fold.text() == f"{len(FRAMEWORK_FRAMES)} more lines"

    # short examples are left alone
    short = [r for r in doc.find_all("tbody", "cluster") if r is not row]
    assert all(not r.find_all("span", "fold-rest") for r in short)

    screenshot = tmp_path / "ui-evidence.png"
    browser(page, f"--screenshot={screenshot}", "--window-size=1280,1100")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("LOGCANARY_SAVE_SCREENSHOTS") == "1":
        shutil.copyfile(screenshot, ROOT / "docs" / "ui-evidence.png")
