"""Engine memory is bounded by configuration, whatever the input: services, and per-template state that does not
grow with a message's length (examples, template tokens, river's features), while huge messages are still judged."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from logcanary.analysis.verdict import analyze
from logcanary.engine.caps import Caps
from logcanary.engine.clustering import MAX_TERMS, template_terms
from logcanary.engine.miner import (
    MAX_TEMPLATE_CHARS,
    MAX_TEMPLATE_TOKENS,
    MAX_TOKEN_CHARS,
    TRUNCATED,
    CacheBudget,
    Template,
    TemplateMiner,
)
from logcanary.engine.model import MAX_EXAMPLE_BYTES, Engine
from logcanary.engine.stacktrace import parse_stack_trace
from tests.test_state import make_state
from tests.test_verdict import SERVICE, ingest

MB = 1024 * 1024


def assert_bounded(template: Template) -> None:
    assert len(template.tokens) <= MAX_TEMPLATE_TOKENS
    assert sum(map(len, template.tokens)) <= MAX_TEMPLATE_CHARS
    assert all(len(token) <= MAX_TOKEN_CHARS + len(TRUNCATED) for token in template.tokens)
    assert len(template_terms(template)) <= MAX_TERMS + 4  # words, then the exception and up to 3 frames


def words(count: int, seed: str) -> str:
    """``count`` distinct letter-only words (never masked: the worst case for a template's size)."""
    return " ".join(f"{seed}{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676 % 26)}" for i in range(count))


def huge_java_trace(exception: str) -> str:
    """A 1 MB trace: a huge exception message on one line, then the frames, then a deep cause at the end."""
    frames = "\n".join(f"\tat com.acme.orders.Repository.load(Repository.java:{i})" for i in range(2000))
    return (
        f"request failed\n{exception}: {words(MB // 5, 'x')}\n"
        "\tat com.acme.orders.OrderService.place(OrderService.java:88)\n"
        "\tat com.acme.orders.OrderController.post(OrderController.java:41)\n"
        f"{frames}\n"
        "Caused by: java.sql.SQLTransientConnectionException: pool exhausted\n"
        "\tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:696)\n"
        "\tat com.acme.orders.Db.connect(Db.java:12)\n"
        "\t... 2000 more"
    )


def test_the_services_cap_evicts_the_least_recently_seen_whole() -> None:
    engine = Engine(caps=Caps(max_services=3))
    for at, service in enumerate(["a", "b", "c"]):
        engine.observe(service, "v1", "request served", float(at))
        engine.observe(service, "v2", "request served", float(at))
    engine.observe("a", "v1", "request served", 10.0)  # a is seen again: b is now the least recently seen
    engine.observe("d", "v1", "request served", 11.0)
    assert set(engine.services) == {"a", "c", "d"}
    assert engine.evicted == [("b", "v1"), ("b", "v2")]
    assert engine.services_evicted == 1
    engine.observe("b", "v1", "request served", 12.0)  # comes back as a new service, evicting c
    assert set(engine.services) == {"a", "d", "b"}
    assert engine.services["b"].deployments["v1"].events == 1


def test_a_flood_of_services_keeps_the_cap_and_the_busy_ones() -> None:
    engine = Engine(caps=Caps(max_services=50))
    for index in range(5_000):
        engine.observe("busy", "v1", "request served", float(index))  # seen all along: never the least recent
        engine.observe(f"flood-{index}", "v1", "hello", float(index))
    assert len(engine.services) == 50
    assert "busy" in engine.services and engine.services["busy"].deployments["v1"].events == 5_000
    assert engine.services_evicted == 5_000 + 1 - 50


def test_the_store_forgets_evicted_services_after_a_checkpoint_and_a_restart(tmp_path: Path) -> None:
    state = make_state(tmp_path, max_services=2)
    for at, service in enumerate(["a", "b"]):
        state.engine.observe(service, "v1", f"request {at} served", float(at))
    asyncio.run(state.checkpoint())
    state.engine.observe("c", "v1", "request served", 5.0)  # evicts a, the least recently seen
    asyncio.run(state.checkpoint())
    state.store.close()

    with sqlite3.connect(tmp_path / "logcanary.sqlite") as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            if "service" in columns:
                assert db.execute(f"SELECT COUNT(*) FROM {table} WHERE service = 'a'").fetchone() == (0,), table
    restored = make_state(tmp_path, max_services=2)
    assert set(restored.engine.services) == {"b", "c"}
    assert restored.engine.services["c"].deployments["v1"].events == 1
    restored.store.close()


def test_a_1_mb_message_is_bounded_in_template_example_and_river_state() -> None:
    engine = Engine()
    message = words(MB // 5 + 10, "w")
    assert len(message) > MB
    template = engine.observe("svc", "v1", message, 1.0)
    assert_bounded(template)
    assert template.tokens[-1] == TRUNCATED
    deployment = engine.service("svc").deployment("v1")
    [example] = deployment.stats[template].examples
    head, _, marker = example.rpartition(" …[truncated ")
    assert message.startswith(head) and len(head.encode()) == MAX_EXAMPLE_BYTES
    assert marker == f"{len(message) - MAX_EXAMPLE_BYTES} bytes]"
    for model in deployment.clusterer._models.values():
        assert all(len(micro.tf) <= MAX_TERMS for micro in model.micro_clusters.values())
    # Messages that only differ past the head are one event type: the head names it.
    assert engine.observe("svc", "v1", message + " tail", 2.0) is template


def test_a_long_message_is_mined_from_its_head_consistently() -> None:
    miner = TemplateMiner()
    short = miner.add("user alice logged in from " + words(200, "h"))
    long = miner.add("user alice logged in from " + words(200, "h") + " " + words(50_000, "z"))
    assert short is long
    assert_bounded(short)


def test_a_new_exception_in_a_1_mb_message_still_fails_the_canary() -> None:
    engine = Engine()
    ingest(engine, "v1", 3000, seed=1)
    ingest(engine, "v2", 3000, seed=2)
    message = huge_java_trace("java.lang.IllegalStateException")
    assert len(message) > MB
    trace = parse_stack_trace(message)
    assert trace is not None
    # The innermost cause, at the end of the megabyte, types the trace, with its frames.
    assert trace.exception == "java.sql.SQLTransientConnectionException"
    assert trace.frames == ("com.zaxxer.hikari.pool.HikariPool.getConnection", "com.acme.orders.Db.connect")
    at = max(d.last_seen for d in engine.service(SERVICE).deployments.values())
    template = engine.observe(SERVICE, "v2", message, at, "h1", "info")
    assert_bounded(template)
    assert template.signature.startswith("java.sql.SQLTransientConnectionException")
    verdict = analyze(engine.service(SERVICE), canary="v2", baseline=["v1"])
    assert verdict.verdict == "fail", verdict.reason
    assert any("SQLTransientConnectionException" in anomaly.template for anomaly in verdict.anomalies)


def test_a_huge_exception_line_still_shows_its_frames() -> None:
    """No cause: the exception and the top frames come after a 1 MB exception message, all on one line."""
    message = huge_java_trace("java.lang.IllegalStateException").split("Caused by:")[0]
    trace = parse_stack_trace(message)
    assert trace is not None
    assert trace.exception == "java.lang.IllegalStateException"
    assert trace.frames == (
        "com.acme.orders.OrderService.place",
        "com.acme.orders.OrderController.post",
        "com.acme.orders.Repository.load",
    )
    assert_bounded(TemplateMiner().add(message))


def test_the_cache_budget_empties_every_miners_caches() -> None:
    budget = CacheBudget(limit_bytes=50_000)
    miners = [TemplateMiner(cache_budget=budget) for _ in range(3)]
    for index in range(300):
        for miner in miners:
            miner.add(f"order {words(3, chr(97 + index % 26) + chr(97 + index // 26))} placed")
    assert budget.resets > 0
    assert budget.used_bytes <= budget.limit_bytes
    assert sum(len(m._exact) + len(m._by_shape) for m in miners) * 200 <= budget.limit_bytes
    # Mining goes on the same: the templates are those a miner with no budget finds.
    alone = TemplateMiner(cache_budget=CacheBudget(limit_bytes=10**12))
    for index in range(300):
        alone.add(f"order {words(3, chr(97 + index % 26) + chr(97 + index // 26))} placed")
    assert sorted(t.text for t in miners[0].templates.values()) == sorted(t.text for t in alone.templates.values())
    # A miner's share goes back to the budget when it empties its caches (an evicted service does).
    used = budget.used_bytes
    miners[1].clear_caches()
    assert budget.used_bytes < used or used == 0


long_texts = st.lists(
    st.text(alphabet="abcXYZ019_=:/.-\"' ", min_size=1, max_size=300)
    | st.sampled_from(["\n", "\tat a.b.C.d(C.java:1)\n", "java.lang.IllegalStateException: x\n"]),
    max_size=20,
).map("".join)


@settings(max_examples=60, deadline=None)
@given(st.lists(long_texts, min_size=1, max_size=6), st.integers(min_value=0, max_value=3))
def test_templates_are_bounded_whatever_the_messages(messages: list[str], repeat: int) -> None:
    miner = TemplateMiner()
    for message in messages:
        big = message * (1 + repeat * 20)  # up to ~400 KB
        first = miner.add(big)
        assert_bounded(first)
        assert miner.match(big) is first.resolve()
