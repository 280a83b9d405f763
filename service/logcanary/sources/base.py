"""What every log store source shares: the pulled line, the batch, the errors and the protocol.

A *source* reads a team's log store (Grafana Loki first; Elasticsearch/OpenSearch and Splunk later) for a
deployment's time window, so that logcanary can judge logs it was never sent. Times are integers of
nanoseconds since the epoch throughout: Loki's resolution, and no float rounding at a page boundary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Protocol

if TYPE_CHECKING:
    from logcanary.sources.cursor import Cursor

EMPTY_LABELS: Mapping[str, str] = {}
NS_PER_SECOND = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PulledLine(NamedTuple):
    """One log line as the store returned it. A tuple (not a model): a window holds millions of them.

    ``labels`` is shared by every line of one stream in one response: never mutate it. ``metadata`` holds the
    store's per-line fields (Loki: structured metadata and labels parsed by the query's pipeline) when the
    source returns them apart from the stream's labels, else it is empty and they are in ``labels``.
    """

    timestamp: int  # nanoseconds since the epoch
    line: str
    labels: Mapping[str, str]
    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the caller should know about a pull that is not an error: the data is still complete.

    Codes: ``range_split`` (the store refused the time range at once; it was pulled in parts),
    ``limit_lowered`` (the store's entry limit per query is lower than asked), ``same_timestamp_split``
    (more lines shared one timestamp than a page holds; they were pulled in parts), ``empty_result`` (no line
    matched in the whole window), ``lateness_shrunk`` (a cursor's dedupe set reached its cap: late lines older
    than its floor are no longer picked up).
    """

    code: str
    message: str


@dataclass(slots=True)
class Batch:
    """A bounded batch of a pull, in time order with the other batches of the pull.

    Every line of a batch is no newer than every line of the next batch. Within a batch lines are grouped by
    stream, each stream in time order. ``through``: every matching line older than it has been delivered (by
    this batch or earlier ones). ``final``: the last batch; the window was pulled completely. A pull either
    ends with a final batch or raises a :class:`SourceError`: it never stops quietly with part of the data.
    """

    lines: list[PulledLine]
    through: int
    final: bool = False
    notices: list[Notice] = field(default_factory=list)


# --- errors ------------------------------------------------------------------------------------------------------


class SourceError(Exception):
    """A pull or lookup failed. ``code`` is stable and machine-readable; ``message`` never holds a secret.

    ``store_message`` is the store's own words (Loki's error body), clipped, for the API to quote.
    """

    code: ClassVar[str] = "source_error"

    def __init__(
        self, message: str, *, source: str = "", status: int | None = None, store_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.status = status
        self.store_message = store_message

    def as_dict(self) -> dict[str, object]:
        """The error as an API body's ``error`` object."""
        body: dict[str, object] = {"code": self.code, "message": self.message, "source": self.source}
        if self.status is not None:
            body["status"] = self.status
        if self.store_message is not None:
            body["store_message"] = self.store_message
        return body


class SourceUnavailable(SourceError):
    """The store could not be reached, or kept answering 429/5xx, through every retry the policy allows."""

    code: ClassVar[str] = "source_unavailable"


class SourceQueryError(SourceError):
    """The store refused the query itself (Loki: a 400, e.g. a LogQL parse error): fix the query, not retry."""

    code: ClassVar[str] = "source_query_invalid"


class SourceAuthError(SourceError):
    """The store refused the credentials (401/403), or they could not be read."""

    code: ClassVar[str] = "source_unauthorized"


class SourceLimitExceeded(SourceError):
    """A store limit that splitting cannot get under: the data cannot be pulled completely, so none is claimed."""

    code: ClassVar[str] = "source_limit_exceeded"


class SourceConfigError(SourceError):
    """The source's configuration is wrong (a bad URL, an unknown template variable, a missing secret file)."""

    code: ClassVar[str] = "source_misconfigured"


ERROR_CODES = tuple(
    cls.code
    for cls in (
        SourceError,
        SourceUnavailable,
        SourceQueryError,
        SourceAuthError,
        SourceLimitExceeded,
        SourceConfigError,
    )
)


# --- the protocol ------------------------------------------------------------------------------------------------


class LogSource(Protocol):
    """A log store that logcanary pulls from. Queries are text in the store's own language (Loki: LogQL)."""

    @property
    def kind(self) -> str:
        """The store type, as an analysis names it and as metrics label it: ``loki``."""
        ...

    def render(self, template: str, variables: Mapping[str, str]) -> str:
        """The query for one deployment: ``$name`` variables replaced, values escaped for where they stand."""
        ...

    def pull(self, query: str, start: int, end: int) -> AsyncIterator[Batch]:
        """Every line matching ``query`` with ``start <= timestamp < end``, in bounded batches."""
        ...

    def follow(self, query: str, cursor: Cursor, until: int | None = None) -> AsyncIterator[Batch]:
        """The lines not yet delivered through ``cursor`` up to ``until`` (default now); advances ``cursor``.

        After each batch the cursor accounts for exactly the lines delivered so far: checkpoint it with what
        the batch produced, and resuming from the checkpoint neither repeats nor skips a line.
        """
        ...

    async def label_values(self, name: str, start: int, end: int, query: str | None = None) -> list[str]:
        """Values of label ``name`` on streams (matching ``query``, if given) with data in the range."""
        ...

    async def validate(self, query: str) -> None:
        """Raises :class:`SourceQueryError` (the store's message) unless the store accepts ``query``."""
        ...

    async def aclose(self) -> None: ...


def to_ns(moment: datetime) -> int:
    """A datetime (naive = UTC) as nanoseconds since the epoch, exactly (no float on the way)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1_000


def seconds_to_ns(seconds: float) -> int:
    """Epoch seconds (a float: ``time.time()``, a parsed RFC 3339 time) as nanoseconds, to the microsecond: a float
    of today's epoch holds no finer digits, and ``int(seconds * 1e9)`` could land a boundary a few hundred
    nanoseconds past a line stamped on it, and lose that line."""
    return round(seconds * 1_000_000) * 1_000


def from_ns(ns: int) -> datetime:
    """Nanoseconds since the epoch as a UTC datetime (microsecond precision)."""
    return _EPOCH + timedelta(microseconds=ns // 1_000)
