"""Scale-out: every event reaches the one replica that owns its service, through a topic of logcanary's own.

Shippers rarely key their records, so one service's events arrive on every partition of the log topics, and a
replica that counted only its own partitions would judge half a canary. As Kafka Streams repartitions, each
replica's *router* reads its share of the log topics and sends every event on to the repartition topic, on the
partition of its service (``crc32(service) % partitions``); each replica's *owner* consumes the repartition
partitions the consumer group assigns it and holds exactly those services, whole (templates are mined from
every event of a service, by one miner, in one order). Owners checkpoint their state with their repartition
offsets in one PostgreSQL transaction, fenced by an epoch per partition claimed at assignment.

Exactly once across the two hops: a router commits its raw offsets to Kafka only after the repartition topic
acknowledged the events, so a router that dies in between sends them again; each repartition record carries
the raw record it came from (``logcanary-origin: topic/partition/offset``), and an owner keeps, with its state,
the next origin offset counted per raw partition, so the second copy is dropped. (A router writes one
repartition record per raw record and partition, in raw-offset order: the origin offsets of one raw partition
only grow on a repartition partition.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from logcanary.ingestion.sink import EventValues
from logcanary.live.scale_out import ScaleOut
from logcanary.settings import KafkaSettings

log = logging.getLogger(__name__)

HEADER_ORIGIN = "logcanary-origin"


def origin(topic: str, partition: int, offset: int) -> bytes:
    return f"{topic}/{partition}/{offset}".encode()


def origin_of(headers: Iterable[tuple[str, bytes]] | None) -> tuple[tuple[str, int], int] | None:
    """((topic, partition), offset) of the raw record a repartition record came from; None for HTTP events. The
    raw partitions are few: each is parsed once (and the same tuple returned for it every time)."""
    for name, value in headers or ():
        if name == HEADER_ORIGIN:
            head, _, offset = value.rpartition(b"/")
            source = _SOURCES.get(head)
            if source is None:
                topic, partition = head.decode().rsplit("/", 1)
                if len(_SOURCES) >= _SOURCES_MAX:
                    _SOURCES.clear()
                source = _SOURCES[head] = (topic, int(partition))
            return source, int(offset)
    return None


_SOURCES: dict[bytes, tuple[str, int]] = {}  # b"topic/partition" -> (topic, partition)
_SOURCES_MAX = 4096


def encode(events: Iterable[EventValues]) -> bytes:
    """The events as compact JSON rows: what the owner needs to count them, nothing else."""
    return orjson.dumps(list(events))


def encode_by_shard(events: Sequence[EventValues], shard_of: Callable[[str], int]) -> dict[int, bytes]:
    """One value per repartition partition for the events of one raw record (or of a chunk of an HTTP body)."""
    if len(events) == 1:
        return {shard_of(events[0][0]): orjson.dumps(events)}
    shards: dict[str, int] = {}  # service -> shard: a body of many events names few services
    by_shard: dict[int, list[EventValues]] = {}
    for event in events:
        shard = shards.get(event[0])
        if shard is None:
            shard = shards[event[0]] = shard_of(event[0])
        by_shard.setdefault(shard, []).append(event)
    return {shard: encode(group) for shard, group in by_shard.items()}


def decode(value: bytes | None) -> list[EventValues]:
    """The rows of :func:`encode`, as they are (JSON arrays: the engine takes them as values; a router always
    writes the time as a float)."""
    rows: list[EventValues] = orjson.loads(value or b"[]")
    return rows


async def ensure_repartition_topic(config: KafkaSettings, options: dict[str, Any], state: ScaleOut) -> None:
    """Creates the repartition topic when missing, and tells the state how many partitions it really has (it
    refuses a count other than the one its stored state was built with)."""
    topic = config.repartition_topic
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, config.kafka_repartition_partitions, 1)])
        errors = {code for _, code, *_ in getattr(response, "topic_errors", [])}
        if errors == {0}:
            log.info("created the repartition topic %s (%d partitions)", topic, config.kafka_repartition_partitions)
        elif errors - {0, TopicAlreadyExistsError.errno}:
            log.warning("creating the repartition topic %s: %s", topic, response)
        described = await admin.describe_topics([topic])
    finally:
        await asyncio.wait_for(admin.close(), 5.0)
    partitions = len(described[0]["partitions"]) if described and described[0].get("partitions") else 0
    if partitions <= 0:
        raise RuntimeError(f"the repartition topic {topic} has no partitions yet")
    recorded = await asyncio.to_thread(state.store.record_partitions, topic, partitions)
    state.built_with(partitions, recorded)
