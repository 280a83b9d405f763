"""When a canary-only template is the same event as a baseline one."""

import pytest

from logcanary.analysis.similarity import same_event, value_like
from logcanary.engine.miner import Template


def t(text: str, signature: str = "") -> Template:
    return Template(tokens=text.split(), signature=signature)


@pytest.mark.parametrize(
    ("left", "right", "same"),
    [
        ("Starting worker-a7 now", "Starting worker-b9 now", True),  # a value the masker left alone
        ("Starting worker <*>", "Starting worker alpha", True),  # a wildcard covers it
        ("Block <*> stored as bytes in memory", "Block <*> stored as values in memory", False),  # a word differs
        ("Connection reset by peer", "Connection closed by peer", False),
        ("Loading config from /etc/a.yml", "Loading config from /etc/b.yml done", False),  # an added word
        ("Loaded <*> rows from db", "Loaded <*> rows from db shard_7", True),  # an added value
        ("rhost=<*>", "rhost=<*> user=<*>", False),  # a new field is a new event
        ("a b c d e f", "a b x y z f", False),  # too many differences
    ],
)
def test_same_event(left: str, right: str, same: bool) -> None:
    assert same_event(t(left), t(right)) is same
    assert same_event(t(right), t(left)) is same


def test_signatures_must_match() -> None:
    assert not same_event(
        t("failed <*>", "java.lang.NullPointerException|A.b"), t("failed <*>", "java.io.IOException|A.b")
    )


@pytest.mark.parametrize(("token", "expected"), [("host-17", True), ("camelCase", True), ("user=<*>", False),
                                                 ("<*>", True), ("password", False), ("blk_<*>", True)])  # fmt: skip
def test_value_like(token: str, expected: bool) -> None:
    assert value_like(token) is expected


def test_a_value_in_punctuation_stands_in_a_words_place() -> None:
    """``[req-<*> <*> <*> - <*> <*>]`` and ``[... - default default]``: a request context with ids where another
    logs defaults is the same event (``<*>]`` is a value and a bracket, not a word)."""
    assert value_like("<*>]") and value_like("(<*>)") and not value_like("default]")
    assert same_event(
        t("nova.compute [req-<*> <*> <*> - <*> <*>] Auditing locally available compute resources"),
        t("nova.compute [req-<*> <*> <*> - default default] Auditing locally available compute resources"),
    )
