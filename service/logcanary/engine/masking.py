"""Masking: replace the variable parts of a log message with ``<*>`` before mining.

Masking works token by token (whitespace-separated) because that is an order of
magnitude faster than running one big regex over every message, and tokens
repeat a lot, so a bounded cache answers most of them. Words made only of
letters are never touched: they are what identifies an event type.

What is masked: numbers (with signs, decimals and units, glued or not, such as
``12ms``, ``1.5s``, ``1h2m3s`` or ``3.5 KB``: a duration or a size is one
value, so ``523ms`` and ``5.3s`` mask alike), hex values, IPv4/IPv6 addresses
with ports, UUIDs, dates and times, URLs (the scheme is kept), e-mail
addresses, file paths, quoted values and the value of ``key=value`` pairs. A single digit glued to a word
(``ssh2``, ``sda1``, ``log4j``) is kept: it is part of a name far more often
than a value; two or more digits (``bglio716``, ``node-17``) are masked.

Cost: linear in the message's length, whatever its text. No pattern here can backtrack across what it
already scanned (possessive quantifiers, and matches that start only where a run starts), and a token longer
than ``MAX_MASKED_TOKEN_CHARS`` is one value, ``<*>``, never given to a pattern: a log line is attacker-chosen
text, and one quadratic pattern on one 16,000-character token once cost a second on the event loop.
User patterns (``LOGCANARY_MASK_PATTERNS``) may backtrack, so each is applied to one token at a time, and only
to tokens up to that cap: its cost per token is bounded by the cap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

WILDCARD = "<*>"
# A longer token is one value: masked to <*> without running any pattern, so masking costs a bounded amount per
# character. The longest legitimate tokens of the evaluation data are OpenStack object reprs, 990 characters once
# their quoted values are masked (1,136 as logged), so the cap leaves them about twice that room.
MAX_MASKED_TOKEN_CHARS = 2048

# A month's name: Jan, Jul, July, JUL (capitalised or upper case only: "may" and "mar" are words).
_MONTH = (
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[a-z]{0,6}"
)
# Units glued to a number (durations and sizes): longer spellings first, so "ms" wins over "m".
_UNIT = r"(?:ns|us|µs|μs|ms|secs?|s|mins?|m|hrs?|h|d|[KMGTP]i?B|kB|B|[kKMGT])"
# One alternation for everything value-shaped inside a token; first match wins,
# so the longer shapes come first.
_VALUE = re.compile(
    r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"  # UUID
    r"|\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"  # date[time]
    r"|(?<![\d/])\d{4}/\d{1,2}/\d{1,2}(?![\d/])"  # 2005/07/10
    r"|(?<![\d/])\d{1,2}/\d{1,2}/(?:\d{4}|\d{2})(?![\d/])"  # 10/07/2005
    # 17/Jun/2005[:07:07:00], 10-Jul-2005: a date with its month's name
    rf"|(?<![A-Za-z0-9])\d{{1,2}}[-/.]{_MONTH}[-/.]\d{{2,4}}(?::\d{{2}}:\d{{2}}(?::\d{{2}})?)?(?![A-Za-z0-9])"
    r"|\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?"  # time of day
    r"|(?<![0-9A-Za-z.:])\d{1,2}:\d{2}(?![\d:])"  # a time without seconds (07:05), or minutes and seconds
    r"|(?<![0-9A-Za-z:])(?=[0-9a-fA-F:]*\d)(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![0-9A-Za-z:])"  # IPv6
    r"|0[xX][0-9a-fA-F]+"  # 0x hex
    # bare hex of 8+ digits with at least one letter and one digit: a whole run of hex digits, taken possessively
    # (two greedy runs around a digit were quadratic in the run's length when a letter ended it)
    r"|(?<![A-Za-z0-9])(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}+(?![A-Za-z0-9])"
    # number (IPv4 is a dotted number), with its unit when one follows: 12ms, 1.5s, 5.2KB, 1h2m3.5s; a bound on
    # a number (<1, >=5, ~3) is a value as the number is
    rf"|(?<![A-Za-z0-9])(?:(?<!\*)(?:[<>]=?|[~≈≤≥]))?[-+]?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?(?:{_UNIT}(?:\d+(?:[.,]\d+)?{_UNIT})*(?![A-Za-z]))?"
    r"|(?<=[A-Za-z])\d{2,}"  # a number glued to a name (host17, U11); a single digit (ssh2) is kept
)
# A scheme and what follows it. The match may start only where a run of scheme characters starts (its head of
# digits and signs kept in group 1): starting at each letter of a long run, each start scanning to the run's end,
# was quadratic. The first letter of the run starts the scheme, as before.
_URL = re.compile(r"((?<![A-Za-z0-9+.-])[0-9+.-]*+)([A-Za-z][A-Za-z0-9+.-]*+://)\S+")
# An e-mail address, or (without group 2) a run of the characters that may start one, passed over whole: trying
# each start inside a long run that no domain follows was quadratic (``aaaa...a@`` cost 1.15 s at 16,000).
_EMAIL = re.compile(r"([\w.+-]++)(@[\w-]++(?:\.[\w-]++)++)?")
# Linear: a start is a quote, and its scan stops at the next quote of its kind (or 200 characters on).
_QUOTED = re.compile(r"(?<![\w\\])(\"|')(?:(?!\1).){1,200}?\1(?!\w)")
# A request line (RFC 9112): a method (an upper-case token), one space, a target (an absolute path, a URL or "*"),
# optionally one space and a protocol. Matched only inside a quoted value (at most 200 characters).
_REQUEST_LINE = re.compile(
    r"[A-Z][A-Z_-]{1,19}+ (?:/|\*|[A-Za-z][A-Za-z0-9+.-]*+://)\S*+(?: [A-Z][A-Z0-9]*+/[0-9.]++)?"
)
# An id as services mint them, a hex run with a name's prefix or none (pay_581fe499fc29, e5e3eeb8136b2094): the most
# common token no cache knows. Whole, nothing of _VALUE can match in it before the hex rule at the run (no digit in
# the prefix, no '-', '/', ':', '.' or 'x' in the run), and the hex rule takes the run: the same <*> as _VALUE.sub.
_HEX_ID = re.compile(r"([A-Za-z]++[_-])?(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}+").fullmatch
_WORD_VALUE_CHARS = 32  # a key's value made of at most this many letters is a word, kept for the miner
_REPEATED_WILDCARD = re.compile(r"(?:<\*>){2,}")
_TOKEN = re.compile(r"\S+")  # what str.split() splits out (re's \s is str.isspace)
_DIGIT = re.compile(r"\d")
_TRAILING = ",;:.)]}'\""
# Units that follow a number as a separate token ("93.0 KB", "1234 bytes", "3 seconds"); folded into the number's
# wildcard.
UNITS = (
    frozenset(["B", "KB", "kB", "MB", "GB", "TB", "PB", "KiB", "MiB", "GiB", "TiB", "byte", "bytes"])
    | frozenset(["ns", "us", "µs", "μs", "ms", "s", "sec", "secs", "second", "seconds"])
    | frozenset(["millisecond", "milliseconds", "minute", "minutes", "hour", "hours"])
)
_MARKS = ("", *_TRAILING)
_UNIT_TOKENS = frozenset(unit + first + second for unit in UNITS for first in _MARKS for second in _MARKS)
# A value restated in parentheses right after a value ("1234 bytes (1.2 KB)", "10.0.0.1 (10.0.0.1)") is that value.
_RESTATED = frozenset(f"({WILDCARD})" + mark for mark in ("", *_TRAILING))
_FOLDED = _UNIT_TOKENS | _RESTATED
# Textual dates (``Sun Jul 10 03:55:09 2005``, ``10 July 2005``, ``Jul 10, 2005 3:04:05 PM``) span several tokens: a
# month's name with a day, a year or a time beside it, and what may go with those, is one value.
_MONTH_NAMES = [
    *("January", "February", "March", "April", "May", "June"),
    *("July", "August", "September", "October", "November", "December"),
]
_MONTH_WORDS = frozenset(
    spelling
    for name in _MONTH_NAMES
    for spelling in (name, name[:3], name.upper(), name[:3].upper(), "Sept" if name == "September" else name[:3])
)
_MONTH_TOKENS = _MONTH_WORDS | {word + mark for word in _MONTH_WORDS for mark in ",."}
_SPECIAL = _FOLDED | _MONTH_TOKENS
_WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_WEEKDAY_WORDS = frozenset(
    spelling for name in _WEEKDAY_NAMES for spelling in (name, name[:3], name.upper(), name[:3].upper())
)
_DAY = re.compile(r"\d{1,2}(?:st|nd|rd|th)?")
_CLOCK = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?")
_ZONE = re.compile(r"[+-]\d{2}:?\d{2}|Z|UTC|GMT")
# Every digit read as 1: masking depends on where digits are, not on their values, with one exception,
# the "0x" that starts a hex value, so text holding "0x" or "0X" is never looked up by shape.
_SHAPE_TABLE = bytes.maketrans(b"0123456789", b"1111111111")
_CACHED_TOKEN_CHARS = 256  # longer tokens are masked every time, never cached (a cache entry is as long)
# Masking caches shared by every Masker with the same patterns and cache size: the engine's services all mask
# alike, so one bounded cache serves them, instead of one cache per service.
_SHARED_CACHES: dict[tuple[tuple[str, ...], int], tuple[dict[str, str], dict[str | bytes, str], dict[str, str]]] = {}


def shape_of(text: str) -> bytes:
    """The text with every ASCII digit as 1, as UTF-8 (bytes.translate is ten times faster than str's)."""
    return text.encode("utf-8", "surrogatepass").translate(_SHAPE_TABLE)


def _fold_units(tokens: list[str], origins: list[int]) -> tuple[list[str], list[int]]:
    """``<*> KB,`` -> ``<*>,`` and ``(<*> B)`` -> ``(<*>)``: a unit after a masked number belongs to the value, and
    so does the value restated in parentheses after it (``<*> bytes (<*> KB)`` -> ``<*>``). ``origins``: the word
    each token starts at, kept parallel to the tokens (what :meth:`Masker.split` aligns words by)."""
    out: list[str] = []
    where: list[int] = []
    start = 0  # the tokens between two units or restated values stay as they are: copied a run at a time
    for mark, token in enumerate(tokens):
        if token not in _FOLDED:
            continue
        out += tokens[start:mark]
        where += origins[start:mark]
        start = mark + 1
        if out and out[-1].endswith(WILDCARD):
            if token in _RESTATED:
                out[-1] += token[len(WILDCARD) + 2 :]
                continue
            out[-1] += token[len(token.rstrip(_TRAILING)) :]
            last = out[-1]
            if len(out) > 1 and last in _RESTATED and out[-2].endswith(WILDCARD):  # "(<*>" + "KB)" restated
                out.pop()
                where.pop()
                out[-1] += last[len(WILDCARD) + 2 :]
            continue
        out.append(token)
        where.append(origins[mark])
    if not start:
        return tokens, origins
    out += tokens[start:]
    where += origins[start:]
    return out, where


_DATE_PUNCTUATION = ",.;:)"


_DIGITS_AS_ONE = str.maketrans("0123456789", "1111111111")
_DATE_PARTS: dict[str, str] = {}  # a token's shape (every digit as 1) -> its part: it depends on nothing else
_DATE_PARTS_CACHED = 4096


def _date_part(token: str) -> str:
    """What a token can be in a textual date: M month, W weekday, D day, Y year, T time, P AM/PM, Z zone; '' none."""
    shape = token.translate(_DIGITS_AS_ONE) if len(token) <= _CACHED_TOKEN_CHARS else ""
    part = _DATE_PARTS.get(shape) if shape else None
    if part is None:
        part = _classify_date_part(token)
        if shape:
            if len(_DATE_PARTS) >= _DATE_PARTS_CACHED:
                _DATE_PARTS.clear()
            _DATE_PARTS[shape] = part
    return part


def _classify_date_part(token: str) -> str:
    core = token.rstrip(_DATE_PUNCTUATION)
    if core in _MONTH_WORDS:
        return "M"
    if core in _WEEKDAY_WORDS:
        return "W"
    if len(core) > 18:
        return ""
    if core.isdigit():
        return "Y" if len(core) == 4 else "D" if len(core) <= 2 else ""
    if _DAY.fullmatch(core):
        return "D"
    if _CLOCK.fullmatch(core):
        return "T"
    if core in ("AM", "PM", "am", "pm"):
        return "P"
    return "Z" if _ZONE.fullmatch(core) else ""


def _fold_dates(words: list[str], masked: list[str]) -> tuple[list[str], list[int]]:
    """Masked tokens with each textual date made one ``<*>``: a month's name, with a weekday and a day before it and
    a day, year, time, AM/PM and zone after it, when at least one number (day, year or time) is among them.
    ``words`` are the tokens before masking, one per masked token. A date spans at most 8 tokens and each token is
    classified a bounded number of times, so the cost stays linear in the message. Also returns the word each token
    starts at."""
    size = len(words)
    index = next((index for index, word in enumerate(words) if word in _MONTH_TOKENS), size)
    out = masked[:index]  # what comes before the first month's name stays as it is
    where = list(range(index))
    floor = 0
    while index < size:
        if words[index] not in _MONTH_TOKENS:
            out.append(masked[index])
            where.append(index)
            index += 1
            continue
        start = index
        while start > max(floor, index - 2) and _date_part(words[start - 1]) in ("W", "D"):
            start -= 1
        end, after = index + 1, ""
        while end < size and end - index <= 5:
            part = _date_part(words[end])
            if part in ("", "M", "W") or (part in ("P", "Z") and "T" not in after):
                break
            after += part
            end += 1
        numbers = after + "".join(_date_part(word) for word in words[start:index])
        if not ("D" in numbers or "Y" in numbers or "T" in numbers):  # a month's name alone ("May I") is a word
            out.append(masked[index])
            where.append(index)
            index += 1
            continue
        if start < index:
            del out[start - index :]
            del where[start - index :]
        last = words[end - 1]
        out.append(WILDCARD + last[len(last.rstrip(_DATE_PUNCTUATION)) :])
        where.append(start)
        index = floor = end
    return out, where


def _is_path(token: str) -> bool:
    """An absolute or relative path with at least two parts, e.g. /var/log/x or C:\\temp\\x."""
    if token[0] not in "/.~" and token[1:3] != ":\\":
        return False
    if token.startswith(("./", "../", "~/")):
        return True
    if token.startswith("/"):
        return token.count("/") >= 2 or "." in token.rsplit("/", 1)[-1]
    return len(token) > 3 and token[1:3] == ":\\" and token[0].isalpha()


class Masker:
    """Masks variable parts of messages; ``extra_patterns`` are applied first, to each token up to the cap."""

    def __init__(self, extra_patterns: Iterable[str] = (), cache_size: int = 65_536) -> None:
        patterns = tuple(extra_patterns)
        self._extra = [re.compile(pattern) for pattern in patterns]
        caches = _SHARED_CACHES.get((patterns, cache_size))
        if caches is None:
            caches = _SHARED_CACHES[(patterns, cache_size)] = ({}, {}, {})
        self._cache: dict[str, str] = caches[0]  # token -> masked, for tokens that are their own mask
        self._by_shape: dict[str | bytes, str] = caches[1]  # token shape (or the token itself) -> masked
        self._by_user: dict[str, str] = caches[2]  # token -> the token after the user patterns (empty without)
        self._cache_size = cache_size

    @property
    def has_extra_patterns(self) -> bool:
        return bool(self._extra)

    def mask_message(self, message: str) -> str:
        """Message-level rules: user patterns, then quoted values (which may contain spaces).

        A user pattern may backtrack (``LOGCANARY_MASK_PATTERNS`` is any regex), so it runs on one whitespace-free
        token at a time and never on one longer than ``MAX_MASKED_TOKEN_CHARS``: what a pattern costs per token is
        then bounded, whatever the message. A pattern therefore never matches across whitespace, and ``^``/``$``
        anchor a token.
        """
        if self._extra:
            get_user = self._by_user.get
            message = _TOKEN.sub(lambda match: get_user(match.group()) or self._user_masked(match.group()), message)
        if '"' in message or "'" in message:
            message = _QUOTED.sub(_quoted_value, message)
        return message

    def _user_masked(self, token: str) -> str:
        """The token after the user patterns, each applied while the token is at most the cap; cached by token
        (a pattern may look at digits' values, so not by shape), so that a word costs one lookup."""
        masked = token
        for pattern in self._extra:
            if len(masked) <= MAX_MASKED_TOKEN_CHARS:
                masked = pattern.sub(WILDCARD, masked)
        if len(token) <= _CACHED_TOKEN_CHARS:
            if len(self._by_user) >= self._cache_size:
                self._by_user.clear()
            self._by_user[token] = masked
        return masked

    def tokens(self, message: str) -> list[str]:
        """The masked tokens of a message, split on whitespace."""
        return self.split(message)[0]

    def split(self, message: str) -> tuple[list[str], list[str]]:
        """The masked tokens of a message, and the words they were masked from, one per token (quoted values already
        masked; a token that folded several words, a textual date or a number and its unit, has the first)."""
        if '"' in message or "'" in message:
            words = self.mask_message(message).split()
        else:
            words = message.split()
            if self._extra:  # what mask_message does, on the split tokens
                get_user = self._by_user.get
                words = [get_user(word) or self._user_masked(word) for word in words]
        get = self._cache.get
        out = [get(token) or self._miss(token) for token in words]
        if _SPECIAL.isdisjoint(out):  # one pass for the common case: no month's name, unit or restated value
            return out, words
        if not _MONTH_TOKENS.isdisjoint(out):  # a month's name is a word: masking leaves it as it was
            out, origins = _fold_dates(words, out)
        else:
            origins = list(range(len(out)))
        if not _FOLDED.isdisjoint(out):
            out, origins = _fold_units(out, origins)
        return out, [words[origin] for origin in origins]  # a folded value's token keeps its first word

    def _miss(self, token: str) -> str:
        """Masks a token the cache did not know; caches it by *shape* (every digit as 1).

        Values rarely repeat but their shapes do (``blk_-1234`` and ``blk_-9876``
        mask alike), so the expensive rules run once per shape. A result that
        still holds digits (``ssh2``) depends on them and is cached as itself.
        Tokens longer than ``_CACHED_TOKEN_CHARS`` are never cached.
        """
        if len(token) > _CACHED_TOKEN_CHARS:
            return self.mask_token(token)
        shape: str | bytes = token if ("0x" in token or "0X" in token) else shape_of(token)
        masked = self._by_shape.get(shape)
        if masked is None:
            masked = self.mask_token(token)
            keeps_digits = _DIGIT.search(masked) is not None
            if not keeps_digits:
                if len(self._by_shape) >= self._cache_size:
                    self._by_shape.clear()
                self._by_shape[shape] = masked
            if (masked is token or keeps_digits) and len(self._cache) < self._cache_size:
                self._cache[token] = masked
        return masked

    def mask_token(self, token: str) -> str:
        """Masks one whitespace-free token; one longer than ``MAX_MASKED_TOKEN_CHARS`` is a value, ``<*>``."""
        if len(token) > MAX_MASKED_TOKEN_CHARS:
            return WILDCARD
        return apply_rules(token)


def apply_rules(token: str) -> str:
    """The built-in rules on one whitespace-free token, whatever its length: linear in it (tests/test_linear_cost.py
    holds them to that up to 64,000 characters). :meth:`Masker.mask_token` adds the cap."""
    if token.isalpha():
        return token
    if token.isdigit():
        return WILDCARD
    if "://" in token:
        return _URL.sub(lambda m: m.group(1) + m.group(2) + WILDCARD, token)
    if "@" in token:
        masked = _EMAIL.sub(_email_or_run, token)
        if masked != token:  # else no address: every run went back as it was
            return masked
    if _is_path(token):
        core = token.rstrip(_TRAILING)
        return WILDCARD + token[len(core) :]
    key, sep, value = token.partition("=")
    if sep and key and value and key[-1] not in "=!<>" and not value.startswith("="):
        word = value.rstrip(_TRAILING)
        if word.isalpha() and len(word) <= _WORD_VALUE_CHARS:
            return token  # a word (status=failed, level=warn, user=root): the miner tells kinds from names
        return f"{key}={WILDCARD}"
    if _DIGIT.search(token) is None:
        return token
    # An identifier's prefix is kept (blk_<*>, attempt_<*>_<*>): it tells event types apart.
    return _mask_value_runs(token)


def mask_values(token: str) -> str:
    """The token with the numbers, ids, addresses, dates and times in it masked, and nothing else: a path or a URL
    keeps its words (``/2009-04-04/meta-data/instance-id`` -> ``/<*>/meta-data/instance-id``)."""
    return WILDCARD if len(token) > MAX_MASKED_TOKEN_CHARS else _mask_value_runs(token)


def _mask_value_runs(token: str) -> str:
    hex_id = _HEX_ID(token)
    if hex_id is not None:  # what _VALUE.sub gives it, in a tenth of the time
        return (hex_id.group(1) or "") + WILDCARD
    masked = _VALUE.sub(WILDCARD, token)
    return _REPEATED_WILDCARD.sub(WILDCARD, masked) if "<*><*>" in masked else masked


def _quoted_value(match: re.Match[str]) -> str:
    """A quoted value is one ``<*>``, unless it is a request line (``"GET /a/b HTTP/1.1"``): its method names the
    event, so it stays, to be tokenised as any text (its target is then masked as a path or URL)."""
    quote = match.group(1)
    text = match.group()
    if _REQUEST_LINE.fullmatch(text, 1, len(text) - 1):
        return text
    return quote + WILDCARD + quote


def _email_or_run(match: re.Match[str]) -> str:
    """An address (a run and its domain) is a value; a run that no domain follows is put back."""
    return WILDCARD if match.group(2) else match.group(1)


def mask(message: str) -> str:
    """Convenience: the masked message as one string (tokens joined by single spaces)."""
    return " ".join(_DEFAULT.tokens(message))


_DEFAULT = Masker()
