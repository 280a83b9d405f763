"""Masking and tokenising cost the same per character whatever the text (issue 18): no input may make them
super-linear. One ``aaaa...a@`` token of 16,000 characters once took 1.15 s, and the work runs on the event loop.

The grid below feeds adversarial shapes at 1,000, 4,000, 16,000 and 64,000 characters to the built-in masking
rules (without the token cap, so the rules themselves are held to it), to the engine's tokeniser
(``TemplateMiner.split``: stack traces, masking, bounds, the cap) and to a masker with a user pattern that does
backtrack. CPU time per character at each size must stay within ``MAX_RATIO`` of that at 1,000, measured in
alternating rounds of the same run, so a busy machine slows both sides alike. A quadratic rule is 16 times slower
per character at 16,000 than at 1,000.

A second part checks that the rewritten patterns still match exactly what the old ones did (kept here, run only on
short texts).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logcanary.engine import masking, stacktrace
from logcanary.engine.masking import MAX_MASKED_TOKEN_CHARS, WILDCARD, Masker, apply_rules
from logcanary.engine.miner import TemplateMiner

SIZES = (1_000, 4_000, 16_000, 64_000)
MAX_RATIO = 4.0
SAMPLE_CHARS = 64_000  # each timed sample handles about this many characters, at every size
ROUNDS = 5  # rounds of one sample at 1,000 then one at the size, taken until one is within the bound
GIVE_UP_RATIO = 16.0  # a sample this far past the 1,000-character cost stops early


def _repeat(unit: str, head: str = "", tail: str = "") -> Callable[[int], str]:
    """A text of about ``size`` characters: ``head``, then ``unit`` again and again, then ``tail``."""

    def make(size: int) -> str:
        return head + unit * max(1, (size - len(head) - len(tail)) // len(unit)) + tail

    return make


SEPARATORS = "@.:/-_="
# Whitespace-free shapes: one token each.
TOKENS: dict[str, Callable[[int], str]] = {}
for sep in SEPARATORS:
    TOKENS |= {
        f"repeated {sep}": _repeat(sep),
        f"word{sep} repeated": _repeat("ab" + sep),
        f"digit{sep} repeated": _repeat("1" + sep),
        f"hex{sep} repeated": _repeat("a1" + sep),
        f"letters ending in {sep}": _repeat("a", tail=sep),
        f"digits ending in {sep}": _repeat("1", tail=sep),
        f"hex ending in {sep}": _repeat("f1", tail=sep),
        f"ab.ab... ending in {sep}": _repeat("ab.", tail=sep),
        f"{sep} then letters": _repeat("a", head=sep),
        f"{sep} then digits": _repeat("7", head=sep),
    }
TOKENS |= {
    # long runs of each character class
    "letters": _repeat("a"),
    "digits": _repeat("1"),
    "hex letters": _repeat("f"),
    "hex": _repeat("F1"),
    "non-ASCII word characters": _repeat("é"),
    "non-ASCII then a digit": _repeat("é", tail="1"),
    "underscores and digits": _repeat("_1"),
    "dollars": _repeat("$1"),
    # hex and numbers that fail at their end
    "hex letter, digits, non-hex letter": _repeat("1", head="a", tail="g"),
    "0x then hex, then a letter": _repeat("f", head="0x", tail="g"),
    "hex then digits then a letter": _repeat("1", head="ffffffff", tail="z"),
    "durations glued, then a letter": _repeat("1m", tail="X"),
    "decimal hours glued": _repeat("1.5h", tail="q"),
    "exponents": _repeat("1e"),
    "times of day": _repeat("11:22:33.4"),
    "dates": _repeat("2024-05-01T"),
    "decimal commas": _repeat("1,1", tail="a"),
    "signed numbers": _repeat("+1-"),
    "IPv6-ish": _repeat("1:", tail="g"),
    "IPv6 groups": _repeat("1111:", tail="z"),
    "colons": _repeat("::", tail="1"),
    "UUID-ish": _repeat("aaaaaaaa-"),
    "UUID heads": _repeat("aaaaaaaa-aaaa-"),
    # URL-ish near misses
    "letters then ://": _repeat("a", tail="://"),
    "letters, = then ://": _repeat("a", tail="=://"),
    "http:/ then letters": _repeat("a", head="http:/"),
    "http:// then letters": _repeat("a", head="http://"),
    "scheme characters then :x://": _repeat("a.", tail=":x://"),
    "scheme signs": _repeat("h+", tail="://"),
    "many schemes": _repeat("a://"),
    "digits then a scheme": _repeat("1", tail="a://b"),
    # e-mail-ish near misses
    "letters @ letters": lambda size: "a" * (size // 2) + "@" + "b" * (size // 2),
    "letters @ dotted, then @": lambda size: "a" * (size // 2) + "@" + "b." * (size // 4) + "@",
    "letters @ dashes, then !": lambda size: "a" * (size // 2) + "@" + "b-" * (size // 4) + "!",
    "a@ repeated": _repeat("a@"),
    "a@b. repeated": _repeat("a@b."),
    "@ then dotted": _repeat("a.", head="@"),
    "local characters then @x": _repeat("a.+", tail="@x"),
    "addresses glued": _repeat("a@b.c"),
    # key=value, paths
    "a= repeated": _repeat("a="),
    "=a repeated": _repeat("=a"),
    "path": _repeat("a/", head="/"),
    "relative parts": _repeat("./"),
    "Windows path": _repeat("a\\", head="C:\\"),
    # quotes and brackets, nested, within one token
    "double quotes": _repeat('"'),
    "single quotes": _repeat("'"),
    "mixed quotes": _repeat("\"'"),
    "quote then a letter": _repeat("'a"),
    "escaped quotes": _repeat('\\"'),
    "nested quotes and parentheses": lambda size: '("' * (size // 4) + '")' * (size // 4),
    "nested brackets": lambda size: "[{(<" * (size // 8) + ">)}]" * (size // 8),
    "quoted words glued": _repeat("'a'b"),
    # dates with a month's name, times without seconds, bounds on numbers (issue 20)
    "month dates": _repeat("10-Jul-"),
    "month dates, glued": _repeat("10/Jul/2005:"),
    "times without seconds": _repeat("10:3"),
    "bounded numbers": _repeat("<1"),
    "bounds on numbers": _repeat("<=~1"),
    # mixed
    "everything": _repeat("a1.@:/-_=\"'()[]{}<>"),
    "dotted segments with digits": _repeat("a1."),
}
# Shapes with whitespace or lines: whole messages, for the tokeniser.
MESSAGES: dict[str, Callable[[int], str]] = {
    "quote space": _repeat('" '),
    "apostrophe space": _repeat("' "),
    "quoted phrases": _repeat('"a b" '),
    "one quote, then words": _repeat("a ", head="'"),
    "long quoted values": _repeat('"' + "a" * 199 + '" '),
    "unclosed long quotes": _repeat('"' + "a" * 250 + " "),
    "a@ tokens": _repeat("a@ "),
    "ab. tokens": _repeat("ab. "),
    "1 KB tokens": _repeat("a" * 999 + "@ "),
    "cap-sized tokens": _repeat("a" * (MAX_MASKED_TOKEN_CHARS - 1) + "@ "),
    "units after numbers": _repeat("1 KB "),
    "values restated in parentheses": _repeat("1 bytes (2 KB) "),
    "month names": _repeat("Jul "),
    "textual dates": _repeat("Sun Jul 10 03:55:09 2005 "),
    "a month, then days": _repeat("10 ", head="Jul "),
    "days, then a month": _repeat("10 ", tail="Jul"),
    "request lines": _repeat('"GET /a HTTP/1.1" '),
    "request-like quotes": _repeat('"GET /' + "a" * 190 + '" '),
    "key word values": _repeat("a=b "),
    # stack traces: one line that a pattern could split many ways
    "Java exception name": _repeat("Error", head="x\n\tat a.b(C.java:1)\na.", tail="!"),
    "Java exception with trailing dot": _repeat("Exception", head="x\n\tat a.b(C.java:1)\njava.lang.", tail="."),
    "Java dotted name": _repeat("a.", head="x\n\tat a.b(C.java:1)\n", tail="!"),
    "Java thread names": _repeat('" a.b', head='x\n\tat a.b(C.java:1)\nException in thread "'),
    "Java frame": _repeat("a.", head="x\n\tat ", tail="!\nfoo"),
    "Java frames": _repeat("\tat a.b(C.java:1)\n", head="x\n", tail="a.BError"),
    "Java causes": _repeat("Caused by: a.bException: x\n\tat a.b(c)\n", head="x\n"),
    "Python exception name": _repeat("Error", head="Traceback (most recent call last)\nx\nA", tail="!"),
    "Python dotted name": _repeat("a.", head="Traceback (most recent call last)\nx\n", tail="Error!"),
    "Python file": _repeat(
        "a", head='Traceback (most recent call last)\n  File "', tail='", line 1, in f\nValueError: x'
    ),
    "Go dotted function": _repeat("a.", head="panic: x\n", tail="("),
    "Go dotted function, closed": _repeat("a.", head="panic: x\n", tail="b(x"),
    "Go receivers": _repeat("a.(*b)", head="panic: x\n", tail="("),
    "Go receivers, called": _repeat("a.(*b)", head="panic: x\n", tail=".c(x)!"),
    "Go path": _repeat("a/", head="panic: x\n", tail=".b(x"),
    "Go dashes": _repeat("a-", head="panic: x\nm.", tail="(x)"),
    "Go parentheses": _repeat(".(", head="panic: x\nm", tail="x)"),
    "many lines": _repeat("a\n"),
}
# A user pattern that backtracks: quadratic on one run of word characters with no "@x" after it.
BACKTRACKING_PATTERN = r"[\w.]+@x"
USER: dict[str, Callable[[int], str]] = {
    "one long word": _repeat("a"),
    "dotted": _repeat("a."),
    "1 KB words": _repeat("a" * 999 + " "),
}

_MINER = TemplateMiner()
_USER_MASKER = Masker([BACKTRACKING_PATTERN])


def _seconds_per_char(work: Callable[[str], object], text: str, give_up: float = float("inf")) -> float:
    """One sample: this thread's CPU time for ``work`` on ``text`` as many times as make about ``SAMPLE_CHARS``
    characters (CPU time: other processes of a busy machine do not count); it ends early once the time per
    character is over ``give_up`` (a quadratic case must not take minutes to fail)."""
    times = max(1, SAMPLE_CHARS // len(text))
    start = time.thread_time()
    for done in range(1, times + 1):
        work(text)
        elapsed = time.thread_time() - start
        if elapsed > give_up * done * len(text):
            break
    return elapsed / (done * len(text))


def _assert_flat(work: Callable[[str], object], make: Callable[[int], str]) -> None:
    """Time per character at every size is within ``MAX_RATIO`` of that at the smallest.

    Each round times the smallest text then the larger one, back to back, so what slows the machine slows both;
    the best round counts. A linear case needs one quiet round; a quadratic one is 16 times over at 16,000."""
    small = make(SIZES[0])
    work(small)  # warm the caches, as a running engine has them
    for size in SIZES[1:]:
        text = make(size)
        best = float("inf")
        for round_ in range(ROUNDS):
            base = min(_seconds_per_char(work, small), _seconds_per_char(work, small))
            best = min(best, _seconds_per_char(work, text, give_up=GIVE_UP_RATIO * base) / base)
            if best <= MAX_RATIO or (round_ and best > GIVE_UP_RATIO):
                break  # within the bound, or twice far past it
        assert best <= MAX_RATIO, f"{len(text):,} characters cost {best:.1f} times as much each as {len(small):,}"


@pytest.mark.parametrize("shape", TOKENS)
def test_masking_rules_are_linear(shape: str) -> None:
    _assert_flat(apply_rules, TOKENS[shape])


@pytest.mark.parametrize("shape", [*TOKENS, *MESSAGES])
def test_tokenising_is_linear(shape: str) -> None:
    _assert_flat(_MINER.split, (TOKENS | MESSAGES)[shape])


@pytest.mark.parametrize("shape", USER)
def test_a_backtracking_user_pattern_costs_at_most_the_cap_per_token(shape: str) -> None:
    _assert_flat(_USER_MASKER.tokens, USER[shape])


def test_a_token_over_the_cap_is_one_value() -> None:
    masker = Masker()
    long_word = "a" * (MAX_MASKED_TOKEN_CHARS + 1)
    assert masker.tokens(f"user {long_word} logged in") == ["user", WILDCARD, "logged", "in"]
    assert masker.tokens("user " + "a" * MAX_MASKED_TOKEN_CHARS + " x")[1] == "a" * MAX_MASKED_TOKEN_CHARS
    assert masker.mask_token("a" * 16_000 + "@") == WILDCARD
    # the same in a message long enough to be mined from its head (over 16 KiB)
    head = TemplateMiner().split(f"user {long_word}@ logged in " + "x " * 9_000)[1]
    assert head[:4] == ["user", WILDCARD, "logged", "in"]


def test_user_patterns_apply_to_each_token_up_to_the_cap() -> None:
    masker = Masker(extra_patterns=[r"tenant-[a-z]+", r"^id\d+$"])
    assert masker.tokens("tenant-acme asks id42 for x-tenant-b") == ["<*>", "asks", "<*>", "for", "x-<*>"]
    assert masker.tokens("tenant-acme said 'hi there' to id7") == ["<*>", "said", "'<*>'", "to", "<*>"]
    long_token = "tenant-" + "a" * MAX_MASKED_TOKEN_CHARS
    assert masker.tokens(f"for {long_token}") == ["for", WILDCARD]
    assert masker.mask_message(f"for  {long_token}\tx") == f"for  {long_token}\tx"  # spacing kept, cap respected


# -- the rewritten patterns match what the old ones did --------------------------------------------------------------

_OLD_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_OLD_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)\S+")
_OLD_BARE_HEX = re.compile(
    r"(?<![A-Za-z0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]*\d[0-9a-fA-F]*(?![A-Za-z0-9])(?<=[0-9a-fA-F]{8})"
)
_NEW_BARE_HEX = r"(?<![A-Za-z0-9])(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}+(?![A-Za-z0-9])"
_OLD_JAVA_EXCEPTION = re.compile(
    r"^(?:Exception in thread \".*?\"\s+)?(?:Caused by:\s+)?"
    r"([a-zA-Z_$][\w$]*(?:\.[\w$]+)+(?:Exception|Error|Throwable)[\w$]*)(?::\s*(.*))?$"
)
_OLD_PY_EXCEPTION = re.compile(
    r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Iteration)\w*)(?::\s*(.*))?$"
)
_OLD_GO_FRAME = re.compile(r"^([\w./-]+(?:\.\(?\*?[\w]+\)?)*\.[\w]+)\(.*\)$")


def _pieces(*parts: str, max_size: int = 12) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(parts), max_size=max_size).map("".join)


_TOKEN_PIECES = _pieces(
    "a", "1", "f", "F", "é", "_", ".", "@", "-", "+", "://", ":", "/", "=", "x", "0x", "e", "ms", "h", "~/", "Z",
    "T", '"', "'", "(", ")", "$", "\\", "g", "deadbeef", "2024-05-01", "ab.cd",
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(_TOKEN_PIECES)
def test_token_patterns_mask_as_the_old_ones_did(token: str) -> None:
    assert masking._URL.sub(lambda m: m.group(1) + m.group(2) + WILDCARD, token) == _OLD_URL.sub(
        lambda m: m.group(1) + WILDCARD, token
    )
    assert masking._EMAIL.sub(masking._email_or_run, token) == _OLD_EMAIL.sub(WILDCARD, token)
    old_value = re.compile(masking._VALUE.pattern.replace(_NEW_BARE_HEX, _OLD_BARE_HEX.pattern))
    assert old_value.pattern != masking._VALUE.pattern
    assert masking._VALUE.sub(WILDCARD, token) == old_value.sub(WILDCARD, token)


@settings(max_examples=1500, deadline=None)
@given(
    _pieces("", "Caused by: ", "Caused by:", 'Exception in thread "main" ', 'Exception in thread "', '" ', max_size=2),
    _pieces("a", "b$", ".", "Error", "Exception", "Throwable", "xError", "é", "_1", "..", max_size=8),
    _pieces(":", " msg", "!", ".", '"', "$", max_size=3),
)
def test_java_exceptions_are_found_as_before(head: str, name: str, tail: str) -> None:
    line = head + name + tail
    old, new = _OLD_JAVA_EXCEPTION.match(line), stacktrace._JAVA_EXCEPTION.match(line)
    assert (old and old.groups()) == (new and new.groups())


@settings(max_examples=1500, deadline=None)
@given(_pieces("a", "A", "_", "é", ".", "Error", "Exit", "Warning", "x", "1", ":", " ", "!", max_size=10))
def test_python_exceptions_are_found_as_before(line: str) -> None:
    old, new = _OLD_PY_EXCEPTION.match(line), stacktrace._PY_EXCEPTION.match(line)
    assert (old and old.groups()) == (new and new.groups())


@settings(max_examples=1500, deadline=None)
@given(_pieces("a", ".", "(", ")", "*", "/", "-", "x", " ", ".(*", ").", "1", max_size=14), st.sampled_from(["", ")"]))
def test_go_frames_are_found_as_before(line: str, end: str) -> None:
    line += end
    old = _OLD_GO_FRAME.match(line)
    assert stacktrace._go_function(line) == (old.group(1) if old else None)
