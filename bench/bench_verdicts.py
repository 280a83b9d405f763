"""Verdict latency of a real ``logcanary serve`` while it ingests 10,000 events/s (issue 9).

The service gets 5 services, each with a baseline ``v1`` and a canary ``v2`` of about 400 event types (distinct
combinations of letter-only words, as in ``bench_analysis.py``; the canary also logs 20 types of its own, so the
same-event search runs on every verdict). A feeder process then sends 500 events every 50 ms (10,000 events/s)
spread over the 5 services and their ~400 types, in one of two ways (``--ingest``):

* ``kafka``: produced to a 2-partition topic of the embedded broker, which the service consumes (the issue's
  own setup, and how shippers deliver in production); the service checkpoints every 5 s;
* ``http``: posted as NDJSON to ``POST /v1/events``; each POST is answered once its events are durable, so
  each is a checkpoint of its own (20 per second).

Meanwhile clients poll ``GET /v1/verdict`` (canary v2 against v1, window 5m, each client asking about service
``i % 5``), each waiting ``--interval`` between answers: first 1 client, then 20 concurrent clients (asyncio,
one process). Latency is measured by the client, from sending the request to reading the whole answer. Every
answer must be 200.

Bar (issue 9): p99 < 50 ms with 20 clients on a 2-core machine.

    .venv/bin/python bench/bench_verdicts.py [--ingest kafka|http|both] [--seconds 20] [--clients 20]
        [--interval 0.1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from bench_analysis import event_types
from bench_kafka import create_topic
from common import PROJECT, machine_info, print_machine

from logcanary.demo.embedded_broker import EmbeddedBroker

SERVICES = 5
TYPES = 400
CANARY_ONLY = 20
RATE = 10_000
BATCH = 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def catalogue() -> dict[str, tuple[list[str], list[str]]]:
    """Per service: the shared event types and the canary's own."""
    out = {}
    for index in range(SERVICES):
        types = event_types(random.Random(index), TYPES + CANARY_ONLY)
        out[f"svc-{index}"] = (types[:TYPES], types[TYPES:])
    return out


def body(rng: random.Random, count: int, types: dict[str, tuple[list[str], list[str]]]) -> bytes:
    """``count`` NDJSON events over every service, baseline and canary alike, stamped now."""
    now = time.time()
    names = sorted(types)
    lines = []
    for n in range(count):
        service = names[n % len(names)]
        shared, new = types[service]
        deployment = "v1" if n % 2 else "v2"
        prefix = new[rng.randrange(len(new))] if deployment == "v2" and rng.random() < 0.01 else rng.choice(shared)
        event = {
            "service": service,
            "deployment": deployment,
            "timestamp": now,
            "host": f"pod-{n % 7}",
            "level": "info",
            "message": f"{prefix} took {rng.randint(1, 999)} ms",
        }
        lines.append(orjson.dumps(event))
    return b"\n".join(lines) + b"\n"


def seed(base: str, types: dict[str, tuple[list[str], list[str]]]) -> int:
    """Every type 3 times in v1 and v2 (v2's own types too), so each deployment holds ~400 templates."""
    lines = []
    now = time.time()
    for service, (shared, new) in types.items():
        for deployment, prefixes in (("v1", shared), ("v2", shared + new)):
            for prefix in prefixes:
                for k in range(3):
                    event = {
                        "service": service,
                        "deployment": deployment,
                        "timestamp": now,
                        "host": f"pod-{k}",
                        "level": "info",
                        "message": f"{prefix} took {k + 1} ms",
                    }
                    lines.append(orjson.dumps(event))
    with httpx.Client(base_url=base, timeout=120) as client:
        for start in range(0, len(lines), 5_000):
            answer = client.post("/v1/events", content=b"\n".join(lines[start : start + 5_000]))
            answer.raise_for_status()
    return len(lines)


def feed(base: str, stop: Any, sent: Any) -> None:
    """10,000 events/s: a body of 500 every 50 ms (bodies built ahead, stamps refreshed every second)."""
    types = catalogue()
    rng = random.Random(42)
    with httpx.Client(base_url=base, timeout=120) as client:
        started = time.perf_counter()
        tick = 0
        bodies: list[bytes] = []
        while not stop.is_set():
            if not bodies:
                bodies = [body(rng, BATCH, types) for _ in range(RATE // BATCH)]
            client.post("/v1/events", content=bodies.pop())
            sent.value += BATCH
            tick += 1
            delay = started + tick * BATCH / RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)


def kafka_feed(bootstrap: str, topic: str, stop: Any, sent: Any) -> None:
    """:func:`feed`'s events, produced to Kafka: 500 every 50 ms, each batch acknowledged before the next."""

    async def run() -> None:
        types = catalogue()
        rng = random.Random(42)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1024 * 1024)
        await producer.start()
        try:
            started = time.perf_counter()
            tick = 0
            batches: list[list[bytes]] = []
            while not stop.is_set():
                if not batches:
                    batches = [body(rng, BATCH, types).splitlines() for _ in range(RATE // BATCH)]
                sends = [await producer.send(topic, line) for line in batches.pop()]
                await asyncio.gather(*sends)
                sent.value += BATCH
                tick += 1
                delay = started + tick * BATCH / RATE - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        finally:
            await producer.stop()

    asyncio.run(run())


def summary(latencies: list[float], seconds: float) -> dict[str, float]:
    ms = sorted(x * 1000 for x in latencies)
    return {
        "requests": len(ms),
        "requests_per_second": round(len(ms) / seconds, 1),
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(ms[max(0, int(len(ms) * 0.99) - 1)], 1),
        "max_ms": round(ms[-1], 1),
    }


async def poll(
    base: str, clients: int, seconds: float, interval: float, route: Mapping[str, str] | None = None
) -> tuple[dict[str, float], dict[str, int]]:
    """``clients`` concurrent gates for ``seconds``; ``route`` sends a service's questions to another base URL
    (bench_scale_out.py: the replica that owns it, or one that does not)."""
    latencies: list[float] = []
    verdicts: dict[str, int] = {}
    deadline = time.perf_counter() + seconds

    async def client(index: int, http: httpx.AsyncClient) -> None:
        params = {"service": f"svc-{index % SERVICES}", "canary": "v2", "baseline": "v1", "window": "5m"}
        url = f"{route[params['service']]}/v1/verdict" if route else "/v1/verdict"
        await asyncio.sleep(interval * index / clients)  # spread the clients over the interval
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            answer = await http.get(url, params=params)
            latencies.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise SystemExit(f"verdict answered {answer.status_code}: {answer.text[:300]}")
            name = answer.json()["verdict"]
            verdicts[name] = verdicts.get(name, 0) + 1
            await asyncio.sleep(interval)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        elapsed = time.perf_counter() - started
    return summary(latencies, elapsed), verdicts


def measure(ingest: str, args: argparse.Namespace, out: Callable[[str], None]) -> dict[str, Any]:
    """One service, seeded, fed at 10,000 events/s through ``ingest``: 1 client, then ``args.clients``."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        port = free_port()
        env = {**os.environ, "LOGCANARY_PORT": str(port), "LOGCANARY_STATE_DIR": tmp, "LOGCANARY_LOG_LEVEL": "warning"}
        stop = multiprocessing.Event()
        sent = multiprocessing.Value("q", 0)
        base = f"http://127.0.0.1:{port}"
        if ingest == "kafka":
            broker = stack.enter_context(EmbeddedBroker())
            topic = "bench-verdicts"
            asyncio.run(create_topic(broker.bootstrap_servers, topic, 2))
            env.update(
                LOGCANARY_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
                LOGCANARY_KAFKA_TOPICS=topic,
                LOGCANARY_KAFKA_GROUP_ID="bench-verdicts",
            )
            feeder = multiprocessing.Process(
                target=kafka_feed, args=(broker.bootstrap_servers, topic, stop, sent), daemon=True
            )
        else:
            feeder = multiprocessing.Process(target=feed, args=(base, stop, sent), daemon=True)
        service = subprocess.Popen([sys.executable, "-m", "logcanary.cli", "serve"], env=env, cwd=PROJECT)
        try:
            with httpx.Client(base_url=base, timeout=30) as client:
                for _ in range(600):
                    try:
                        if client.get("/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
            results["seeded_events"] = seed(base, catalogue())
            feeder.start()
            time.sleep(2.0)  # let the feeder reach its rate
            for clients in (1, args.clients):
                before, started = sent.value, time.perf_counter()
                latency, verdicts = asyncio.run(poll(base, clients, args.seconds, args.interval))
                rate = (sent.value - before) / (time.perf_counter() - started)
                phase = {"ingest": ingest, "clients": clients, "ingest_events_per_second": round(rate), **latency}
                results[f"clients_{clients}"] = {**phase, "verdicts": verdicts}
                out(json.dumps(results[f"clients_{clients}"]))
        finally:
            stop.set()
            if feeder.pid is not None:
                feeder.join(timeout=10)
            service.terminate()
            service.wait(timeout=60)
    results["bar_p99_under_50ms"] = results[f"clients_{args.clients}"]["p99_ms"] < 50.0
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ingest", choices=("kafka", "http", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase (1 client, then --clients)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.1, help="each client's pause between answers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    info = machine_info()
    if not args.json:
        print_machine(info)
    out: Callable[[str], None] = (lambda line: None) if args.json else (lambda line: print(line, flush=True))
    results: dict[str, Any] = {"machine": info}
    for ingest in ("kafka", "http") if args.ingest == "both" else (args.ingest,):
        results[ingest] = measure(ingest, args, out)
        out(f"bar p99 < 50 ms with {args.clients} clients ({ingest}): {results[ingest]['bar_p99_under_50ms']}")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
