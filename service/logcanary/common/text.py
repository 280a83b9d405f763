"""Cutting text to a size: one marker for characters cut, one for bytes truncated (the message contract)."""

from __future__ import annotations

import re

ELLIPSIS = "\u2026"
_TRUNCATION_MARK = re.compile(r" …\[truncated (\d+) bytes\]$")


def cut(text: str, limit: int) -> str:
    """At most ``limit`` characters, the last one ``…`` when cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + ELLIPSIS


def truncate_bytes(text: str, max_bytes: int, *, recut: bool = False) -> tuple[str, int]:
    """The text whole, or its first ``max_bytes`` of UTF-8 followed by `` …[truncated N bytes]``; with N.

    With ``recut`` (an example cut from a stored message), a text that already ends with that marker adds the
    bytes its marker says were dropped, so N still counts from the original. A character cut in two is dropped
    whole.
    """
    if len(text) <= max_bytes // 4:  # a UTF-8 character is at most 4 bytes: surely short enough
        return text, 0
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text, 0
    size = len(data)
    earlier = _TRUNCATION_MARK.search(text, len(text) - 40) if recut and text.endswith(" bytes]") else None
    if earlier is not None:
        size += int(earlier.group(1)) - len(earlier.group(0).encode())
    dropped = size - max_bytes
    head = data[:max_bytes].decode("utf-8", "ignore")
    return f"{head} …[truncated {dropped} bytes]", dropped
