"""No input can stop it (issue 18): the line shapes that used to cost seconds each, streamed through Kafka into a
real `logcanary serve` while the chart's liveness probe is emulated; ordinary records behind them are counted."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from logcanary.demo.embedded_broker import EmbeddedBroker
from tests.conftest import Launcher
from tests.kafka_helpers import produce, topic_env, wait_for_events

# The chart's livenessProbe: GET /healthz every 10 s, 5 s timeout, restart after 6 failures in a row.
PROBE_PERIOD, PROBE_TIMEOUT, PROBE_FAILURES = 10.0, 5.0, 6


def hostile(count: int, size: int) -> Iterator[dict[str, Any]]:
    """Records whose message is one ``size``-character token of the shapes that made masking quadratic."""
    shapes = ("a" * (size - 1) + "@", ("ab." * size)[: size - 1] + "@", "@" + "a" * (size - 1), "a1" * (size // 2))
    now = datetime.now(UTC).isoformat()
    for n in range(count):
        yield {"timestamp": now, "service": "hostile", "deployment": "v1", "message": shapes[n % len(shapes)]}


def ordinary(count: int) -> Iterator[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    for n in range(count):
        yield {"timestamp": now, "service": "ordinary", "deployment": "v1", "message": f"request {n} served"}


class Probe(threading.Thread):
    """GET /healthz as the kubelet does, and much more often (every 0.2 s) to measure the loop's answers."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies: list[float] = []
        self.failures_in_a_row = 0
        self.worst_run = 0  # of failures the kubelet would have seen in a row (a timeout at 5 s is a failure)
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=PROBE_TIMEOUT) as client:
            last_kubelet = 0.0
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    ok = client.get(f"{self.url}/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append(time.monotonic() - started)
                if started - last_kubelet >= PROBE_PERIOD or not ok:
                    last_kubelet = started
                    self.failures_in_a_row = 0 if ok else self.failures_in_a_row + 1
                    self.worst_run = max(self.worst_run, self.failures_in_a_row)
                self.stop.wait(0.2)


@pytest.mark.parametrize("count", [300])
def test_hostile_records_never_stop_the_loop_and_the_ordinary_ones_behind_them_count(
    kafka: EmbeddedBroker, service_process: Launcher, count: int, capsys: pytest.CaptureFixture[str]
) -> None:
    env, topic, _ = topic_env(kafka)
    service = service_process(env)
    service.start()
    probe = Probe(service.url)
    probe.start()
    started = time.monotonic()
    try:
        produce(kafka.bootstrap_servers, topic, [*hostile(count, 16_000), *ordinary(100)])
        with service.client() as client:
            wait_for_events(client, "ordinary", 100, timeout=120)
            counted = wait_for_events(client, "hostile", count, timeout=60)
    finally:
        probe.stop.set()
        probe.join(10)
    seconds = time.monotonic() - started
    assert service.process is not None and service.process.poll() is None  # never restarted, never died
    assert probe.worst_run < PROBE_FAILURES
    assert counted == {"v1": count}  # every hostile record counted too (one opaque value each)
    latencies = sorted(probe.latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0.0
    assert max(latencies) < PROBE_TIMEOUT
    with capsys.disabled():
        print(
            f"\n[hostile] {count} records of 16,000-character tokens + 100 ordinary, counted in {seconds:.1f} s; "
            f"/healthz answered {len(latencies)} times, median {statistics.median(latencies) * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
        )


@pytest.mark.chaos
def test_chaos_thousands_of_hostile_records_at_full_rate(
    kafka: EmbeddedBroker, service_process: Launcher, capsys: pytest.CaptureFixture[str]
) -> None:
    """The long variant: 2,000 hostile records of 64,000 characters each (128 MB through Kafka)."""
    env, topic, _ = topic_env(kafka)
    service = service_process(env)
    service.start()
    probe = Probe(service.url)
    probe.start()
    try:
        produce(kafka.bootstrap_servers, topic, [*hostile(2000, 64_000), *ordinary(100)])
        with service.client() as client:
            wait_for_events(client, "ordinary", 100, timeout=600)
    finally:
        probe.stop.set()
        probe.join(10)
    assert service.process is not None and service.process.poll() is None
    assert probe.worst_run < PROBE_FAILURES
    latencies = sorted(probe.latencies)
    with capsys.disabled():
        print(
            f"\n[hostile chaos] 2,000 x 64,000 characters: /healthz p99 "
            f"{latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
        )
