"""When is a canary-only template "the same event" as a baseline one?

The miner splits an event type when a value sits where it cannot tell values
from words (``Starting worker-a`` / ``Starting worker-b``). Such a template is
not new. But two templates that differ by a plain word (``stored as bytes`` /
``stored as values``) are different events, and flagging those is the point.
So templates are aligned token by token, and every difference must involve a
wildcard or a token that looks like a value: digits, identifier punctuation
(``_ / : @``, a dot between word characters), inner capitals (``camelCase``) or
sheer length. Dots used as padding (``icbi.........<*>``) do not count.

Tokens are compared as they are *spelled*: case folded, punctuation dropped (``SUCCESS:`` is ``Success:``,
``user:`` is ``user=``), a wildcard kept as one. A build that logs the same event in other letter case or
punctuation logs the same event; a template that matches a baseline one only so is *reworded* (listed, not new).
"""

from __future__ import annotations

import difflib
import re

from logcanary.engine.clustering import template_terms
from logcanary.engine.masking import WILDCARD
from logcanary.engine.miner import Template

MIN_SHARED = 0.5  # share of the longer template's tokens that must align exactly
_VALUE_LIKE = re.compile(r"\d|[_/\\:@#]|\w\.\w|[a-z][A-Z]|^.{24,}$")
_PUNCTUATION = re.compile(r"[^\w\x00]+")


def spelling(token: str) -> str:
    """A token as the same-event test reads it: case folded, punctuation dropped, a wildcard kept (as NUL)."""
    return _PUNCTUATION.sub("", token.replace(WILDCARD, "\x00")).casefold()


def value_like(token: str) -> bool:
    """A token more likely to be a value than a word. A masked key=value (``user=<*>``) is not:
    its key names a field, and a new field is a new event. Punctuation alone (``-``) stands for an absent value."""
    if token == WILDCARD:
        return True
    if not spelling(token).strip("\x00"):
        return True  # punctuation alone ("-", "--"), or a value in it ("<*>]", "(<*>)"): never a word
    return bool(_VALUE_LIKE.search(token.replace(WILDCARD, "")))


def same_event(left: Template, right: Template, fold: bool = True) -> bool:
    """True when two templates differ only in value-like tokens (and share most tokens); with ``fold``, tokens of one
    :func:`spelling` are equal (value-likeness is still read from the tokens as written)."""
    if left.signature != right.signature:
        return False
    a, b = left.tokens, right.tokens
    keys_a, keys_b = ([spelling(x) or x for x in a], [spelling(y) or y for y in b]) if fold else (a, b)
    if len(a) == len(b):
        differing = [(x, y) for x, y, p, q in zip(a, b, keys_a, keys_b, strict=True) if p != q]
        if len(differing) > max(1, len(a) // 3):
            return False
        return all(WILDCARD in (x, y) or value_like(x) or value_like(y) for x, y in differing)
    matcher = difflib.SequenceMatcher(None, keys_a, keys_b, autojunk=False)
    shared = sum(block.size for block in matcher.get_matching_blocks())
    if shared < MIN_SHARED * max(len(a), len(b)):
        return False
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal" and not all(value_like(token) for token in (*a[i1:i2], *b[j1:j2])):
            return False
    return True


def respelled(left: Template, right: Template) -> bool:
    """The same event, with a word of it in other letter case or punctuation (``SUCCESS:`` / ``Success``)."""
    if len(left.tokens) != len(right.tokens) or not same_event(left, right):
        return False
    return any(
        x != y and (word := spelling(x)) == spelling(y) and any(c.isalpha() for c in word)
        for x, y in zip(left.tokens, right.tokens, strict=True)
    )


def same_words(left: Template, right: Template) -> bool:
    """True when two templates of one signature use the same words, whatever their number and order.

    The miner splits an event whose value is a list or a structure of varying length
    (``[a, b]`` / ``[a, b, c]``) into one template per length: the words say it is one event. A
    message cut short by its shipper ends in a fragment of a word, which is forgiven.
    """
    if left.signature != right.signature:
        return False
    mine, theirs = set(template_terms(left)), set(template_terms(right))
    if not mine or theirs - mine:
        return False
    extra = mine - theirs
    return not extra or (len(extra) == 1 and any(word.startswith(next(iter(extra))) for word in theirs))
