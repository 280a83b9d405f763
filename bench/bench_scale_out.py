"""Scale-out ingestion: 1, 2 and 3 ``logcanary serve`` replicas in one consumer group over PostgreSQL (issue 9).

Each round runs, each mode on a fresh embedded Tansu broker (and, in scale-out, a fresh PostgreSQL schema,
dropped after):

* ``direct``: one process, SQLite store, consuming the log topic itself (no repartition): the reference;
* ``scale-out xN``: N replicas with ``LOGCANARY_STORE_URL=postgresql://...``; each routes its share of the log
  topic into the repartition topic (``<group id>.by-service``) and counts the repartition partitions the
  consumer group assigns it (service/logcanary/ingestion/repartition.py);
* ``one service xN`` (``--single-service``): the same with every event of one service, so one replica counts
  them all while every replica routes: the per-service ceiling.

The events are the demo payments traffic (``logcanary.demo.traffic``), unkeyed, for ``--services-per-shard`` services
per repartition partition (names chosen so that every partition carries as many services) times a baseline ``v1``
and a canary ``v2``, interleaved, produced by aiokafka from this process while the replicas consume (as
``bench_kafka.py --mode live``). The replicas join first (ownership of every repartition partition settled,
then ``--settle`` seconds for the routers' group), then the producer starts and the clock with it.

* **counted**: every replica's ``/metrics`` is scraped every ``--poll`` seconds; the sum of
  ``logcanary_deployment_events`` (what each replica's live engine holds: only the services it owns) reaching the
  number produced stops the clock. "steady" leaves out the time before the first count.
* **visible on one replica**: then ``/v1/services`` of the first replica is polled every 0.5 s until it shows
  every event (services of other replicas come from their checkpoints in the store, cached one interval).
* **exact**: every replica's ``/v1/services`` then shows each (service, deployment) with exactly its events.
* **PostgreSQL**: checkpoint transactions per replica (``logcanary_checkpoint_duration_seconds_count``, from the
  producer's start until every event was visible, plus one interval: until all are saved), rows changed in the
  schema's state tables (``pg_stat_user_tables``, read after the replicas exited) and WAL bytes (server-wide).
* **CPU**: user + system seconds of every replica, of the broker, of the producer thread and of anything else on
  the machine while counting, so that the events per CPU-second of the replicas compare across modes on this
  shared 2-core machine.

``--part verdicts`` (``both`` by default) then measures verdict latency on two replicas (verdicts_across_replicas):
bench_verdicts.py's load, its 20 gates asking each service's owner, then the replica that does not own it.

    .venv/bin/python bench/bench_repartition.py [--events 200000] [--partitions 6] [--replicas 1,2,3] [--runs 1]
        [--single-service] [--checkpoint-interval 5] [--part throughput|verdicts|both] [--json]
        [--store-url postgresql://postgres@127.0.0.1:5432/test  (default: $LOGCANARY_TEST_POSTGRES_URL or this)]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from bench_kafka import CLOCK_TICKS, cpu_seconds, create_topic, produce, start_service, wait_counted
from bench_verdicts import SERVICES, catalogue, feed, poll, seed
from common import machine_info, print_machine
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from logcanary.demo.embedded_broker import EmbeddedBroker, free_port
from logcanary.demo.traffic import events
from logcanary.ingestion.kafka import repartition

STORE_URL = os.environ.get("LOGCANARY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# The tables a checkpoint writes (shard_owners is claimed at assignment; analyses, feedback and marks are not
# touched by ingestion).
STATE_TABLES = (
    "miners",
    "miner_groups",
    "deployments",
    "deployment_templates",
    "offsets",
    "origin_offsets",
    "idempotency_keys",
)
Counts = Counter[tuple[str, str]]


def shard_of(service: str, partitions: int) -> int:
    """The repartition partition of a service, as ``logcanary.live.scale_out.ScaleOut.shard_of`` places it."""
    return zlib.crc32(service.encode("utf-8", "surrogatepass")) % partitions


def spread_services(partitions: int, per_shard: int) -> list[str]:
    """``per_shard`` service names for every repartition partition, so each partition carries the same load."""
    chosen: dict[int, list[str]] = {shard: [] for shard in range(partitions)}
    for index in itertools.count():
        name = f"svc-{index}"
        names = chosen[shard_of(name, partitions)]
        if len(names) < per_shard:
            names.append(name)
        if all(len(names) == per_shard for names in chosen.values()):
            return sorted(name for names in chosen.values() for name in names)
    raise AssertionError("unreachable")


def traffic(count: int, services: list[str]) -> tuple[list[bytes], Counts]:
    """``count`` demo events over ``services`` x (v1, v2 with rare NPEs), interleaved so every service's events
    arrive throughout the run; with the expected count of each (service, deployment)."""
    streams = [(service, deployment) for service in services for deployment in ("v1", "v2")]
    share, extra = divmod(count, len(streams))
    iterators: list[Iterator[dict[str, Any]]] = [
        events(
            deployment,
            share + (index < extra),
            seed=index,
            npe_rate=0.001 if deployment == "v2" else 0.0,
            service=service,
        )
        for index, (service, deployment) in enumerate(streams)
    ]
    payloads: list[bytes] = []
    for row in itertools.zip_longest(*iterators):
        payloads.extend(orjson.dumps(event) for event in row if event is not None)
    expected: Counts = Counter()
    for index, stream in enumerate(streams):
        expected[stream] = share + (index < extra)
    assert len(payloads) == count == sum(expected.values())
    return payloads, expected


@dataclass(slots=True)
class Scrape:
    """What one replica's /metrics says."""

    events: int = 0  # held by its live engine (the services it owns)
    ingested: int = 0  # counted from Kafka by this process
    checkpoints: int = 0
    checkpoint_seconds: float = 0.0


def scrape(client: httpx.Client) -> Scrape:
    out = Scrape()
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "logcanary_deployment_events":
                out.events += int(sample.value)
            elif sample.name == "logcanary_events_ingested_total" and sample.labels.get("source") == "kafka":
                out.ingested += int(sample.value)
            elif sample.name == "logcanary_checkpoint_duration_seconds_count":
                out.checkpoints = int(sample.value)
            elif sample.name == "logcanary_checkpoint_duration_seconds_sum":
                out.checkpoint_seconds = sample.value
    return out


def service_counts(client: httpx.Client) -> Counts:
    counts: Counts = Counter()
    for info in client.get("/v1/services").json():
        for deployment in info["deployments"]:
            counts[(info["service"], deployment["deployment"])] = deployment["events"]
    return counts


def templates_held(client: httpx.Client) -> tuple[int, int]:
    """(templates of every service's miner, templates with stats summed over deployments), as /v1/services says."""
    services = client.get("/v1/services").json()
    return sum(s["templates"] for s in services), sum(d["templates"] for s in services for d in s["deployments"])


def row(event: dict[str, Any]) -> list[Any]:
    """What a router writes of a demo event on the repartition topic (its time as epoch seconds)."""
    stamp = datetime.fromisoformat(event["timestamp"]).timestamp()
    return [event["service"], event["deployment"], event["message"], stamp, event["host"], event["level"], []]


def bytes_per_event(payloads: list[bytes], sample: int = 2_000) -> dict[str, float]:
    """Mean bytes of an event on the log topic, and on the repartition topic (the row a router sends on, one
    record per raw record here; each also carries its ``logcanary-origin`` header)."""
    chosen = payloads[:: max(1, len(payloads) // sample)]
    raw = sum(len(p) for p in chosen) / len(chosen)
    rows = [orjson.dumps([row(orjson.loads(p))]) for p in chosen]  # repartition.encode's row
    header = len(repartition.HEADER_ORIGIN) + len(repartition.origin("logs", 99, 123_456_789))
    return {"log_topic": round(raw, 1), "repartition_topic": round(sum(map(len, rows)) / len(rows) + header, 1)}


def owned_partitions(client: httpx.Client) -> list[int] | None:
    partitions: list[int] | None = client.get("/readyz").json().get("owned_partitions")
    return partitions


def wait_owned(clients: list[httpx.Client], partitions: int, timeout: float = 120) -> list[list[int]]:
    """Until the replicas own every repartition partition between them, each once, unchanged for 3 s."""
    deadline = time.monotonic() + timeout
    stable_since, last = time.monotonic(), None
    while time.monotonic() < deadline:
        owned = [owned_partitions(client) or [] for client in clients]
        flat = sorted(p for shards in owned for p in shards)
        if owned != last:
            stable_since, last = time.monotonic(), owned
        elif flat == list(range(partitions)) and all(owned) and time.monotonic() - stable_since >= 3:
            return owned
        time.sleep(0.25)
    raise RuntimeError(f"the replicas never settled on owning {partitions} partitions: {last}")


@dataclass(slots=True)
class Postgres:
    """The schema of one scale-out run on this machine's server, and what the run made it do."""

    url: str
    schema: str = field(default_factory=lambda: f"bench_{secrets.token_hex(6)}")

    def query(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as db:
            return db.execute(query, params).fetchall()

    def wal_lsn(self) -> str:
        return str(self.query("SELECT pg_current_wal_lsn()::text")[0][0])

    def wal_bytes(self, since: str) -> int:
        return int(self.query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", since)[0][0])

    def rows_changed(self) -> dict[str, int]:
        """Rows inserted, updated or deleted per state table (stats of exited backends are flushed at exit)."""
        rows = self.query(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE schemaname = %s",
            self.schema,
        )
        return {name: int(count) for name, count in rows if name in STATE_TABLES}

    def settled_rows_changed(self) -> dict[str, int]:
        last: dict[str, int] | None = None
        for _ in range(20):
            now = self.rows_changed()
            if now == last:
                return now
            last = now
            time.sleep(0.5)
        return last or {}

    def state_bytes(self) -> int:
        rows = self.query(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r' "
            "AND c.relname = ANY(%s)",
            self.schema,
            list(STATE_TABLES),
        )
        return int(rows[0][0])

    def drop(self) -> None:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as db:
            db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))


class Producer(threading.Thread):
    """bench_kafka.produce in a thread of its own, so counting is watched while it sends."""

    def __init__(self, bootstrap: str, topic: str, payloads: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.args = (bootstrap, topic, payloads)
        self.seconds = 0.0
        self.cpu = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        started = time.thread_time()
        try:
            self.seconds = asyncio.run(produce(*self.args))
        except BaseException as exc:
            self.error = exc
        self.cpu = time.thread_time() - started


def run_mode(
    args: argparse.Namespace, label: str, replicas: int, payloads: list[bytes], expected: Counts
) -> dict[str, Any]:
    """One measurement: fresh broker, topic and (scale-out) schema; replicas joined, then produce and count."""
    scale_out = label != "direct"
    total = len(payloads)
    result: dict[str, Any] = {"mode": label, "replicas": replicas, "events": total, "partitions": args.partitions}
    postgres = Postgres(args.store_url) if scale_out else None
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        topic = f"bench-{secrets.token_hex(4)}"
        asyncio.run(create_topic(broker.bootstrap_servers, topic, args.partitions))
        extra = {
            "LOGCANARY_KAFKA_SESSION_TIMEOUT_MS": "3000",
            "LOGCANARY_CHECKPOINT_INTERVAL_SECONDS": str(args.checkpoint_interval),
        }
        if postgres is not None:
            stack.callback(postgres.drop)
            extra |= {
                "LOGCANARY_STORE_URL": postgres.url,
                "LOGCANARY_STORE_SCHEMA": postgres.schema,
                "LOGCANARY_KAFKA_REPARTITION_PARTITIONS": str(args.repartition_partitions),
            }
        processes = []
        clients: list[httpx.Client] = []
        for index in range(replicas):
            port = free_port()
            process = start_service(
                broker.bootstrap_servers, topic, Path(tmp) / "state", port, Path(tmp) / f"replica-{index}.log", extra
            )
            processes.append(process)
            stack.callback(_stop, process)
            clients.append(stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)))
        if scale_out:
            result["owned_at_start"] = wait_owned(clients, args.repartition_partitions)
        time.sleep(args.settle)  # the log topic's consumer group (the routers, or the direct consumer) joins too

        before = [scrape(client) for client in clients]
        cpu_before = [cpu_seconds(p.pid) for p in processes] + [cpu_seconds(broker.pid)]
        busy_before, own_before = machine_busy_seconds(), own_cpu_seconds()
        lsn = postgres.wal_lsn() if postgres is not None else ""
        producer = Producer(broker.bootstrap_servers, topic, payloads)
        started = time.monotonic()
        producer.start()
        first, finished, early = wait_counted(
            lambda: sum(scrape(client).events for client in clients), total, every=args.poll
        )
        cpu_after = [cpu_seconds(p.pid) for p in processes] + [cpu_seconds(broker.pid)]
        busy, own = machine_busy_seconds() - busy_before, own_cpu_seconds() - own_before
        at_counted = [scrape(client) for client in clients]
        producer.join(60)
        if producer.error is not None:
            raise producer.error
        visible = wait_counted(lambda: sum(service_counts(clients[0]).values()), total, every=0.5)[1]
        # Every event is in the store now (the first replica read them there): the checkpoints that saved them
        # are done. One more interval so that every replica's last checkpoint is in its count.
        time.sleep(args.checkpoint_interval if scale_out else 0)
        after = [scrape(client) for client in clients]
        saved = time.monotonic()
        seen = [service_counts(client) for client in clients]
        result["templates"] = dict(zip(("services", "deployments"), templates_held(clients[0]), strict=True))
        owned_at_end = [owned_partitions(client) for client in clients] if scale_out else None

        seconds = finished - started
        replica_cpu = [b - a for a, b in zip(cpu_before[:-1], cpu_after[:-1], strict=True)]
        result |= {
            "seconds": round(seconds, 3),
            "events_per_second": round(total / seconds),
            "steady_events_per_second": round((total - early) / max(finished - first, 1e-9)),
            "first_count_seconds": round(first - started, 3),
            "produce_seconds": round(producer.seconds, 3),
            "visible_on_first_replica_seconds": round(visible - started, 3),
            "exact": all(counts == expected for counts in seen),
            "cpu_seconds": {
                "replicas": [round(c, 2) for c in replica_cpu],
                "broker": round(cpu_after[-1] - cpu_before[-1], 2),
                "producer": round(producer.cpu, 2),
                "this benchmark process": round(own, 2),
                # Whatever else ran on the machine meanwhile (this VM is shared): busy time not ours.
                "others": round(max(0.0, busy - own - sum(cpu_after) + sum(cpu_before)), 2),
                "machine capacity": round(seconds * (os.cpu_count() or 1), 2),
            },
            "events_per_replica_cpu_second": round(total / max(sum(replica_cpu), 1e-9)),
        }
        if not result["exact"]:
            result["counts_seen"] = [{f"{s}/{d}": n for (s, d), n in sorted(c.items())} for c in seen]
        result["per_replica"] = [
            {
                "owned_partitions": (owned_at_end[i] if owned_at_end else None),
                "events_held": at_counted[i].events,
                "counted_from_kafka": at_counted[i].ingested - before[i].ingested,
                "checkpoints": after[i].checkpoints - before[i].checkpoints,
                "checkpoint_ms_mean": round(
                    1000
                    * (after[i].checkpoint_seconds - before[i].checkpoint_seconds)
                    / max(after[i].checkpoints - before[i].checkpoints, 1),
                    1,
                ),
                "cpu_seconds": round(replica_cpu[i], 2),
                "events_held_per_cpu_second": round(at_counted[i].events / max(replica_cpu[i], 1e-9)),
            }
            for i in range(replicas)
        ]
        checkpoints = sum(r["checkpoints"] for r in result["per_replica"])
        result["checkpoints"] = checkpoints
        # Over the run until every event was saved (visible, plus one interval for the first replica's own services).
        result["checkpoint_window_seconds"] = round(saved - started, 3)
        result["checkpoints_per_second"] = round(checkpoints / (saved - started), 2)
        if scale_out and result["owned_at_start"] != owned_at_end:
            result["rebalanced_during_run"] = True
        if postgres is not None:
            for process in processes:
                _stop(process)  # their connections close: PostgreSQL flushes their statistics
            rows = postgres.settled_rows_changed()
            result["postgres"] = {
                "schema": postgres.schema,
                "rows_changed": sum(rows.values()),
                "rows_changed_by_table": rows,
                "rows_per_checkpoint": round(sum(rows.values()) / max(checkpoints, 1)),
                "wal_bytes_server_wide": postgres.wal_bytes(lsn),
                "state_bytes": postgres.state_bytes(),
            }
    return result


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far (all processes, ours and others')."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def verdicts_across_replicas(args: argparse.Namespace) -> dict[str, Any]:
    """bench_verdicts.py's load on two scale-out replicas: 10,000 events/s posted to the first (it forwards them
    to the repartition topic), 20 gates asking each service's verdict of the replica that owns it, then of the
    one that does not (which answers from the owner's last checkpoint, read from the store and cached one
    checkpoint interval)."""
    postgres = Postgres(args.store_url)
    result: dict[str, Any] = {"replicas": 2, "checkpoint_interval_seconds": args.checkpoint_interval}
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        topic = f"bench-{secrets.token_hex(4)}"
        asyncio.run(create_topic(broker.bootstrap_servers, topic, args.partitions))
        stack.callback(postgres.drop)
        extra = {
            "LOGCANARY_KAFKA_SESSION_TIMEOUT_MS": "3000",
            "LOGCANARY_CHECKPOINT_INTERVAL_SECONDS": str(args.checkpoint_interval),
            "LOGCANARY_STORE_URL": postgres.url,
            "LOGCANARY_STORE_SCHEMA": postgres.schema,
            "LOGCANARY_KAFKA_REPARTITION_PARTITIONS": str(args.repartition_partitions),
        }
        bases, clients = [], []
        for index in range(2):
            port = free_port()
            process = start_service(
                broker.bootstrap_servers, topic, Path(tmp) / "state", port, Path(tmp) / f"replica-{index}.log", extra
            )
            stack.callback(_stop, process)
            bases.append(f"http://127.0.0.1:{port}")
            clients.append(stack.enter_context(httpx.Client(base_url=bases[-1], timeout=30)))
        owned = wait_owned(clients, args.repartition_partitions)
        owner = {
            f"svc-{i}": next(
                r for r, shards in enumerate(owned) if shard_of(f"svc-{i}", args.repartition_partitions) in shards
            )
            for i in range(SERVICES)
        }
        result["owner_of_service"] = owner
        seeded = seed(bases[0], catalogue())
        wait_counted(lambda: sum(scrape(client).events for client in clients), seeded, every=0.5, timeout=120)
        result["seeded_events"] = seeded
        stop = multiprocessing.Event()
        sent = multiprocessing.Value("q", 0)
        feeder = multiprocessing.Process(target=feed, args=(bases[0], stop, sent), daemon=True)
        feeder.start()
        try:
            time.sleep(2.0)  # let the feeder reach its rate
            for phase, flip in (("owner", 0), ("not the owner", 1)):
                route = {service: bases[r ^ flip] for service, r in owner.items()}
                before, started = sent.value, time.perf_counter()
                latency, verdicts = asyncio.run(poll(bases[0], args.clients, args.verdict_seconds, 0.1, route))
                rate = (sent.value - before) / (time.perf_counter() - started)
                result[phase] = {
                    "clients": args.clients,
                    "ingest_events_per_second": round(rate),
                    **latency,
                    "verdicts": verdicts,
                }
                if not args.json:
                    print(orjson.dumps({"verdicts asked of": phase, **result[phase]}).decode(), flush=True)
        finally:
            stop.set()
            feeder.join(timeout=10)
        total = seeded + int(sent.value)
        wait_counted(lambda: sum(scrape(client).events for client in clients), total, every=0.5, timeout=120)
        held = sum(scrape(client).events for client in clients)
        result["every_event_counted_once"] = held == total
        result["events_posted"] = total
    return result


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per mode, with ratios to the direct mode's median."""
    modes: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        modes.setdefault(r["mode"], []).append(r)
    direct = modes.get("direct")
    reference = statistics.median(r["events_per_second"] for r in direct) if direct else None
    out = []
    for mode, runs in modes.items():
        rate = statistics.median(r["events_per_second"] for r in runs)
        out.append(
            {
                "mode": mode,
                "runs": len(runs),
                "events_per_second": round(rate),
                "events_per_second_runs": [r["events_per_second"] for r in runs],
                "steady_events_per_second": round(statistics.median(r["steady_events_per_second"] for r in runs)),
                "ratio_to_direct": round(rate / reference, 2) if reference else None,
                "events_per_replica_cpu_second": round(
                    statistics.median(r["events_per_replica_cpu_second"] for r in runs)
                ),
                "exact": all(r["exact"] for r in runs),
            }
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=6, help="of the log topic")
    parser.add_argument("--repartition-partitions", type=int, default=6)
    parser.add_argument("--replicas", default="1,2,3", help="comma-separated replica counts to measure")
    parser.add_argument("--services-per-shard", type=int, default=2)
    parser.add_argument("--single-service", action="store_true", help="also: every event of one service, x3")
    parser.add_argument("--no-direct", action="store_true", help="skip the direct (SQLite) reference")
    parser.add_argument("--runs", type=int, default=1, help="rounds of every mode, interleaved")
    parser.add_argument("--checkpoint-interval", type=float, default=5.0, help="seconds (the default setting)")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between /metrics scrapes")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds for the log topic's group to join")
    parser.add_argument("--store-url", default=STORE_URL)
    parser.add_argument(
        "--part", choices=("throughput", "verdicts", "both"), default="both", help="verdicts: latency on 2 replicas"
    )
    parser.add_argument("--clients", type=int, default=20, help="concurrent gates (verdicts)")
    parser.add_argument("--verdict-seconds", type=float, default=20.0, help="per phase (verdicts)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    info = machine_info()
    if not args.json:
        print_machine(info)
    report: dict[str, Any] = {"machine": info}
    ok = True
    if args.part in ("throughput", "both"):
        report |= throughput(args)
        ok = all(r["exact"] for r in report["results"])
    if args.part in ("verdicts", "both"):
        report["verdicts"] = verdicts_across_replicas(args)
        ok = ok and report["verdicts"]["every_event_counted_once"]
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0 if ok else 1


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    services = spread_services(args.repartition_partitions, args.services_per_shard)
    payloads, expected = traffic(args.events, services)
    plan: list[tuple[str, int, list[bytes], Counts]] = []
    if not args.no_direct:
        plan.append(("direct", 1, payloads, expected))
    plan += [(f"scale-out x{n}", n, payloads, expected) for n in map(int, args.replicas.split(","))]
    if args.single_service:
        single, single_expected = traffic(args.events, ["payments"])
        plan.append(("one service x3", 3, single, single_expected))
    results = []
    for round_ in range(args.runs):
        for label, replicas, data, counts in plan:
            result = run_mode(args, label, replicas, data, counts) | {"round": round_}
            results.append(result)
            if not args.json:
                print(orjson.dumps(result).decode(), flush=True)
    summary = summarise(results)
    if not args.json:
        for s in summary:
            print(
                f"{s['mode']}: {s['events_per_second']} events/s (runs {s['events_per_second_runs']}), "
                f"steady {s['steady_events_per_second']}, {s['ratio_to_direct'] or '-'} x direct, "
                f"{s['events_per_replica_cpu_second']} events per replica CPU-second, exact={s['exact']}"
            )
    return {"services": services, "bytes_per_event": bytes_per_event(payloads), "results": results, "summary": summary}


if __name__ == "__main__":
    sys.exit(main())
