"""Masking keeps event words and hides values."""

import pytest

from service.engine.masking import Masker, mask


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("took 12ms", "took <*>ms"),
        ("size 93.0 KB, free 317.1 MB)", "size <*>, free <*>)"),
        ("from 10.251.71.240:50010 ok", "from <*>:<*> ok"),
        ("peer [2001:db8::8a2e:370:7334]:443", "peer [<*>]:<*>"),
        ("id=550e8400-e29b-41d4-a716-446655440000", "id=<*>"),
        ("trace 550e8400-e29b-41d4-a716-446655440000 done", "trace <*> done"),
        ("at 2024-05-01T12:00:00.123Z and 18:01:47,978", "at <*> and <*>"),
        ("on 2024-05-01 12:00:00", "on <*> <*>"),
        ("addr 0x7ffd5e8c and deadbeef01", "addr <*> and <*>"),
        ("open /var/log/app/x.log: denied", "open <*>: denied"),
        ("see https://example.com/a?b=1 now", "see https://<*> now"),
        ("mail bob.smith@example.org sent", "mail <*> sent"),
        ('user "John Smith" logged in', 'user "<*>" logged in'),
        ("user=alice retries=3", "user=<*> retries=<*>"),
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
