"""Behind a reverse proxy at a path prefix (https://tools.example.com/logcanary/): a real nginx (Debian's, `make
nginx`) in front of real services, and a real Chromium clicking through the page and /docs.

Two ways a proxy serves a prefix: it strips it and says which in X-Forwarded-Prefix (`/logcanary/`), or passes the
full path on and the service is told its prefix (`LOGCANARY_ROOT_PATH=/full`, `/full/`).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from logcanary.common.paths import clean_prefix
from logcanary.demo.embedded_broker import free_port
from tests.ci import unavailable
from tests.conftest import Launcher
from tests.test_ui_review import OpenBrowser, chromium, dots, live  # noqa: F401 (chromium: a fixture)

CONFIG = """
daemon off;
master_process off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    client_max_body_size 32m;
    server {{
        listen 127.0.0.1:{port};
        location /logcanary/ {{
            proxy_pass http://127.0.0.1:{stripped}/;
            proxy_set_header X-Forwarded-Prefix /logcanary;
        }}
        location /full/ {{
            proxy_pass http://127.0.0.1:{full};
        }}
    }}
}}
"""


@dataclass
class Proxy:
    url: str


def _nginx_binary() -> str:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        unavailable("nginx", "not installed: run make nginx (Debian's nginx-light)")
    return binary


@pytest.fixture
def proxied(service_process: Launcher, tmp_path: Path) -> Iterator[tuple[Proxy, str, str]]:
    """nginx on a free port: /logcanary/ strips its prefix to one service, /full/ passes the full path to another
    that is told its prefix. Yields the proxy and the two services' direct URLs."""
    binary = _nginx_binary()
    stripped = service_process({})
    full = service_process({"LOGCANARY_ROOT_PATH": "/full", "LOGCANARY_STATE_DIR": str(tmp_path / "full")})
    stripped.start()
    full.start()
    root = tmp_path / "nginx"
    root.mkdir()
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(CONFIG.format(root=root, port=port, stripped=stripped.port, full=full.port))
    process = subprocess.Popen([binary, "-c", str(conf), "-p", str(root)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/logcanary/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"nginx did not serve: {err.decode()[-2000:]}")
        time.sleep(0.1)
    try:
        yield Proxy(f"http://127.0.0.1:{port}"), stripped.url, full.url
    finally:
        process.terminate()
        process.wait(10)


def test_prefixes_are_plain_paths_or_refused() -> None:
    assert clean_prefix("/logcanary/") == "/logcanary"
    assert clean_prefix("") == clean_prefix("/") == ""
    assert clean_prefix("/a/b, /c") == "/a/b"  # a chain of proxies: the outermost's
    for hostile in ("//evil.example", "https://evil.example", "/a/../b", "/%2e%2e", "/a?b", "logcanary", "/a b"):
        assert clean_prefix(hostile) is None, hostile


def test_every_url_the_service_builds_carries_the_prefix(proxied: tuple[Proxy, str, str]) -> None:
    proxy, direct, _ = proxied
    for prefix in ("/logcanary", "/full"):
        with httpx.Client(base_url=proxy.url, timeout=10) as client:
            assert client.get(f"{prefix}/", follow_redirects=False).headers["location"] == f"{prefix}/docs"
            assert client.get(f"{prefix}/openapi.json").json()["servers"] == [{"url": prefix}]
            page = client.get(f"{prefix}/docs").text
            assert f"'{prefix}/openapi.json'" in page and f"{prefix}/docs/static/swagger-ui-bundle.js" in page
            assert client.get(f"{prefix}/docs/static/swagger-ui.css").status_code == 200
            assert client.get(f"{prefix}/v1/services").status_code == 200
            assert client.get(f"{prefix}/ui").status_code == 200
    # Straight to the service (a probe, a port-forward): no prefix, nothing changes
    assert "servers" not in httpx.get(f"{direct}/openapi.json", timeout=10).json()
    assert httpx.get(f"{direct}/", follow_redirects=False).headers["location"] == "/docs"
    # A prefix header that is no plain path is ignored, never echoed into a URL
    hostile = httpx.get(f"{direct}/", headers={"X-Forwarded-Prefix": "//evil.example"}, follow_redirects=False)
    assert hostile.headers["location"] == "/docs"


def test_the_page_and_the_docs_work_by_clicks_behind_the_prefix(
    proxied: tuple[Proxy, str, str],
    chromium: OpenBrowser,  # noqa: F811
) -> None:
    proxy, _, _ = proxied
    base = f"{proxy.url}/logcanary"
    records = live("v1", 600, 1) + live("v2", 600, 2, npe_rate=0.02)  # sent through the proxy, as a shipper would
    assert httpx.post(f"{base}/v1/events", json=records, timeout=30).status_code == 202

    browser = chromium()
    browser.open(f"{base}/ui?service=payments&canary=v2&baseline=v1")
    assert browser.evaluate("document.getElementById('verdict').dataset.verdict") == "fail"
    found = dots(browser)
    npe = next(t for t, d in found.items() if "NullPointerException" in d["title"])
    browser.click(f"#map g[data-template-id='{npe}'] circle")  # the page's reads go through the prefix
    browser.wait_for("[...document.querySelectorAll('pre.example')].some(p => p.textContent.includes('NullPointer'))")

    browser.click("#nav-history")
    browser.wait_for("location.pathname === '/logcanary/ui' && location.search.includes('view=history')")
    browser.wait_for("document.body.dataset.loaded === 'true'")

    browser.click("nav a[href='docs']")
    browser.wait_for("location.pathname === '/logcanary/docs'")
    browser.wait_for("document.querySelectorAll('.opblock').length > 5", timeout=30)
    summary = "[data-path='/v1/services'] "
    browser.evaluate(  # the GET /v1/services operation, opened
        f"document.querySelector(\"{summary}\").closest('.opblock-summary').scrollIntoView({{block: 'center'}})"
    )
    browser.click(f".opblock-get .opblock-summary-path{summary}".strip())
    browser.wait_for("!!document.querySelector('.opblock.is-open .try-out__btn')")
    browser.click(".opblock.is-open .try-out__btn")
    browser.wait_for("!!document.querySelector('.opblock.is-open .execute')")
    browser.click(".opblock.is-open .execute")
    status = browser.wait_for(
        "(document.querySelector('.opblock.is-open .live-responses-table tbody .response-col_status') || {})"
        ".textContent",
        timeout=30,
    )
    assert status.strip().startswith("200"), status
    request_url = browser.evaluate("document.querySelector('.opblock.is-open .request-url pre').textContent")
    assert request_url.strip() == f"{base}/v1/services", request_url
    assert not browser.errors(), browser.errors()
