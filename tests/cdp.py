"""A small driver of headless Chromium through the DevTools protocol, for browser tests that click and type.

``chromium --dump-dom`` (tests/test_ui.py) renders a page once; a reviewer's path (find a dot, open it, judge it,
undo it) needs real input events. This starts Chromium with ``--remote-debugging-port=0`` on a fresh profile,
connects to its page over the DevTools WebSocket (``websockets``, which uvicorn[standard] installs) and sends
real mouse and keyboard events (``Input.dispatch*``), so what is clicked is what a person would hit.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

HEADLESS = [  # also the flags of tests/test_ui.py's and tests/test_docs.py's one-shot page dumps
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
FLAGS = [*HEADLESS, "--remote-debugging-port=0", "--remote-allow-origins=*"]


class BrowserError(AssertionError):
    """The page threw, or a condition never held."""


class Chromium:
    """One headless Chromium with one page."""

    def __init__(self, binary: str, profile: Path, width: int = 1280, height: int = 900) -> None:
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise BrowserError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split("\n")[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        [page] = [t for t in targets if t["type"] == "page"]
        # Entered here, closed by close(): the connection lives as long as this object.
        self.ws: ClientConnection = connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024).__enter__()
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    # -- protocol --------------------------------------------------------------------------------

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Sends a command and returns its result (events that arrive meanwhile are kept in ``events``)."""
        message_id = next(self._ids)
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == message_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited); a thrown error fails the test."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Waits until the expression is truthy; returns its value. It may throw meanwhile (a page being replaced
        has no body yet): the last error is reported if it never holds."""
        deadline = time.monotonic() + timeout
        while True:
            error: BrowserError | None = None
            try:
                value = self.evaluate(expression)
            except BrowserError as exc:
                value, error = None, exc
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"still false after {timeout}s: {expression}") from error
            time.sleep(0.05)

    def errors(self) -> list[str]:
        """Exceptions thrown in the page and console errors so far."""
        out = []
        for event in self.events:
            if event.get("method") == "Runtime.exceptionThrown":
                out.append(json.dumps(event["params"]["exceptionDetails"])[:500])
            if event.get("method") == "Runtime.consoleAPICalled" and event["params"]["type"] == "error":
                out.append(json.dumps(event["params"]["args"])[:500])
        return out

    # -- a person's actions ------------------------------------------------------------------------

    def open(self, url: str, ready: str = "document.body && document.body.dataset.loaded === 'true'") -> None:
        """Navigates and waits until the page says it has loaded."""
        self.send("Page.navigate", url=url)
        self.wait_for(f"document.readyState === 'complete' && location.href.startsWith({json.dumps(url[:40])})")
        self.wait_for(ready)

    def center(self, selector: str) -> tuple[float, float]:
        """The middle of the element's box in the viewport, scrolled into view first."""
        box = self.evaluate(
            f"""(() => {{
                const node = document.querySelector({json.dumps(selector)});
                if (!node) return null;
                node.scrollIntoView({{block: "center", inline: "center"}});
                const r = node.getBoundingClientRect();
                return [r.left + r.width / 2, r.top + r.height / 2, r.width, r.height];
            }})()"""
        )
        if not box or box[2] <= 0 or box[3] <= 0:
            raise BrowserError(f"nothing visible to click at {selector}")
        return float(box[0]), float(box[1])

    def click(self, selector: str) -> None:
        """A real left click (mouse moved, pressed, released) in the middle of the element."""
        x, y = self.center(selector)
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def hover(self, selector: str) -> None:
        x, y = self.center(selector)
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)

    def type(self, selector: str, text: str) -> None:
        """Clicks into a field and types the text."""
        self.click(selector)
        self.send("Input.insertText", text=text)

    def press(self, key: str) -> None:
        """Presses and releases a key on the focused element ('Enter', 'Tab', ' ', the arrows, 'Home', 'End')."""
        codes = {"Enter": 13, "Tab": 9, " ": 32, "End": 35, "Home": 36}
        codes.update({"ArrowLeft": 37, "ArrowUp": 38, "ArrowRight": 39, "ArrowDown": 40})
        code = codes[key]
        text = {"Enter": "\r", " ": " "}.get(key)
        down: dict[str, Any] = {"type": "keyDown", "key": key, "code": "Space" if key == " " else key}
        down["windowsVirtualKeyCode"] = code
        if text:
            down["text"] = text
        self.send("Input.dispatchKeyEvent", **down)
        self.send("Input.dispatchKeyEvent", type="keyUp", key=key, windowsVirtualKeyCode=code)

    def screenshot(self, path: Path, selector: str | None = None, padding: int = 8) -> None:
        """A PNG of the viewport, or of the element (with some padding) over the whole page."""
        params: dict[str, Any] = {"format": "png"}
        if selector is not None:
            box = self.evaluate(
                f"""(() => {{
                    const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();
                    return [r.left + scrollX, r.top + scrollY, r.width, r.height];
                }})()"""
            )
            x, y, width, height = (float(v) for v in box)
            params["clip"] = {
                "x": max(0.0, x - padding),
                "y": max(0.0, y - padding),
                "width": width + 2 * padding,
                "height": height + 2 * padding,
                "scale": 1,
            }
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
