"""Log store sources: pull a deployment's window of logs from where a team keeps them (Grafana Loki first).

``base`` holds the protocol every store implements, the pulled line and the errors; ``cursor`` the
incremental cursor; ``loki`` (with ``floods`` and ``logql``) the Loki implementation; ``http`` and ``auth``
the retrying HTTP client and credentials any HTTP store shares; ``factory`` builds the source an analysis
names; ``mapping`` turns pulled lines into what the
engine counts; ``metrics`` the Prometheus series and health summary.
"""

from logcanary.sources.auth import BasicAuth, BearerAuth, Secret, auth_from_spec
from logcanary.sources.base import (
    ERROR_CODES,
    Batch,
    LogSource,
    Notice,
    PulledLine,
    SourceAuthError,
    SourceConfigError,
    SourceError,
    SourceLimitExceeded,
    SourceQueryError,
    SourceUnavailable,
    from_ns,
    to_ns,
)
from logcanary.sources.cursor import Cursor
from logcanary.sources.factory import open_source
from logcanary.sources.http import RetryPolicy
from logcanary.sources.loki import LokiSource
from logcanary.sources.mapping import LineMapper, Observation
from logcanary.sources.metrics import SourceMetrics

__all__ = [
    "ERROR_CODES",
    "BasicAuth",
    "Batch",
    "BearerAuth",
    "Cursor",
    "LineMapper",
    "LogSource",
    "LokiSource",
    "Notice",
    "Observation",
    "PulledLine",
    "RetryPolicy",
    "Secret",
    "SourceAuthError",
    "SourceConfigError",
    "SourceError",
    "SourceLimitExceeded",
    "SourceMetrics",
    "SourceQueryError",
    "SourceUnavailable",
    "auth_from_spec",
    "from_ns",
    "open_source",
    "to_ns",
]
