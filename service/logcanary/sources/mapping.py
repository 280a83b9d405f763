"""A pulled line as the fields the engine counts (``State.observe_values`` / ``Engine.observe``).

Service and deployment come from the query (the analysis names them), never from labels: a selector can
match streams labelled anyhow. Host and level come from labels (stream labels, structured metadata), and a
JSON line (Promtail/Alloy/Vector JSON, the OpenTelemetry Collector's Loki exporter shape, OTLP/JSON) is read
by :mod:`logcanary.ingestion.records`, so its ``message``, ``level`` and ``host`` are used as ingestion uses
them. Any other line is the message, verbatim, without building a pydantic model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from logcanary.ingestion.records import FIELD_SOURCES, decode_object, truncate_message
from logcanary.schemas import DEFAULT_MAX_MESSAGE_BYTES, LogEvent
from logcanary.sources.base import EMPTY_LABELS, NS_PER_SECOND, PulledLine

# First present, non-empty wins. Loki's own guess (detected_level) comes after what the shipper set.
LEVEL_LABELS = ("level", "severity", "severity_text", "lvl", "detected_level")
HOST_LABELS = ("pod", "k8s_pod_name", "instance", "host", "hostname", "host_name", "node_name")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNKNOWN = frozenset({"", "unknown"})
_MESSAGE_KEYS = FIELD_SOURCES["message"]
_LEVEL_KEYS = FIELD_SOURCES["level"]


class Observation(NamedTuple):
    """The arguments of ``State.observe_values``: one event of ``deployment`` of ``service``."""

    service: str
    deployment: str
    message: str
    timestamp: float  # seconds since the epoch
    host: str
    level: str
    identities: Sequence[str]


class LineMapper:
    """Maps the lines of one deployment's query. ``skipped`` counts empty lines (nothing to judge)."""

    def __init__(
        self,
        service: str,
        deployment: str,
        identities: Sequence[str] = (),
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.service = service
        self.deployment = deployment
        self.identities = tuple(identities)
        self.max_message_bytes = max_message_bytes
        self.skipped = 0

    def map(self, lines: Iterable[PulledLine]) -> list[Observation]:
        out: list[Observation] = []
        append = out.append
        surely_short = self.max_message_bytes // 4  # a UTF-8 character is at most 4 bytes
        service, deployment, identities = self.service, self.deployment, self.identities
        streams: dict[int, tuple[str, str]] = {}  # id(labels) -> (host, level): a stream's lines share labels
        for pulled in lines:
            text = pulled.line
            if not text or text.isspace():
                self.skipped += 1
                continue
            if text[0] == "{" and text[-1] == "}":
                decoded = self._json(pulled)
                if decoded is not None:
                    out += decoded
                    continue
            if len(text) > surely_short:
                text = self._truncated(text)
            if pulled.metadata:
                host, level = _host_level(pulled.metadata, pulled.labels)
            else:
                found = streams.get(id(pulled.labels))
                if found is None:
                    found = streams[id(pulled.labels)] = _host_level(EMPTY_LABELS, pulled.labels)
                host, level = found
            append(Observation(service, deployment, text, pulled.timestamp / NS_PER_SECOND, host, level, identities))
        return out

    def _json(self, pulled: PulledLine) -> list[Observation] | None:
        """The events a JSON line holds, through the ingestion mapping; None if it is not a JSON event."""
        try:
            value = orjson.loads(pulled.line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(value, dict):
            return None
        if "resourceLogs" not in value:
            if not any(value.get(key) for key in _MESSAGE_KEYS) and value.get("body"):
                value["message"] = value["body"]  # the OpenTelemetry Collector's Loki exporter
            value["service"], value["deployment"] = self.service, self.deployment  # the query names them
        decoded = decode_object(value, default_service=self.service, max_message_bytes=self.max_message_bytes)
        if not decoded.events:
            return None
        labels, metadata = pulled.labels, pulled.metadata
        host = _first(metadata, labels, HOST_LABELS)
        level = _first(metadata, labels, LEVEL_LABELS)
        timestamp = pulled.timestamp / NS_PER_SECOND  # Loki's timestamp: the one windows and cursors use
        return [
            Observation(
                self.service,
                self.deployment,
                event.message,
                timestamp,
                host or event.host,
                _level(value, event.level, level),
                self.identities,
            )
            for event in decoded.events
        ]

    def _truncated(self, text: str) -> str:
        event = LogEvent.model_construct(
            timestamp=_EPOCH, service=self.service, deployment=self.deployment, message=text, attributes={}
        )
        truncate_message(event, self.max_message_bytes)
        return event.message


def _host_level(metadata: Mapping[str, str], labels: Mapping[str, str]) -> tuple[str, str]:
    return _first(metadata, labels, HOST_LABELS) or "unknown", _first(metadata, labels, LEVEL_LABELS) or "info"


def _first(metadata: Mapping[str, str], labels: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = metadata.get(name) or labels.get(name)
        if value and value.lower() not in _UNKNOWN:
            return value
    return None


def _level(record: dict[str, Any], decoded: str, from_labels: str | None) -> str:
    """The line's own level when it states one; else the labels' (then Loki's guess); else info."""
    if "resourceLogs" in record or any(record.get(key) is not None for key in _LEVEL_KEYS):
        return decoded
    return from_labels or decoded
