"""Producing to and reading from the test broker with aiokafka."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from logcanary.demo.embedded_broker import EmbeddedBroker


def topic_env(broker: EmbeddedBroker, checkpoint_seconds: str = "0.5", **extra: str) -> tuple[dict[str, str], str, str]:
    """A fresh topic and its dead-letter topic, and the LOGCANARY_* variables of a service consuming them."""
    topic = f"logs-{uuid.uuid4().hex[:8]}"
    dead = f"{topic}.dead"
    create_topics(broker.bootstrap_servers, topic, dead)
    env = {
        "LOGCANARY_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "LOGCANARY_KAFKA_TOPICS": topic,
        "LOGCANARY_KAFKA_DEAD_LETTER_TOPIC": dead,
        "LOGCANARY_KAFKA_GROUP_ID": f"g-{topic}",
        "LOGCANARY_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "LOGCANARY_CHECKPOINT_INTERVAL_SECONDS": checkpoint_seconds,
        **extra,
    }
    return env, topic, dead


def create_topics(bootstrap: str, *names: str, partitions: int = 2) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
        finally:
            await admin.close()

    asyncio.run(run())


def produce(bootstrap: str, topic: str, values: Iterable[bytes | dict[str, Any]]) -> int:
    """Sends every value (dicts as JSON) and waits for all acknowledgements; returns the count."""

    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024)
        await producer.start()
        try:
            pending = []
            sent = 0
            for value in values:
                raw = value if isinstance(value, bytes) else orjson.dumps(value)
                pending.append(await producer.send(topic, raw))
                sent += 1
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
            return sent
        finally:
            await producer.stop()

    return asyncio.run(run())


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """Records of a topic from the beginning, until ``expected`` were read or the time is up."""

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        records: list[Any] = []
        try:
            deadline = time.monotonic() + timeout
            while len(records) < expected and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for part in batch.values():
                    records.extend(part)
        finally:
            await consumer.stop()
        return records

    return asyncio.run(run())


def deployment_events(client: httpx.Client, service: str) -> dict[str, int]:
    for info in client.get("/v1/services").json():
        if info["service"] == service:
            return {d["deployment"]: d["events"] for d in info["deployments"]}
    return {}


def wait_for_events(client: httpx.Client, service: str, total: int, timeout: float = 120.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = deployment_events(client, service)
        if sum(counts.values()) >= total:
            return counts
        time.sleep(0.2)
    raise AssertionError(f"only {counts} of {total} events for {service} after {timeout}s")
