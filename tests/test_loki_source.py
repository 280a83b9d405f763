"""The Loki source against a real Grafana Loki (tests/loki_helpers.py): paging, same-timestamp floods, the
follow cursor with late lines, label values, Loki's refusals, Loki going away, headers, and the mapping.

Every test writes under a label value of its own (``run``), so they share one Loki per session.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from logcanary.sources import (
    BasicAuth,
    Batch,
    BearerAuth,
    Cursor,
    LineMapper,
    LokiSource,
    Observation,
    PulledLine,
    RetryPolicy,
    Secret,
    SourceAuthError,
    SourceConfigError,
    SourceLimitExceeded,
    SourceMetrics,
    SourceQueryError,
    SourceUnavailable,
    auth_from_spec,
    open_source,
)
from logcanary.sources.logql import render
from tests.loki_helpers import Loki, RecordingProxy, loki

__all__ = ["loki"]  # the fixture, imported for pytest

S = 1_000_000_000
MINUTE = 60 * S
FAST = RetryPolicy(attempts=3, backoff=0.05, max_backoff=0.2, max_elapsed=10.0)
Key = tuple[tuple[tuple[str, str], ...], int, str]


@pytest.fixture
def run() -> str:
    return uuid.uuid4().hex[:12]


def source(url: str, **options: Any) -> LokiSource:
    return LokiSource(url, retry=FAST, **options)


def key(line: PulledLine) -> Key:
    return (tuple(sorted({**line.labels, **line.metadata}.items())), line.timestamp, line.line)


async def collect(batches: AsyncIterator[Batch]) -> tuple[list[PulledLine], list[Batch]]:
    lines: list[PulledLine] = []
    seen: list[Batch] = []
    async for batch in batches:
        lines += batch.lines
        seen.append(Batch([], batch.through, batch.final, batch.notices))  # without the lines: small
    return lines, seen


def once_each(lines: list[PulledLine]) -> collections.Counter[Key]:
    counts = collections.Counter(key(line) for line in lines)
    repeated = [k for k, n in counts.items() if n > 1]
    assert not repeated, f"{len(repeated)} lines delivered more than once, e.g. {repeated[:3]}"
    return counts


def pull_all(url: str, query: str, start: int, end: int, **options: object) -> tuple[list[PulledLine], list[Batch]]:
    async def go() -> tuple[list[PulledLine], list[Batch]]:
        async with source(url, **options) as loki_source:
            return await collect(loki_source.pull(query, start, end))

    return asyncio.run(go())


def codes(batches: list[Batch]) -> set[str]:
    return {notice.code for batch in batches for notice in batch.notices}


# --- paging ------------------------------------------------------------------------------------------------------


def test_pages_across_many_pages_each_line_once_in_time_order(loki: Loki, run: str) -> None:
    base = time.time_ns() - 20 * MINUTE
    streams = []
    for pod in range(3):
        # bursts of 7 lines at one timestamp, so that page boundaries fall inside a timestamp
        entries = [(base + (i // 7) * 1000 + pod, f"pod {pod} line {i}") for i in range(4115)]
        streams.append(({"test": run, "pod": f"p{pod}"}, entries))
    assert loki.push(streams) == 12_345

    async def go() -> list[Batch]:
        async with source(loki.url) as loki_source:
            return [batch async for batch in loki_source.pull(f'{{test="{run}"}}', base, base + MINUTE)]

    batches = asyncio.run(go())
    lines = [line for batch in batches for line in batch.lines]
    assert len(once_each(lines)) == 12_345
    assert batches[-1].final and all(not batch.final for batch in batches[:-1])
    assert codes(batches) == set() and all(len(batch.lines) <= 5000 for batch in batches)
    newest = base
    for batch in batches:  # every batch is no older than the one before; ``through`` bounds what came
        stamps = [line.timestamp for line in batch.lines]
        assert all(newest <= stamp < batch.through for stamp in stamps)
        newest = max(stamps, default=newest)


def test_same_timestamp_flood_in_one_stream(loki: Loki, run: str) -> None:
    moment = time.time_ns() - 15 * MINUTE
    texts = [f"GET /api/orders/{i % 97}/items?page={i} 200 {i % 13}ms" for i in range(12_000)]
    loki.push([({"test": run}, [(moment, text) for text in texts])])
    loki.push([({"test": run}, [(moment - 1, "before"), (moment + 1, "after")])])
    lines, batches = pull_all(loki.url, f'{{test="{run}"}}', moment - S, moment + S)
    counts = once_each(lines)
    assert len(counts) == 12_002
    assert sorted(line.line for line in lines if line.timestamp == moment) == sorted(texts)
    assert "same_timestamp_split" in codes(batches)
    assert [line.line for line in lines[:1]] == ["before"] and lines[-1].line == "after"


def test_same_timestamp_flood_across_streams_with_shared_texts(loki: Loki, run: str) -> None:
    moment = time.time_ns() - 15 * MINUTE
    streams = [
        ({"test": run, "pod": f"p{pod}"}, [(moment, f"request {i} done") for i in range(2_500)]) for pod in range(4)
    ]
    loki.push(streams)
    lines, batches = pull_all(loki.url, f'{{test="{run}"}}', moment, moment + 1)
    assert len(once_each(lines)) == 10_000
    assert collections.Counter(line.labels["pod"] for line in lines) == {f"p{pod}": 2_500 for pod in range(4)}
    assert "same_timestamp_split" in codes(batches)


def test_one_text_in_more_streams_than_a_page_is_split_by_label_values(loki: Loki, run: str) -> None:
    """41 streams log "ready" at one nanosecond, pages hold 6: halved by pod, then container, one without pod."""
    moment = time.time_ns() - 15 * MINUTE
    streams: list[tuple[dict[str, str], list[tuple[int, str]]]] = [
        ({"test": run, "pod": f"p{pod}", "container": container}, [(moment, "ready"), (moment, f"{pod} up")])
        for pod in range(20)
        for container in ("app", "sidecar")
    ]
    streams.append(({"test": run, "container": "init"}, [(moment, "ready")]))
    loki.push(streams)
    lines, _ = pull_all(loki.url, f'{{test="{run}"}}', moment, moment + 1, page_limit=6)
    assert len(once_each(lines)) == 81
    assert sum(1 for line in lines if line.line == "ready") == 41


def test_flood_split_handles_any_text(loki: Loki, run: str) -> None:
    """Regex metacharacters, quotes, backslashes, newlines, accents, emoji, code points near the surrogates and
    the top of Unicode, lines that are prefixes of others: each line at the timestamp once, with pages of 4."""
    moment = time.time_ns() - 15 * MINUTE
    odd = ['a"b', "a\\b", "a\\", "é", "éé", "😀", "😀x", "x\ny", "x\n", "[(*+?{^$|.", " ", "\t", "\x7f", "\u07ff"]
    odd += ["\ud7ff", "\ue000", "\uffff", "\U0010fffe", "\U0010ffff", "\U0010ffffa", "ab", "abc", "abd", "b"]
    texts = [*odd, *(f"{text} {n}" for text in odd for n in range(3))]
    loki.push([({"test": run}, [(moment, text) for text in texts])])
    lines, _ = pull_all(loki.url, f'{{test="{run}"}}', moment, moment + 1, page_limit=4)
    once_each(lines)
    assert sorted(line.line for line in lines) == sorted(texts)


def test_lines_differing_only_in_metadata_past_a_page_are_refused_not_cut(loki: Loki, run: str) -> None:
    moment = time.time_ns() - 15 * MINUTE
    loki.push([({"test": run}, [(moment, "same text", {"trace_id": f"t{i}"}) for i in range(12)])])

    with pytest.raises(SourceLimitExceeded) as refused:
        pull_all(loki.url, f'{{test="{run}"}}', moment, moment + 1, page_limit=5)
    assert refused.value.code == "source_limit_exceeded" and "structured metadata" in refused.value.message
    lines, _ = pull_all(loki.url, f'{{test="{run}"}}', moment, moment + 1, page_limit=50)
    assert len(once_each(lines)) == 12


def test_small_pages_and_uneven_bursts_deliver_each_line_once(loki: Loki, run: str) -> None:
    """A page of 10 lines against bursts of 1 to 40 lines per timestamp: every kind of page boundary."""
    base = time.time_ns() - 25 * MINUTE
    entries = []
    for step, size in enumerate([1, 9, 10, 11, 3, 40, 10, 2, 25, 1, 19, 20, 21]):
        entries += [(base + step * 1000, f"{step:02d} {'x' * (n % 3)} line {n}") for n in range(size)]
    loki.push([({"test": run, "pod": "a"}, entries), ({"test": run, "pod": "b"}, entries[::3])])
    lines, batches = pull_all(loki.url, f'{{test="{run}"}}', base, base + S, page_limit=10)
    assert len(once_each(lines)) == len(entries) + len(entries[::3])
    assert all(len(batch.notices) <= 2 for batch in batches)


def test_identical_entries_are_one_line_in_loki(loki: Loki, run: str) -> None:
    """What Loki does: the same (stream, timestamp, text) pushed again is kept once; other metadata is another."""
    moment = time.time_ns() - 15 * MINUTE
    stream = {"test": run}
    loki.push([(stream, [(moment, "x"), (moment, "y"), (moment, "x")])])
    loki.push([(stream, [(moment, "x")])])
    loki.push([(stream, [(moment, "x", {"trace_id": "abc"})])])
    lines, _ = pull_all(loki.url, f'{{test="{run}"}}', moment, moment + 1)
    assert sorted((line.line, line.labels.get("trace_id", "")) for line in lines) == [
        ("x", ""),
        ("x", "abc"),
        ("y", ""),
    ]


def test_empty_window_says_so(loki: Loki, run: str) -> None:
    now = time.time_ns()
    lines, batches = pull_all(loki.url, f'{{test="{run}"}}', now - MINUTE, now)
    assert lines == [] and len(batches) == 1 and batches[0].final
    assert codes(batches) == {"empty_result"}


def test_structured_metadata_apart_when_categorized(loki: Loki, run: str) -> None:
    moment = time.time_ns() - 15 * MINUTE
    loki.push([({"test": run, "pod": "p1"}, [(moment, "hello", {"trace_id": "abc"})])])
    merged, _ = pull_all(loki.url, f'{{test="{run}"}}', moment, moment + 1)
    apart, _ = pull_all(loki.url, f'{{test="{run}"}}', moment, moment + 1, categorize_labels=True)
    assert merged[0].labels["trace_id"] == "abc" and merged[0].metadata == {}
    assert "trace_id" not in apart[0].labels and apart[0].metadata["trace_id"] == "abc"
    assert apart[0].labels["pod"] == "p1"


# --- limits and refusals -------------------------------------------------------------------------------------------


def test_window_longer_than_lokis_limit_is_split_and_said(loki: Loki, run: str) -> None:
    now = time.time_ns()
    loki.push([({"test": run}, [(now - 5 * MINUTE, "recent")])])
    lines, batches = pull_all(loki.url, f'{{test="{run}"}}', now - 40 * 24 * 60 * MINUTE, now)
    assert [line.line for line in lines] == ["recent"]
    assert "range_split" in codes(batches)


def test_entry_limit_above_lokis_is_lowered_and_said(loki: Loki, run: str) -> None:
    base = time.time_ns() - 15 * MINUTE
    loki.push([({"test": run}, [(base + i, f"line {i}") for i in range(7000)])])

    async def go() -> tuple[list[PulledLine], list[Batch], int]:
        async with source(loki.url, page_limit=6000) as loki_source:
            lines, batches = await collect(loki_source.pull(f'{{test="{run}"}}', base, base + S))
            return lines, batches, loki_source.page_limit

    lines, batches, limit = asyncio.run(go())
    assert len(once_each(lines)) == 7000 and limit == 5000
    assert "limit_lowered" in codes(batches)


@pytest.mark.parametrize(
    ("query", "quoted"),
    [
        ('{app="x"', "syntax error"),
        ('{app=~".*"}', "at least one regexp or equality matcher"),
        ('{app="x"} |~ "("', "error parsing regexp"),
    ],
)
def test_bad_selector_is_a_query_error_quoting_loki(loki: Loki, query: str, quoted: str) -> None:
    async def go() -> None:
        async with source(loki.url) as loki_source:
            with pytest.raises(SourceQueryError) as invalid:
                await loki_source.validate(query)
            assert invalid.value.code == "source_query_invalid" and invalid.value.status == 400
            assert quoted in (invalid.value.store_message or "")
            with pytest.raises(SourceQueryError):
                await collect(loki_source.pull(query, time.time_ns() - MINUTE, time.time_ns()))

    asyncio.run(go())


def test_metric_query_is_refused(loki: Loki) -> None:
    async def go() -> None:
        async with source(loki.url) as loki_source:
            await loki_source.validate('{app="x"} |= "error"')
            with pytest.raises(SourceQueryError, match="not a log query"):
                await loki_source.validate('rate({app="x"}[1m])')

    asyncio.run(go())


# --- the follow cursor -------------------------------------------------------------------------------------------


def test_follow_no_gap_no_duplicate_with_late_lines_and_restarts(loki: Loki, run: str) -> None:
    query = f'{{test="{run}"}}'
    base = time.time_ns() - 30 * MINUTE
    a = [(base + i * S // 10, f"a {i}") for i in range(300)]  # base .. base+30s
    loki.push([({"test": run, "pod": "p1"}, a)])
    delivered: list[PulledLine] = []

    metrics = SourceMetrics(CollectorRegistry())

    async def follow(checkpoint: bytes, until: int) -> bytes:
        cursor = Cursor.from_bytes(checkpoint)  # a restart between follows: the cursor is all that is kept
        async with source(loki.url, metrics=metrics) as loki_source:
            async for batch in loki_source.follow(query, cursor, until):
                delivered.extend(batch.lines)
        return cursor.to_bytes()

    checkpoint = Cursor(query, base, lateness=20 * S).to_bytes()
    checkpoint = asyncio.run(follow(checkpoint, base + 40 * S))
    assert len(delivered) == 300
    assert Cursor.from_bytes(checkpoint).floor == base + 20 * S

    b = [(base + 40 * S + i * S // 10, f"b {i}") for i in range(200)]  # newer
    late = [(base + 35 * S, "late within the window"), (base + 25 * S + 7, "late, same second as a line of a")]
    too_late = [(base + 10 * S, "older than the floor")]  # Loki takes it (a new stream), the cursor does not
    loki.push([({"test": run, "pod": "p1"}, b + late), ({"test": run, "pod": "p2"}, too_late)])
    checkpoint = asyncio.run(follow(checkpoint, base + 70 * S))
    assert len(delivered) == 300 + 200 + 2
    checkpoint = asyncio.run(follow(checkpoint, base + 70 * S))  # nothing new: nothing again
    assert len(once_each(delivered)) == 502
    assert "older than the floor" not in {line.line for line in delivered}
    restored = Cursor.from_bytes(checkpoint)
    assert restored.position == base + 70 * S and restored.floor == base + 50 * S
    assert restored.seen == 100  # the keys of the lines at or after the floor only (b 100..199)
    lag = metrics.lag.labels("loki")._value.get()
    assert 30 * 60 - 70 - 5 < lag < 30 * 60 - 70 + 120  # now minus the position, in seconds
    assert metrics.lines.labels("loki")._value.get() == 502


def test_follow_interrupted_mid_pull_resumes_from_its_checkpoint(loki: Loki, run: str) -> None:
    query = f'{{test="{run}"}}'
    base = time.time_ns() - 30 * MINUTE
    loki.push([({"test": run}, [(base + i * 1000, f"line {i}") for i in range(2000)])])
    delivered: list[PulledLine] = []

    async def first() -> bytes:
        cursor = Cursor(query, base)
        async with source(loki.url, page_limit=300) as loki_source:
            async for batch in loki_source.follow(query, cursor, base + S):
                delivered.extend(batch.lines)
                checkpoint = cursor.to_bytes()  # as a service would, with the engine state
                if len(delivered) > 700:
                    return checkpoint
        raise AssertionError("never interrupted")

    async def resumed(checkpoint: bytes) -> None:
        cursor = Cursor.from_bytes(checkpoint)
        async with source(loki.url, page_limit=300) as loki_source:
            async for batch in loki_source.follow(query, cursor, base + S):
                delivered.extend(batch.lines)

    asyncio.run(resumed(asyncio.run(first())))
    assert len(once_each(delivered)) == 2000


def test_cursor_serialisation_round_trip_and_refusals() -> None:
    cursor = Cursor('{a="b"}', 1_000, lateness=500, max_seen=10)
    lines = [PulledLine(1_000 + i, f"l{i}", {"a": "b"}, {}) for i in range(8)]
    fresh, notices = cursor.admit(lines, 1_008)
    assert len(fresh) == 8 and notices == []
    again = Cursor.from_json(cursor.to_json())
    assert again.admit(lines, 1_008)[0] == [] and again.position == 1_008 and again.seen == 8
    more = [PulledLine(2_000 + i, f"m{i}", {"a": "b"}, {}) for i in range(12)]
    fresh, notices = again.admit(more, 2_100)
    assert len(fresh) == 12 and [notice.code for notice in notices] == ["lateness_shrunk"]
    assert again.seen <= 10 and again.floor > 2_100 - 500
    for garbage in (b"", b"[]", b'{"v": 9}', Cursor("q", 0).to_bytes()[:-5]):
        with pytest.raises(ValueError, match="not a cursor"):
            Cursor.from_bytes(garbage)


# --- label values ------------------------------------------------------------------------------------------------


def test_label_values_find_earlier_deployments(loki: Loki, run: str) -> None:
    now = time.time_ns()
    for version, age in (("v1", 50), ("v2", 30), ("v3", 10)):
        loki.push([({"test": run, "app": "payments", "version": version}, [(now - age * MINUTE, "started")])])
    loki.push([({"test": run, "app": "orders", "version": "v9"}, [(now - 5 * MINUTE, "started")])])

    async def go() -> tuple[list[str], list[str], list[str]]:
        async with source(loki.url) as loki_source:
            scoped = await loki_source.label_values(
                "version", now - 60 * MINUTE, now, f'{{test="{run}", app="payments"}}'
            )
            apps = await loki_source.label_values("app", now - 60 * MINUTE, now, f'{{test="{run}"}}')
            none = await loki_source.label_values("no_such_label", now - 60 * MINUTE, now, f'{{test="{run}"}}')
            with pytest.raises(SourceQueryError):
                await loki_source.label_values("bad name", now - MINUTE, now)
            with pytest.raises(SourceQueryError, match="syntax error"):
                await loki_source.label_values("app", now - MINUTE, now, f'{{test="{run}"')
            return scoped, apps, none

    scoped, apps, none = asyncio.run(go())
    assert scoped == ["v1", "v2", "v3"] and apps == ["orders", "payments"] and none == []


# --- templates ---------------------------------------------------------------------------------------------------


def test_selector_templates_escape_values_for_where_they_stand(loki: Loki, run: str) -> None:
    template = '{test="' + run + '", app="$service", version=~"$deployment|${hash}"} != "$$x"'
    assert render(template, {"service": "pay", "deployment": "v1.2", "hash": "a+b"}) == (
        '{test="' + run + '", app="pay", version=~"v1\\\\.2|a\\\\+b"} != "$x"'
    )
    assert render('{a="$x"} |~ "end$"', {"x": 'q"\\'}) == '{a="q\\"\\\\"} |~ "end$"'
    for bad in ('{a="$nope"}', "{a=$x}", '{a="$x'):
        with pytest.raises(SourceConfigError):
            render(bad, {"x": "1"})
    moment = time.time_ns() - 15 * MINUTE
    loki.push([({"test": run, "version": name}, [(moment, name)]) for name in ("v1.2", "v102", "v1-2")])
    rendered = render('{test="' + run + '", version=~"$deployment"}', {"deployment": "v1.2"})
    lines, _ = pull_all(loki.url, rendered, moment, moment + 1)
    assert [line.line for line in lines] == ["v1.2"]


# --- Loki going away, retries, headers -------------------------------------------------------------------------------


def test_headers_auth_and_tenant_are_sent_and_never_shown(
    loki: Loki, run: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    monkeypatch.setenv("LOKI_PASSWORD", "pa55word")
    moment = time.time_ns() - 15 * MINUTE
    loki.push([({"test": run}, [(moment, "hello")])])
    shown: list[str] = []
    with RecordingProxy(loki.url) as proxy:

        async def go() -> None:
            bearer = auth_from_spec({"type": "bearer", "token_file": str(token_file)})
            basic = BasicAuth("grafana-user", Secret(env="LOKI_PASSWORD"))
            for auth in (bearer, basic):
                async with source(proxy.url, tenant="team-a", auth=auth) as loki_source:
                    lines, _ = await collect(loki_source.pull(f'{{test="{run}"}}', moment, moment + 1))
                    assert [line.line for line in lines] == ["hello"]
                    proxy.faults = [(401, {})]  # what a Loki behind an auth gateway answers a wrong secret
                    with pytest.raises(SourceAuthError) as refused:
                        await loki_source.validate(f'{{test="{run}"}}')
                    shown.extend([repr(loki_source), repr(auth), str(refused.value), repr(refused.value.as_dict())])

        asyncio.run(go())
    sent = [headers for _, path, headers in proxy.requests if path.startswith("/loki/api/v1/query_range")]
    assert sent[0]["authorization"] == "Bearer s3cret-token" and sent[0]["x-scope-orgid"] == "team-a"
    assert sent[-1]["authorization"] == "Basic Z3JhZmFuYS11c2VyOnBhNTV3b3Jk"  # grafana-user:pa55word
    assert all("s3cret" not in text and "pa55word" not in text and "Z3JhZmFu" not in text for text in shown)
    assert str(token_file) in shown[0] and "LOKI_PASSWORD" in shown[4]


def test_missing_secret_is_an_auth_error_naming_its_origin(tmp_path: Path) -> None:
    async def go() -> None:
        auth = BearerAuth(Secret(file=tmp_path / "absent"))
        async with source("http://127.0.0.1:9", auth=auth) as loki_source:
            with pytest.raises(Exception) as failed:
                await loki_source.validate('{a="b"}')
            assert getattr(failed.value, "code", "") == "source_unauthorized"
            assert str(tmp_path / "absent") in str(failed.value)

    asyncio.run(go())
    with pytest.raises(SourceConfigError):
        LokiSource("http://user:pw@127.0.0.1:3100")
    with pytest.raises(SourceConfigError):
        auth_from_spec({"type": "bearer", "token": "a", "token_env": "B"})


def test_throttling_is_retried_honouring_retry_after(loki: Loki, run: str) -> None:
    moment = time.time_ns() - 15 * MINUTE
    loki.push([({"test": run}, [(moment, "hello")])])
    registry = CollectorRegistry()
    metrics = SourceMetrics(registry)
    with RecordingProxy(loki.url) as proxy:
        proxy.faults = [(429, {"Retry-After": "1"}), (503, {})]
        lines, _ = pull_all(proxy.url, f'{{test="{run}"}}', moment, moment + 1, metrics=metrics)
    assert [line.line for line in lines] == ["hello"]
    (first, _, _), (second, _, _), _ = proxy.requests
    assert second - first >= 1.0  # what Retry-After asked
    value = registry.get_sample_value
    assert value("logcanary_source_requests_total", {"source": "loki", "result": "throttled"}) == 1
    assert value("logcanary_source_requests_total", {"source": "loki", "result": "server_error"}) == 1
    assert value("logcanary_source_requests_total", {"source": "loki", "result": "ok"}) == 1
    assert value("logcanary_source_lines_pulled_total", {"source": "loki"}) == 1
    assert metrics.health()["loki"]["ok"] is True


def test_busy_loki_fails_after_bounded_retries(loki: Loki) -> None:
    with RecordingProxy(loki.url) as proxy:
        proxy.always = (503, {})
        with pytest.raises(SourceUnavailable) as unavailable:
            pull_all(proxy.url, '{a="b"}', time.time_ns() - MINUTE, time.time_ns())
    assert len(proxy.requests) == FAST.attempts
    assert unavailable.value.code == "source_unavailable" and "gave up after 3 attempts" in unavailable.value.message


def test_nothing_listening_is_unavailable_after_bounded_retries() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics = SourceMetrics(CollectorRegistry())

    async def go() -> None:
        async with source(f"http://127.0.0.1:{port}", metrics=metrics) as loki_source:
            await loki_source.validate('{a="b"}')

    with pytest.raises(SourceUnavailable, match=r"unreachable .*gave up after 3 attempts") as unavailable:
        asyncio.run(go())
    assert unavailable.value.as_dict()["code"] == "source_unavailable"
    assert metrics.requests.labels("loki", "unreachable")._value.get() == 3
    assert metrics.health()["loki"]["consecutive_failures"] == 3


def test_loki_killed_mid_pull_fails_loudly_then_resumes_from_through(loki: Loki, run: str) -> None:
    """SIGKILL between two pages: the pull raises SourceUnavailable (bounded), never ends as if complete;
    once Loki is back (its WAL replayed), a pull from the last batch's ``through`` completes the window."""
    query = f'{{test="{run}"}}'
    base = time.time_ns() - 20 * MINUTE
    loki.push([({"test": run}, [(base + i * 1000, f"line {i}") for i in range(5000)])])
    registry = CollectorRegistry()
    metrics = SourceMetrics(registry)
    delivered: list[PulledLine] = []
    through = base

    async def interrupted() -> None:
        nonlocal through
        async with source(loki.url, page_limit=500, metrics=metrics) as loki_source:
            async for batch in loki_source.pull(query, base, base + S):
                delivered.extend(batch.lines)
                through = batch.through
                if len(delivered) >= 1000 and loki.pid:
                    loki.stop(signal.SIGKILL)

    began = time.monotonic()
    try:
        with pytest.raises(SourceUnavailable):
            asyncio.run(interrupted())
        assert time.monotonic() - began < 30  # bounded: FAST allows 3 tries within 10 s per request
        assert metrics.health()["loki"]["ok"] is False
        assert metrics.health()["loki"]["last_error_code"] == "source_unavailable"
    finally:
        loki.start()
    assert len(delivered) < 5000
    rest, batches = pull_all(loki.url, query, through, base + S)
    assert batches[-1].final
    assert len(once_each(delivered + rest)) == 5000


def test_open_source_builds_loki_from_an_analysis_spec(loki: Loki, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken")
    spec = {"type": "loki", "url": loki.url, "tenant": "shop", "auth": {"type": "bearer", "token_file": str(token)}}
    built = open_source(spec, retry=FAST)
    assert isinstance(built, LokiSource) and built.kind == "loki" and "t0ken" not in repr(built)

    async def check() -> None:
        try:
            await built.validate('{a="b"}')
        finally:
            await built.aclose()

    asyncio.run(check())
    for bad in (
        {"type": "elasticsearch", "url": loki.url},
        {"type": "loki"},
        {"type": "loki", "url": loki.url, "extra": 1},
        {"type": "loki", "url": loki.url, "timeout": -1},
        {"type": "loki", "url": loki.url, "auth": {"type": "digest"}},
    ):
        with pytest.raises(SourceConfigError):
            open_source(bad)
    inline = {"type": "loki", "url": loki.url, "auth": {"type": "basic", "username": "u", "password": "p"}}
    open_source(inline)
    with pytest.raises(SourceConfigError, match="not inline"):
        open_source(inline, inline_secrets=False)


# --- mapping -------------------------------------------------------------------------------------------------------


def mapped(
    line: str, labels: Mapping[str, str] | None = None, metadata: Mapping[str, str] | None = None
) -> Observation:
    mapper = LineMapper("payments", "v2", identities=("abc123",))
    observations = mapper.map([PulledLine(1_700_000_000_123_456_789, line, labels or {}, metadata or {})])
    assert len(observations) == 1
    return observations[0]


def test_mapping_levels_hosts_and_plain_lines() -> None:
    plain = mapped("Connection reset by peer", {"pod": "pay-7f9", "detected_level": "warn", "app": "other"})
    assert plain == (
        "payments",
        "v2",
        "Connection reset by peer",
        1_700_000_000.1234567,
        "pay-7f9",
        "warn",
        ("abc123",),
    )
    assert mapped("x", {"level": "ERROR", "detected_level": "info", "instance": "10.0.0.1:9100"})[4:6] == (
        "10.0.0.1:9100",
        "ERROR",
    )
    assert mapped("x", {"detected_level": "unknown"}, {"severity_text": "fatal"})[4:6] == ("unknown", "fatal")
    assert mapped("x", {})[4:6] == ("unknown", "info")


def test_mapping_json_lines_through_the_ingestion_mapping() -> None:
    promtail = mapped('{"level":"error","msg":"payment failed","user":"u1","service":"bad name!"}', {"pod": "p1"})
    assert promtail[2:] == ("payment failed", 1_700_000_000.1234567, "p1", "error", ("abc123",))
    fluent = mapped('{"log":"boom\\n","kubernetes":{"pod_name":"pay-1"}}', {"detected_level": "warn"})
    assert fluent[2:6] == ("boom", 1_700_000_000.1234567, "pay-1", "warn")
    otel = mapped('{"body":"disk full","severity":"WARN","resources":{"host.name":"n1"}}')
    assert otel[2] == "disk full" and otel[5] == "WARN"
    not_an_event = mapped('{"a": 1}')
    assert not_an_event[2] == '{"a": 1}'


def test_mapping_skips_empty_lines_and_truncates_long_ones() -> None:
    mapper = LineMapper("payments", "v2", max_message_bytes=1024)
    out = mapper.map([PulledLine(1, "", {}, {}), PulledLine(2, "   ", {}, {}), PulledLine(3, "é" * 1000, {}, {})])
    assert mapper.skipped == 2 and len(out) == 1
    assert out[0].message.endswith("…[truncated 976 bytes]")


def test_pulled_lines_map_end_to_end(loki: Loki, run: str) -> None:
    moment = time.time_ns() - 15 * MINUTE
    loki.push(
        [
            ({"test": run, "pod": "pay-1"}, [(moment, '{"level":"error","message":"NullPointerException"}')]),
            ({"test": run, "pod": "pay-2"}, [(moment + 1, "level=warn slow query", {"detected_level": "warn"})]),
        ]
    )
    lines, _ = pull_all(loki.url, f'{{test="{run}"}}', moment, moment + 2)
    observations = sorted(LineMapper("payments", "v2").map(lines), key=lambda o: o.timestamp)
    assert [(o.message, o.host, o.level) for o in observations] == [
        ("NullPointerException", "pay-1", "error"),
        ("level=warn slow query", "pay-2", "warn"),
    ]
