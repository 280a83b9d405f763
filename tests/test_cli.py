"""The CLI contracts the shared scorers rely on."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from logcanary.demo.traffic import events

CLI = [sys.executable, "-m", "logcanary.cli"]
ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, check=False, cwd=ROOT)


def test_parse_writes_one_object_per_line_in_order() -> None:
    lines = (
        b"Invalid user a from 1.2.3.4\nInvalid user b from 1.2.3.5\n"
        b"\xff\xfe broken bytes\n\nInvalid user c from 9.9.9.9\n"
    )
    result = run("parse", "-", stdin=lines)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(records) == 5
    assert all(set(r) == {"template_id", "template"} for r in records)
    assert records[0] == records[1] == records[4]
    assert records[0]["template"] == "Invalid user <*> from <*>"
    assert "\ufffd" in records[2]["template"]


def test_parse_imports_the_miner_alone() -> None:
    """A pipeline parses many small files, each in a new process: ``parse`` imports neither the models (pydantic),
    nor river, nor the verdicts, which took 0.35 s before the first line was read."""
    probe = (
        "import sys, io; sys.stdin = io.TextIOWrapper(io.BytesIO(b'Invalid user a from 1.2.3.4\\n'));"
        "from logcanary.cli import main; main(['parse', '-']);"
        "heavy = sorted({'pydantic', 'river', 'numpy', 'logcanary.analysis.verdict'} & set(sys.modules));"
        "print(heavy, file=sys.stderr); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Invalid user a from <*>" in result.stdout


def test_parse_streaming_and_file_argument(tmp_path: Path) -> None:
    source = tmp_path / "in.log"
    source.write_text("disk full on /dev/sda1\n", encoding="utf-8")
    result = run("parse", "--streaming", str(source))
    assert json.loads(result.stdout)["template"] == "disk full on <*>"


def write_jsonl(path: Path, records: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_analyze_prints_one_verdict_matching_the_schema(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "b.jsonl", list(events("v1", 1500, seed=1)))
    canary = list(events("v2", 1500, seed=2, npe_rate=0.02))
    write_jsonl(tmp_path / "c.jsonl", canary)
    result = run("analyze", "--baseline", str(tmp_path / "b.jsonl"), "--canary", str(tmp_path / "c.jsonl"))
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    schema = json.loads((ROOT / "schemas" / "verdict.schema.json").read_text())
    jsonschema.validate(verdict, schema)
    assert verdict["verdict"] == "fail"
    assert verdict["service"] == "payments"
    messages = {e["message"] for e in canary}
    assert all(example in messages for a in verdict["anomalies"] for example in a["examples"])


def test_analyze_names_file_and_line_of_bad_input(tmp_path: Path) -> None:
    good = json.dumps(next(events("v1", 1)))
    (tmp_path / "b.jsonl").write_text(good + "\n" + '{"service": "x", "message": "no time"}\n', encoding="utf-8")
    (tmp_path / "c.jsonl").write_text(good + "\n", encoding="utf-8")
    result = run("analyze", "--baseline", str(tmp_path / "b.jsonl"), "--canary", str(tmp_path / "c.jsonl"))
    assert result.returncode == 2
    assert f"{tmp_path / 'b.jsonl'}:2" in result.stderr.decode()
    assert "timestamp" in result.stderr.decode()
    assert result.stdout == b""


def test_analyze_rejects_non_json_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text("not json\n", encoding="utf-8")
    result = run("analyze", "--baseline", str(tmp_path / "bad.jsonl"), "--canary", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 2
    assert "bad.jsonl:1" in result.stderr.decode()
    result = run("analyze", "--baseline", str(tmp_path / "nope.jsonl"), "--canary", str(tmp_path / "bad.jsonl"))
    assert result.returncode == 2
    assert "nope.jsonl: cannot open" in result.stderr.decode()


def test_checked_in_schemas_match_the_models() -> None:
    result = run("schemas", "--check", "--out", str(ROOT / "schemas"))
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.parametrize(("baseline_lines", "code"), [(0, "no_baseline"), (8, "too_few_events")])
def test_analyze_with_an_empty_or_tiny_baseline_is_inconclusive(tmp_path: Path, baseline_lines: int, code: str) -> None:
    write_jsonl(tmp_path / "b.jsonl", list(events("v1", baseline_lines, seed=1)))
    write_jsonl(tmp_path / "c.jsonl", list(events("v2", 1500, seed=2, npe_rate=0.02)))
    result = run("analyze", "--baseline", str(tmp_path / "b.jsonl"), "--canary", str(tmp_path / "c.jsonl"))
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert (verdict["verdict"], verdict["reason_code"]) == ("inconclusive", code)
