"""Shared fixtures: a real Tansu broker, and the service running as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from logcanary.demo.embedded_broker import EmbeddedBroker, free_port
from tests.loki_helpers import loki  # noqa: F401 (the real Loki fixture, for every test that asks for it)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kafka() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
        yield broker


class ServiceProcess:
    """`logcanary serve` in a subprocess, configured through LOGCANARY_* variables."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "LOGCANARY_PORT": str(self.port), "LOGCANARY_HOST": "127.0.0.1"}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0, probe: str = "/readyz") -> None:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "logcanary.cli", "serve"], env=self.env, stdout=handle, stderr=handle, cwd=ROOT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}{probe}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"service not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, like a crash or an OOM kill."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


Launcher = Callable[[dict[str, str]], ServiceProcess]  # env -> a service process, not started yet


@pytest.fixture
def service_process(tmp_path: Path) -> Iterator[Launcher]:
    started: list[ServiceProcess] = []

    class Tracked(ServiceProcess):
        def __init__(self, env: dict[str, str]) -> None:
            super().__init__({"LOGCANARY_STATE_DIR": str(tmp_path / "state"), **env}, tmp_path / "service.log")
            started.append(self)

    yield Tracked
    for process in started:
        if process.process is not None and process.process.poll() is None:
            process.process.kill()
            process.process.wait(10)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema on this machine's server (tests/postgres_helpers.py), dropped after the test."""
    from tests.postgres_helpers import fresh_schema

    with fresh_schema() as schema:
        yield schema
