"""The published log-event contract (schemas/log-event.schema.json) says what the service does.

docs/shippers.md's examples are read from the page: every record is checked against the schema (the native ones)
and sent through the real ingestion path (``decode_record``, then ``POST /v1/events`` of a real app), and the event
each is documented to be counted as is compared with what the service made of it. Edge cases check that the schema
and the service agree both ways: what the schema accepts is counted, what it refuses is rejected.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from fastapi.testclient import TestClient

from logcanary.api.app import create_app
from logcanary.ingestion.records import decode_record
from logcanary.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "log-event.schema.json").read_text(encoding="utf-8"))
FORMATS = jsonschema.FormatChecker()


def _date_time(value: object) -> bool:
    """RFC 3339 (a missing zone is read as UTC, as the service does); jsonschema checks it only with an extra."""
    return not isinstance(value, str) or datetime.fromisoformat(value) is not None


FORMATS.checks("date-time", raises=ValueError)(_date_time)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=FORMATS)
_BLOCK = re.compile(r"```json\n(.*?)\n```", re.DOTALL)


def documented_examples() -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(record, the event it is documented to be counted as, or None) for each JSON record in docs/shippers.md."""
    text = (ROOT / "docs" / "shippers.md").read_text(encoding="utf-8")
    blocks = list(_BLOCK.finditer(text))
    examples: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    index = 0
    while index < len(blocks):
        record = json.loads(blocks[index].group(1))
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if following is not None and "is counted as" in text[blocks[index].end() : following.start()]:
            examples.append((record, json.loads(following.group(1))))
            index += 2
        else:
            examples.append((record, None))
            index += 1
    return examples


EXAMPLES = documented_examples()
NATIVE = [record for record, _ in EXAMPLES if "service" in record and "message" in record]


def test_the_page_documents_the_contested_cases() -> None:
    assert len(EXAMPLES) >= 6 and all(expected is not None for _, expected in EXAMPLES)
    assert any("timestamp" not in record and "deployment" not in record for record in NATIVE)  # both optional
    known = set(SCHEMA["properties"])
    assert any(set(record) - known for record in NATIVE)  # extra keys
    assert any(isinstance(record.get("timestamp"), int | float) for record in NATIVE)  # epoch numbers


def test_the_schema_says_what_is_required_and_that_extra_keys_are_kept() -> None:
    assert SCHEMA["required"] == ["service", "message"]
    assert SCHEMA["additionalProperties"] is True
    assert {"string", "number"} <= {option.get("type") for option in SCHEMA["properties"]["timestamp"]["anyOf"]}


@pytest.mark.parametrize("record", NATIVE, ids=lambda record: str(record.get("service")))
def test_documented_native_records_match_the_schema(record: dict[str, Any]) -> None:
    VALIDATOR.validate(record)


@pytest.mark.parametrize(("record", "expected"), EXAMPLES, ids=[str(n) for n in range(len(EXAMPLES))])
def test_documented_records_are_counted_as_documented(record: dict[str, Any], expected: dict[str, Any]) -> None:
    before = datetime.now(UTC)
    decoded = decode_record(orjson.dumps(record))
    assert decoded.rejections == []
    [event] = decoded.events
    counted = event.model_dump(mode="json")
    if "timestamp" in expected:
        assert counted == expected
    else:  # no timestamp: the time it arrived
        assert before <= event.timestamp <= datetime.now(UTC)
        del counted["timestamp"]
        assert counted == expected


def test_documented_records_go_through_the_service(tmp_path: Path) -> None:
    body = b"\n".join(orjson.dumps(record) for record, _ in EXAMPLES)
    with TestClient(create_app(Settings(state_dir=tmp_path))) as client:
        answer = client.post("/v1/events", content=body, headers={"Content-Type": "application/x-ndjson"})
        assert answer.status_code == 202, answer.text
        assert (answer.json()["accepted"], answer.json()["rejected"]) == (len(EXAMPLES), 0)
        services = {service["service"]: service for service in client.get("/v1/services").json()}
    assert set(services) == {expected["service"] for _, expected in EXAMPLES if expected}
    payments = {entry["deployment"]: entry for entry in services["payments"]["deployments"]}
    assert {"unknown", "v2"} <= set(payments)
    assert "6f7d9c8b4" in payments["v2"]["identities"]


BASE: dict[str, Any] = {"service": "payments", "message": "Payment 42 authorized"}


@pytest.mark.parametrize(
    ("record", "valid"),
    [
        (BASE, True),
        ({**BASE, "deployment": None, "timestamp": None}, True),
        ({**BASE, "timestamp": "2024-05-01T12:00:03"}, True),  # no zone: UTC
        ({**BASE, "timestamp": 1714564803000000000}, True),  # nanoseconds
        ({**BASE, "level": 3}, True),
        ({**BASE, "level": "Warning"}, True),
        ({**BASE, "region": {"name": "eu-west-1", "zones": [1, 2]}, "attributes": {"tenant": "acme"}}, True),
        ({**BASE, "identities": ["6f7d9c8b4", "v2.1"]}, True),
        ({"message": "no service"}, False),
        ({**BASE, "message": ""}, False),
        ({**BASE, "service": "pay ments"}, False),
        ({**BASE, "deployment": "../../etc/passwd"}, False),
        ({**BASE, "level": "x" * 33}, False),
        ({**BASE, "host": "h" * 257}, False),
        ({**BASE, "timestamp": "yesterday"}, False),
        ({**BASE, "attributes": "not an object"}, False),
    ],
)
def test_the_schema_and_the_service_agree(record: dict[str, Any], valid: bool) -> None:
    assert VALIDATOR.is_valid(record) is valid
    decoded = decode_record(orjson.dumps(record))
    assert (len(decoded.events), len(decoded.rejections)) == ((1, 0) if valid else (0, 1)), decoded.rejections
