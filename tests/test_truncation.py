"""Messages past LOGCANARY_MAX_MESSAGE_BYTES keep their head, are marked truncated, and are judged.

A canary whose only new event is a 68 KB StackOverflowError trace must fail: refusing the record (as a 64 KiB
limit on the message once did) would let it pass.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from logcanary.engine.model import MAX_EXAMPLE_BYTES
from logcanary.ingestion.records import decode_object, decode_record
from logcanary.schemas import TRUNCATED_ATTRIBUTE
from tests.test_api import live, make_client, ndjson

LIMIT = 64 * 1024


def stack_overflow(depth: int = 1800) -> str:
    """A deep recursion's trace: about 38 bytes a frame, so 1,800 frames make 68 KB."""
    frames = "\n".join(
        f"\tat com.acme.payments.rules.RuleTree.evaluate(RuleTree.java:{40 + i % 3})" for i in range(depth)
    )
    return f"Unhandled error in request handler\njava.lang.StackOverflowError\n{frames}"


def record(message: str, **extra: object) -> bytes:
    fields = {"timestamp": datetime.now(UTC).isoformat(), "service": "payments", "deployment": "v2"}
    return orjson.dumps({**fields, "level": "error", "message": message, **extra})


def test_a_long_message_keeps_its_head_and_is_marked() -> None:
    message = stack_overflow()
    size = len(message.encode())
    assert size > 68_000
    [event] = decode_record(record(message)).events
    head, _, marker = event.message.rpartition(" …[truncated ")
    assert message.startswith(head)
    assert len(head.encode()) == LIMIT
    assert marker == f"{size - LIMIT} bytes]"
    assert event.attributes[TRUNCATED_ATTRIBUTE] == size - LIMIT


def test_short_messages_are_untouched() -> None:
    [event] = decode_record(record("x" * LIMIT)).events
    assert event.message == "x" * LIMIT
    assert TRUNCATED_ATTRIBUTE not in event.attributes


def test_the_cut_never_splits_a_character_and_the_limit_is_a_setting() -> None:
    [event] = decode_record(record("é" * 3000), max_message_bytes=2049).events  # 6,000 bytes, 2 per character
    head = event.message.split(" …[truncated ")[0]
    assert head == "é" * 1024
    assert event.attributes[TRUNCATED_ATTRIBUTE] == 6000 - 2049


def test_every_path_truncates_and_the_record_limit_still_holds() -> None:
    message = "y" * (LIMIT + 10)
    [from_array] = decode_object([orjson.loads(record(message))]).events
    otlp = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "payments"}}]},
                "scopeLogs": [{"logRecords": [{"body": {"stringValue": message}}]}],
            }
        ]
    }
    [from_otlp] = decode_record(orjson.dumps(otlp)).events
    for event in (from_array, from_otlp):
        assert event.message.endswith(" …[truncated 10 bytes]")
        assert event.attributes[TRUNCATED_ATTRIBUTE] == 10
    too_large = decode_record(record("z" * 200_000), max_bytes=100_000)
    assert [r.reason for r in too_large.rejections] == ["too_large"]


def test_a_68_kb_stack_overflow_fails_the_canary(tmp_path: Path) -> None:
    with make_client(tmp_path) as client:
        normal = live("v1", 1500, 1) + live("v2", 1500, 2)
        trace = orjson.loads(record(stack_overflow()))
        accepted = client.post("/v1/events", content=ndjson([*normal, trace]))
        assert accepted.json() == {"accepted": 3001, "rejected": 0, "errors": []}
        verdict = client.get("/v1/verdict", params={"service": "payments", "canary": "v2", "baseline": "v1"}).json()
        assert verdict["verdict"] == "fail", verdict["reason"]
        [anomaly] = verdict["anomalies"]
        assert "java.lang.StackOverflowError" in anomaly["template"]
        assert "RuleTree.evaluate" in anomaly["template"]
        assert (anomaly["canary_count"], anomaly["level"]) == (1, "error")
        # The example keeps MAX_EXAMPLE_BYTES of the message, and says how much of the original it dropped.
        example = anomaly["examples"][0]
        assert example.endswith(f"…[truncated {len(stack_overflow().encode()) - MAX_EXAMPLE_BYTES} bytes]")
        assert len(example.encode()) < MAX_EXAMPLE_BYTES + 40
