"""A URL path prefix, as an operator or a reverse proxy gives it (logcanary.api.prefix)."""

from __future__ import annotations

import re

_PREFIX = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+;=:@-]+)*/?$")  # no %: %2e%2e is a '..' to a browser
MAX_PREFIX_CHARS = 256


def clean_prefix(value: str) -> str | None:
    """The prefix without a trailing slash ("" for none), or None when it is not a plain path: a header naming
    a scheme, a host, a query, ``.`` or ``..`` could make the service's URLs point elsewhere."""
    value = value.split(",", 1)[0].strip()  # proxies in a chain: the outermost's
    if len(value) > MAX_PREFIX_CHARS or not _PREFIX.match(value):
        return None
    if any(segment in (".", "..") for segment in value.split("/")):
        return None
    return value.rstrip("/")
