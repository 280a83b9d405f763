"""Credentials for a log store: a bearer token or basic user/password, never shown.

A secret is given directly, or named: a file (re-read when it changes, so a rotated Kubernetes token is
picked up) or an environment variable. Reprs, logs and errors name where a secret comes from, never its
value. The header is added per request by an :class:`httpx.Auth`, so it never sits in a client's default
headers where a debug dump would show it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import httpx

from logcanary.sources.base import SourceAuthError, SourceConfigError


class Secret:
    """A secret value, from exactly one of: ``value``, ``file``, ``env``."""

    __slots__ = ("_cache", "_env", "_file", "_value")

    def __init__(self, *, value: str | None = None, file: str | Path | None = None, env: str | None = None) -> None:
        if sum(source is not None for source in (value, file, env)) != 1:
            raise SourceConfigError("a secret needs exactly one of: a value, a file, an environment variable")
        self._value = value
        self._file = Path(file) if file is not None else None
        self._env = env
        self._cache: tuple[float, int, str] | None = None  # (mtime, size, text) of the file

    @property
    def origin(self) -> str:
        """Where the secret comes from, safe to show."""
        if self._file is not None:
            return f"file {self._file}"
        if self._env is not None:
            return f"environment variable {self._env}"
        return "the configuration"

    def __repr__(self) -> str:
        return f"Secret(<from {self.origin}>)"

    def reveal(self) -> str:
        """The value now; :class:`SourceAuthError` (naming the origin, not the value) when it cannot be read."""
        if self._value is not None:
            return self._value
        if self._env is not None:
            value = os.environ.get(self._env)
            if not value:
                raise SourceAuthError(f"the secret's environment variable {self._env} is unset or empty")
            return value
        assert self._file is not None
        try:
            stat = self._file.stat()
            if self._cache is not None and self._cache[:2] == (stat.st_mtime, stat.st_size):
                return self._cache[2]
            text = self._file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceAuthError(f"cannot read the secret file {self._file}: {type(exc).__name__}") from None
        if not text:
            raise SourceAuthError(f"the secret file {self._file} is empty")
        self._cache = (stat.st_mtime, stat.st_size, text)
        return text


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>``."""

    def __init__(self, token: Secret) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"BearerAuth(token={self.token!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token.reveal()}"
        yield request


class BasicAuth(httpx.Auth):
    """``Authorization: Basic base64(user:password)``; the user may be a secret too (Grafana Cloud's id)."""

    def __init__(self, username: str | Secret, password: Secret) -> None:
        self.username = username
        self.password = password

    def __repr__(self) -> str:
        user = self.username if isinstance(self.username, str) else repr(self.username)
        return f"BasicAuth(username={user!r}, password={self.password!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        user = self.username if isinstance(self.username, str) else self.username.reveal()
        token = base64.b64encode(f"{user}:{self.password.reveal()}".encode()).decode("ascii")
        request.headers["Authorization"] = f"Basic {token}"
        yield request


def secret_from_spec(spec: Mapping[str, Any], name: str) -> Secret:
    """``{name}``, ``{name}_file`` or ``{name}_env`` of an auth spec, as a :class:`Secret`."""
    given = {key: spec[key] for key in (name, f"{name}_file", f"{name}_env") if spec.get(key) is not None}
    if len(given) != 1:
        raise SourceConfigError(f"auth needs exactly one of {name}, {name}_file, {name}_env")
    key, value = next(iter(given.items()))
    if not isinstance(value, str) or not value:
        raise SourceConfigError(f"auth {key}: expected a non-empty string")
    if key.endswith("_file"):
        return Secret(file=value)
    if key.endswith("_env"):
        return Secret(env=value)
    return Secret(value=value)


def auth_from_spec(spec: Mapping[str, Any] | None) -> httpx.Auth | None:
    """An analysis's ``auth`` object as an :class:`httpx.Auth`.

    ``{"type": "bearer", "token" | "token_file" | "token_env": ...}`` or ``{"type": "basic", "username" |
    "username_file" | "username_env": ..., "password" | "password_file" | "password_env": ...}``.
    """
    if spec is None:
        return None
    kind = spec.get("type")
    if kind == "bearer":
        return BearerAuth(secret_from_spec(spec, "token"))
    if kind == "basic":
        user = secret_from_spec(spec, "username")
        return BasicAuth(user.reveal() if "username" in spec else user, secret_from_spec(spec, "password"))
    raise SourceConfigError(f"auth type must be 'bearer' or 'basic', not {kind!r}")
