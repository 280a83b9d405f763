"""The PostgreSQL store (``LOGCANARY_STORE_URL=postgresql://...``): the same operations, schema and exactly-once
contract as the SQLite store (logcanary.store.sql), shared by every replica in scale-out.

What is PostgreSQL's own: the connection, reopened after it breaks; the schema named by ``LOGCANARY_STORE_SCHEMA``
(the connection's search_path); migrations applied at start in one transaction under an advisory lock, so two
replicas starting at once never both migrate and a failed migration leaves the previous schema intact; and loads
that read every table in one REPEATABLE READ snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from logcanary.store.base import StoreOpenError, StoreUnavailable
from logcanary.store.dialect import POSTGRESQL
from logcanary.store.schema import LATEST, MIGRATIONS, upgrade
from logcanary.store.sql import Session, SqlStore

__all__ = ["LATEST", "MIGRATIONS", "POSTGRESQL", "PostgresStore", "migrate", "redacted"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10


class _Session:
    """Statements on a cursor, sent as bytes (psycopg types a ``str`` query as a literal one); without parameters
    as ``None``, so nothing in the text is read as a placeholder."""

    __slots__ = ("_cur",)

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._cur.execute(query.encode(), params or None).fetchall()

    def one(self, query: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._cur.execute(query.encode(), params or None).fetchone()
        return row

    def run(self, query: str, params: Sequence[Any] = ()) -> int:
        return self._cur.execute(query.encode(), params or None).rowcount

    def many(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        params = list(rows)
        if params:
            self._cur.executemany(query.encode(), params)


def redacted(url: str) -> str:
    """The URL with its password (if any) replaced by ***, for messages and logs."""
    return re.sub(r"^(\w+://[^:/@]*):[^@/]*@", r"\1:***@", url)


def _lock_key(schema: str | None) -> int:
    """The advisory lock of one schema's migrations: a signed 64-bit number derived from its name."""
    digest = hashlib.blake2b(f"logcanary-migrations\x1f{schema or ''}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def migrate(db: psycopg.Connection[Any], schema: str | None, target: int = LATEST) -> list[int]:
    """Applies the migrations newer than the schema's version, up to ``target``; returns those applied.

    One transaction under ``pg_advisory_xact_lock``: a second process starting at the same time waits, then finds
    nothing left to do. With a ``schema``, the connection's search_path is set to it (and stays so): the tables
    live there only.
    """
    if schema is not None:
        db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    with db.transaction(), db.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(schema),))
        if schema is not None:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        settings = "LOGCANARY_STORE_URL, LOGCANARY_STORE_SCHEMA"
        applied = upgrade(_Session(cur), POSTGRESQL, "the PostgreSQL store", settings, target)
    if applied:
        log.info("PostgreSQL store migrated to schema version %d (applied %s)", applied[-1], applied)
    return applied


class PostgresStore(SqlStore):
    """One connection behind a lock (as the SQLite store), reopened after it breaks; autocommit outside the
    explicit transactions."""

    def __init__(self, url: str, schema: str | None = None) -> None:
        super().__init__(POSTGRESQL)
        self.url = url
        self.schema = schema
        self._db: psycopg.Connection[Any] | None = None
        try:
            migrate(self._connection(), schema)
        except psycopg.Error as exc:
            if self._db is not None:
                self._db.close()
            where = f"LOGCANARY_STORE_URL={redacted(url)}" + (
                f", LOGCANARY_STORE_SCHEMA={schema}" if schema is not None else ""
            )
            raise StoreOpenError(f"cannot open the PostgreSQL store ({where}): {str(exc).strip()}") from exc

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection, or a new one when there is none or it broke (a server restart, a failover)."""
        db = self._db
        if db is not None and not db.closed and not db.broken:
            return db
        if db is not None:
            log.warning("PostgreSQL connection lost; reconnecting")
            db.close()
        options: dict[str, Any] = {"autocommit": True, "application_name": "logcanary"}
        if "connect_timeout" not in self.url:
            options["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        db = psycopg.connect(self.url, **options)
        if self.schema is not None:
            db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        self._db = db
        return db

    @contextlib.contextmanager
    def _reachable(self) -> Iterator[None]:
        """A server that refuses or drops the connection is :class:`StoreUnavailable` (a 503 with Retry-After, and
        a failed checkpoint retried later), never an unexplained error."""
        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(f"PostgreSQL is unreachable now ({str(exc).strip()[:300]})") from exc

    @contextlib.contextmanager
    def _session(self) -> Iterator[Session]:
        with self._lock, self._reachable(), self._connection().cursor() as cur:
            yield _Session(cur)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._lock, self._reachable():
            db = self._connection()
            with db.transaction(), db.cursor() as cur:
                yield _Session(cur)

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[Session]:
        with self._transaction() as session:
            session.run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")  # first in it, as it must be
            yield session

    def maintain(self) -> None:
        """Nothing to do by hand: PostgreSQL's autovacuum reclaims the rows that checkpoints and retention delete.

        A broken connection is reopened here, so a server restart is noticed between checkpoints too."""
        with self._lock:
            self._connection().execute("SELECT 1")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
