"""HTTP ingestion against a real ``logcanary serve``: how fast, is the loop responsive, is memory bounded?

0. ``throughput`` (issue 22): ``--events`` of the demo payments traffic (the events of ``bench_kafka.py``) posted
   as NDJSON bodies of ``--batch`` events, back to back from two clients: events/s, the service's events per
   CPU-second, ``/healthz`` latency meanwhile, every event counted once; against the engine's in-process rate
   for the same events, measured in the same run.
1. ``/healthz`` latency (p50, p99, max) sampled every 10 ms while one 16 MiB NDJSON body is posted, and the
   service's peak RSS (VmHWM) across it.
2. The same while 10,000 events/s arrive over HTTP (batches of 500 every 50 ms) for ``--seconds``.
3. Series on ``/metrics`` after ``--services`` one-event services (posted for real).

Bar (issue 8): ``/healthz`` p99 < 50 ms in 1 and 2; < 10,000 series in 3. Bar (issue 22): 100,000 events/s in 0,
``/healthz`` p99 < 50 ms meanwhile.

Usage: python bench/bench_http.py [--parts throughput,body,steady,series] [--events 300000] [--batch 5000]
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
from bench_kafka import cpu_seconds, engine_rate
from common import PROJECT, cpu_model

from logcanary.demo.traffic import events


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


def throughput(base: str, pid: int, count: int, batch: int) -> dict[str, Any]:
    """Posts ``count`` demo events as NDJSON bodies of ``batch`` events from two clients, back to back."""
    half = count // 2
    payloads = [orjson.dumps(e) for e in events("v1", half, seed=1)]
    payloads += [orjson.dumps(e) for e in events("v2", count - half, seed=2, npe_rate=0.001)]
    bodies = iter([b"\n".join(payloads[i : i + batch]) for i in range(0, count, batch)])
    taken = threading.Lock()
    accepted: list[int] = []

    def post() -> None:
        with httpx.Client(base_url=base, timeout=600) as client:
            while True:
                with taken:
                    body = next(bodies, None)
                if body is None:
                    return
                answer = client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"})
                accepted.append(answer.json()["accepted"])

    sampler = Sampler(base)
    sampler.start()
    time.sleep(0.3)
    clients = [threading.Thread(target=post) for _ in range(2)]
    cpu, started = cpu_seconds(pid), time.perf_counter()
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    seconds, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    sampler.stop.set()
    sampler.join()
    rate = count / seconds
    engine, engine_cpu = engine_rate(payloads)
    return {
        "events": count,
        "batch": batch,
        "exact": sum(accepted) == count,
        "seconds": round(seconds, 2),
        "events_per_second": round(rate),
        "service_events_per_cpu_second": round(count / cpu),
        "engine_events_per_second": round(engine),
        "engine_events_per_cpu_second": round(engine_cpu),
        "of_engine": round(rate / engine, 2),
        "cpu_of_engine": round(count / cpu / engine_cpu, 2),
        "healthz": sampler.summary(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="throughput,body,steady,series")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--services", type=int, default=100_000)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
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
                if "throughput" in parts:  # 0. as fast as it takes them
                    results["throughput"] = throughput(base, service.pid, args.events, args.batch)
                    print(json.dumps(results["throughput"]), flush=True)
                if "body" in parts:
                    body_part(client, base, service.pid, results)
                if "steady" in parts:
                    steady_part(client, base, args.seconds, results)
                if "series" in parts:
                    series_part(client, service.pid, args.services, results)
        finally:
            service.terminate()
            service.wait(timeout=60)
    print(json.dumps(results, indent=2))


def body_part(client: httpx.Client, base: str, pid: int, results: dict[str, Any]) -> None:
    """1. One 16 MiB body."""
    body = b""
    count = 0
    while True:
        chunk = lines(10_000, count)
        if len(body) + len(chunk) > 16 * 1024 * 1024 - 1024:
            break
        body += chunk
        count += 10_000
    rss_before = rss_mib(pid)
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
        "rss_peak_mib": round(rss_peak_mib(pid), 1),
    }
    print(json.dumps(results["post_16mib"]), flush=True)


def steady_part(client: httpx.Client, base: str, seconds: float, results: dict[str, Any]) -> None:
    """2. 10,000 events/s for a while."""
    sampler = Sampler(base)
    sampler.start()
    sent = 0
    started = time.perf_counter()
    tick = 0
    while time.perf_counter() - started < seconds:
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


def series_part(client: httpx.Client, pid: int, services: int, results: dict[str, Any]) -> None:
    """3. Many one-event services, then a scrape."""
    for start in range(0, services, 10_000):
        batch = [
            orjson.dumps({"service": f"one-{n}", "deployment": "v1", "message": "hello"})
            for n in range(start, min(services, start + 10_000))
        ]
        client.post("/v1/events", content=b"\n".join(batch))
    started = time.perf_counter()
    scrape = client.get("/metrics").text
    results["many_services"] = {
        "services": services,
        "series": sum(1 for line in scrape.splitlines() if line and not line.startswith("#")),
        "scrape_bytes": len(scrape),
        "scrape_seconds": round(time.perf_counter() - started, 3),
        "rss_mib": round(rss_mib(pid), 1),
    }
    print(json.dumps(results["many_services"]), flush=True)


if __name__ == "__main__":
    main()
