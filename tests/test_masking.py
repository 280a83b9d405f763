"""Masking keeps event words and hides values."""

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logcanary.analysis.verdict import analyze
from logcanary.engine.masking import Masker, mask
from logcanary.engine.model import Engine


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("took 12ms", "took <*>"),
        ("took 1.5s", "took <*>"),
        ("done in 5.3s, read 2GiB", "done in <*>, read <*>"),
        ("uptime 1h2m3.5s", "uptime <*>"),
        ("wait 250us 10µs 7μs 40ns", "wait <*> <*> <*> <*>"),
        ("heap 512MB of 4GB, 12 KiB (3 B)", "heap <*> of <*>, <*>"),  # a value restated in parentheses is the value
        ("0 bytes sent, 1234 bytes (1.2 KB) received", "<*> sent, <*> received"),
        ("lifetime <1 sec, then 00:01", "lifetime <*>, then <*>"),
        ("retry in 5m or 2h", "retry in <*> or <*>"),
        ("the 1st and 2nd try", "the <*>st and <*>nd try"),
        ("size 93.0 KB, free 317.1 MB)", "size <*>, free <*>)"),
        ("from 10.251.71.240:50010 ok", "from <*>:<*> ok"),
        ("peer [2001:db8::8a2e:370:7334]:443", "peer [<*>]:<*>"),
        ("id=550e8400-e29b-41d4-a716-446655440000", "id=<*>"),
        ("trace 550e8400-e29b-41d4-a716-446655440000 done", "trace <*> done"),
        ("at 2024-05-01T12:00:00.123Z and 18:01:47,978", "at <*> and <*>"),
        # textual dates and times, in any common spelling, are one value
        ("connection at Sun Jul 10 03:55:09 2005 from x", "connection at <*> from x"),
        ("at Fri, 17 Jun 2005 07:07:00 +0200.", "at <*>."),
        ("due Jul 10, 2005 3:04:05 PM UTC: late", "due <*>: late"),
        ("on 10 July 2005 and 2005/07/10 and 10-Jul-2005", "on <*> and <*> and <*>"),
        ('[17/Jun/2005:07:07:00 +0200] "GET /a/b HTTP/1.1"', '[<*> <*>] "GET <*> HTTP/<*>"'),
        ("May I retry on Sun", "May I retry on Sun"),  # a month's or day's name alone is a word
        ("on 2024-05-01 12:00:00", "on <*> <*>"),
        ("addr 0x7ffd5e8c and deadbeef01", "addr <*> and <*>"),
        ("open /var/log/app/x.log: denied", "open <*>: denied"),
        ("see https://example.com/a?b=1 now", "see https://<*> now"),
        ("mail bob.smith@example.org sent", "mail <*> sent"),
        ('user "John Smith" logged in', 'user "<*>" logged in'),
        ("user=alice retries=3 id=a1b", "user=alice retries=<*> id=<*>"),  # a word value is left to the miner
        ("status=failed, level=WARN.", "status=failed, level=WARN."),
        ("login via ssh2 on sda1", "login via ssh2 on sda1"),
        ("node bglio716 down", "node bglio<*> down"),
        ("balance -103 and +7", "balance <*> and <*>"),
        ("don't panic, it's fine", "don't panic, it's fine"),
    ],
)
def test_masks_values_and_keeps_words(message: str, expected: str) -> None:
    assert mask(message) == expected


def test_words_are_never_masked() -> None:
    words = "Connection reset by peer while reading response header from upstream"
    assert mask(words) == words


def test_extra_patterns_apply_first() -> None:
    masker = Masker(extra_patterns=[r"tenant-[a-z]+"])
    assert masker.tokens("request for tenant-acme failed") == ["request", "for", "<*>", "failed"]


def test_cache_is_bounded() -> None:
    masker = Masker(cache_size=100)
    for index in range(1000):
        masker.tokens(f"value {index} token{index}x")
    assert len(masker._cache) <= 100


def test_user_pattern_cache_is_bounded() -> None:
    masker = Masker(extra_patterns=[r"tenant-[a-z]+"], cache_size=100)
    for index in range(1000):
        assert masker.tokens(f"value {index} tenant-x{index}") == ["value", "<*>", "<*>"]
    assert len(masker._by_user) <= 100


def test_durations_in_other_units_do_not_fail_a_canary() -> None:
    """A slower canary (5.3s against 523ms) logs the same events: latency is a value, not a new event type."""
    engine = Engine()
    start = datetime(2024, 5, 1, tzinfo=UTC).timestamp()
    for index in range(400):
        at = start + index * 0.1
        engine.observe("api", "v1", f"GET /orders handled in {500 + index % 40}ms", at, "h1", "info")
        engine.observe("api", "v1", f"order {index} stored", at, "h1", "info")
        engine.observe("api", "v2", f"GET /orders handled in {5 + index % 7}.{index % 10}s", at, "h2", "info")
        engine.observe("api", "v2", f"order {index} stored", at, "h2", "info")
    verdict = analyze(engine.service("api"), canary="v2", baseline=["v1"])
    assert verdict.verdict == "pass", [a.template for a in verdict.anomalies]
    assert verdict.risk < 50


_ID_CHARS = "0123456789abcdefABCDEFxyz_-.:/"
_ID_PREFIXES = ["", "pay_", "cus_", "req-", "blk_", "a_", "deadbeef-", "x1_"]


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.tuples(st.sampled_from(_ID_PREFIXES), st.text("0123456789abcdef", min_size=6, max_size=40)).map("".join),
        st.text(_ID_CHARS, min_size=1, max_size=40),
    )
)
def test_the_hex_id_shortcut_masks_as_the_value_pattern_does(token: str) -> None:
    """``pay_581fe499fc29`` and bare hex ids skip the value pattern: what they give must be what it gives."""
    from logcanary.engine.masking import _REPEATED_WILDCARD, _VALUE, WILDCARD, _mask_value_runs

    assert _mask_value_runs(token) == _REPEATED_WILDCARD.sub(WILDCARD, _VALUE.sub(WILDCARD, token))
