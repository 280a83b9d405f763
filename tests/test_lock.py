"""The dependency locks (tools/lock.py) agree with pyproject.toml, and what is installed is what is locked.

`make test` and `make demo` install from requirements/*.lock with --require-hashes, and the Dockerfile builds
from requirements/runtime.lock: a dependency changed in pyproject.toml without `make lock` fails here, naming it.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.lock import DIGEST_PREFIX, LOCKS, inputs_digest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"


def _pins(path: Path) -> dict[str, tuple[Requirement, list[str]]]:
    """name -> (pinned requirement with its marker, hashes), from a pip requirements file with hashes."""
    text = re.sub(r"\s*\\\n\s*", " ", path.read_text())  # continuation lines joined
    pins: dict[str, tuple[Requirement, list[str]]] = {}
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
        requirement = Requirement(re.sub(r"\s*--hash=\S+", "", line))
        pins[canonicalize_name(requirement.name)] = (requirement, hashes)
    return pins


def _declared(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line.split("#")[0].strip()) for line in lines]


@pytest.mark.parametrize(("path", "extras"), LOCKS.items())
def test_each_lock_was_made_from_the_current_pyproject(path: str, extras: tuple[str, ...]) -> None:
    lines = (ROOT / path).read_text().splitlines()
    recorded = next((line.removeprefix(DIGEST_PREFIX) for line in lines if line.startswith(DIGEST_PREFIX)), None)
    assert recorded == inputs_digest(PYPROJECT, extras), (
        f"{path} was resolved from other dependencies than pyproject.toml's: run `make lock`"
    )


@pytest.mark.parametrize(("path", "extras"), LOCKS.items())
def test_every_declared_dependency_is_pinned_within_its_range_with_hashes(path: str, extras: tuple[str, ...]) -> None:
    pins = _pins(ROOT / path)
    assert pins, f"{path} pins nothing"
    for name, (requirement, hashes) in pins.items():
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path}: {name} is not pinned"
        assert hashes, f"{path}: {name} has no hash"
    for declared in _declared(extras):
        name = canonicalize_name(declared.name)
        assert name in pins, f"{path} lacks {declared} (pyproject.toml): run `make lock`"
        version = next(iter(pins[name][0].specifier)).version
        assert declared.specifier.contains(version, prereleases=True), (
            f"{path} pins {name}=={version}, outside pyproject.toml's {declared}: run `make lock`"
        )


def test_what_make_test_installed_is_the_dev_lock() -> None:
    """The virtualenv running these tests was installed from requirements/dev.lock: every pin that applies to
    this platform and Python is installed at exactly its version."""
    environment = {key: str(value) for key, value in default_environment().items()} | {"extra": ""}
    wrong = []
    for name, (requirement, _) in _pins(ROOT / "requirements/dev.lock").items():
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        pinned = next(iter(requirement.specifier)).version
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "(not installed)"
        if installed != pinned:
            wrong.append(f"{name}: {installed}, locked {pinned}")
    assert not wrong, f"not installed from requirements/dev.lock (run `make install`): {wrong}"


def test_the_image_and_the_makefile_install_from_the_locks() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/runtime.lock" in dockerfile
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/dev.lock" in makefile
    assert "--require-hashes -r requirements/demo.lock" in makefile
    for label in ("source", "revision", "version", "licenses"):
        assert f"org.opencontainers.image.{label}=" in dockerfile, label
