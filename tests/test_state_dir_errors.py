"""An unusable LOGCANARY_STATE_DIR stops `logcanary serve` with one line naming the setting, never a traceback.

Each case runs the real command: a folder that cannot be created (under /proc), a read-only folder, a read-only
volume holding an earlier state file, and a state file that is read-only in a writable folder (which used to start,
then fail every checkpoint). Root writes through file modes, so as root the read-only cases use a read-only tmpfs
mount and an unprivileged user (``setpriv``); without those they skip, saying why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from logcanary.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534


def serve(state_dir: Path, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "logcanary.cli", "serve"]
    if as_nobody:
        command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    env = {**os.environ, "LOGCANARY_STATE_DIR": str(state_dir), "LOGCANARY_PORT": "0"}
    env.pop("LOGCANARY_STORE_URL", None)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)


def assert_named(result: subprocess.CompletedProcess[str], state_dir: Path) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("logcanary: cannot open the state file ")
    assert f"LOGCANARY_STATE_DIR={state_dir}" in lines[0]


@contextlib.contextmanager
def read_only_mount(path: Path, fill: bool = False) -> Iterator[Path]:
    """A tmpfs at ``path``, read-only (after ``fill`` wrote a state file into it); skips without root and mount."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only volume needs root and mount(8)")
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        if fill:
            SqliteStore(path / "logcanary.sqlite").close()
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def test_a_folder_that_cannot_be_created() -> None:
    state_dir = Path("/proc/logcanary-state")
    assert_named(serve(state_dir), state_dir)


def test_a_read_only_folder(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        state_dir = tmp_path / "state"
        state_dir.mkdir(mode=0o555)
        assert_named(serve(state_dir), state_dir)
        return
    with read_only_mount(tmp_path / "volume") as volume:
        assert_named(serve(volume), volume)
        assert_named(serve(volume / "state"), volume / "state")  # nor can a folder be made in it


def test_a_read_only_volume_with_an_earlier_state_file(tmp_path: Path) -> None:
    with read_only_mount(tmp_path / "volume", fill=True) as volume:
        assert (volume / "logcanary.sqlite").is_file()
        assert_named(serve(volume), volume)


def test_a_read_only_state_file_in_a_writable_folder() -> None:
    as_nobody = os.geteuid() == 0
    if as_nobody and shutil.which("setpriv") is None:
        pytest.skip("root writes to read-only files: this needs setpriv(1) to run the service unprivileged")
    if as_nobody:
        probe = [sys.executable, "-c", "import logcanary.cli"]
        command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *probe]
        reach = subprocess.run(command, capture_output=True, cwd=ROOT, check=False)
        if reach.returncode != 0:  # e.g. the checkout sits below a folder only root may enter (mktemp -d)
            pytest.skip(f"an unprivileged user cannot import logcanary from {ROOT} (a parent folder is closed to it)")
    parent = Path(tempfile.mkdtemp(prefix="logcanary-ro-"))  # under /tmp, reachable by an unprivileged user
    try:
        parent.chmod(0o755)
        state_dir = parent / "state"
        state_dir.mkdir()
        SqliteStore(state_dir / "logcanary.sqlite").close()
        for path in [state_dir, *state_dir.iterdir()]:
            if as_nobody:
                os.chown(path, NOBODY, NOBODY)
        (state_dir / "logcanary.sqlite").chmod(0o444)
        assert_named(serve(state_dir, as_nobody=as_nobody), state_dir)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
