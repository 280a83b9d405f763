"""README's quick start, run as written: its five lines in bash against a live broker and `logcanary serve`.

Only what cannot be the same here is changed: the broker's address for ``kafka:9092``, a free port for 8080
(``LOGCANARY_PORT``), a fresh state folder, a topic and group of the test's own. Between starting the service
and the first request, the script waits for ``/readyz``, as a person typing does without noticing.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from logcanary.demo.embedded_broker import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parent.parent


def first_block(heading: str) -> list[str]:
    """The lines of the first code block after a heading of the README."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(f"\n{heading}\n") :]
    block = section[section.index("```\n") + 4 :]
    return block[: block.index("```")].strip().splitlines()


def quick_start_lines() -> list[str]:
    return first_block("### With your Kafka")


def test_the_quick_start_is_at_the_top_and_five_lines() -> None:
    """First the two commands a newcomer can run anywhere; then the Kafka path, five lines."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Quick start"
    assert [line.split("#")[0].strip() for line in first_block("## Quick start")] == ["make demo", "make test"]
    assert text.index("### With your Kafka") < text.index("\n## ", text.index("## Quick start") + 1)
    lines = quick_start_lines()
    assert len(lines) == 5
    assert lines[0].split("#")[0].strip() == "pip install ."
    assert "logcanary serve" in lines[2]
    assert "/v1/events" in lines[3] and "/v1/verdict" in lines[4]


def test_the_quick_start_runs_against_a_live_service(kafka: EmbeddedBroker, tmp_path: Path) -> None:
    importlib.metadata.distribution("logcanary")  # line 1, `pip install .`, is what `make` did for this run
    port = free_port()
    lines = [
        line.replace("kafka:9092", kafka.bootstrap_servers).replace("localhost:8080", f"localhost:{port}")
        for line in quick_start_lines()[1:]
    ]
    export, serve, send, verdict = lines
    script = "\n".join(
        [
            "set -euo pipefail",
            export,
            serve,
            "SERVER=$!",
            "trap 'kill $SERVER; wait $SERVER || true' EXIT",
            f"for _ in $(seq 150); do curl -sf localhost:{port}/readyz >/dev/null && break; sleep 0.2; done",
            send,
            "echo",
            verdict,
            "echo",
        ]
    )
    suffix = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # `logcanary` of this venv
        "LOGCANARY_PORT": str(port),
        "LOGCANARY_STATE_DIR": str(tmp_path / "state"),
        "LOGCANARY_KAFKA_TOPICS": f"quickstart-{suffix}",
        "LOGCANARY_KAFKA_GROUP_ID": f"quickstart-{suffix}",
        "LOGCANARY_KAFKA_SESSION_TIMEOUT_MS": "2000",
    }
    result = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]  # not the logs
    sent = next(answer for answer in answers if "accepted" in answer)
    answer = next(answer for answer in answers if "verdict" in answer)
    assert sent["accepted"] == 300 and sent["rejected"] == 0, sent
    assert answer["verdict"] == "fail", answer
    assert (answer["service"], answer["canary"], answer["baseline"]) == ("payments", "v2", ["v1"])
    assert "java.lang.NullPointerException" in answer["anomalies"][0]["template"]
