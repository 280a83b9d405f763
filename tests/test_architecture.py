"""The import rules of docs/architecture.md, enforced: a room imports only the rooms below it, and the engine and
the analysis stay pure (no I/O modules)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "service" / "logcanary"

BASE = {"common", "schemas"}
PURE = BASE | {"engine"}
MODELS = PURE | {"analysis", "settings", "metrics", "idempotency"}
STORED = MODELS | {"store"}
LIVE = STORED | {"live"}
INGESTION = LIVE | {"ingestion"}
USE_CASES = LIVE | {"verification"}
SERVICE = INGESTION | USE_CASES | {"sources", "notify", "runtime", "background"}

# room -> the rooms it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "common": set(),
    "schemas": {"common"},
    "engine": BASE,
    "analysis": PURE,
    "settings": PURE,
    "metrics": {"engine"},
    "idempotency": set(),
    "store": PURE | {"settings", "idempotency"},
    "live": STORED,
    "ingestion": LIVE,
    "sources": {"common", "schemas", "ingestion"},
    "verification": USE_CASES | {"sources"},
    "notify": {"common", "schemas", "settings", "store"},
    "runtime": SERVICE,
    "background": SERVICE,
    "api": SERVICE | {"api"},
    "gate": {"common"},
    "gate_release": {"common", "gate"},
    "judge": SERVICE | {"gate"},
}
# Modules the pure rooms may not import: they do no I/O (the CLI, the service and the benchmarks reuse them).
IO_MODULES = {
    "asyncio", "socket", "sqlite3", "subprocess", "threading", "http", "urllib", "httpx", "psycopg", "aiokafka",
    "fastapi", "starlette", "uvicorn", "prometheus_client", "concurrent", "multiprocessing", "os", "shutil",
}  # fmt: skip


def room(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, in functions too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def violations(package: Path) -> list[str]:
    """Every import of a room the rules do not allow it (and every room they do not name)."""
    broken = []
    for path in sorted(package.rglob("*.py")):
        own = room(path, package)
        if own in ("cli", "demo", "__init__"):
            continue  # the entry points may use anything
        if own not in ALLOWED:
            broken.append(f"{path.relative_to(package)}: a room docs/architecture.md does not name")
            continue
        for line, module in imports(path):
            if not module.startswith("logcanary."):
                continue
            target = module.split(".")[1]
            if target != own and target not in ALLOWED[own]:
                broken.append(f"{path.relative_to(package)}:{line} ({own}) imports {module}")
    return broken


def test_every_room_imports_only_the_rooms_below_it() -> None:
    assert len(list(PACKAGE.rglob("*.py"))) > 50
    broken = violations(PACKAGE)
    assert not broken, "\n".join(broken)


def test_the_engine_the_analysis_and_the_helpers_do_no_io() -> None:
    broken = []
    for folder in ("engine", "analysis", "common"):
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            for line, module in imports(path):
                top = module.split(".")[0]
                if module == "urllib.parse":
                    continue  # string work only (common/links.py writes the links handed to people)
                if top in IO_MODULES and not (folder == "common" and path.name == "caching.py" and top == "asyncio"):
                    broken.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not broken, "\n".join(broken)


def test_a_rule_that_is_broken_is_found(tmp_path: Path) -> None:
    """The check itself: an engine module importing the store (in a function), and a room nobody named."""
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "model.py").write_text(
        "import re\n\ndef f():\n    from logcanary.store.base import Checkpoint\n", encoding="utf-8"
    )
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "ok.py").write_text("from logcanary.engine.model import Engine\n", encoding="utf-8")
    (tmp_path / "stray.py").write_text("", encoding="utf-8")
    assert violations(tmp_path) == [
        "engine/model.py:4 (engine) imports logcanary.store.base",
        "stray.py: a room docs/architecture.md does not name",
    ]
