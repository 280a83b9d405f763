"""rsyslog: the recipe in docs/shippers.md, and records exactly as its template writes them.

The literal records below were written by rsyslog 8.2302 with the recipe's template (omfile in place of
omkafka). When rsyslogd is installed, the recipe itself is also checked (``rsyslogd -N1``) and run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from logcanary.demo.embedded_broker import free_port
from logcanary.ingestion.records import decode_record
from logcanary.schemas import LogEvent
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "shippers.md").read_text()
SECTION = DOC.split("### rsyslog (omkafka)", 1)[1]
RECIPE = SECTION.split("```\n", 2)[1]
EXAMPLE = re.search(r"```json\n(.*?)\n```", SECTION, re.S)

# Written by rsyslog 8.2302 (APP_VERSION=v2) for `logger --rfc3164 -t payments -p local0.err` and
# `logger --rfc5424 -t payments -p user.warning`: bytes as they reached the file.
WRITTEN = [
    b'{"@timestamp":"2026-11-26T16:37:55+00:00","host":"vm","programname":"payments","deployment":"v2",'
    b'"syslogseverity-text":"err","facility":"local0",'
    b'"message":" Payment 42 failed: \\"card\\" declined \\\\ back\\\\slash#011tab"}',
    b'{"@timestamp":"2026-11-26T16:37:55.930131+00:00","host":"vm","programname":"payments","deployment":"v2",'
    b'"syslogseverity-text":"warning","facility":"user","message":"took 12ms for order-7"}',
]
RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
needs_rsyslogd = pytest.mark.skipif(not Path(RSYSLOGD).exists(), reason="rsyslogd not installed (Debian: rsyslog)")


def one(raw: bytes) -> LogEvent:
    decoded = decode_record(raw)
    assert decoded.rejections == []
    [event] = decoded.events
    return event


def test_records_as_the_template_writes_them() -> None:
    first, second = (one(raw) for raw in WRITTEN)
    assert (first.service, first.deployment, first.host, first.level) == ("payments", "v2", "vm", "err")
    assert first.message == ' Payment 42 failed: "card" declined \\ back\\slash#011tab'
    assert first.timestamp == datetime(2026, 11, 26, 16, 37, 55, tzinfo=UTC)
    assert first.attributes == {"facility": "local0"}
    assert (second.level, second.message) == ("warning", "took 12ms for order-7")
    assert second.timestamp == datetime(2026, 11, 26, 16, 37, 55, 930131, tzinfo=UTC)


def test_the_documented_record_decodes() -> None:
    assert EXAMPLE, "docs/shippers.md lost its rsyslog example record"
    event = one(EXAMPLE.group(1).encode())
    assert (event.service, event.deployment, event.host, event.level) == ("payments", "v2", "web-1", "err")


def test_without_app_version_the_deployment_is_unknown() -> None:
    raw = WRITTEN[1].replace(b'"deployment":"v2"', b'"deployment":""')
    assert one(raw).deployment == "unknown"


@needs_rsyslogd
def test_rsyslogd_accepts_the_recipe_and_writes_what_we_decode(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "out.jsonl"
    config = tmp_path / "rsyslog.conf"
    # The recipe's template and ruleset as documented; its inputs and omkafka action swapped for a TCP input
    # and a file (omkafka needs a broker, and the rsyslog-kafka package).
    template = RECIPE[RECIPE.index("template(") : RECIPE.index("ruleset(")]
    ruleset = RECIPE[RECIPE.index("ruleset(") : RECIPE.index("call logcanary")]
    ruleset = re.sub(
        r'action\(type="omkafka".*?\)\n',
        f'action(type="omfile" file="{out}" template="logcanary")\n',
        ruleset,
        flags=re.S,
    )
    assert "omfile" in ruleset
    config.write_text(
        f'global(workDirectory="{tmp_path}")\nmodule(load="imtcp")\n'
        f'input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="logcanary")\n{template}{ruleset}'
    )
    check = subprocess.run([RSYSLOGD, "-N1", "-f", str(config)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    env = {**os.environ, "APP_VERSION": "v7"}
    daemon = subprocess.Popen(
        [RSYSLOGD, "-n", "-f", str(config), "-i", str(tmp_path / "pid")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        message = 'Payment 42 failed: "card" declined'
        deadline = time.monotonic() + 10
        while not (out.exists() and out.read_bytes()):
            assert time.monotonic() < deadline, "rsyslogd wrote nothing"
            logger = ["logger", "--server", "127.0.0.1", "--port", str(port), "--tcp", "--rfc5424"]
            subprocess.run([*logger, "-t", "payments", "-p", "local0.err", "--", message], check=False)
            time.sleep(0.3)
        raw = out.read_bytes().split(b"}{")[0].rstrip(b"}") + b"}"
    finally:
        daemon.terminate()
        daemon.wait(10)
    event = one(raw)
    assert (event.service, event.deployment, event.level, event.message) == ("payments", "v7", "err", message)
