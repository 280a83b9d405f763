"""The API docs at /docs work with no network: Swagger UI's files come from the package, never from a CDN.

The browser test runs a real headless Chromium against ``logcanary serve`` with every host but 127.0.0.1
unreachable, and first proves that the blocking flags do block a host that is really there. Set
``LOGCANARY_SAVE_SCREENSHOTS=1`` to also write the screenshot to ``docs/api-docs.png``.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from logcanary.api import docs
from logcanary.api.app import create_app
from logcanary.settings import Settings

from .conftest import ROOT, Launcher
from .test_ui import FLAGS, parse

# Every host name resolves to nothing but 127.0.0.1, and every connection that is not to 127.0.0.1 (IP
# literals and other loopback addresses included) goes to a proxy on the discard port, which refuses it.
OFFLINE = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>;127.0.0.1",
]
ATTRIBUTE_URL = re.compile(r"""(?:src|href)="([^"]*)\"""")


def urls_in(html: str) -> list[str]:
    return ATTRIBUTE_URL.findall(html)


def test_docs_page_and_assets_are_served_from_the_package(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(state_dir=tmp_path))) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "http:" not in page.text
        assert "https:" not in page.text
        assert "//" not in page.text.replace("<!--", "").replace("-->", "")  # no protocol-relative URL either
        assert "'/openapi.json'" in page.text
        assert '"validatorUrl": null' in page.text  # the badge would call an external validator

        referenced = urls_in(page.text)
        assert sorted(referenced) == [
            "/docs/static/favicon-32x32.png",
            "/docs/static/swagger-ui-bundle.js",
            "/docs/static/swagger-ui.css",
        ]
        kinds = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
        for url in referenced:
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["content-type"].startswith(kinds[Path(url).suffix]), url
            assert asset.headers["x-content-type-options"] == "nosniff"
            assert asset.content == (docs.ASSETS_DIR / Path(url).name).read_bytes()
        assert client.get("/docs/static/LICENSE").text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
        assert client.get("/docs/static/NOTICE").headers["content-type"].startswith("text/plain")

        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "connect-src 'self'" in policy
        [inline] = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
        assert f"script-src 'self' 'sha256-{digest}';" in policy  # that one inline script, no 'unsafe-inline'
        assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        assert "script-src 'self';" in client.get("/ui").headers["content-security-policy"]  # /ui's kept

        for missing in ("index.html", "..%2Fdocs.py", "swagger-ui-bundle.js.map", "VERSION", "nope.js"):
            assert client.get(f"/docs/static/{missing}").status_code == 404, missing
        assert client.get("/redoc").status_code == 404  # disabled: see service/logcanary/api/docs.py
        assert client.get("/docs/oauth2-redirect").status_code == 404  # bearer only, no OAuth2 flow
        assert client.get("/", follow_redirects=False).headers["location"] == "/docs"
        assert not [path for path in client.get("/openapi.json").json()["paths"] if path.startswith("/docs")]


def test_docs_behind_a_path_prefix(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(state_dir=tmp_path)), root_path="/canary") as client:
        page = client.get("/docs")
        assert "'/canary/openapi.json'" in page.text
        assert all(url.startswith("/canary/docs/static/") for url in urls_in(page.text))


def test_vendored_swagger_ui_is_complete_and_packaged() -> None:
    names = sorted(p.name for p in docs.ASSETS_DIR.iterdir())
    assert names == sorted([*docs.ASSETS, "VERSION"])
    bundle = (docs.ASSETS_DIR / "swagger-ui-bundle.js").read_text()
    assert docs.SWAGGER_UI_VERSION in bundle
    assert f"swagger-ui-dist {docs.SWAGGER_UI_VERSION}" in (docs.ASSETS_DIR / "VERSION").read_text()
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["logcanary"]
    package = ROOT / "service" / "logcanary"
    for name in names:
        relative = (docs.ASSETS_DIR / name).relative_to(package).as_posix()
        assert any(fnmatch(relative, p) and "/" not in relative[len(p.rsplit("/", 1)[0]) + 1 :] for p in patterns), (
            f"{relative} is not package data: it would be missing from the wheel and the image"
        )


@pytest.fixture
def chromium() -> Iterator[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium not installed: run make browser")
    yield binary


def run_chromium(binary: str, profile: Path, url: str, *extra: str) -> str:
    result = subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *OFFLINE, *extra, url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture
def reachable_elsewhere(tmp_path: Path) -> Iterator[str]:
    """A page on 127.0.0.2 (another address of this machine): reachable, but not by the offline browser."""
    root = tmp_path / "elsewhere"
    root.mkdir()
    (root / "index.html").write_text("<p>reached-elsewhere</p>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.2:{server.server_address[1]}/"
    assert "reached-elsewhere" in httpx.get(url, timeout=5).text
    yield url
    server.shutdown()
    server.server_close()


def test_docs_render_with_the_network_blocked(
    service_process: Launcher, chromium: str, reachable_elsewhere: str, tmp_path: Path
) -> None:
    assert "reached-elsewhere" not in run_chromium(chromium, tmp_path / "control", reachable_elsewhere, "--dump-dom")

    service = service_process({"LOGCANARY_API_TOKEN": "docs-test-token"})
    service.start()
    spec = httpx.get(f"{service.url}/openapi.json", timeout=10).json()
    schemes = spec["components"]["securitySchemes"].values()
    assert [s for s in schemes if (s["type"], s["scheme"]) == ("http", "bearer")]  # HTTPBearer
    secured = sorted(
        f"{method} {path}" for path, item in spec["paths"].items() for method, op in item.items() if op.get("security")
    )
    assert "post /v1/feedback" in secured

    doc = parse(run_chromium(chromium, tmp_path / "docs", f"{service.url}/docs", "--dump-dom"))
    rendered = {n.attrs["aria-label"].replace("\u200b", "") for n in doc.find_all("button", "opblock-control-arrow")}
    assert "get /v1/verdict" in rendered
    assert rendered == {f"{m} {p}" for p, item in spec["paths"].items() for m in item}  # every operation
    assert [n.text().strip() for n in doc.find_all("button", "authorize")] == ["Authorize"]
    locks = doc.find_all("button", "authorization__btn")
    assert len(locks) == len(secured)  # one lock per operation that takes the bearer token
    assert doc.find_all("h1", "title")[0].text().startswith("logcanary")

    screenshot = tmp_path / "api-docs.png"
    run_chromium(
        chromium, tmp_path / "shot", f"{service.url}/docs", f"--screenshot={screenshot}", "--window-size=1280,1400"
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 40_000  # a rendered page, not a blank one
    if os.environ.get("LOGCANARY_SAVE_SCREENSHOTS") == "1":
        shutil.copyfile(screenshot, ROOT / "docs" / "api-docs.png")
