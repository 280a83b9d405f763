"""End-to-end ingestion: Kafka broker -> logcanary service process -> counted state.

Starts the embedded Tansu broker and `logcanary serve` as a separate process,
produces N log events (realistic Java service traffic) with aiokafka from this
process, and measures how fast the service counts them (polling /v1/services):

* ``live``: the producer runs while the service consumes (producer included in
  the same run, as in production; both share this machine's cores);
* ``preloaded``: all events are in the broker before the service starts, so the
  number is the service's own ingestion rate.

Each run also measures, on the same topic and events, the two physical limits the service's rate is judged
against (issue 22), after the service stopped so that nothing else runs meanwhile:

* ``raw``: an aiokafka consumer of a fresh group reading the whole topic with the service's fetch settings and
  nothing else (the least reading Kafka costs in Python), steady rate from the first record to the last;
* ``engine``: the events, parsed beforehand, counted by a fresh live engine in this process
  (``LiveEngine.observe_values``: masking, mining, clustering, counts), with no Kafka, decoding or loop.

Usage: python bench/bench_kafka.py [--events 200000] [--mode live|preloaded|both] [--runs 1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from logcanary.demo.embedded_broker import EmbeddedBroker, free_port
from logcanary.demo.traffic import events
from logcanary.live.engine import LiveEngine
from logcanary.settings import LimitSettings

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, payloads: list[bytes]) -> float:
    """Sends every payload and waits for the acknowledgements; returns the seconds it took."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for payload in payloads:
            pending.append(await producer.send(topic, payload))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def start_service(
    bootstrap: str, topic: str, state: Path, port: int, log: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``logcanary serve`` consuming ``topic``, once /readyz answers 200; ``extra_env`` adds or overrides settings."""
    env = {
        **os.environ,
        "LOGCANARY_PORT": str(port),
        "LOGCANARY_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "LOGCANARY_KAFKA_TOPICS": topic,
        "LOGCANARY_KAFKA_GROUP_ID": f"bench-{topic}",
        "LOGCANARY_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "LOGCANARY_STATE_DIR": str(state),
        "LOGCANARY_LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    handle = log.open("wb")
    process = subprocess.Popen([sys.executable, "-m", "logcanary.cli", "serve"], env=env, stdout=handle, stderr=handle)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"service did not become ready:\n{log.read_text()[-2000:]}")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15 of stat)


def counted(port: int) -> int:
    services = httpx.get(f"http://127.0.0.1:{port}/v1/services", timeout=10).json()
    return sum(service["events"] for service in services)


def wait_counted(
    count: Callable[[], int], total: int, every: float = 0.05, timeout: float = 600
) -> tuple[float, float, int]:
    """Polls ``count()`` every ``every`` seconds until ``total`` events are counted: (time of the first count, time
    of the last, events already counted at the first count). The first count comes after the consumer group join."""
    deadline = time.monotonic() + timeout
    first: tuple[float, int] | None = None
    while time.monotonic() < deadline:
        now = count()
        if now and first is None:
            first = (time.monotonic(), now)
        if now >= total:
            assert first is not None
            return first[0], time.monotonic(), first[1]
        time.sleep(every)
    raise RuntimeError(f"only {count()} of {total} events counted after {timeout}s")


async def raw_consume(bootstrap: str, topic: str, count: int) -> float:
    """Steady records/s of a plain aiokafka consumer reading ``count`` records of ``topic`` from the start, with the
    service's fetch settings (LOGCANARY_KAFKA_MAX_BATCH_RECORDS 500, 4 MiB a partition), records only counted."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{time.monotonic_ns()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        seen, early, first = 0, 0, 0.0
        while seen < count:
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            for records in batch.values():
                if not first and records:
                    first, early = time.perf_counter(), len(records)
                seen += len(records)
        return (count - early) / (time.perf_counter() - first)
    finally:
        await consumer.stop()


def engine_rate(payloads: list[bytes]) -> tuple[float, float]:
    """(events/s, events per CPU-second) of a fresh live engine counting the events, parsed before the clock
    starts."""
    rows = []
    for payload in payloads:
        e = orjson.loads(payload)
        stamp = datetime.fromisoformat(e["timestamp"]).timestamp()
        rows.append((e["service"], e["deployment"], e["message"], stamp, e["host"], e["level"], ()))
    live = LiveEngine(LimitSettings())
    observe = live.observe_values
    started, cpu = time.perf_counter(), time.process_time()
    for row in rows:
        observe(*row)
    return len(rows) / (time.perf_counter() - started), len(rows) / (time.process_time() - cpu)


def run(mode: str, count: int, partitions: int) -> dict[str, Any]:
    half = count // 2
    payloads = [orjson.dumps(e) for e in events("v1", half, seed=1)]
    payloads += [orjson.dumps(e) for e in events("v2", count - half, seed=2, npe_rate=0.001)]
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        topic = f"bench-{mode}"
        asyncio.run(create_topic(broker.bootstrap_servers, topic, partitions))
        port = free_port()
        result: dict[str, Any] = {"mode": mode, "events": count, "partitions": partitions}
        if mode == "preloaded":
            result["produce_seconds"] = asyncio.run(produce(broker.bootstrap_servers, topic, payloads))
            service = start_service(broker.bootstrap_servers, topic, Path(tmp) / "state", port, Path(tmp) / "log")
            started, cpu = time.monotonic(), cpu_seconds(service.pid)
            first, finished, early = wait_counted(lambda: counted(port), count)
        else:
            service = start_service(broker.bootstrap_servers, topic, Path(tmp) / "state", port, Path(tmp) / "log")
            time.sleep(3)  # let the consumer join its group first: the producer is what is timed here
            started, cpu = time.monotonic(), cpu_seconds(service.pid)
            result["produce_seconds"] = asyncio.run(produce(broker.bootstrap_servers, topic, payloads))
            first, finished, early = wait_counted(lambda: counted(port), count)
        try:
            seconds = finished - started
            result["seconds"] = round(seconds, 3)
            result["events_per_second"] = round(count / seconds)
            # Steady state: from the first counted batch to the last (excludes the group join).
            result["steady_events_per_second"] = round((count - early) / max(finished - first, 1e-9))
            # The service's CPU from readiness (or the producer's start) to the last count, polls included.
            result["service_events_per_cpu_second"] = round(count / (cpu_seconds(service.pid) - cpu))
            result["exact"] = counted(port) == count
        finally:
            service.terminate()
            service.wait(30)
        result["raw_events_per_second"] = round(asyncio.run(raw_consume(broker.bootstrap_servers, topic, count)))
    engine, engine_cpu = engine_rate(payloads)
    result["engine_events_per_second"], result["engine_events_per_cpu_second"] = round(engine), round(engine_cpu)
    steady = result["steady_events_per_second"]
    result["of_raw"] = round(steady / result["raw_events_per_second"], 2)
    result["of_engine"] = round(steady / engine, 2)
    # The same per CPU-second: the share of the service's CPU that the engine's own work takes, whatever else
    # this shared machine ran meanwhile.
    result["cpu_of_engine"] = round(result["service_events_per_cpu_second"] / engine_cpu, 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--mode", choices=("live", "preloaded", "both"), default="both")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = ("preloaded", "live") if args.mode == "both" else (args.mode,)
    results = [run(mode, args.events, args.partitions) for _ in range(args.runs) for mode in modes]
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()}
    if args.json:
        print(orjson.dumps({"machine": machine, "results": results}, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}")
    for r in results:
        print(
            f"kafka-e2e mode={r['mode']}: {r['events']} events in {r['seconds']:.2f}s = "
            f"{r['events_per_second']} events/s, steady {r['steady_events_per_second']} events/s "
            f"(producer {r['produce_seconds']:.2f}s, exact={r['exact']}); same run: raw consume "
            f"{r['raw_events_per_second']}/s, engine in-process {r['engine_events_per_second']}/s; "
            f"steady = {r['of_raw']:.2f} of raw, {r['of_engine']:.2f} of engine; per CPU-second: service "
            f"{r['service_events_per_cpu_second']}, engine {r['engine_events_per_cpu_second']} "
            f"= {r['cpu_of_engine']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
