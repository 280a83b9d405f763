"""Property-based fuzzing of the whole API from its OpenAPI schema: bad input never gets a 500."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from logcanary.demo.traffic import events

from .conftest import Launcher

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_no_server_errors_for_any_generated_request(service_process: Launcher, tmp_path: Path) -> None:
    service = service_process({})
    service.start()
    seed = [*events("v1", 200, seed=1), *events("v2", 200, seed=2, npe_rate=0.05)]
    assert httpx.post(f"{service.url}/v1/events", json=seed, timeout=30).status_code == 202
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{service.url}/openapi.json", "--checks", "not_a_server_error",
         "--max-examples", "25", "--seed", "1", "--no-color",
         # No example database: Hypothesis's Pareto optimiser (which needs one) crashed on its own (IndexError in
         # its shrinker, hypothesis 6.170) on this API's schema; the examples are generated afresh each run anyway.
         "--generation-database", "none"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]
    assert "internal_error" not in service.log.read_text()
