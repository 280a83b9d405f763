"""History reads over many kept analyses, and what they cost the event loop (issue 24).

A store is filled with ``--analyses`` completed analyses (default 20,000: LOGCANARY_RETENTION_ANALYSES_MAX) in three
environments and pairs per release, started over the last 80 days; a real ``logcanary serve`` loads it. ``/healthz``
is probed every 10 ms, first alone, then while a client reads ``/v1/releases?limit=1000`` (the overview's), the
summary by day and a page of ``/v1/analyses`` back to back. ``--on-loop`` runs the same reads on the event loop
instead of a worker thread, for comparison.

    .venv/bin/python bench/bench_history.py [--analyses 20000] [--seconds 10] [--on-loop]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import PROJECT

from logcanary.demo.embedded_broker import free_port
from logcanary.schemas import AnalysisSpec
from logcanary.store.base import AnalysisRecord
from logcanary.store.sqlite import SqliteStore

READS = ("/v1/releases?limit=1000", "/v1/analyses/summary?by=day", "/v1/analyses?environment=qa&limit=100")
ON_LOOP = """
import sys
import logcanary.verification.queries as queries


class Inline:
    @staticmethod
    async def to_thread(function, *args):
        return function(*args)


queries.asyncio = Inline  # the same reads, computed on the event loop
from logcanary.cli import main

sys.exit(main(["serve"]))
"""


def fill(path: Path, count: int) -> None:
    store = SqliteStore(path)
    rng = random.Random(1)
    now = time.time()
    for n in range(count):
        body: dict[str, object] = {"service": f"svc{n % 40}", "canary": {"deployment": "v2"}}
        body |= {"baseline": {"deployment": "v1"}}
        body |= {"duration": 600, "sensitivity": "medium", "environment": ("dev", "qa", "prod")[n % 3]}
        spec = AnalysisSpec.model_validate(body | {"release": f"r{n // 2}"})
        at = now - rng.random() * 80 * 86_400
        store.save_analysis(
            AnalysisRecord(f"a{n}", spec.service, spec, "completed", at, at + 600, finished_at=at + 600)
        )
    store.close()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def probe(url: str, seconds: float) -> list[float]:
    took = []
    async with httpx.AsyncClient(timeout=30) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            (await client.get(f"{url}/healthz")).raise_for_status()
            took.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.01)
    return took


async def read(url: str, stop: asyncio.Event, took: list[float]) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        while not stop.is_set():
            for path in READS:
                start = time.perf_counter()
                (await client.get(f"{url}{path}")).raise_for_status()
                took.append((time.perf_counter() - start) * 1000)


async def measure(url: str, seconds: float) -> dict[str, list[float]]:
    alone = await probe(url, seconds / 2)
    stop = asyncio.Event()
    reads: list[float] = []
    reader = asyncio.create_task(read(url, stop, reads))
    busy = await probe(url, seconds)
    stop.set()
    await reader
    return {"healthz alone": alone, "healthz under history reads": busy, "history reads": reads}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--analyses", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--on-loop", action="store_true", help="compute the reads on the event loop (comparison)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        fill(Path(folder) / "logcanary.sqlite", args.analyses)
        port = free_port()
        env = {
            **os.environ,
            "LOGCANARY_STATE_DIR": folder,
            "LOGCANARY_PORT": str(port),
            "LOGCANARY_LOG_LEVEL": "warning",
        }
        command = [sys.executable, "-c", ON_LOOP] if args.on_loop else [sys.executable, "-m", "logcanary.cli", "serve"]
        service = subprocess.Popen(command, env=env, cwd=PROJECT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the service did not become ready")
                time.sleep(0.2)
            results = asyncio.run(measure(url, args.seconds))
        finally:
            service.terminate()
            service.wait(timeout=30)
    where = "on the event loop" if args.on_loop else "in a worker thread"
    print(f"{args.analyses} analyses kept; reads computed {where}")
    for name, took in results.items():
        print(f"{name}: n={len(took)} p50 {quantile(took, 0.5):.1f} ms  p99 {quantile(took, 0.99):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
