"""HTTP ingestion against a real ``logcanary serve``: is the loop responsive, is memory bounded?

1. ``/healthz`` latency (p50, p99, max) sampled every 10 ms while one 16 MiB NDJSON body is posted, and the
   service's peak RSS (VmHWM) across it.
2. The same while 10,000 events/s arrive over HTTP (batches of 500 every 50 ms) for ``--seconds``.
3. Series on ``/metrics`` after ``--services`` one-event services (posted for real).

Bar (issue 8): ``/healthz`` p99 < 50 ms in 1 and 2; < 10,000 series in 3.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from common import PROJECT, cpu_model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler(threading.Thread):
    """GETs /healthz every 10 ms and keeps the latencies."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.stop = threading.Event()
        self.latencies: list[float] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                client.get("/healthz")
                self.latencies.append(time.perf_counter() - started)
                time.sleep(0.01)

    def summary(self) -> dict[str, float]:
        ms = sorted(x * 1000 for x in self.latencies)
        return {
            "samples": len(ms),
            "p50_ms": round(statistics.median(ms), 1),
            "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 1),
            "max_ms": round(ms[-1], 1),
        }


def lines(count: int, start: int = 0, services: int = 20) -> bytes:
    now = time.time()
    out = []
    for n in range(start, start + count):
        out.append(
            orjson.dumps(
                {
                    "service": f"svc-{n % services}",
                    "deployment": f"v{n % 3}",
                    "timestamp": now,
                    "host": f"pod-{n % 7}",
                    "level": "info",
                    "message": f"request {n} for user {n * 7 % 1000} served in {n % 97} ms from cache shard {n % 5}",
                }
            )
        )
    return b"\n".join(out) + b"\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--services", type=int, default=100_000)
    args = parser.parse_args()
    results: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "LOGCANARY_PORT": str(port), "LOGCANARY_STATE_DIR": tmp, "LOGCANARY_LOG_LEVEL": "warning"}
        service = subprocess.Popen([sys.executable, "-m", "logcanary.cli", "serve"], env=env, cwd=PROJECT)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=600) as client:
                for _ in range(200):
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                # 1. one 16 MiB body
                body = b""
                count = 0
                while True:
                    chunk = lines(10_000, count)
                    if len(body) + len(chunk) > 16 * 1024 * 1024 - 1024:
                        break
                    body += chunk
                    count += 10_000
                rss_before = rss_mib(service.pid)
                sampler = Sampler(base)
                sampler.start()
                time.sleep(0.5)
                started = time.perf_counter()
                answer = client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"})
                elapsed = time.perf_counter() - started
                time.sleep(0.3)
                sampler.stop.set()
                sampler.join()
                results["post_16mib"] = {
                    "bytes": len(body),
                    "events": answer.json()["accepted"],
                    "seconds": round(elapsed, 2),
                    "healthz": sampler.summary(),
                    "rss_before_mib": round(rss_before, 1),
                    "rss_peak_mib": round(rss_peak_mib(service.pid), 1),
                }
                print(json.dumps(results["post_16mib"]), flush=True)
                # 2. 10,000 events/s for a while
                sampler = Sampler(base)
                sampler.start()
                sent = 0
                started = time.perf_counter()
                tick = 0
                while time.perf_counter() - started < args.seconds:
                    client.post("/v1/events", content=lines(500, 10_000_000 + sent))
                    sent += 500
                    tick += 1
                    delay = started + tick * 0.05 - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                rate = sent / (time.perf_counter() - started)
                sampler.stop.set()
                sampler.join()
                results["steady_10k"] = {"events_per_second": round(rate), "healthz": sampler.summary()}
                print(json.dumps(results["steady_10k"]), flush=True)
                # 3. many one-event services, then a scrape
                for start in range(0, args.services, 10_000):
                    batch = [
                        orjson.dumps({"service": f"one-{n}", "deployment": "v1", "message": "hello"})
                        for n in range(start, min(args.services, start + 10_000))
                    ]
                    client.post("/v1/events", content=b"\n".join(batch))
                started = time.perf_counter()
                scrape = client.get("/metrics").text
                results["many_services"] = {
                    "services": args.services,
                    "series": sum(1 for line in scrape.splitlines() if line and not line.startswith("#")),
                    "scrape_bytes": len(scrape),
                    "scrape_seconds": round(time.perf_counter() - started, 3),
                    "rss_mib": round(rss_mib(service.pid), 1),
                }
                print(json.dumps(results["many_services"]), flush=True)
        finally:
            service.terminate()
            service.wait(timeout=60)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
