"""Online, single-pass template mining (Drain-style) over masked tokens.

Why not Drain3 itself: we need an exact-match fast path (most masked messages
were seen before, so a dict lookup answers them), templates typed by stack
trace signature, merging of templates that generalise into the same text,
content-derived ids that replicas agree on, and a hard cap on templates.

How a message is typed:
1. A multi-line message holding a stack trace gets a *signature* (exception
   class + top frames); templates only ever merge within one signature.
2. The (masked) tokens are looked up as a whole: a hit is the common case.
3. Otherwise the templates with the same signature, token count and first
   token are scored by Drain's similarity (share of positions whose constant
   tokens are equal); the best at or above the threshold absorbs the message,
   turning the differing positions into ``<*>``. Else a new template is born.

Template ids are a hash of the template's text, so the same event type gets the
same id in any process. When a template generalises, its id changes; the old
id is kept as an alias so counts recorded under it still resolve.

Memory does not grow with message length: a template holds at most
``MAX_TEMPLATE_TOKENS`` tokens of at most ``MAX_TOKEN_CHARS`` characters,
``MAX_TEMPLATE_CHARS`` in all; a longer message is mined from its head and its
template ends with the ``…`` marker. The exact-match and shape caches of every
miner in the process share one budget (``CACHE_BUDGET_BYTES``).
"""

from __future__ import annotations

import hashlib
import re
import weakref
from dataclasses import dataclass, field
from typing import Any

from logcanary.engine.caps import DEFAULT_CAPS
from logcanary.engine.masking import MAX_MASKED_TOKEN_CHARS, WILDCARD, Masker, shape_of
from logcanary.engine.memory import VALUE_BYTES, template_bytes
from logcanary.engine.stacktrace import VIEW_CHARS, parse_stack_trace

OTHER_ID = "other"
DEFAULT_SIMILARITY = 0.5
DEFAULT_MAX_TEMPLATES = DEFAULT_CAPS.max_templates_per_service
DEFAULT_VARIABLE_AFTER = 3
_EXACT_CACHE_SIZE = 200_000
_MAX_GROUPS_SEARCHED = 256
_COVARYING_VARIABLE_AFTER = 3  # co-varying word positions need this many times more values to be variable
_KIND_VARIABLE_AFTER = 2  # positions of kind-naming words need this many times more values (or other evidence)
MAX_TEMPLATE_TOKENS = 128  # tokens of a template at most, its marker included
MAX_TEMPLATE_CHARS = 4096  # characters of a template's tokens at most
MAX_TOKEN_CHARS = 256  # a longer (masked) token keeps this head and ends with the marker
TRUNCATED = "\u2026"  # "…": ends a cut token, and is the last token of a template mined from a message's head
_SHAPE_MAX_CHARS = 1024  # longer messages are not cached by shape (the key would be as long as the message)
CACHE_BUDGET_BYTES = 128 * 1024 * 1024  # exact-match and shape caches of all miners of the process, estimated


_DIGIT = re.compile(r"\d")


class ShapeFilter:
    """Which message shapes were (probably) seen before: a bitmap of their hashes, one per :class:`CacheBudget`,
    shared by its miners (fixed size).

    A shape seen once is not cached. A message with a hex id or a UUID in it (a trace id, a request id) has a shape
    of its own that no later message has: caching each cost more than the cache saved (the entry, and the emptying
    of every miner's caches its bytes made the budget do), and in a service's logs such messages are the many. A
    shape is cached on its second sighting; a false "seen" (two shapes on one bit) only caches a shape early. The
    bitmap is emptied once a quarter of its bits are set, so false "seen"s stay under a quarter."""

    __slots__ = ("_bits", "_marked")
    BITS = 1 << 20  # 128 KiB

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS // 8)
        self._marked = 0

    def seen_before(self, shape: bytes) -> bool:
        """Whether the shape was marked; marks it."""
        bit = hash(shape) & (self.BITS - 1)
        index, mask = bit >> 3, 1 << (bit & 7)
        bits = self._bits
        if bits[index] & mask:
            return True
        if self._marked >= self.BITS // 4:
            bits[:] = bytes(len(bits))
            self._marked = 0
        bits[index] |= mask
        self._marked += 1
        return False


# A word that names a kind of event rather than a value: a capitalised or upper-case word (Started, GET, RUNNING,
# SUCCESS_CONTAINER_CLEANUP), a field's label (memory:, disk:) or a key's word value (status=failed, user=guest), each
# possibly quoted or bracketed. No digits: a token with digits is a value or a name.
_KIND_WORD = re.compile(
    r"[\"'(\[{]*+(?:[A-Z][A-Za-z]*+(?:[_-][A-Za-z]++)*+|[A-Za-z][A-Za-z_-]*+:|[A-Za-z][\w.-]*+=[A-Za-z]++)[\"')\]},;:.]*+"
)
_WORD = re.compile(r"[\"'(\[{]*+[A-Za-z][A-Za-z_-]*+(?:=[A-Za-z]++)?[\"')\]},;:.]*+")


def _kind_words(values: set[str]) -> bool:
    """Whether a position's values are all words and some name a kind of event (:data:`_KIND_WORD`)."""
    return all(_WORD.fullmatch(value) or _KIND_WORD.fullmatch(value) for value in values) and any(
        _KIND_WORD.fullmatch(value) for value in values
    )


def _wildcard(token: str) -> str:
    """What a variable position of a template holds for a token: ``<*>``, or for ``key=value`` the key and ``<*>``
    (``user=root`` -> ``user=<*>``, as masking writes any other value of a key): the key names the field."""
    key, sep, value = token.partition("=")
    if not sep or not key or not value or WILDCARD in key:
        return WILDCARD
    return f"{key}={WILDCARD}{value[len(value.rstrip(_TRAILING_MARKS)) :]}"


_TRAILING_MARKS = ",;:.)]}'\""


def bound_tokens(tokens: list[str]) -> list[str]:
    """A message's masked tokens as a template may hold them: at most ``MAX_TEMPLATE_TOKENS`` tokens of at most
    ``MAX_TOKEN_CHARS`` characters, ``MAX_TEMPLATE_CHARS`` in all. Past a limit the head is kept and ends with
    the ``…`` token, so messages that only differ past the head are one type (their first tokens name it)."""
    if len(tokens) <= MAX_TEMPLATE_TOKENS:
        total = sum(map(len, tokens))
        if total <= MAX_TOKEN_CHARS or (
            total <= MAX_TEMPLATE_CHARS and max(map(len, tokens), default=0) <= MAX_TOKEN_CHARS
        ):
            return tokens  # the common case: no token can be too long when all of them together are not
    keep = MAX_TEMPLATE_TOKENS if len(tokens) <= MAX_TEMPLATE_TOKENS else MAX_TEMPLATE_TOKENS - 1
    out: list[str] = []
    total = 0
    for whole in tokens:
        token = whole if len(whole) <= MAX_TOKEN_CHARS else whole[:MAX_TOKEN_CHARS] + TRUNCATED
        if len(out) >= keep or total + len(token) > MAX_TEMPLATE_CHARS - len(TRUNCATED):
            out.append(TRUNCATED)
            break
        out.append(token)
        total += len(token)
    return out


def _message_head(message: str) -> str:
    """A long message's first tokens (twice what a template keeps: masking may join two), each cut, so a
    huge message costs a bounded amount to mask. Short messages are returned as they are.

    A token is cut one character past the masking cap, so a token over the cap stays over it and is masked to
    ``<*>`` as it is in a short message, not masked by its head."""
    if len(message) <= VIEW_CHARS:
        return message
    pieces = message.split(None, 2 * MAX_TEMPLATE_TOKENS)[: 2 * MAX_TEMPLATE_TOKENS]
    return " ".join(piece[: MAX_MASKED_TOKEN_CHARS + 1] for piece in pieces)


class CacheBudget:
    """One memory budget for the caches of many miners: past it, every miner's caches are emptied.

    The caches only save work (a hit skips masking and the tree search), so emptying them is always safe.
    Sizes are estimates of CPython's (a token is counted as a string of its own, though it is often shared).
    """

    def __init__(self, limit_bytes: int = CACHE_BUDGET_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self.used_bytes = 0
        self.resets = 0
        self._miners: weakref.WeakSet[TemplateMiner] = weakref.WeakSet()
        self.shapes_seen = ShapeFilter()  # 128 KiB, fixed: outside the budget

    def register(self, miner: TemplateMiner) -> None:
        self._miners.add(miner)

    def charge(self, size: int) -> None:
        """Accounts for an entry about to be cached, emptying every cache first when it would not fit."""
        if self.used_bytes + size > self.limit_bytes:
            for miner in list(self._miners):
                miner.clear_caches()
            self.used_bytes = 0
            self.resets += 1
        self.used_bytes += size

    def release(self, size: int) -> None:
        """Accounts for cache entries dropped by their miner."""
        self.used_bytes = max(0, self.used_bytes - size)


SHARED_CACHE_BUDGET = CacheBudget()


def _exact_size(tokens: tuple[str, ...]) -> int:
    return 200 + 64 * len(tokens) + sum(map(len, tokens))


def template_id_of(signature: str, tokens: list[str]) -> str:
    """The content-derived, stable id of a template."""
    text = signature + "\x1f" + " ".join(tokens)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


@dataclass(eq=False, slots=True)
class Template:
    """One event type: a token pattern with ``<*>`` where values vary."""

    tokens: list[str]
    signature: str = ""  # stack trace signature ("" for ordinary lines)
    size: int = 0  # messages mined into it
    template_id: str = ""
    merged_into: Template | None = None  # set when another template absorbed this one
    aliases: list[str] = field(default_factory=list)  # earlier ids of this template

    def __post_init__(self) -> None:
        if not self.template_id:
            self.template_id = template_id_of(self.signature, self.tokens)

    @property
    def text(self) -> str:
        """Human-readable template; stack traces show their exception and frames."""
        if not self.signature:
            return " ".join(self.tokens)
        exception, *frames = self.signature.split("|")
        marker = exception + ":"  # the miner puts "<exception>:" between the headline and the message
        split = self.tokens.index(marker) if marker in self.tokens else len(self.tokens)
        headline, message = " ".join(self.tokens[:split]), " ".join(self.tokens[split:])
        trace = "".join(f"\n\tat {frame}" for frame in frames)
        return (f"{headline}\n" if headline else "") + (message or exception) + trace

    def resolve(self) -> Template:
        """The live template this one was merged into (itself when not merged)."""
        template = self
        while template.merged_into is not None:
            template = template.merged_into
        return template


OTHER = Template(tokens=[WILDCARD], template_id=OTHER_ID)


def _route(tokens: list[str]) -> str:
    """The tree branch of a token list: its first token, unless that holds a value."""
    if not tokens:
        return ""
    first = tokens[0]
    return WILDCARD if WILDCARD in first else first


@dataclass(eq=False, slots=True)
class _Group:
    """A Drain cluster: messages of one signature and length that look alike.

    A position where members differ is not a parameter yet: event types often
    differ by one word (``stored as bytes`` / ``stored as values``). Only when a
    position has shown ``variable_after`` distinct values does it become a
    wildcard of the group's templates; until then each value is its own template.
    """

    tokens: list[str]
    signature: str
    variable: set[int] = field(default_factory=set)
    values: dict[int, set[str]] = field(default_factory=dict)
    templates: dict[tuple[str, ...], Template] = field(default_factory=dict)


class TemplateMiner:
    """Mines templates from raw messages, one at a time."""

    def __init__(
        self,
        masker: Masker | None = None,
        similarity: float = DEFAULT_SIMILARITY,
        max_templates: int = DEFAULT_MAX_TEMPLATES,
        variable_after: int = DEFAULT_VARIABLE_AFTER,
        cache_budget: CacheBudget | None = None,
    ) -> None:
        self.masker = masker or Masker()
        self.similarity = similarity
        self.max_templates = max_templates
        self.variable_after = variable_after
        self.templates: dict[str, Template] = {}  # live templates by id, in order of birth
        self.overflow = 0  # messages that found no template once the cap was reached
        self.version = 0  # bumped whenever the miner may have learnt something (for checkpoints)
        self.renamed = 0  # bumped whenever templates get new ids or merge (their service then folds its stats)
        self.bytes = 0  # estimated memory of its templates and groups (logcanary.engine.memory), caches apart
        self.closed = False  # no new event type (the memory budget is full): a message no template takes is other
        self.words: list[str] | None = None  # the last message's words, one per template token (see add)
        self._by_id: dict[str, Template] = {}  # every id ever given, live or former
        self._exact: dict[tuple[str, tuple[str, ...]], Template] = {}
        # Message *shape* (every digit read as 1) -> template: most messages differ from one seen
        # before only in their digits. Off with user patterns, which may look at digit values.
        self._by_shape: dict[bytes, tuple[Template, list[str] | None]] = {}  # with the words of its first message
        self._shapes_ok = not self.masker.has_extra_patterns
        self._buckets: dict[tuple[str, int, str], list[_Group]] = {}
        self._budget = SHARED_CACHE_BUDGET if cache_budget is None else cache_budget
        self._budget.register(self)
        self._exact_bytes = self._shape_bytes = 0  # this miner's share of the budget

    def clear_caches(self) -> None:
        """Empties the exact-match and shape caches (they only save work; mining goes on the same)."""
        self._budget.release(self._exact_bytes + self._shape_bytes)
        self._exact.clear()
        self._by_shape.clear()
        self._exact_bytes = self._shape_bytes = 0

    def __len__(self) -> int:
        return len(self.templates)

    def get(self, template_id: str) -> Template | None:
        """The live template for an id or any of its former ids."""
        template = self._by_id.get(template_id)
        return template.resolve() if template is not None else None

    def split(self, message: str) -> tuple[str, list[str]]:
        """The signature and masked tokens of a message, bounded (:func:`bound_tokens`)."""
        signature, tokens, _words = self._split(message)
        return signature, tokens

    def _split(self, message: str) -> tuple[str, list[str], list[str] | None]:
        """:meth:`split`, and the words the tokens were masked from, one per token (None for a stack trace, or when
        the tokens were bounded): what a template's stats count values of."""
        if "\n" in message:
            trace = parse_stack_trace(message)
            if trace is not None:
                text = f"{trace.headline} {trace.exception}: {trace.message}"
                return trace.signature, bound_tokens(self.masker.tokens(_message_head(text))), None
        if len(message) > VIEW_CHARS:
            message = _message_head(message)
        tokens, words = self.masker.split(message)
        bounded = bound_tokens(tokens)
        return "", bounded, words if bounded is tokens else None

    def add(self, message: str) -> Template:
        """Mines one message and returns its (live) template; ``OTHER`` past the cap. ``words`` is then the message's
        words, one per template token (or None: see :meth:`_split`)."""
        shape = (
            shape_of(message)
            if self._shapes_ok
            and len(message) <= _SHAPE_MAX_CHARS
            and "\n" not in message
            and "0x" not in message
            and "0X" not in message
            else None
        )
        if shape is not None:
            known = self._by_shape.get(shape)
            if known is not None:
                # The words of the message that made the entry: this one's differ in digits at most.
                template, self.words = known
                template = template.resolve()
                template.size += 1
                return template
        signature, tokens, words = self._split(message)
        self.words = words
        key = (signature, tuple(tokens))
        seen = self._exact.get(key)
        if seen is not None:
            template = seen.resolve()
        else:
            template = self._learn(signature, tokens)
            if template is OTHER:
                self.overflow += 1
                return OTHER
            if len(self._exact) >= _EXACT_CACHE_SIZE:
                self._budget.release(self._exact_bytes)
                self._exact.clear()
                self._exact_bytes = 0
            size = _exact_size(key[1])
            self._budget.charge(size)  # may empty this miner's caches too
            self._exact[key] = template
            self._exact_bytes += size
        if (
            shape is not None
            and self._budget.shapes_seen.seen_before(shape)
            and _DIGIT.search(" ".join(tokens)) is None
        ):
            # Every digit was masked, so any message of this shape has these tokens (cached when seen before).
            if len(self._by_shape) >= _EXACT_CACHE_SIZE:
                self._budget.release(self._shape_bytes)
                self._by_shape.clear()
                self._shape_bytes = 0
            size = 100 + 2 * len(shape) + (64 * len(words) if words is not None else 0)  # the shape, the words
            self._budget.charge(size)
            self._by_shape[shape] = (template, words)
            self._shape_bytes += size
        template.size += 1
        return template

    def match(self, message: str) -> Template | None:
        """The template a message would join, without learning anything."""
        signature, tokens = self.split(message)
        template = self._exact.get((signature, tuple(tokens)))
        if template is not None:
            return template.resolve()
        group = self._best(signature, tokens)
        if group is None:
            return None
        found = group.templates.get(tuple(self._template_tokens(group, tokens)))
        return found.resolve() if found is not None else None

    def _best(self, signature: str, tokens: list[str]) -> _Group | None:
        best: _Group | None = None
        best_score = (-1.0, -1)
        length = len(tokens)
        constants = length - tokens.count(WILDCARD)  # masked values say nothing about which event it is
        bucket = self._buckets.get((signature, length, _route(tokens)), ())
        # Bounded search: real branches hold a handful of groups; adversarial input must not make it O(n).
        for group in bucket[-_MAX_GROUPS_SEARCHED:] if len(bucket) > _MAX_GROUPS_SEARCHED else bucket:
            same = wild = 0
            for mine, theirs in zip(group.tokens, tokens, strict=True):
                if mine == theirs:
                    if theirs != WILDCARD:
                        same += 1
                elif mine == WILDCARD:
                    wild += 1
            score = (same / constants if constants else 1.0, wild)
            if score > best_score:
                best, best_score = group, score
        return best if best is not None and best_score[0] >= self.similarity else None

    def _template_tokens(self, group: _Group, tokens: list[str]) -> list[str]:
        variable = group.variable
        return [_wildcard(token) if index in variable else token for index, token in enumerate(tokens)]

    def _learn(self, signature: str, tokens: list[str]) -> Template:
        self.version += 1
        group = self._best(signature, tokens)
        if self.closed:  # learns nothing: an event type it knows, or other
            known = None if group is None else group.templates.get(tuple(self._template_tokens(group, tokens)))
            return OTHER if known is None else known.resolve()
        if group is None:
            if len(self.templates) >= self.max_templates:
                return OTHER  # no new group either: past the cap nothing may grow
            # A position masked to <*> in the founding message holds values: it is variable from the start.
            variable = {index for index, token in enumerate(tokens) if token == WILDCARD}
            group = _Group(tokens=list(tokens), signature=signature, variable=variable)
            self._buckets.setdefault((signature, len(tokens), _route(tokens)), []).append(group)
        else:
            self._widen(group, tokens)
        template_tokens = self._template_tokens(group, tokens)
        key = tuple(template_tokens)
        template = group.templates.get(key)
        if template is None:
            twin = self._by_id.get(template_id_of(signature, template_tokens))
            if twin is not None and twin.resolve().template_id in self.templates:
                return twin.resolve()  # the same text was born in a group the bounded search did not reach
            if len(self.templates) >= self.max_templates:
                return OTHER
            template = Template(tokens=template_tokens, signature=signature)
            self._register(group, template)
            self.bytes += template_bytes(template)
        return template

    def _register(self, group: _Group, template: Template) -> None:
        group.templates[tuple(template.tokens)] = template
        self.templates[template.template_id] = template
        self._by_id[template.template_id] = template

    def _widen(self, group: _Group, tokens: list[str]) -> None:
        """Records the message's values; positions with enough distinct values become wildcards.

        Words that name kinds of events (states, verbs, methods, field labels: :func:`names_a_kind`) need more:
        evidence that the position holds values (:meth:`_holds_values`), or twice as many distinct words.
        """
        for index, (mine, theirs) in enumerate(zip(group.tokens, tokens, strict=True)):
            if mine not in (theirs, WILDCARD):
                group.values[index] = {mine}
                group.tokens[index] = WILDCARD
                self.bytes += VALUE_BYTES
        newly_variable = []
        for index, seen in group.values.items():
            if tokens[index] not in seen:
                seen.add(tokens[index])
                self.bytes += VALUE_BYTES
            if len(seen) < self.variable_after:
                continue
            if len(seen) < _COVARYING_VARIABLE_AFTER * self.variable_after and self._covaries(group, index, tokens):
                continue
            if (
                len(seen) < _KIND_VARIABLE_AFTER * self.variable_after
                and _kind_words(seen)
                and not self._holds_values(group, index, tokens)
            ):
                continue
            newly_variable.append(index)
        if newly_variable:
            for index in newly_variable:
                del group.values[index]
                group.variable.add(index)
            self._collapse(group)

    def _holds_values(self, group: _Group, index: int, tokens: list[str]) -> bool:
        """Whether a position of kind-naming words has shown that it holds values all the same.

        Two kinds of evidence: its words also occur at another varying position of the group (``Transitioned from
        NEW to INITED``, then ``from INITED to RUNNING``: states as values of a transition), or the set of words is
        open: among at least ``2 x variable_after`` messages, at least half carried a word seen only once (the
        Good-Turing estimate of the chance that the next message brings a new word is then 1/2 or more). States
        and methods repeat (``VM Started``, ``VM Paused``, ``"GET``, ``"POST``); parameters keep bringing new words.
        """
        seen = group.values[index]
        for other, values in group.values.items():
            if other != index and not seen.isdisjoint(values):
                return True
        counts: dict[str, int] = {tokens[index]: 1}  # this message, not yet counted in a template
        for key, template in group.templates.items():
            counts[key[index]] = counts.get(key[index], 0) + template.size
        messages = sum(counts.values())
        once = sum(1 for count in counts.values() if count == 1)
        return messages >= 2 * self.variable_after and 2 * once >= messages

    def _covaries(self, group: _Group, index: int, tokens: list[str]) -> bool:
        """Whether another tracked position's values pair one-to-one with this one's.

        Words that always come in the same pairs (``illegal instruction`` / ``trap instruction``,
        ``from NEW to UNASSIGNED``) name kinds of event, not values: parameters vary independently.
        """
        # Only pairs seen again count: two unique parameters (user, host) also pair one-to-one at first.
        if sum(1 for template in group.templates.values() if template.size >= 2) < 2:
            return False
        rows = [*group.templates, tuple(tokens)]  # the templates' token tuples, and this message
        for other in group.values:
            if other == index:
                continue
            forward: dict[str, str] = {}
            backward: dict[str, str] = {}
            paired = True
            for row in rows:
                value, partner = row[index], row[other]
                if forward.setdefault(value, partner) != partner or backward.setdefault(partner, value) != value:
                    paired = False
                    break
            if paired and len(backward) > 1:
                return True
        return False

    def _collapse(self, group: _Group) -> None:
        """Merges the group's templates that differ only at positions now variable."""
        old = list(group.templates.values())
        group.templates = {}
        for template in old:
            tokens = self._template_tokens(group, template.tokens)
            twin = group.templates.get(tuple(tokens))
            del self.templates[template.template_id]
            if twin is None:
                if tokens != template.tokens:
                    self.renamed += 1
                    template.aliases.append(template.template_id)
                    template.tokens = tokens
                    template.template_id = template_id_of(template.signature, tokens)
                self._register(group, template)
            else:
                self.renamed += 1
                twin.size += template.size
                twin.aliases += [*template.aliases, template.template_id]
                template.merged_into = twin
                for alias in (*template.aliases, template.template_id):
                    self._by_id[alias] = twin

    # -- persistence -------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything needed to continue mining after a restart, as JSON-compatible data."""
        groups = []
        for (signature, _length, _route_key), bucket in self._buckets.items():
            for group in bucket:
                groups.append(
                    {
                        "signature": signature,
                        "tokens": group.tokens,
                        "variable": sorted(group.variable),
                        "values": {str(index): sorted(seen) for index, seen in group.values.items()},
                        "templates": [
                            {"tokens": t.tokens, "size": t.size, "aliases": t.aliases} for t in group.templates.values()
                        ],
                    }
                )
        return {"version": 1, "overflow": self.overflow, "groups": groups}

    @classmethod
    def from_state(cls, state: dict[str, Any], **options: Any) -> TemplateMiner:
        """A miner that continues where the one that produced ``state`` stopped.

        A token is one string however often it occurs (in a group, its templates, its values), as in the miner
        that learnt it: decoded JSON has a string per occurrence, which took a restored miner half again as much
        memory as the live one (bench/RESULTS.md)."""
        miner = cls(**options)
        miner.overflow = int(state.get("overflow", 0))
        strings: dict[str, str] = {}
        share = strings.setdefault
        for data in state["groups"]:
            group = _Group(
                tokens=[share(token, token) for token in data["tokens"]],
                signature=data["signature"],
                variable=set(data["variable"]),
                values={int(index): {share(value, value) for value in seen} for index, seen in data["values"].items()},
            )
            miner._buckets.setdefault((group.signature, len(group.tokens), _route(group.tokens)), []).append(group)
            miner.bytes += VALUE_BYTES * sum(map(len, group.values.values()))
            for entry in data["templates"]:
                tokens = [share(token, token) for token in entry["tokens"]]
                template = Template(tokens=tokens, signature=group.signature, size=entry["size"])
                template.aliases = list(entry["aliases"])
                miner._register(group, template)
                miner.bytes += template_bytes(template)
                for alias in template.aliases:
                    miner._by_id[alias] = template
        return miner
