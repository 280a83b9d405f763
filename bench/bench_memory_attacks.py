"""Memory under the attacks of issues 8 and 18, against a real ``logcanary serve`` fed over HTTP, then restarted.

1. ``huge``: 1,000 unique messages of 65,000 bytes (letter-only words, nothing masked, every one a new event
   type) to one service, posted as NDJSON in batches of 100.
2. ``services``: 100,000 one-event services, posted in batches of 10,000.
3. ``hostile`` (issue 18): 100,000 unique messages of 4,000 characters (every word new) across 1,000 services,
   in batches of 100: every one a new event type, what made the engine grow past the chart's limit (2,108 MB).

For each attack, on a fresh state directory: the service's RSS (VmRSS) and peak RSS (VmHWM) once every event is
accepted; then SIGTERM (the service checkpoints before it exits), the state file's size, a restart on the same
directory, and RSS and peak once it answers again (the state loaded). GET /v1/services checks what was kept.
Each service process starts with the default settings (LOGCANARY_MAX_SERVICES 1,000 and the engine's caps).

Bars: every RSS and peak < 1 GiB (issue 8), and under the memory budget plus the stated overhead (issue 18:
512 MiB at the defaults, the chart's memory request).

    .venv/bin/python bench/bench_memory_attacks.py [--messages 1000] [--services 100000] [--hostile 100000]
        [--only hostile] [--budget BYTES] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from common import PROJECT, machine_info, print_machine

from logcanary.engine.caps import DEFAULT_CAPS
from logcanary.engine.memory import OVERHEAD_BYTES

GIB_MIB = 1024.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


class Service:
    """``logcanary serve`` on a free port and a given state directory."""

    def __init__(self, state_dir: str, budget: int) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "LOGCANARY_PORT": str(self.port),
            "LOGCANARY_STATE_DIR": state_dir,
            "LOGCANARY_LOG_LEVEL": "warning",
            "LOGCANARY_MEMORY_BUDGET_BYTES": str(budget),
        }
        self.process = subprocess.Popen([sys.executable, "-m", "logcanary.cli", "serve"], env=env, cwd=PROJECT)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=600)
        started = time.perf_counter()
        while True:
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.perf_counter() - started > 600:
                raise RuntimeError("the service did not start")
            time.sleep(0.1)
        self.start_seconds = round(time.perf_counter() - started, 1)

    def memory(self) -> dict[str, float]:
        return {"rss_mib": status_mib(self.process.pid, "VmRSS"), "peak_rss_mib": status_mib(self.process.pid, "VmHWM")}

    def post(self, body: bytes) -> dict[str, Any]:
        answer = self.client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"})
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def services(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client.get("/v1/services").json()
        return result

    def stop(self) -> float:
        """SIGTERM (the service checkpoints, then exits); the seconds it took."""
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)
        self.client.close()
        return round(time.perf_counter() - started, 1)


def huge_messages(count: int, size: int = 65_000) -> Iterator[bytes]:
    rng = random.Random(8)
    now = time.time()
    for index in range(count):
        words: list[str] = []
        length = 0
        while length < size:
            word = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 10)))
            words.append(word)
            length += len(word) + 1
        message = " ".join(words)[:size]
        yield orjson.dumps(
            {"service": "huge", "deployment": "v1", "timestamp": now + index * 0.001, "message": message}
        )


def letters(number: int) -> str:
    text = ""
    while True:
        number, digit = divmod(number, 26)
        text += chr(97 + digit)
        if not number:
            return text


def hostile_messages(count: int, services: int, size: int = 4_000) -> Iterator[bytes]:
    """Unique messages of ``size`` characters whose every word is new (the test's: tests/test_memory_budget.py)."""
    now = time.time()
    for index in range(count):
        seed, words, length = letters(index), [], 0
        for n in range(size):
            word = f"{seed}q{letters(n)}"
            if length + len(word) + 1 > size:
                break
            words.append(word)
            length += len(word) + 1
        yield orjson.dumps(
            {
                "service": f"svc-{index % services}",
                "deployment": "v1",
                "timestamp": now + index * 0.001,
                "message": " ".join(words),
            }
        )


def one_event_services(count: int) -> Iterator[bytes]:
    now = time.time()
    for index in range(count):
        yield orjson.dumps(
            {"service": f"one-{index}", "deployment": "v1", "timestamp": now + index * 0.001, "message": "hello"}
        )


def batches(records: Iterator[bytes], size: int) -> Iterator[bytes]:
    batch: list[bytes] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield b"\n".join(batch) + b"\n"
            batch = []
    if batch:
        yield b"\n".join(batch) + b"\n"


def metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def attack(name: str, records: Iterator[bytes], batch_size: int, budget: int) -> dict[str, Any]:
    result: dict[str, Any] = {"attack": name, "budget_mib": round(budget / 2**20)}
    with tempfile.TemporaryDirectory() as state_dir:
        service = Service(state_dir, budget)
        try:
            result["idle"] = service.memory()
            accepted = 0
            started = time.perf_counter()
            for body in batches(records, batch_size):
                accepted += service.post(body)["accepted"]
            result["accepted"] = accepted
            result["ingest_seconds"] = round(time.perf_counter() - started, 1)
            result["after_ingest"] = service.memory()
            kept = service.services()
            result["services_kept"] = len(kept)
            result["events_kept"] = sum(s["events"] for s in kept)
            result["templates_kept"] = sum(s["templates"] for s in kept)
            result["estimated_mib"] = round(metric(service.client, "logcanary_memory_estimated_bytes") / 2**20, 1)
            result["degradations"] = {
                action: metric(service.client, f'logcanary_memory_degradations_total{{action="{action}"}}')
                for action in ("examples", "deployments", "templates", "summaries", "evictions")
            }
        finally:
            result["stop_seconds"] = service.stop()
        state_file = Path(state_dir) / "logcanary.sqlite"
        result["state_file_mib"] = round(
            sum(p.stat().st_size for p in state_file.parent.glob(state_file.name + "*")) / 2**20, 1
        )
        restarted = Service(state_dir, budget)
        try:
            time.sleep(1.0)
            result["restart_seconds"] = restarted.start_seconds
            result["after_restart"] = restarted.memory()
            kept = restarted.services()
            result["services_after_restart"] = len(kept)
            result["events_after_restart"] = sum(s["events"] for s in kept)
        finally:
            restarted.stop()
    peaks = [result[key]["peak_rss_mib"] for key in ("after_ingest", "after_restart")]
    result["under_1_gib"] = max(peaks) < GIB_MIB
    result["under_budget_plus_overhead"] = max(peaks) < (budget + OVERHEAD_BYTES) / 2**20
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000)
    parser.add_argument("--services", type=int, default=100_000)
    parser.add_argument("--hostile", type=int, default=100_000, help="events of the hostile attack")
    parser.add_argument("--hostile-services", type=int, default=1_000)
    parser.add_argument("--only", choices=("huge", "services", "hostile"))
    parser.add_argument("--budget", type=int, default=DEFAULT_CAPS.memory_budget_bytes)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    attacks: dict[str, Callable[[], dict[str, Any]]] = {
        "huge": lambda: attack("huge: unique 65,000-byte messages", huge_messages(args.messages), 100, args.budget),
        "services": lambda: attack(
            "services: one-event services", one_event_services(args.services), 10_000, args.budget
        ),
        "hostile": lambda: attack(
            f"hostile: unique 4,000-character messages across {args.hostile_services:,} services",
            hostile_messages(args.hostile, args.hostile_services),
            100,
            args.budget,
        ),
    }
    results = [run() for name, run in attacks.items() if args.only in (None, name)]
    if args.json:
        print(json.dumps({"machine": machine_info(), "results": results}, indent=2))
    else:
        print_machine(machine_info())
        for result in results:
            print(json.dumps(result))
    return 0 if all(r["under_1_gib"] and r["under_budget_plus_overhead"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
