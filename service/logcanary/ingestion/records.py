"""Turn one raw log record into validated :class:`~logcanary.schemas.LogEvent` objects.

A *record* is what arrives from a shipper: one Kafka message value, or one line
of an HTTP NDJSON body.  :func:`decode_record` parses it (``orjson``) and
returns a :class:`Decoded` holding zero or more events and zero or more
:class:`Rejection` s, each with one of :data:`REJECT_REASONS`.  It is pure (no
I/O; the only outside input is the clock, read when a record carries no
timestamp) and never raises for any input.  :func:`decode_object` does the
same for a value that is already parsed (an HTTP JSON-array body).

The hot path is :func:`decode_batch` (and :func:`decode_objects`): a batch of
records to the values the engine counts (:data:`~logcanary.ingestion.sink.EventValues`).
A record in the native shape that the model surely accepts as it is costs one
``msgspec`` decode into a typed struct (types and unknown keys checked in C)
and the model's remaining rules checked field by field, with no model built;
every other record goes through :func:`decode_record`, so the shapes, rules and
rejections below are the same whichever way a record comes in.

Shapes understood (field by field in ``docs/shippers.md``):

* **native**: a JSON object with the ``LogEvent`` fields.  Tried first, as is,
  whenever it has ``service`` and ``deployment`` keys; if that fails the record
  goes through the mapping below, which is a superset of it.
* **mapped**: Fluent Bit (with the Kubernetes filter), Vector
  (``kubernetes_logs`` or plain events) and rsyslog JSON templates.  Each
  ``LogEvent`` field is taken from the first source in :data:`FIELD_SOURCES`
  that holds a value: not ``null``, not ``""`` (but an explicit empty ``host``
  or ``level`` is kept, as the native path keeps it), and for shipper aliases
  not the syslog nil value ``"-"`` either.  ``kubernetes.labels[...]`` reads
  Fluent Bit's ``kubernetes.labels`` or Vector's ``kubernetes.pod_labels``.
* **OTLP/JSON**: an ``ExportLogsServiceRequest`` (an object with
  ``resourceLogs``), one event per log record; see :data:`OTLP_RESOURCE_SOURCES`.
* **array**: a JSON array at the top level; every element is decoded on its own
  (arrays nested in it are rejected).

Decisions worth knowing:

* Keys the native shape does not know are kept, not rejected: every top-level
  key that is not a source in :data:`FIELD_SOURCES` goes into ``attributes``
  (``stream``, ``file``, ``facility``, ...).  Keys named in the table are
  consumed even when a higher-priority source won (so Fluent Bit's ``log`` is not
  stored twice next to a merged ``message``).  On a name clash the record's own
  ``attributes`` object wins.  The one case that cannot be merged is an
  ``attributes`` value that is not an object: that is ``invalid_event``.
* From the Kubernetes block only ``k8s.namespace.name``, ``k8s.container.name``
  and ``k8s.node.name`` are kept (OpenTelemetry names, so every shipper agrees);
  labels, annotations, ids and images are dropped to keep events small.
* Missing timestamp: the time of decoding (UTC now) is used -- shippers nearly
  always set one, and rejecting would lose data.  Numeric timestamps are epoch
  seconds or milliseconds (pydantic's rule); larger numbers are taken as
  microseconds (>= 1e15) or nanoseconds (>= 1e18).
* Missing deployment or host: ``"unknown"``.  Missing level: ``"info"``.
  ``stream: stderr`` is *not* an error level (plenty of programs log everything
  to stderr); it is kept as the ``stream`` attribute.  Text levels are passed
  through verbatim (the engine normalises them); integer levels 0-7 are syslog
  severities and 10-60 pino/bunyan levels.
* Messages are kept verbatim, except that one trailing newline is stripped from
  Fluent Bit's ``log`` (the container runtime's line terminator).  A message
  that is not a string (say, an object) becomes its compact JSON text.
* Missing service: ``missing_service`` unless ``default_service`` is given;
  missing or empty message: ``missing_message``; anything else pydantic refuses
  (a bad timestamp, a non-string service ...): ``invalid_event`` with
  pydantic's first error as the detail.
* A service, deployment or identity name outside the documented rule
  (:data:`~logcanary.schemas.NAME_RULE`: 1-253 characters of ``A-Za-z0-9._:/@+-``,
  no ``..`` path segment; so no NUL, control character or ``../../etc/passwd``)
  is ``invalid_name``.  A mapped record's *extra* identity (a second version
  label) that breaks the rule is dropped instead, as the record still names its
  deployment.
* A message longer than ``max_message_bytes`` (UTF-8, 64 KiB by default) is
  not refused: it keeps its head, ends with `` …[truncated N bytes]`` and has
  the ``logcanary.truncated_bytes`` attribute (:func:`truncate_message`).
* Bytes: too long (``> max_bytes``) is checked before parsing; a parse failure
  is ``invalid_utf8`` when the bytes are not valid UTF-8, else ``not_json``
  (orjson also refuses lone-surrogate escapes such as ``"\\ud800"``: not_json).
  A leading UTF-8 byte-order mark is tolerated.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

import msgspec
import orjson
from pydantic import TypeAdapter, ValidationError

from logcanary.common.text import cut, truncate_bytes
from logcanary.ingestion.sink import EventValues
from logcanary.schemas import (
    DEFAULT_MAX_MESSAGE_BYTES,
    NAME_MAX_LENGTH,
    NAME_PATTERN,
    NAME_RULE,
    PRIMARY_SUFFIX,
    TRUNCATED_ATTRIBUTE,
    LogEvent,
    valid_name,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FIELD_SOURCES",
    "LOOP_RECORD_BYTES",
    "OTLP_RESOURCE_SOURCES",
    "REJECT_REASONS",
    "Decoded",
    "DecodedBatch",
    "Rejection",
    "decode_batch",
    "decode_object",
    "decode_objects",
    "decode_record",
    "truncate_message",
    "values_of",
]

REJECT_REASONS: Final = (
    "not_json",
    "invalid_utf8",
    "too_large",
    "missing_service",
    "missing_message",
    "invalid_event",
    "invalid_name",
)
DEFAULT_MAX_BYTES: Final = 1_048_576


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why (one of :data:`REJECT_REASONS`) a record, or one event in it, was dropped."""

    reason: str
    detail: str


@dataclass(slots=True)
class Decoded:
    """What one record turned into: events and rejections (either list may be empty)."""

    events: list[LogEvent] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


# --- the mapping table ------------------------------------------------------------------------------------------

# LogEvent field -> sources in priority order.  A plain name is a top-level key; ``kubernetes.<key>`` is a key of the
# Kubernetes metadata block; ``kubernetes.labels[<label>]`` a pod label (Fluent Bit ``labels``, Vector
# ``pod_labels``).  Canonical keys come first, then Kubernetes metadata (read from the API server, so the app cannot
# get it wrong), then the other shippers' aliases.
FIELD_SOURCES: Final[dict[str, tuple[str, ...]]] = {
    "service": (
        "service",
        "kubernetes.labels[app]",
        "kubernetes.labels[app.kubernetes.io/name]",
        "kubernetes.container_name",
        "app",  # Vector plain events
        "programname",  # rsyslog
        "app-name",  # rsyslog (RFC 5424 APP-NAME)
    ),
    "deployment": (
        "deployment",
        "kubernetes.labels[version]",
        "kubernetes.labels[app.kubernetes.io/version]",
        "kubernetes.labels[rollouts-pod-template-hash]",  # Argo Rollouts
        "kubernetes.labels[pod-template-hash]",  # Deployment's ReplicaSet
        "version",  # Vector plain events
    ),
    "host": (
        "host",
        "kubernetes.pod_name",
        "hostname",  # rsyslog
        "sysloghost",  # rsyslog (widespread Elasticsearch template)
        "kubernetes.host",  # Fluent Bit: the node
        "kubernetes.pod_node_name",  # Vector: the node
    ),
    "level": ("level", "severity", "log.level", "syslogseverity-text", "syslogseverity"),  # rsyslog's properties
    "message": ("message", "log", "msg"),
    "timestamp": ("timestamp", "@timestamp", "time", "date", "timereported", "ts"),
}

# OTLP: LogEvent field -> resource attributes in priority order.  ``k8s.pod.label.<label>`` also matches the
# k8sattributes processor's older default ``k8s.pod.labels.<label>``.  A ``service.name`` of ``unknown_service...``
# (the SDK default) counts as absent.
OTLP_RESOURCE_SOURCES: Final[dict[str, tuple[str, ...]]] = {
    "service": (
        "service.name",
        "k8s.pod.label.app",
        "k8s.pod.label.app.kubernetes.io/name",
        "k8s.deployment.name",
        "k8s.container.name",
    ),
    "deployment": (
        "service.version",
        "k8s.pod.label.version",
        "k8s.pod.label.app.kubernetes.io/version",
        "k8s.pod.label.rollouts-pod-template-hash",
        "k8s.pod.label.pod-template-hash",
        "k8s.pod.template.hash",
    ),
    "host": ("host.name", "k8s.pod.name"),
}

# Source kinds: a canonical key (empty string = absent), a canonical key for which "" is a legal value (host, level:
# the native path keeps it, so the mapping must too), a shipper alias ("" and "-" = absent), Kubernetes metadata, a
# pod label.
_KEY, _KEY_EMPTY_OK, _ALIAS, _K8S, _LABEL = 0, 1, 2, 3, 4
_Source = tuple[int, str]
_EMPTY_OK: Final = frozenset({"host", "level"})


def _compile(name: str, sources: tuple[str, ...]) -> tuple[_Source, ...]:
    compiled: list[_Source] = []
    for source in sources:
        if source.startswith("kubernetes.labels["):
            compiled.append((_LABEL, source[len("kubernetes.labels[") : -1]))
        elif source.startswith("kubernetes."):
            compiled.append((_K8S, source[len("kubernetes.") :]))
        elif source != name:
            compiled.append((_ALIAS, source))
        else:
            compiled.append((_KEY_EMPTY_OK if name in _EMPTY_OK else _KEY, source))
    return tuple(compiled)


_SERVICE, _DEPLOYMENT, _HOST, _LEVEL, _MESSAGE, _TIMESTAMP = (
    _compile(name, FIELD_SOURCES[name]) for name in ("service", "deployment", "host", "level", "message", "timestamp")
)
# Top-level keys that feed a field (used or not) never reach ``attributes``.
_CONSUMED: Final = frozenset(
    {"attributes", "kubernetes", "identities"}
    | {source for sources in FIELD_SOURCES.values() for source in sources if not source.startswith("kubernetes.")}
)
# Kubernetes metadata kept as attributes: attribute -> keys (Fluent Bit, Vector).
_K8S_ATTRIBUTES: Final = (
    ("k8s.namespace.name", ("namespace_name", "pod_namespace")),
    ("k8s.container.name", ("container_name",)),
    ("k8s.node.name", ("host", "pod_node_name")),
)
_OTLP_LABEL_PREFIX: Final = "k8s.pod.label."
_OTLP_LEGACY_LABEL_PREFIX: Final = "k8s.pod.labels."
_OTLP_RESOURCE_ATTRIBUTES: Final = ("k8s.namespace.name", "k8s.container.name", "k8s.node.name")
_NAME_LABEL: Final = "app.kubernetes.io/name"
_MAX_IDENTITIES: Final = 16  # LogEvent's limit on identities

_SYSLOG_LEVELS: Final = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_PINO_LEVELS: Final = {10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal"}
_OTLP_LEVELS: Final = ("trace", "debug", "info", "warn", "error", "fatal")  # severityNumber 1-4, 5-8, ... 21-24

_DETAIL_MAX: Final = 300
_NAMES: Final = frozenset({"service", "deployment", "identities"})
_NAME_ERRORS: Final = frozenset({"string_pattern_mismatch", "string_too_long", "string_too_short", "value_error"})
_MAX_ANY_VALUE_DEPTH: Final = 32
_BOM: Final = b"\xef\xbb\xbf"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class _Rejected(Exception):
    """Internal control flow: this record (or OTLP log record) is rejected."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# --- entry points -----------------------------------------------------------------------------------------------


def decode_record(
    raw: bytes,
    max_bytes: int = DEFAULT_MAX_BYTES,
    default_service: str | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Decoded:
    """Decodes one raw record (a Kafka message value or one NDJSON line); never raises.

    The whole record is refused past ``max_bytes``; a message past ``max_message_bytes`` is truncated.
    """
    try:
        if len(raw) > max_bytes:
            return _reject("too_large", f"{len(raw)} bytes, limit {max_bytes}")
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            value = _parse_again(raw, exc)
    except _Rejected as rejected:
        return _reject(rejected.reason, rejected.detail)
    except Exception as exc:  # last line of defence: a record must never take the consumer down
        return _reject("invalid_event", f"undecodable record ({type(exc).__name__}: {exc})")
    return _decode_parsed(value, default_service, max_message_bytes)


def _decode_parsed(value: Any, default_service: str | None, max_message_bytes: int) -> Decoded:
    """:func:`decode_record` once its bytes are parsed."""
    try:
        if type(value) is dict and "resourceLogs" not in value:
            event = _event_from_dict(value, default_service)
            truncate_message(event, max_message_bytes)
            return Decoded([event], [])
        out = Decoded([], [])
        _decode_value(value, default_service, out, nested=False)
        for event in out.events:
            truncate_message(event, max_message_bytes)
        return out
    except _Rejected as rejected:
        return _reject(rejected.reason, rejected.detail)
    except Exception as exc:  # last line of defence: a record must never take the consumer down
        return _reject("invalid_event", f"undecodable record ({type(exc).__name__}: {exc})")


def decode_object(
    obj: object, *, default_service: str | None = None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> Decoded:
    """Like :func:`decode_record` for an already parsed JSON value (e.g. an HTTP JSON-array body); never raises."""
    out = Decoded([], [])
    try:
        _decode_value(obj, default_service, out, nested=False)
    except _Rejected as rejected:
        out.rejections.append(Rejection(rejected.reason, _clip(rejected.detail)))
    except Exception as exc:
        out.rejections.append(Rejection("invalid_event", _clip(f"undecodable value ({type(exc).__name__}: {exc})")))
    for event in out.events:
        truncate_message(event, max_message_bytes)
    return out


def truncate_message(event: LogEvent, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
    """Keeps the first ``max_bytes`` (UTF-8) of a longer message and marks the cut, in the text and in
    ``attributes``. A huge event (a deep StackOverflowError trace) is still an event: its head names the
    exception and the top frames, which is what types it, so it is judged instead of being dropped."""
    message, dropped = truncate_bytes(event.message, max_bytes)
    if dropped:
        event.message = message
        event.attributes[TRUNCATED_ATTRIBUTE] = dropped


# --- batches: the hot path -------------------------------------------------------------------------------------


#: Records up to this size may be decoded on the event loop (in slices, between records); a batch holding a longer
#: one is decoded in a worker thread instead, as one record decoded the full way (an OTLP batch: tens of
#: microseconds an event) could otherwise hold the loop for long.
LOOP_RECORD_BYTES: Final = 16 * 1024


@dataclass(slots=True)
class DecodedBatch:
    """What a batch of records turned into, as the engine takes events: every event in record order, where each
    record's events end, and the outcome of each record with a rejection (its counted events are in ``events``)."""

    events: list[EventValues] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # record i's events are events[ends[i - 1]:ends[i]]
    rejected: dict[int, Decoded] = field(default_factory=dict)  # by record index

    def add(self, decoded: Decoded) -> None:
        """Appends one record decoded the full way (its events as values)."""
        if decoded.rejections:
            self.rejected[len(self.ends)] = decoded
        self.events.extend(values_of(event) for event in decoded.events)
        self.ends.append(len(self.events))


def values_of(event: LogEvent) -> EventValues:
    """What the engine counts of an event (its attributes are not counted)."""
    when = event.timestamp.timestamp()
    return (event.service, event.deployment, event.message, when, event.host, event.level, event.identities)


def decode_batch(
    raws: Sequence[bytes],
    max_bytes: int = DEFAULT_MAX_BYTES,
    default_service: str | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    *,
    into: DecodedBatch | None = None,
    until: float | None = None,
) -> DecodedBatch:
    """:func:`decode_record` for each record, their events as values; never raises.

    Nearly every record is one native event that :class:`LogEvent` accepts as it is: it is checked here by the same
    rules, field by field, without building a model (about a tenth of the cost). Any other record, or one that breaks
    or might break a rule, is decoded by :func:`decode_record` itself, so every shape, rule and rejection is its.

    ``into`` goes on with a batch decoded in part (from its next record); ``until`` (a ``time.perf_counter()``)
    stops before the first record past it (one record at least is decoded), so a caller on the event loop can
    decode in slices.
    """
    out = DecodedBatch() if into is None else into
    events, ends = out.events, out.ends
    first = len(ends)
    misses = 0  # records the native struct did not take: past a few, the batch is of another shape
    for raw in itertools.islice(raws, first, None):
        if until is not None and len(ends) > first and time.perf_counter() >= until:
            break
        if len(raw) <= max_bytes:
            if misses < _NATIVE_MISSES:
                try:
                    record = _decode_native(raw)
                except msgspec.MsgspecError:  # another shape, or not JSON: the general path decides
                    misses += 1
                else:
                    identities = record.identities
                    event = _values(
                        record.service,
                        record.deployment,
                        record.message,
                        record.timestamp,
                        record.host,
                        record.level,
                        _NO_IDENTITIES if isinstance(identities, msgspec.UnsetType) else identities,
                        max_message_bytes,
                    )
                    if event is not None:
                        events.append(event)
                        ends.append(len(events))
                    else:
                        out.add(decode_record(raw, max_bytes, default_service, max_message_bytes))
                    continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                out.add(decode_record(raw, max_bytes, default_service, max_message_bytes))
                continue
            if type(value) is dict and (event := _native_values(value, max_message_bytes)) is not None:
                events.append(event)
                ends.append(len(events))
                continue
            out.add(_decode_parsed(value, default_service, max_message_bytes))
        else:
            out.add(decode_record(raw, max_bytes, default_service, max_message_bytes))
    return out


def decode_objects(
    values: Iterable[object],
    default_service: str | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> DecodedBatch:
    """:func:`decode_object` for each parsed value (the elements of a JSON-array body), as :func:`decode_batch`."""
    out = DecodedBatch()
    events, ends = out.events, out.ends
    for value in values:
        if type(value) is dict and (event := _native_values(value, max_message_bytes)) is not None:
            events.append(event)
            ends.append(len(events))
        else:
            out.add(decode_object(value, default_service=default_service, max_message_bytes=max_message_bytes))
    return out


# LogEvent.timestamp's own validator (pydantic's datetime rules: RFC 3339 text, epoch seconds or milliseconds), so
# the fast path reads a time exactly as the model does; a naive time is UTC (LogEvent._utc).
_DATETIME: Final = TypeAdapter(datetime)
# The commonest stamps (``2024-05-01T12:00:00.250Z``, to the nanosecond) read by ``datetime.fromisoformat``: within
# this shape it reads the instant the model's validator reads (both keep microseconds, truncated), in a fifth of
# the time (tests/test_records.py checks it on a grid of stamps).
_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_RFC3339_MATCH: Final = _RFC3339.fullmatch
_NATIVE_FIELDS: Final = frozenset(LogEvent.model_fields)
_NAME_FULL: Final = re.compile(NAME_PATTERN)
_NAMES_SEEN: dict[str, None] = {}  # names found valid: services and deployments are few, and met on every event
_NAMES_SEEN_MAX: Final = 4096
_HOST_MAX: Final = 256  # LogEvent.host's max_length
_LEVEL_MAX: Final = 32  # LogEvent.level's max_length
_NO_IDENTITIES: Final[tuple[str, ...]] = ()
_ABSENT: Final = object()


class _NativeRecord(msgspec.Struct, forbid_unknown_fields=True):
    """The native shape as msgspec reads it (in C): :class:`LogEvent`'s fields, each of a type and length the model
    takes as it is (``timestamp`` any JSON scalar the model may read); any other key, type or length fails the
    decode, and the record goes the general way. ``attributes`` is only checked to be an object (it is not
    counted)."""

    service: str
    deployment: str
    message: Annotated[str, msgspec.Meta(min_length=1)]
    timestamp: str | int | float
    host: Annotated[str, msgspec.Meta(max_length=_HOST_MAX)] = "unknown"
    level: Annotated[str, msgspec.Meta(max_length=_LEVEL_MAX)] = "info"
    identities: Annotated[list[str], msgspec.Meta(max_length=_MAX_IDENTITIES)] | msgspec.UnsetType = msgspec.UNSET
    attributes: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


_decode_native: Final = msgspec.json.Decoder(_NativeRecord).decode
_NATIVE_MISSES: Final = 8  # decodes a batch tries before it takes its records as another shape
_INT64: Final = range(-(2**63), 2**64)  # integers orjson reads exactly (past them it reads floats)


def _native_values(obj: dict[Any, Any], max_message_bytes: int) -> EventValues | None:
    """The event of a native record (parsed) that :class:`LogEvent` surely accepts unchanged, as values; None when
    the record is another shape, or breaks (or might break) any of the model's rules: then the full path decides.

    What :class:`_NativeRecord` checks in C, checked here: only the model's fields (``extra="forbid"``);
    ``service``, ``deployment`` and ``message`` text, the message not empty; ``host`` at most 256 and ``level`` at
    most 32 characters of text; ``identities`` a list of at most 16; ``attributes`` an object. Only ``str`` values
    are taken as text (pydantic's lax rules are left to it). The rest as :func:`_values` says.
    """
    if not obj.keys() <= _NATIVE_FIELDS:
        return None
    get = obj.get
    service, deployment, message = get("service"), get("deployment"), get("message")
    host, level = get("host", "unknown"), get("level", "info")
    identities = get("identities", _NO_IDENTITIES)
    attributes = get("attributes", _ABSENT)
    if (
        type(service) is not str
        or type(deployment) is not str
        or type(message) is not str
        or not message
        or type(host) is not str
        or len(host) > _HOST_MAX
        or type(level) is not str
        or len(level) > _LEVEL_MAX
        or (identities is not _NO_IDENTITIES and (type(identities) is not list or len(identities) > _MAX_IDENTITIES))
        or (attributes is not _ABSENT and type(attributes) is not dict)
    ):
        return None
    return _values(service, deployment, message, get("timestamp"), host, level, identities, max_message_bytes)


def _values(
    service: str,
    deployment: str,
    message: str,
    stamp: Any,
    host: str,
    level: str,
    identities: Sequence[str],
    max_message_bytes: int,
) -> EventValues | None:
    """A native event's fields, of the model's types and lengths, as values when :class:`LogEvent` surely accepts
    them unchanged; else None. The rules types do not say: names by :data:`NAME_PATTERN` (matched whole), 1-253
    characters, no '.' or '..' segment (identities too); ``message`` short enough that no truncation applies; the
    time as the model's own validator reads it."""
    names = _NAMES_SEEN  # the names met so far (a dict lookup instead of the pattern)
    if (service not in names and not _is_name(service)) or (deployment not in names and not _is_name(deployment)):
        return None
    if len(message) > max_message_bytes // 4 or (identities and not all(map(_is_name, identities))):
        return None
    if (when := _seconds(stamp)) is None:
        return None
    return service, deployment, message, when, host, level, identities


def _seconds(stamp: Any) -> float | None:
    """The epoch seconds of a native ``timestamp`` as the model's own validator reads it; None when it might not."""
    if type(stamp) is str and (seconds := _stamp_seconds(stamp)) is not None:
        return seconds
    if stamp is None or (type(stamp) is int and stamp not in _INT64):
        return None
    try:
        when = _DATETIME.validate_python(stamp)
    except ValidationError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _stamp_seconds(stamp: str) -> float | None:
    """An RFC 3339 stamp's epoch seconds, as the model's validator reads it; None for any other text (the validator
    then decides) or a day or an hour out of range."""
    if _RFC3339_MATCH(stamp) is None:
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def _is_name(value: object) -> bool:
    """:data:`~logcanary.schemas.Name`'s rules, remembered for the names met."""
    if type(value) is not str:
        return False
    if value in _NAMES_SEEN:
        return True
    if not (0 < len(value) <= NAME_MAX_LENGTH and _NAME_FULL.fullmatch(value)):
        return False
    if any(segment in (".", "..") for segment in value.split("/")):
        return False
    if len(_NAMES_SEEN) >= _NAMES_SEEN_MAX:
        _NAMES_SEEN.clear()
    _NAMES_SEEN[value] = None
    return True


# --- parsing ----------------------------------------------------------------------------------------------------


def _parse_again(raw: bytes, error: orjson.JSONDecodeError) -> Any:
    """After orjson refused ``raw``: retry without a byte-order mark, else raise the right rejection."""
    data = bytes(raw) if isinstance(raw, bytearray | memoryview) else raw
    if isinstance(data, bytes):
        if data.startswith(_BOM):
            try:
                return orjson.loads(data[len(_BOM) :])
            except orjson.JSONDecodeError as retry_error:
                data, error = data[len(_BOM) :], retry_error
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Rejected("invalid_utf8", f"invalid UTF-8 at byte {exc.start}") from None
    raise _Rejected("not_json", str(error))


def _decode_value(value: object, default_service: str | None, out: Decoded, *, nested: bool) -> None:
    if isinstance(value, dict):
        if "resourceLogs" in value:
            _decode_otlp(value, default_service, out)
        else:
            _append(out, value, default_service)
    elif isinstance(value, list):
        if nested:
            out.rejections.append(Rejection("invalid_event", "array inside an array"))
            return
        for item in value:
            try:
                _decode_value(item, default_service, out, nested=True)
            except Exception as exc:
                out.rejections.append(Rejection("invalid_event", _clip(f"undecodable element ({exc})")))
    else:
        out.rejections.append(Rejection("invalid_event", f"expected a JSON object or array, got {_json_type(value)}"))


def _append(out: Decoded, obj: dict[Any, Any], default_service: str | None) -> None:
    try:
        out.events.append(_event_from_dict(obj, default_service))
    except _Rejected as rejected:
        out.rejections.append(Rejection(rejected.reason, _clip(rejected.detail)))


def _event_from_dict(obj: dict[Any, Any], default_service: str | None) -> LogEvent:
    if "service" in obj and "deployment" in obj:  # native shape: the hot path
        try:
            return LogEvent.model_validate(obj)
        except ValidationError:
            pass  # the mapping below accepts everything the native shape does, and more
    return _map_flat(obj, default_service)


# --- Fluent Bit, Vector, rsyslog, native with extras -----------------------------------------------------------


def _map_flat(obj: dict[Any, Any], default_service: str | None) -> LogEvent:
    k8s = obj.get("kubernetes")
    if isinstance(k8s, dict):
        kept_k8s = None
    else:
        kept_k8s, k8s = k8s, {}  # not a metadata block: an ordinary attribute
    labels = k8s.get("labels")
    if not isinstance(labels, dict):
        labels = k8s.get("pod_labels")
        if not isinstance(labels, dict):
            labels = {}

    service = _text(_pick(obj, k8s, labels, _SERVICE)[1])
    if service is None:
        service = default_service or None
        if service is None:
            raise _Rejected("missing_service", "no service (service, kubernetes labels app, ...) and no default")
    names = [_text(value) for value in _pick_all(obj, k8s, labels, _DEPLOYMENT)]
    service, deployment, identities = _identify(service, names, (labels.get("app"), labels.get(_NAME_LABEL)))
    explicit_identities = obj.get("identities")
    if isinstance(explicit_identities, list):  # a native record with extra keys: keep the identities it names
        identities = [*identities, *(n for n in explicit_identities if n not in identities and n != deployment)]
    message_key, message = _pick(obj, k8s, labels, _MESSAGE)
    if message_key == "log" and isinstance(message, str) and message.endswith("\n"):
        message = message[:-2] if message.endswith("\r\n") else message[:-1]
    message = _message(message)
    if not message:
        raise _Rejected("missing_message", "no message (message, log, msg) or an empty one")
    level_key, level = _pick(obj, k8s, labels, _LEVEL)
    host = _pick(obj, k8s, labels, _HOST)[1]

    attributes: dict[Any, Any] = {key: value for key, value in obj.items() if key not in _CONSUMED}
    if kept_k8s is not None:
        attributes["kubernetes"] = kept_k8s
    for name, keys in _K8S_ATTRIBUTES:
        for key in keys:
            value = k8s.get(key)
            if value is not None:
                attributes[name] = value
                break
    explicit = obj.get("attributes")
    fields: dict[str, Any] = {
        "timestamp": _timestamp(_pick(obj, k8s, labels, _TIMESTAMP)[1]),
        "service": service,
        "deployment": deployment,
        "identities": identities,
        "host": "unknown" if host is None else _text(host),
        "level": "info" if level is None else _level(level, level_key),
        "message": message,
        "attributes": attributes,
    }
    if isinstance(explicit, dict):
        attributes.update(explicit)
    elif explicit is not None:
        fields["attributes"] = explicit  # cannot merge into a non-object: let validation say so
    return _validate(fields)


def _pick(
    obj: dict[Any, Any], k8s: dict[Any, Any], labels: dict[Any, Any], sources: tuple[_Source, ...]
) -> tuple[str, Any]:
    """(key, value) of the first source holding a value, else ("", None)."""
    for kind, key in sources:
        if kind == _LABEL:
            value = labels.get(key)
        elif kind == _K8S:
            value = k8s.get(key)
        else:
            value = obj.get(key)
        if value is None or (kind != _KEY_EMPTY_OK and value == "") or (kind == _ALIAS and value == "-"):
            continue
        return key, value
    return "", None


def _pick_all(
    obj: dict[Any, Any], k8s: dict[Any, Any], labels: dict[Any, Any], sources: tuple[_Source, ...]
) -> list[Any]:
    """The values of every source holding one, in priority order (what :func:`_pick` would try in turn)."""
    found = []
    for source in sources:
        key, value = _pick(obj, k8s, labels, (source,))
        if key:
            found.append(value)
    return found


def _identify(service: Any, names: list[Any], workloads: tuple[Any, ...]) -> tuple[Any, Any, list[str]]:
    """(service, deployment, identities): the first deployment name, the other names as its identities.

    Flagger runs a target ``<name>`` beside its primary ``<name>-primary`` and relabels the primary's pods
    ``app: <name>-primary``. Records of those pods belong to service ``<name>`` as deployment
    ``<name>-primary``, so that primary and canary are two deployments of one service (one miner, one
    verdict) and the names Flagger knows find both. An explicit ``service`` key or a name without a
    matching workload label is never rewritten.
    """
    deployment = names[0] if names else "unknown"
    for workload in workloads:
        if (
            isinstance(workload, str)
            and workload.endswith(PRIMARY_SUFFIX)
            and len(workload) > len(PRIMARY_SUFFIX)
            and service in (workload, workload[: -len(PRIMARY_SUFFIX)])
        ):
            service, deployment = workload[: -len(PRIMARY_SUFFIX)], workload
            break
    identities = [
        name
        for name in dict.fromkeys(names)
        if valid_name(name) and name != deployment  # an odd extra label value is dropped, not fatal
    ]
    return service, deployment, identities[:_MAX_IDENTITIES]


def _text(value: Any) -> Any:
    """Numbers become strings (``version: 2``); other non-strings are left for validation to refuse."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _level(value: Any, key: str) -> Any:
    if isinstance(value, str):
        if key != "level" and len(value) == 1 and "0" <= value <= "7":  # rsyslog %syslogseverity%
            return _SYSLOG_LEVELS[int(value)]
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 7:
            return _SYSLOG_LEVELS[value]
        return _PINO_LEVELS.get(value, str(value))
    return _text(value)


def _message(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise _Rejected("invalid_event", f"message: cannot render as JSON ({exc})") from None


def _timestamp(value: Any) -> Any:
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        magnitude = abs(value)
        # pydantic takes up to 2e10 as seconds and beyond as milliseconds, valid until year 9999 (~2.5e14).
        if magnitude >= 1e18:
            return _from_epoch(value, 1_000_000_000)
        if magnitude >= 1e15:
            return _from_epoch(value, 1_000_000)
    return value  # RFC 3339 text, epoch seconds or milliseconds: pydantic's job


def _from_epoch(value: float, per_second: int) -> datetime:
    try:
        if isinstance(value, int):
            return _EPOCH + timedelta(microseconds=value * 1_000_000 // per_second)
        return _EPOCH + timedelta(microseconds=value * 1_000_000 / per_second)
    except (OverflowError, ValueError):
        raise _Rejected("invalid_event", "timestamp: out of range") from None


# --- OpenTelemetry OTLP/JSON -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Resource:
    service: str | None
    deployment: str
    host: str
    attributes: dict[str, Any]
    identities: list[str]


def _decode_otlp(obj: dict[Any, Any], default_service: str | None, out: Decoded) -> None:
    resource_logs = obj.get("resourceLogs")
    if resource_logs is None:
        return
    if not isinstance(resource_logs, list):
        out.rejections.append(Rejection("invalid_event", "resourceLogs: expected an array"))
        return
    for resource_log in resource_logs:
        try:
            _decode_resource_logs(resource_log, default_service, out)
        except _Rejected as rejected:
            out.rejections.append(Rejection(rejected.reason, _clip(rejected.detail)))


def _decode_resource_logs(resource_log: Any, default_service: str | None, out: Decoded) -> None:
    if not isinstance(resource_log, dict):
        raise _Rejected("invalid_event", "resourceLogs[]: expected an object")
    resource = resource_log.get("resource")
    resource_attributes = _key_values(resource.get("attributes") if isinstance(resource, dict) else None)
    context = _resource(resource_attributes, default_service)
    scope_logs = resource_log.get("scopeLogs", resource_log.get("instrumentationLibraryLogs"))
    if scope_logs is None:
        return
    if not isinstance(scope_logs, list):
        raise _Rejected("invalid_event", "scopeLogs: expected an array")
    for scope_log in scope_logs:
        if not isinstance(scope_log, dict):
            out.rejections.append(Rejection("invalid_event", "scopeLogs[]: expected an object"))
            continue
        records = scope_log.get("logRecords")
        if records is None:
            continue
        if not isinstance(records, list):
            out.rejections.append(Rejection("invalid_event", "logRecords: expected an array"))
            continue
        for record in records:
            try:
                out.events.append(_otlp_event(record, context))
            except _Rejected as rejected:
                out.rejections.append(Rejection(rejected.reason, _clip(rejected.detail)))


def _resource(attributes: dict[str, Any], default_service: str | None) -> _Resource:
    def every(names: tuple[str, ...], skip_unknown_service: bool = False) -> list[Any]:
        found = []
        for name in names:
            value = attributes.get(name)
            if value is None and name.startswith(_OTLP_LABEL_PREFIX):
                value = attributes.get(_OTLP_LEGACY_LABEL_PREFIX + name[len(_OTLP_LABEL_PREFIX) :])
            if value is None or value == "":
                continue
            if skip_unknown_service and isinstance(value, str) and value.startswith("unknown_service"):
                continue
            found.append(_text(value))
        return found

    def first(names: tuple[str, ...], skip_unknown_service: bool = False) -> Any:
        return next(iter(every(names, skip_unknown_service)), None)

    kept: dict[str, Any] = {name: attributes[name] for name in _OTLP_RESOURCE_ATTRIBUTES if name in attributes}
    workloads = every((_OTLP_LABEL_PREFIX + "app", _OTLP_LABEL_PREFIX + _NAME_LABEL, "k8s.deployment.name"))
    service, deployment, identities = _identify(
        first(OTLP_RESOURCE_SOURCES["service"], skip_unknown_service=True) or default_service or None,
        every(OTLP_RESOURCE_SOURCES["deployment"]),
        tuple(workloads),
    )
    return _Resource(
        service=service,
        deployment=deployment,
        host=first(OTLP_RESOURCE_SOURCES["host"]) or "unknown",
        attributes=kept,
        identities=identities,
    )


def _otlp_event(record: Any, resource: _Resource) -> LogEvent:
    if not isinstance(record, dict):
        raise _Rejected("invalid_event", "logRecords[]: expected an object")
    if resource.service is None:
        raise _Rejected("missing_service", "no service.name (or k8s app label, ...) in the resource and no default")
    message = _message(_any_value(record.get("body"), 0))
    if not message:
        raise _Rejected("missing_message", "log record without a body or with an empty one")
    timestamp = (
        _unix_nano(record.get("timeUnixNano"), "timeUnixNano")
        or _unix_nano(record.get("observedTimeUnixNano"), "observedTimeUnixNano")
        or datetime.now(UTC)
    )
    level = _text(record.get("severityText")) or _severity_number(record.get("severityNumber"))
    attributes = _key_values(record.get("attributes"))
    for key, name in (("traceId", "trace_id"), ("spanId", "span_id")):
        value = record.get(key)
        if value:
            attributes.setdefault(name, value)
    for name, value in resource.attributes.items():
        attributes.setdefault(name, value)
    return _validate(
        {
            "timestamp": timestamp,
            "service": resource.service,
            "deployment": resource.deployment,
            "identities": resource.identities,
            "host": resource.host,
            "level": level,
            "message": message,
            "attributes": attributes,
        }
    )


def _key_values(items: Any) -> dict[str, Any]:
    """An OTLP ``KeyValue`` list as a plain dict; malformed entries are skipped."""
    result: dict[str, Any] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                key = item.get("key")
                if isinstance(key, str):
                    result[key] = _any_value(item.get("value"), 0)
    return result


def _any_value(value: Any, depth: int) -> Any:
    """An OTLP ``AnyValue`` as a plain JSON value (``None`` when empty)."""
    if not isinstance(value, dict):
        return value
    if depth > _MAX_ANY_VALUE_DEPTH:
        raise _Rejected("invalid_event", f"AnyValue nested deeper than {_MAX_ANY_VALUE_DEPTH} levels")
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "intValue" in value:  # int64 is a JSON string in OTLP/JSON
        number = value["intValue"]
        if isinstance(number, str):
            try:
                return int(number)
            except ValueError:
                return number
        return number
    if "doubleValue" in value:
        return value["doubleValue"]
    if "arrayValue" in value:
        array = value["arrayValue"]
        values = array.get("values") if isinstance(array, dict) else None
        return [_any_value(item, depth + 1) for item in values] if isinstance(values, list) else []
    if "kvlistValue" in value:
        kvlist = value["kvlistValue"]
        values = kvlist.get("values") if isinstance(kvlist, dict) else None
        result: dict[str, Any] = {}
        if isinstance(values, list):
            for item in values:
                if isinstance(item, dict) and isinstance(item.get("key"), str):
                    result[item["key"]] = _any_value(item.get("value"), depth + 1)
        return result
    if "bytesValue" in value:  # base64 text, kept as is
        return value["bytesValue"]
    return None


def _unix_nano(value: Any, name: str) -> datetime | None:
    if value is None or value in (0, "0", ""):
        return None
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise _Rejected("invalid_event", f"{name}: not an integer") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Rejected("invalid_event", f"{name}: not an integer")
    try:
        return _EPOCH + timedelta(microseconds=value // 1000)
    except OverflowError:
        raise _Rejected("invalid_event", f"{name}: out of range") from None


def _severity_number(value: Any) -> str:
    """OTLP severityNumber (1-4 trace, 5-8 debug, 9-12 info, 13-16 warn, 17-20 error, 21-24 fatal); else info."""
    if isinstance(value, str):  # ProtoJSON may carry the enum name, or a number as text
        if value.startswith("SEVERITY_NUMBER_"):
            name = value[len("SEVERITY_NUMBER_") :].rstrip("0123456789").lower()
            return name if name in _OTLP_LEVELS else "info"
        value = int(value) if value.isdigit() and len(value) < 3 else 0
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 24:
        return _OTLP_LEVELS[(value - 1) // 4]
    return "info"


# --- helpers ----------------------------------------------------------------------------------------------------


def _validate(fields: dict[str, Any]) -> LogEvent:
    try:
        return LogEvent.model_validate(fields)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if not errors:
            raise _Rejected("invalid_event", str(exc)) from None
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"]) or "event"
        if first["loc"] and first["loc"][0] in _NAMES and first["type"] in _NAME_ERRORS:
            raise _Rejected("invalid_name", f"{where}: {first['msg']} (names: {NAME_RULE})") from None
        raise _Rejected("invalid_event", f"{where}: {first['msg']}") from None


def _reject(reason: str, detail: str) -> Decoded:
    return Decoded([], [Rejection(reason, _clip(detail))])


def _clip(text: str) -> str:
    return cut(text, _DETAIL_MAX)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__
