"""Builds the source an analysis names: the only place that chooses a store type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from logcanary.sources.auth import auth_from_spec
from logcanary.sources.base import LogSource, SourceConfigError
from logcanary.sources.http import RetryPolicy
from logcanary.sources.metrics import SourceMetrics

SOURCE_TYPES = ("loki",)
_KEYS = frozenset({"type", "url", "tenant", "auth", "timeout", "selectors"})


def open_source(
    spec: Mapping[str, Any],
    *,
    metrics: SourceMetrics | None = None,
    retry: RetryPolicy | None = None,
    inline_secrets: bool = True,
) -> LogSource:
    """An analysis's ``source`` object, e.g. ``{"type": "loki", "url": "http://loki:3100", "tenant": "shop",
    "auth": {"type": "bearer", "token_file": "/var/run/secrets/loki/token"}}``, as a :class:`LogSource`.

    ``selectors`` (the baseline and canary templates) is the analysis's own business and is not read here.
    ``inline_secrets=False`` refuses a token or password written into the spec itself (an API that stores and
    lists analyses should pass it: a file or an environment variable is never echoed back).
    """
    kind = spec.get("type")
    if kind not in SOURCE_TYPES:
        raise SourceConfigError(f"source type must be one of {', '.join(SOURCE_TYPES)}, not {kind!r}")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise SourceConfigError(f"unknown source keys: {', '.join(unknown)}", source=str(kind))
    url, tenant, timeout = spec.get("url"), spec.get("tenant"), spec.get("timeout", 30.0)
    if not isinstance(url, str) or not url:
        raise SourceConfigError("source url: expected a non-empty string", source=str(kind))
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise SourceConfigError("source tenant: expected a non-empty string", source=str(kind))
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise SourceConfigError("source timeout: expected a positive number of seconds", source=str(kind))
    auth = spec.get("auth")
    if auth is not None and not isinstance(auth, Mapping):
        raise SourceConfigError("source auth: expected an object", source=str(kind))
    if auth is not None and not inline_secrets and any(key in auth for key in ("token", "password")):
        raise SourceConfigError(
            "source auth: give the secret as token_file/token_env or password_file/password_env, not inline",
            source=str(kind),
        )
    from logcanary.sources.loki import LokiSource

    return LokiSource(
        url, tenant=tenant, auth=auth_from_spec(auth), timeout=float(timeout), retry=retry, metrics=metrics
    )
