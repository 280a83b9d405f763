"""A real Grafana Loki for the source tests and the benchmark, and a way to write lines into it.

``../shared/logstores/loki/start.sh`` (beside the repository; ``LOGCANARY_LOKI_START`` names another
start.sh or its folder) starts a single-binary Loki on 127.0.0.1 with its data in a temporary folder. When
it is missing or Loki does not start, the tests skip and say why; with ``CI=true`` they fail instead,
because CI must test against a real Loki.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NoReturn, cast

import httpx
import orjson
import pytest

from tests import ci

ROOT = Path(__file__).resolve().parent.parent
PUSH_BYTES = 1_000_000  # per push request: well under Loki's 4 MiB gRPC message limit

# (timestamp ns, line) or (timestamp ns, line, structured metadata)
Entry = tuple[int, str] | tuple[int, str, Mapping[str, str]]


def unavailable(reason: str) -> NoReturn:
    ci.unavailable("Loki", reason)


def start_script() -> Path:
    configured = os.environ.get("LOGCANARY_LOKI_START")
    path = Path(configured) if configured else ROOT.parent / "shared" / "logstores" / "loki"
    return path / "start.sh" if path.is_dir() else path


class Loki:
    """One Loki process started by start.sh; :meth:`stop` and :meth:`start` keep its data folder and ports."""

    def __init__(self, script: Path, data: Path) -> None:
        self.script = script
        self.data = data
        self.url = ""
        self.pid = 0
        self.ports: list[str] = []

    def start(self, timeout: float = 90.0) -> None:
        done = subprocess.run(
            ["bash", str(self.script), str(self.data), *self.ports],
            cwd=self.data,  # Loki writes flushed chunks and index files relative to its working directory
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        found = dict(re.findall(r"^(LOKI_URL|LOKI_PID)=(\S+)$", done.stdout, re.MULTILINE))
        if done.returncode != 0 or len(found) != 2:
            raise RuntimeError(f"start.sh failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        self.url, self.pid = found["LOKI_URL"], int(found["LOKI_PID"])
        if not self.ports:  # the same ports on a restart: a source keeps its URL
            config = (self.data / "loki.yaml").read_text()
            self.ports = [re.findall(rf"{key}: (\d+)", config)[0] for key in ("http_listen_port", "grpc_listen_port")]

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Stops the process this object started (SIGKILL: no shutdown, as a crash); waits until it is gone."""
        if not self.pid:
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            self.pid = 0
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, signal.SIGKILL)
        self.pid = 0

    def push(self, streams: Iterable[tuple[Mapping[str, str], Sequence[Entry]]], tenant: str | None = None) -> int:
        """Writes the lines (``POST /loki/api/v1/push``, JSON), waiting out Loki's rate limit; returns how many."""
        return push(self.url, streams, tenant)


def push(url: str, streams: Iterable[tuple[Mapping[str, str], Sequence[Entry]]], tenant: str | None = None) -> int:
    headers = {"Content-Type": "application/json", **({"X-Scope-OrgID": tenant} if tenant else {})}
    total = 0
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        batch: list[dict[str, object]] = []
        size = 0
        for labels, entries in streams:
            values: list[list[object]] = []
            for entry in entries:
                values.append([str(entry[0]), *entry[1:]])
                size += len(entry[1]) + 40
                if size >= PUSH_BYTES:
                    batch.append({"stream": dict(labels), "values": values})
                    total += _send(client, batch)
                    batch, values, size = [], [], 0
            if values:
                batch.append({"stream": dict(labels), "values": values})
        if batch:
            total += _send(client, batch)
    return total


def _send(client: httpx.Client, streams: list[dict[str, object]]) -> int:
    body = orjson.dumps({"streams": streams})
    lines = sum(len(cast(list[object], stream["values"])) for stream in streams)
    for attempt in range(200):
        response = client.post("/loki/api/v1/push", content=body)
        if response.status_code == 204:
            return lines
        if response.status_code not in (429, 500, 503):
            raise RuntimeError(f"push refused ({response.status_code}): {response.text[:500]}")
        time.sleep(min(2.0, 0.05 * 2**attempt))  # the ingestion rate limit (4 MB/s here) refills
    raise RuntimeError("push kept being refused")


@pytest.fixture(scope="session")
def loki() -> Iterator[Loki]:
    """A real Loki for this test session (each xdist worker its own), stopped and deleted after."""
    script = start_script()
    if not script.is_file():
        unavailable(f"{script} not found (the shared logstores folder sits beside the repository)")
    for tool in ("bash", "xz", "curl", "sha256sum"):
        if shutil.which(tool) is None:
            unavailable(f"start.sh needs {tool}")
    data = Path(tempfile.mkdtemp(prefix="logcanary-loki-"))
    server = Loki(script, data)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(data, ignore_errors=True)
        unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


class RecordingProxy:
    """A pass-through HTTP proxy in front of the real Loki, for what a stock Loki cannot show: the headers a
    client sends (this Loki runs without auth) and answers a busy Loki gives (429/503, injected on demand).
    Every other answer is the real Loki's. Runs in a thread on 127.0.0.1."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: list[tuple[float, str, dict[str, str]]] = []  # (monotonic time, path, headers)
        self.faults: list[tuple[int, dict[str, str]]] = []  # answered in order, one per request, before forwarding
        self.always: tuple[int, dict[str, str]] | None = None  # answered to every request while set
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy.requests.append((time.monotonic(), self.path, {k.lower(): v for k, v in self.headers.items()}))
                fault = proxy.always or (proxy.faults.pop(0) if proxy.faults else None)
                if fault is not None:
                    status, headers = fault
                    self._answer(status, headers, b"injected by the test proxy")
                    return
                forwarded = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization")}
                upstream = httpx.get(proxy.upstream + self.path, headers=forwarded, timeout=60)
                kept = {"Content-Type": upstream.headers.get("Content-Type", "application/json")}
                self._answer(upstream.status_code, kept, upstream.content)

            def _answer(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
