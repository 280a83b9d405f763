"""This machine's PostgreSQL for the store tests: a fresh schema per test, dropped after.

The server is ``LOGCANARY_TEST_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/test). When it cannot
be reached the tests skip, saying why; with ``CI=true`` they fail instead, because CI runs where PostgreSQL runs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import pytest

from tests.ci import in_ci

TEST_URL = os.environ.get("LOGCANARY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def require_postgres() -> None:
    """Skips (or with CI=true fails) the calling test when PostgreSQL or its driver is unavailable."""
    reason = ""
    try:
        import psycopg

        with psycopg.connect(TEST_URL, connect_timeout=3) as db:
            db.execute("SELECT 1")
    except Exception as exc:
        reason = f"PostgreSQL unavailable at {TEST_URL} ({type(exc).__name__}: {str(exc).strip()})"
    if reason and in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    if reason:
        pytest.skip(f"{reason}; set CI=true to make this an error")


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A schema name no one uses (the store creates it); dropped with everything in it afterwards."""
    import psycopg
    from psycopg import sql

    require_postgres()
    schema = f"lc_test_{secrets.token_hex(6)}"
    try:
        yield schema
    finally:
        with psycopg.connect(TEST_URL, autocommit=True) as db:
            db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
