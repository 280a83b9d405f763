"""Record decoding: native events, shipper shapes, OTLP/JSON, arrays, rejections, and never raising."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from logcanary.ingestion import records
from logcanary.ingestion.records import REJECT_REASONS, Decoded, Rejection, decode_object, decode_record
from logcanary.schemas import LogEvent, valid_name


def _raw(value: Any) -> bytes:
    return orjson.dumps(value)


def _one(raw: bytes, **kwargs: Any) -> LogEvent:
    decoded = decode_record(raw, **kwargs)
    assert decoded.rejections == []
    assert len(decoded.events) == 1
    return decoded.events[0]


def _rejected(raw: bytes, **kwargs: Any) -> Rejection:
    decoded = decode_record(raw, **kwargs)
    assert decoded.events == []
    assert len(decoded.rejections) == 1
    rejection = decoded.rejections[0]
    assert rejection.reason in REJECT_REASONS
    return rejection


# --- fixtures: what the shippers really send --------------------------------------------------------------------

NATIVE: dict[str, Any] = {
    "timestamp": "2024-05-01T12:00:00.250Z",
    "service": "checkout",
    "deployment": "v2",
    "host": "checkout-v2-0",
    "level": "error",
    "message": "payment failed: card declined",
    "attributes": {"order_id": "A-17"},
}

# Fluent Bit, tail input with the docker parser, kubernetes filter, kafka output (Format json,
# Timestamp_Key @timestamp, Timestamp_Format double): a Deployment's pod.
FLUENT_BIT: dict[str, Any] = {
    "@timestamp": 1714564800.123456,
    "log": "GET /cart 500 12ms\n",
    "stream": "stderr",
    "time": "2024-05-01T12:00:00.123456789Z",
    "kubernetes": {
        "pod_name": "checkout-7d9f8c6b5-x2x9z",
        "namespace_name": "shop",
        "pod_id": "0b7c3a4e-4f0e-4a8e-9e57-1f6b8f7f3c11",
        "labels": {"app": "checkout", "pod-template-hash": "7d9f8c6b5"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T11:00:00Z"},
        "host": "gke-pool-1-node-3",
        "container_name": "checkout",
        "docker_id": "4f2d0c9a8b7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c",
        "container_hash": "registry.example.com/checkout@sha256:9a1f",
        "container_image": "registry.example.com/checkout:1.4.2",
    },
}

# Vector, kubernetes_logs source, kafka sink with encoding.codec = "json": an Argo Rollouts canary pod.
VECTOR_K8S: dict[str, Any] = {
    "file": "/var/log/pods/shop_checkout-6f7d9c8b4-abcde_0b7c/checkout/0.log",
    "kubernetes": {
        "container_id": "containerd://4f2d0c9a8b7e",
        "container_image": "registry.example.com/checkout:1.5.0",
        "container_name": "checkout",
        "namespace_labels": {"kubernetes.io/metadata.name": "shop"},
        "node_labels": {"kubernetes.io/hostname": "node-7"},
        "pod_ip": "10.8.3.17",
        "pod_ips": ["10.8.3.17"],
        "pod_labels": {"app.kubernetes.io/name": "checkout", "rollouts-pod-template-hash": "6f7d9c8b4"},
        "pod_name": "checkout-6f7d9c8b4-abcde",
        "pod_namespace": "shop",
        "pod_node_name": "node-7",
        "pod_owner": "ReplicaSet/checkout-6f7d9c8b4",
        "pod_uid": "0b7c3a4e-4f0e-4a8e-9e57-1f6b8f7f3c11",
    },
    "message": "connection to db-1:5432 refused",
    "source_type": "kubernetes_logs",
    "stream": "stdout",
    "timestamp": "2024-05-01T12:00:01.000000002Z",
}

VECTOR_PLAIN: dict[str, Any] = {
    "host": "web-3",
    "app": "search",
    "version": 7,
    "level": "WARN",
    "message": "slow query took 2300 ms",
    "timestamp": "2024-05-01T12:00:02Z",
    "source_type": "file",
}

# rsyslog, omkafka with the common Elasticsearch-style JSON template.
RSYSLOG: dict[str, Any] = {
    "@timestamp": "2024-05-01T14:00:03.5+02:00",
    "@version": "1",
    "message": "Out of memory: Killed process 4242 (java)",
    "sysloghost": "db-1",
    "severity": "err",
    "facility": "kern",
    "programname": "kernel",
    "procid": "-",
}

# OTel Collector, kafka exporter with encoding otlp_json: one ExportLogsServiceRequest.
OTLP: dict[str, Any] = {
    "resourceLogs": [
        {
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": "checkout"}},
                    {"key": "service.version", "value": {"stringValue": "1.5.0"}},
                    {"key": "host.name", "value": {"stringValue": "checkout-6f7d9c8b4-abcde"}},
                    {"key": "k8s.namespace.name", "value": {"stringValue": "shop"}},
                    {"key": "telemetry.sdk.language", "value": {"stringValue": "java"}},
                ]
            },
            "scopeLogs": [
                {
                    "scope": {"name": "com.example.checkout"},
                    "logRecords": [
                        {
                            "timeUnixNano": "1714564800123456789",
                            "observedTimeUnixNano": "1714564800200000000",
                            "severityNumber": 17,
                            "severityText": "ERROR",
                            "body": {"stringValue": "payment failed: card declined"},
                            "attributes": [
                                {"key": "order.id", "value": {"stringValue": "A-17"}},
                                {"key": "retry", "value": {"intValue": "3"}},
                            ],
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                        },
                        {
                            "observedTimeUnixNano": "1714564801000000000",
                            "severityNumber": 13,
                            "body": {
                                "kvlistValue": {
                                    "values": [
                                        {"key": "event", "value": {"stringValue": "cache_miss"}},
                                        {"key": "ratio", "value": {"doubleValue": 0.25}},
                                    ]
                                }
                            },
                        },
                    ],
                }
            ],
        },
        {
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": "unknown_service:java"}},
                    {"key": "k8s.pod.name", "value": {"stringValue": "cart-5d4c3b2a1-q1w2e"}},
                    {"key": "k8s.pod.label.app", "value": {"stringValue": "cart"}},
                    {"key": "k8s.pod.label.rollouts-pod-template-hash", "value": {"stringValue": "5d4c3b2a1"}},
                ]
            },
            "scopeLogs": [
                {"logRecords": [{"timeUnixNano": "1714564802000000000", "body": {"stringValue": "cart emptied"}}]}
            ],
        },
    ]
}


# --- native -----------------------------------------------------------------------------------------------------


def test_native_event_is_validated_as_is() -> None:
    event = _one(_raw(NATIVE))
    assert event == LogEvent.model_validate(NATIVE)
    assert event.timestamp == datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    assert event.attributes == {"order_id": "A-17"}


def test_native_defaults_and_naive_timestamp_is_utc() -> None:
    event = _one(b'{"timestamp":"2024-05-01T12:00:00","service":"s","deployment":"d","message":"m"}')
    assert (event.host, event.level, event.attributes) == ("unknown", "info", {})
    assert event.timestamp.tzinfo is UTC


def test_native_unknown_keys_go_to_attributes_and_explicit_attributes_win() -> None:
    record = {**NATIVE, "region": "eu-west-1", "order_id": "ignored", "attributes": {"order_id": "A-17"}}
    event = _one(_raw(record))
    assert event.attributes == {"region": "eu-west-1", "order_id": "A-17"}
    assert event.service == "checkout"
    assert event.message == NATIVE["message"]


def test_native_attributes_that_are_not_an_object_cannot_be_merged() -> None:
    rejection = _rejected(_raw({**NATIVE, "region": "eu", "attributes": ["a"]}))
    assert rejection.reason == "invalid_event"
    assert rejection.detail.startswith("attributes:")


# --- Fluent Bit -------------------------------------------------------------------------------------------------


def test_fluent_bit_kubernetes_record() -> None:
    event = _one(_raw(FLUENT_BIT))
    assert event.service == "checkout"
    assert event.deployment == "7d9f8c6b5"  # pod-template-hash: no version label
    assert event.host == "checkout-7d9f8c6b5-x2x9z"
    assert event.level == "info"  # stderr is not an error level
    assert event.message == "GET /cart 500 12ms"  # one trailing newline stripped
    assert event.timestamp == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert event.attributes == {
        "stream": "stderr",
        "k8s.namespace.name": "shop",
        "k8s.container.name": "checkout",
        "k8s.node.name": "gke-pool-1-node-3",
    }


def test_fluent_bit_version_label_beats_hash_and_fallbacks() -> None:
    labels = {"app.kubernetes.io/name": "checkout", "app.kubernetes.io/version": "1.4.2", "pod-template-hash": "7d9"}
    record = {**FLUENT_BIT, "kubernetes": {**FLUENT_BIT["kubernetes"], "labels": labels}}
    event = _one(_raw(record))
    assert (event.service, event.deployment) == ("checkout", "1.4.2")

    # No labels at all: the container name is the service; no pod name: the node is the host.
    bare = {
        "log": "started\n",
        "time": "2024-05-01T12:00:00Z",
        "kubernetes": {"container_name": "worker", "host": "n1"},
    }
    event = _one(_raw(bare))
    assert (event.service, event.deployment, event.host) == ("worker", "unknown", "n1")


def test_fluent_bit_merged_json_log() -> None:
    # Merge_Log On, Keep_Log On: the app's JSON fields are lifted to the top level, the raw line stays in "log".
    record = {
        **FLUENT_BIT,
        "log": '{"level":"error","message":"db timeout","attempt":3}\n',
        "level": "error",
        "message": "db timeout",
        "attempt": 3,
    }
    event = _one(_raw(record))
    assert (event.level, event.message) == ("error", "db timeout")
    assert event.attributes["attempt"] == 3
    assert "log" not in event.attributes


def test_fluent_bit_ecs_level_and_cri_log_without_newline() -> None:
    record = {"log": "GC pause 1.2s", "log.level": "WARN", "time": "2024-05-01T12:00:00Z", "logtag": "F"}
    event = _one(_raw({**record, "kubernetes": FLUENT_BIT["kubernetes"]}))
    assert (event.level, event.message) == ("WARN", "GC pause 1.2s")
    assert event.attributes["logtag"] == "F"


# --- Argo Rollouts --------------------------------------------------------------------------------------------------


def test_argo_rollouts_pod_template_hash_identifies_the_canary() -> None:
    def fluent_bit(labels: dict[str, str]) -> bytes:
        return _raw({**FLUENT_BIT, "kubernetes": {**FLUENT_BIT["kubernetes"], "labels": labels}})

    stable = _one(fluent_bit({"app": "checkout", "rollouts-pod-template-hash": "5b4c8d7f9"}))
    canary = _one(fluent_bit({"app": "checkout", "rollouts-pod-template-hash": "6f7d9c8b4"}))
    assert (stable.deployment, canary.deployment) == ("5b4c8d7f9", "6f7d9c8b4")
    # The Rollouts hash wins over a plain pod-template-hash; a version label wins over both.
    both = {"app": "checkout", "pod-template-hash": "111", "rollouts-pod-template-hash": "222"}
    assert _one(fluent_bit(both)).deployment == "222"
    assert _one(fluent_bit({**both, "version": "v3"})).deployment == "v3"
    # The same hash from Vector (pod_labels) and from OTLP resource attributes (both label spellings).
    assert _one(_raw(VECTOR_K8S)).deployment == "6f7d9c8b4"
    for prefix in ("k8s.pod.label.", "k8s.pod.labels."):
        request = {
            "resourceLogs": [
                {
                    "resource": {
                        "attributes": [
                            {"key": "service.name", "value": {"stringValue": "checkout"}},
                            {"key": prefix + "rollouts-pod-template-hash", "value": {"stringValue": "6f7d9c8b4"}},
                        ]
                    },
                    "scopeLogs": [{"logRecords": [{"body": {"stringValue": "hi"}}]}],
                }
            ]
        }
        assert _one(_raw(request)).deployment == "6f7d9c8b4"


# --- Vector -----------------------------------------------------------------------------------------------------


def test_vector_kubernetes_logs_record() -> None:
    event = _one(_raw(VECTOR_K8S))
    assert event.service == "checkout"  # app.kubernetes.io/name
    assert event.host == "checkout-6f7d9c8b4-abcde"
    assert event.message == "connection to db-1:5432 refused"
    assert event.level == "info"
    assert event.timestamp == datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
    assert event.attributes == {
        "file": "/var/log/pods/shop_checkout-6f7d9c8b4-abcde_0b7c/checkout/0.log",
        "source_type": "kubernetes_logs",
        "stream": "stdout",
        "k8s.namespace.name": "shop",
        "k8s.container.name": "checkout",
        "k8s.node.name": "node-7",
    }


def test_vector_plain_event() -> None:
    event = _one(_raw(VECTOR_PLAIN))
    assert (event.service, event.deployment, event.host, event.level) == ("search", "7", "web-3", "WARN")
    assert event.attributes == {"source_type": "file"}
    # "service" / "deployment" take precedence over "app" / "version".
    event = _one(_raw({**VECTOR_PLAIN, "service": "search-api", "deployment": "canary"}))
    assert (event.service, event.deployment) == ("search-api", "canary")


# --- rsyslog ----------------------------------------------------------------------------------------------------


def test_rsyslog_json_template() -> None:
    event = _one(_raw(RSYSLOG))
    assert (event.service, event.host, event.level) == ("kernel", "db-1", "err")
    assert event.message == "Out of memory: Killed process 4242 (java)"
    assert event.timestamp == datetime(2024, 5, 1, 12, 0, 3, 500_000, tzinfo=UTC)
    assert event.deployment == "unknown"
    assert event.attributes == {"@version": "1", "facility": "kern", "procid": "-"}


def test_rsyslog_jsonmesg_style_and_numeric_severity() -> None:
    record = {
        "msg": "session opened for user root",
        "timereported": "2024-05-01T12:00:04Z",
        "hostname": "bastion",
        "syslogseverity": "6",
        "app-name": "sshd",
        "programname": "-",
    }
    event = _one(_raw(record))
    assert (event.service, event.host, event.level) == ("sshd", "bastion", "info")
    assert _one(_raw({**record, "syslogseverity": "3"})).level == "err"
    assert _one(_raw({**record, "severity": 2})).level == "crit"
    # "-" is syslog's nil value, not a program name.
    assert _rejected(_raw({**record, "app-name": "-"})).reason == "missing_service"


@pytest.mark.parametrize(("level", "expected"), [(30, "info"), (50, "error"), (60, "fatal"), (99, "99")])
def test_numeric_levels_of_pino_and_bunyan(level: int, expected: str) -> None:
    record = {"msg": "x", "level": level, "time": 1714564800123, "app": "api"}
    event = _one(_raw(record))
    assert event.level == expected
    assert event.timestamp == datetime(2024, 5, 1, 12, 0, 0, 123_000, tzinfo=UTC)


# --- OpenTelemetry ----------------------------------------------------------------------------------------------


def test_otlp_json_export_request() -> None:
    decoded = decode_record(_raw(OTLP))
    assert decoded.rejections == []
    first, second, third = decoded.events
    assert (first.service, first.deployment, first.host) == ("checkout", "1.5.0", "checkout-6f7d9c8b4-abcde")
    assert (first.level, first.message) == ("ERROR", "payment failed: card declined")
    assert first.timestamp == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert first.attributes == {
        "order.id": "A-17",
        "retry": 3,
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "eee19b7ec3c1b174",
        "k8s.namespace.name": "shop",
    }
    # No timeUnixNano: observedTimeUnixNano; no severityText: severityNumber 13; a kvlist body as JSON text.
    assert second.timestamp == datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
    assert second.level == "warn"
    assert orjson.loads(second.message) == {"event": "cache_miss", "ratio": 0.25}
    # unknown_service:* is the SDK default: the pod's app label names it; the pod name is the host.
    assert (third.service, third.deployment, third.host) == ("cart", "5d4c3b2a1", "cart-5d4c3b2a1-q1w2e")
    assert third.level == "info"


@pytest.mark.parametrize(
    ("number", "level"),
    [
        (1, "trace"),
        (4, "trace"),
        (5, "debug"),
        (8, "debug"),
        (9, "info"),
        (12, "info"),
        (13, "warn"),
        (16, "warn"),
        (17, "error"),
        (20, "error"),
        (21, "fatal"),
        (24, "fatal"),
        (0, "info"),
        (25, "info"),
        (None, "info"),
        ("SEVERITY_NUMBER_WARN2", "warn"),
        ("SEVERITY_NUMBER_FATAL", "fatal"),
        ("18", "error"),
    ],
)
def test_otlp_severity_number_mapping(number: Any, level: str) -> None:
    record: dict[str, Any] = {"body": {"stringValue": "x"}}
    if number is not None:
        record["severityNumber"] = number
    request = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "s"}}]},
                "scopeLogs": [{"logRecords": [record]}],
            }
        ]
    }
    assert _one(_raw(request)).level == level
    record["severityText"] = "Notice"  # the text, when present, wins
    assert _one(_raw(request)).level == "Notice"


def test_otlp_bodies_and_bad_records() -> None:
    def request(records: list[Any], service: str | None = "s") -> bytes:
        attributes = [] if service is None else [{"key": "service.name", "value": {"stringValue": service}}]
        return _raw(
            {"resourceLogs": [{"resource": {"attributes": attributes}, "scopeLogs": [{"logRecords": records}]}]}
        )

    bodies = [
        {"body": {"intValue": "42"}},
        {"body": {"boolValue": True}},
        {"body": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 1}]}}},
        {"body": {"stringValue": ""}},
        {},
        {"body": {"stringValue": "x"}, "timeUnixNano": "soon"},
        "not a record",
    ]
    decoded = decode_record(request(bodies))
    assert [event.message for event in decoded.events] == ["42", "true", '["a",1]']
    assert [rejection.reason for rejection in decoded.rejections] == [
        "missing_message",
        "missing_message",
        "invalid_event",
        "invalid_event",
    ]
    assert decoded.rejections[2].detail == "timeUnixNano: not an integer"

    # One missing_service per record, so the counts say how many events were lost.
    missing = decode_record(request([{"body": {"stringValue": "a"}}] * 2, service=None))
    assert [r.reason for r in missing.rejections] == ["missing_service"] * 2
    assert len(decode_record(request([{"body": {"stringValue": "a"}}], service=None), default_service="d").events) == 1
    # An empty export is not an error.
    assert decode_record(b'{"resourceLogs":[]}') == Decoded([], [])
    assert decode_record(b'{"resourceLogs":{}}').rejections[0].reason == "invalid_event"


# --- timestamps -------------------------------------------------------------------------------------------------


def test_missing_timestamp_is_time_of_decoding() -> None:
    before = datetime.now(UTC)
    event = _one(b'{"service":"s","message":"m"}')
    assert before <= event.timestamp <= datetime.now(UTC)
    assert event.deployment == "unknown"


@pytest.mark.parametrize(
    "value",
    [
        1714564800.5,
        1714564800500,
        1714564800500000,
        1714564800500000000,
        "2024-05-01T12:00:00.5Z",
        "2024-05-01T14:00:00.5+02:00",
    ],
)
def test_timestamp_forms(value: Any) -> None:
    event = _one(_raw({"service": "s", "message": "m", "time": value}))
    assert event.timestamp == datetime(2024, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)


# --- rejections -------------------------------------------------------------------------------------------------


def test_every_rejection_reason() -> None:
    cases = {
        "not_json": [b"", b"{", b"hello", b'{"a":1}{"b":2}', b"NaN"],
        "invalid_utf8": [b'{"service":"s","message":"caf\xe9"}', b"\xff\xfe{", b'"\xed\xa0\x80"'],
        "too_large": [b'{"service":"s","message":"' + b"x" * 100 + b'"}', b"\xff" * 101],
        "missing_service": [b'{"message":"m"}', b'{"service":"","message":"m"}', b"{}"],
        "missing_message": [
            b'{"service":"s"}',
            b'{"service":"s","message":""}',
            b'{"service":"s","log":"\\n"}',
            b'{"service":"s","message":null}',
        ],
        "invalid_event": [
            b'{"service":"s","message":"m","timestamp":"yesterday"}',
            b'{"service":{"name":"s"},"message":"m"}',
            b'{"service":"s","message":"m","level":["a"]}',
            b'{"service":"s","deployment":"d","message":"m","timestamp":"2024-05-01T12:00:00Z","attributes":3}',
            b"42",
            b'"a string"',
            b"null",
        ],
        "invalid_name": [
            b'{"service":"a\\u0000b","message":"m"}',
            b'{"service":"../../etc/passwd","deployment":"v1","message":"m"}',
            b'{"service":"s","deployment":"v 2","message":"m"}',
            b'{"service":"s","deployment":"v2","identities":["ok","bad\\u0007"],"message":"m"}',
        ],
    }
    assert set(cases) == set(REJECT_REASONS)
    for reason, raws in cases.items():
        for raw in raws:
            rejection = _rejected(raw, max_bytes=100) if reason == "too_large" else _rejected(raw)
            assert rejection.reason == reason, (raw[:60], rejection)
            assert rejection.detail
            assert len(rejection.detail) <= 300


def test_rejection_details() -> None:
    assert _rejected(b"x" * 11, max_bytes=10).detail == "11 bytes, limit 10"
    assert _rejected(b'{"message":"\xc3"}').detail == "invalid UTF-8 at byte 12"
    detail = _rejected(b'{"service":"s","message":"m","timestamp":"yesterday"}').detail
    assert detail.startswith("timestamp: Input should be a valid datetime")
    assert _rejected(b"[]]").reason == "not_json"


def test_default_service_fills_in() -> None:
    event = _one(b'{"message":"m"}', default_service="fallback")
    assert event.service == "fallback"
    assert _one(_raw(FLUENT_BIT), default_service="fallback").service == "checkout"  # a real one wins


def test_byte_order_mark_and_surrounding_whitespace_are_tolerated() -> None:
    assert _one(b"\xef\xbb\xbf" + _raw(NATIVE) + b"\r\n").service == "checkout"
    assert _rejected(b"\xef\xbb\xbf{").reason == "not_json"


# --- arrays -----------------------------------------------------------------------------------------------------


def test_top_level_array_decodes_each_element() -> None:
    body = _raw([NATIVE, FLUENT_BIT, {"service": "s"}, [NATIVE], 7, OTLP, VECTOR_PLAIN])
    decoded = decode_record(body)
    assert [event.service for event in decoded.events] == [
        "checkout",
        "checkout",
        "checkout",
        "checkout",
        "cart",
        "search",
    ]
    assert [(r.reason, r.detail) for r in decoded.rejections] == [
        ("missing_message", "no message (message, log, msg) or an empty one"),
        ("invalid_event", "array inside an array"),
        ("invalid_event", "expected a JSON object or array, got number"),
    ]
    assert decode_record(b"[]") == Decoded([], [])


def test_decode_object_matches_decode_record() -> None:
    for value in (NATIVE, FLUENT_BIT, VECTOR_K8S, VECTOR_PLAIN, RSYSLOG, OTLP, [NATIVE, RSYSLOG, 1], "text"):
        assert decode_object(value) == decode_record(_raw(value))
    assert decode_object({"message": "m"}, default_service="d").events[0].service == "d"
    # Values no JSON parser produces are rejected, not raised.
    assert decode_object({"service": "s", "message": {1, 2}}).rejections[0].reason == "invalid_event"
    assert decode_object(object()).rejections[0].reason == "invalid_event"


# --- properties -------------------------------------------------------------------------------------------------

_KEYS = sorted(
    {source for sources in records.FIELD_SOURCES.values() for source in sources if "[" not in source}
    | {"kubernetes", "labels", "pod_labels", "pod_name", "container_name", "attributes", "resourceLogs", "resource"}
    | {"scopeLogs", "logRecords", "body", "stringValue", "kvlistValue", "values", "key", "value", "timeUnixNano"}
    | {"severityNumber", "severityText", "app", "pod-template-hash", "rollouts-pod-template-hash", "intValue"}
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "-", "0", "2024-05-01T12:00:00Z", "1714564800123456789", "\n"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_decode_record_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    decoded = decode_record(raw, max_bytes=200, default_service="d" if len(raw) % 2 else None)
    assert all(rejection.reason in REJECT_REASONS for rejection in decoded.rejections)
    assert all(isinstance(event, LogEvent) for event in decoded.events)


@settings(max_examples=500, deadline=None)
@given(_json)
def test_decode_never_raises_on_json_shaped_like_shipper_records(value: Any) -> None:
    for decoded in (decode_record(_raw(value)), decode_object(value)):
        assert all(rejection.reason in REJECT_REASONS for rejection in decoded.rejections)
        assert all(isinstance(event, LogEvent) for event in decoded.events)


_names = st.from_regex(r"[A-Za-z0-9._:/@+-]{1,10}", fullmatch=True).filter(valid_name)
_native = st.fixed_dictionaries(
    {
        "timestamp": st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)
        | st.integers(min_value=0, max_value=250_000_000_000_000),
        "service": _names,
        "deployment": _names,
        "message": st.text(min_size=1, max_size=30),
    },
    optional={
        "host": st.text(max_size=10),
        "level": st.text(max_size=6),
        "attributes": st.dictionaries(
            st.text(max_size=5), st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=5), max_size=3
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(_native, st.dictionaries(st.sampled_from(["region", "pod", "trace_id"]), st.text(max_size=5), max_size=2))
def test_mapping_agrees_with_the_native_fast_path(event: dict[str, Any], extra: dict[str, Any]) -> None:
    """Whatever the native path accepts, the mapping (used once an extra key is present) decodes the same."""
    native = _one(_raw(event))
    assert records._map_flat(event, None) == native
    mapped = _one(_raw({**extra, **event}))
    assert mapped.model_copy(update={"attributes": native.attributes}) == native
    assert mapped.attributes == {**extra, **native.attributes}


def test_timestamps_far_out_of_range_are_rejected_not_raised() -> None:
    rejection = _rejected(b'{"service":"s","message":"m","ts":1e30}')  # orjson: a float beyond u64
    assert (rejection.reason, rejection.detail) == ("invalid_event", "timestamp: out of range")
    assert _one(_raw({"service": "s", "message": "m", "ts": 2**64 - 1})).timestamp.year == 2554  # nanoseconds
    nanos = str(10**30)
    otlp = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "s"}}]},
                "scopeLogs": [{"logRecords": [{"timeUnixNano": nanos, "body": {"stringValue": "m"}}]}],
            }
        ]
    }
    assert _rejected(_raw(otlp)).detail == "timeUnixNano: out of range"
    assert datetime(2024, 5, 1, tzinfo=UTC) - timedelta(days=1) < _one(_raw({**NATIVE, "extra": 1})).timestamp


# --- decode_batch: the hot path decides nothing decode_record would decide otherwise ------------------------------


def _same(raws: list[bytes], **kwargs: Any) -> records.DecodedBatch:
    """decode_batch of ``raws`` against decode_record of each: the same events (as values), rejections and
    records, in order."""
    batch = records.decode_batch(raws, **kwargs)
    assert len(batch.ends) == len(raws)
    for index, raw in enumerate(raws):
        _agree(batch, index, decode_record(raw, **kwargs))
    return batch


def _of(batch: records.DecodedBatch, index: int) -> list[Any]:
    """The events of record ``index``."""
    return batch.events[batch.ends[index - 1] if index else 0 : batch.ends[index]]


def _agree(batch: records.DecodedBatch, index: int, expected: Decoded) -> None:
    got = [(*event[:3], *event[4:6], list(event[6])) for event in _of(batch, index)]
    assert got == [(*records.values_of(e)[:3], e.host, e.level, e.identities) for e in expected.events]
    for event, model in zip(_of(batch, index), expected.events, strict=True):  # no time: both took the clock's
        assert event[3] == model.timestamp.timestamp() or abs(event[3] - time.time()) < 60
    assert (batch.rejected[index].rejections if index in batch.rejected else []) == expected.rejections


# Native records near every rule of LogEvent: names at and past the pattern and length, '.' and '..' segments, a
# trailing newline (Python's '$' would take it, the model does not), long hosts and levels, empty messages, every
# type where text is expected, stamps of every form, extra keys.
_near_names = st.sampled_from(
    ["svc", "a/b", "a//b", ".", "..", "a/../b", "a/.", "./a", "v2\n", "", "x" * 253, "x" * 254, "é", "a b"]
) | st.from_regex(r"[A-Za-z0-9._:/@+ \n-]{1,8}", fullmatch=True)
_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_anything = st.none() | st.booleans() | _int64 | st.floats() | st.lists(st.text(max_size=3), max_size=2)
_stamps = (
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))])).map(datetime.isoformat)
    | st.datetimes().map(datetime.isoformat)
    | st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat().replace("+00:00", "Z"))
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["2024-05-01T12:00:00.1234567Z", "2024-05-01T12:00:00+00:60", "2024-02-30T00:00:00Z", ""])
    | st.sampled_from(["2024-05-01 12:00:00Z", "2024-05-01T24:00:00Z", "2024-05-01", "20240501T120000Z", "now"])
    | _anything
)
_near_native = st.fixed_dictionaries(
    {},
    optional={
        "timestamp": _stamps,
        "service": _near_names | _anything,
        "deployment": _near_names | _anything,
        "message": st.text(max_size=6) | st.just("x" * 300) | _anything,
        "host": st.text(max_size=3) | st.just("h" * 256) | st.just("h" * 257) | _anything,
        "level": st.text(max_size=3) | st.just("l" * 32) | st.just("l" * 33) | _int64,
        "attributes": st.dictionaries(st.text(max_size=3), _int64, max_size=2) | _anything,
        "identities": st.lists(_near_names, max_size=17) | _anything,
        "log": st.text(max_size=3),
        "resourceLogs": st.just([]),
    },
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_near_native, min_size=1, max_size=4))
def test_decode_batch_agrees_with_decode_record(values: list[dict[str, Any]]) -> None:
    raws = [_raw(value) for value in values]
    _same(raws, max_message_bytes=1024)  # a message past 256 characters goes the full way (truncation)


@settings(max_examples=300, deadline=None)
@given(st.lists(_json, max_size=4))
def test_decode_batch_agrees_on_shipper_shapes_and_junk(values: list[Any]) -> None:
    _same([_raw(value) for value in values] + [b"", b"\xef\xbb\xbf{}", b"{", b"\xff", b" " * 300], max_bytes=200)
    batch = records.decode_objects(values)
    for index, value in enumerate(values):
        _agree(batch, index, decode_object(value))


def test_decode_batch_takes_the_fixtures_as_decode_record_does() -> None:
    raws = [_raw(NATIVE), _raw({**NATIVE, "message": "x" * 300}), _raw({**NATIVE, "service": "a/../b"})]
    batch = _same(raws, max_message_bytes=256)
    assert [len(_of(batch, i)) for i in range(3)] == [1, 1, 0]
    assert batch.rejected[2].rejections[0].reason == "invalid_name"
    assert _of(batch, 1)[0][2].endswith("…[truncated 44 bytes]")


_grid = st.tuples(
    st.sampled_from(["0000", "0001", "1969", "1970", "2024", "9999"]),
    st.sampled_from(["00", "01", "02", "12", "13"]),
    st.sampled_from(["00", "01", "28", "29", "30", "31", "32"]),
    st.sampled_from(["T", "t", " ", "_"]),
    st.sampled_from(["00", "23", "24"]),
    st.sampled_from(["00", "59", "60"]),
    st.sampled_from(["00", "59", "60", "61"]),
    st.sampled_from(["", ".", ".5", ".123", ".999999", ".000001", ".1234567", ".9999995", ".123456789", ".9" * 6])
    | st.from_regex(r"\.[0-9]{1,14}", fullmatch=True),
    st.sampled_from(["Z", "z", "", "+00:00", "-00:00", "+23:59", "-23:59", "+24:00", "+05:30", "+00:60"])
    | st.sampled_from(["+0530", "+05"]),
)


@settings(max_examples=3000, deadline=None)
@given(_grid)
def test_the_fast_rfc3339_reading_is_the_models(parts: tuple[str, ...]) -> None:
    """The fast reading of a stamp (``datetime.fromisoformat`` within :data:`records._RFC3339`) is the model's
    validator's, or none at all. (A grid of 7.9 million stamps of these parts agreed whole when this was written.)"""
    year, month, day, separator, hour, minute, second, fraction, zone = parts
    stamp = f"{year}-{month}-{day}{separator}{hour}:{minute}:{second}{fraction}{zone}"
    fast = records._stamp_seconds(stamp)
    try:
        model = LogEvent.model_validate({"timestamp": stamp, "service": "s", "deployment": "d", "message": "m"})
    except ValidationError:
        assert fast is None
        return
    assert fast is None or fast == model.timestamp.timestamp()


def test_the_fast_reading_takes_the_common_stamps_and_leaves_the_rest_to_the_validator() -> None:
    nanoseconds = records._stamp_seconds("2024-05-01T12:00:00.123456789Z")
    assert nanoseconds == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC).timestamp()
    offset = records._stamp_seconds("2024-05-01T12:00:00.25+05:30")
    assert offset == datetime(2024, 5, 1, 6, 30, 0, 250000, tzinfo=UTC).timestamp()
    fullwidth = "2024-05-01T12:00:00.\uff11Z"  # a digit to str.isdigit, not to the model
    others = ["2024-05-01T12:00:00", "2024-05-01 12:00:00Z", "2024-05-01T12:00:00,5Z", "2024-05-01T12:00:00.Z"]
    for other in [*others, fullwidth, "2024-05-01T12:00:00.1234567891Z", "1714564800", "now"]:
        assert records._stamp_seconds(other) is None
