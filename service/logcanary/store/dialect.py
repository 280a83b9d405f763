"""What differs between SQLite and PostgreSQL in the SQL the store shares, and nothing else.

Statements are written once in a neutral notation (PostgreSQL's, with ``?`` for parameters) and rendered per
dialect by :meth:`Dialect.render`:

* ``?``: a parameter (``%s`` for psycopg);
* ``{blob}``, ``{double}``, ``{bigint}``, ``{timestamp}``, ``{now}``: type names and the current time's default;
* ``= ANY(?)``: the column equals one of a list, passed through :meth:`Dialect.array` (SQLite has no arrays: it
  reads a JSON array with ``json_each``, one statement whatever the list's length);
* ``{for_update}``: locks the rows read (SQLite's ``BEGIN IMMEDIATE`` already holds the one write lock);
* ``{bytewise}``: orders text by its bytes (PostgreSQL's default collation follows the locale);
* ``{no_limit}``: what ``OFFSET`` needs before it (SQLite needs a ``LIMIT``).

Both dialects are defined here, side by side, so that every difference shows at once. How a connection opens,
how a transaction begins and ends, and how migrations are locked live with each store (sqlite.py, postgres.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

DialectName = Literal["sqlite", "postgresql"]


@dataclass(frozen=True, slots=True)
class Dialect:
    """One database's spelling of the shared SQL; the stores define theirs (``SQLITE``, ``POSTGRESQL``)."""

    name: DialectName
    placeholder: str
    types: Mapping[str, str]  # neutral name -> this dialect's: blob, double, bigint, timestamp
    now: str
    for_update: str
    bytewise: str
    no_limit: str
    any_array: str  # what ``= ANY(?)`` becomes
    array: Callable[[Collection[Any]], Any]  # the parameter of ``= ANY(?)``
    blob: Callable[[Any], bytes]  # a stored blob as read -> bytes

    def render(self, text: str) -> str:
        """Neutral SQL -> this dialect's (see the module's docstring)."""
        slots = {
            **self.types,
            "now": self.now,
            "for_update": self.for_update,
            "bytewise": self.bytewise,
            "no_limit": self.no_limit,
        }
        return text.format(**slots).replace("= ANY(?)", self.any_array).replace("?", self.placeholder)


def _json_array(values: Collection[Any]) -> str:
    return orjson.dumps(list(values)).decode()


def _as_stored(blob: bytes) -> bytes:
    return blob  # sqlite3 reads a BLOB as bytes already


SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    types={"blob": "BLOB", "double": "REAL", "bigint": "INTEGER", "timestamp": "TEXT"},
    now="CURRENT_TIMESTAMP",
    for_update="",  # BEGIN IMMEDIATE holds the file's one write lock
    bytewise="",  # BINARY is SQLite's default
    no_limit=" LIMIT -1",
    any_array="IN (SELECT value FROM json_each(?))",
    array=_json_array,
    blob=_as_stored,
)
POSTGRESQL = Dialect(
    name="postgresql",
    placeholder="%s",
    types={"blob": "BYTEA", "double": "DOUBLE PRECISION", "bigint": "BIGINT", "timestamp": "TIMESTAMPTZ"},
    now="now()",
    for_update=" FOR UPDATE",
    bytewise=' COLLATE "C"',  # the database's collation follows its locale
    no_limit="",
    any_array="= ANY(?)",
    array=list,  # psycopg sends a list as an array
    blob=bytes,
)
