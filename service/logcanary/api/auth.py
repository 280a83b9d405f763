"""Bearer auth: mutating endpoints need the token when LOGCANARY_API_TOKEN is set, reads only with
LOGCANARY_PROTECT_READS=true. Declared through ``HTTPBearer`` so OpenAPI (and /docs) shows the scheme."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from logcanary.api.deps import HttpSettingsDep


class _Bearer(HTTPBearer):
    """``HTTPBearer`` (its OpenAPI scheme) reading the header as the API always has: ``Bearer`` followed by
    anything non-empty is a token, stripped. The stock parser would call a whitespace-only token missing (401),
    where the API answers it as wrong (403); uvicorn's httptools passes such a header through unchanged."""

    async def __call__(self, request: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return None
        return HTTPAuthorizationCredentials(scheme=scheme, credentials=given.strip())


# auto_error=False: a missing token is answered here (401 with WWW-Authenticate), and only when one is needed.
bearer = _Bearer(
    auto_error=False, scheme_name="bearerAuth", description="LOGCANARY_API_TOKEN, when the service sets one."
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _check(token: str, credentials: HTTPAuthorizationCredentials | None) -> None:
    if credentials is None:
        raise HTTPException(401, "send Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):  # constant time
        raise HTTPException(403, "wrong token")


async def require_token(http: HttpSettingsDep, credentials: Credentials) -> None:
    """Mutating endpoints need the bearer token when LOGCANARY_API_TOKEN is set."""
    token = http.api_token
    if token is not None:
        _check(token.get_secret_value(), credentials)


async def require_token_to_read(http: HttpSettingsDep, credentials: Credentials) -> None:
    """Reads return verbatim log lines: with LOGCANARY_PROTECT_READS=true they need the token as well."""
    token = http.api_token
    if token is not None and http.protect_reads:
        _check(token.get_secret_value(), credentials)


Auth = Depends(require_token)
ReadAuth = Depends(require_token_to_read)
