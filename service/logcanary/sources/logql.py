"""LogQL text: selector templates with escaped values, the stream selector of a query, and line-filter
regexes that split a set of lines by their text (how Loki's lines sharing one timestamp are paged).

Go's RE2 syntax and Go string literals are what Loki parses: a JSON string literal is a valid Go one, and
a regex matches code points in the same order Python compares strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

from logcanary.sources.base import SourceConfigError, SourceQueryError

_GO_META = frozenset("\\.+*?()|[]{}^$")
_VARIABLE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_REGEX_OPERATOR = re.compile(r"(?:=~|!~|\|~|\bregexp)\s*$")
MAX_CODE_POINT = 0x10FFFF
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_string(value: str) -> str:
    """``value`` as a double-quoted LogQL (Go) string literal."""
    return orjson.dumps(value).decode("utf-8")


def quote_meta(value: str) -> str:
    """``value`` as a regex matching itself literally (Go's regexp.QuoteMeta)."""
    return "".join("\\" + char if char in _GO_META else char for char in value)


# --- templates ---------------------------------------------------------------------------------------------------


def render(template: str, variables: Mapping[str, str]) -> str:
    """``template`` with ``$name`` / ``${name}`` replaced by ``variables[name]``; ``$$`` is a literal ``$``.

    A variable must stand inside a string literal, and its value is escaped for where it stands: string
    escapes in a "..." literal, and regex escapes too after ``=~``, ``!~``, ``|~`` or ``regexp``, so a
    deployment named ``v1.2`` matches only itself, never ``v102``. A ``$`` not followed by a name (a regex's
    end anchor) is left alone.
    """
    out: list[str] = []
    index = 0
    quote = ""  # the open literal's delimiter, "" outside one
    regex = False
    while index < len(template):
        char = template[index]
        if quote == '"' and char == "\\":
            out.append(template[index : index + 2])
            index += 2
            continue
        if char == "$":
            match = _VARIABLE.match(template, index)
            if match is not None:
                out.append(_substitute(match, variables, quote, regex, template))
                index = match.end()
                continue
        if quote and char == quote:
            quote = ""
        elif not quote and char in '"`':
            quote = char
            regex = _REGEX_OPERATOR.search(template, 0, index) is not None
        out.append(char)
        index += 1
    if quote:
        raise SourceConfigError(f"selector template {template!r}: unterminated string literal")
    return "".join(out)


def _substitute(match: re.Match[str], variables: Mapping[str, str], quote: str, regex: bool, template: str) -> str:
    if match.group(0) == "$$":
        return "$"
    name = match.group(1) or match.group(2)
    if name not in variables:
        known = ", ".join(f"${key}" for key in sorted(variables)) or "none"
        raise SourceConfigError(f"selector template {template!r}: unknown variable ${name} (known: {known})")
    if not quote:
        raise SourceConfigError(f"selector template {template!r}: ${name} must stand inside a quoted value")
    value = quote_meta(variables[name]) if regex else variables[name]
    if quote == "`":
        if "`" in value:
            raise SourceConfigError(f'${name}\'s value holds a backtick: quote it with "..." in the template')
        return value
    return quote_string(value)[1:-1]


# --- the stream selector -----------------------------------------------------------------------------------------


def split_query(query: str) -> tuple[str, str]:
    """``(matchers, pipeline)``: the text inside a log query's ``{...}`` and what follows it."""
    text = query.lstrip()
    if not text.startswith("{"):
        raise SourceQueryError("a log query must start with a stream selector {...}", status=None)
    index = 1
    quote = ""
    while index < len(text):
        char = text[index]
        if quote:
            if quote == '"' and char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in '"`':
            quote = char
        elif char == "}":
            return text[1:index], text[index + 1 :]
        index += 1
    raise SourceQueryError("the stream selector's { is never closed")


def narrow(query: str, matchers: list[str]) -> str:
    """``query`` with more label matchers (``name="value"`` text) in its stream selector."""
    inside, pipeline = split_query(query)
    return "{" + ", ".join([inside.strip(), *matchers]) + "}" + pipeline


def label_matcher(name: str, values: list[str]) -> str:
    """``name`` equal to one of ``values`` (``""``: the label is absent); Loki anchors a regex matcher."""
    if len(values) == 1:
        return f"{name}={quote_string(values[0])}"
    return f"{name}=~{quote_string('|'.join(quote_meta(value) for value in values))}"


# --- splitting lines by their text ---------------------------------------------------------------------------------


def at_least(bound: str, common: str = "") -> str:
    """A regex matching exactly the lines ``>= bound`` (code point order) among lines starting with ``common``.

    ``common`` (a prefix of ``bound`` that every candidate line shares) is matched literally, so only the
    rest of the bound nests: ``b1 b2 ...`` becomes ``(?:[>b1]|b1(?:[>b2]|b2(?:...)))``.
    """
    if not bound.startswith(common):
        raise ValueError("common must be a prefix of bound")
    nested = ""
    for char in reversed(bound[len(common) :]):
        above = _above(char)
        nested = f"(?:{above}|{quote_meta(char)}{nested})" if above else quote_meta(char) + nested
    return "^" + quote_meta(common) + nested


def exactly(line: str) -> str:
    """A regex matching ``line`` and nothing else."""
    return "^" + quote_meta(line) + "$"


def _above(char: str) -> str:
    code = ord(char) + 1
    if code > MAX_CODE_POINT:
        return ""
    return f"[\\x{{{code:X}}}-\\x{{{MAX_CODE_POINT:X}}}]"


def common_prefix(first: str, second: str) -> str:
    """The longest prefix the two share."""
    size = min(len(first), len(second))
    index = 0
    while index < size and first[index] == second[index]:
        index += 1
    return first[:index]
