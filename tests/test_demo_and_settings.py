"""`logcanary demo` end to end, and settings validation at start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from logcanary.demo.traffic import events, pods_of
from logcanary.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_demo_ends_with_the_failing_verdict() -> None:
    """With its port taken it says so and serves on another; it prints the page of the verdict it showed."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "logcanary.cli", "demo", "--no-wait", "--seconds", "9", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            check=False,
        )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "final verdict: FAIL" in result.stdout
    assert "java.lang.NullPointerException" in result.stdout
    assert "EncryptionService" in result.stdout
    assert "/docs" in result.stdout
    assert "/ui?service=payments" in result.stdout
    assert f"port {port} is taken: serving on port " in result.stdout
    assert "/ui?analysis=" in result.stdout  # the verdict as published: still right after the canary stops logging


def test_demo_traffic_keeps_its_pods() -> None:
    """The demo replays in many small calls: its pods stay three, so the page never shows the 64-host cap."""
    pods = pods_of("v2")
    hosts = {e["host"] for seed in range(40) for e in events("v2", 100, seed=seed, pods=pods)}
    assert hosts == set(pods) and len(pods) == 3
    assert pods_of("v2") == pods != pods_of("v1")


def test_invalid_settings_fail_at_start_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGCANARY_PORT", "not-a-port")
    with pytest.raises(SettingsError, match="LOGCANARY_PORT"):
        load_settings()
    monkeypatch.setenv("LOGCANARY_PORT", "8080")
    monkeypatch.setenv("LOGCANARY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(SettingsError, match="SASL_MECHANISM"):
        load_settings()
    monkeypatch.delenv("LOGCANARY_KAFKA_SECURITY_PROTOCOL")
    monkeypatch.setenv("LOGCANARY_MASK_PATTERNS", "ok-[0-9]+;;broken[")
    with pytest.raises(SettingsError, match="MASK_PATTERNS"):
        load_settings()


def test_settings_from_environment_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / "logcanary.env"
    env_file.write_text("LOGCANARY_KAFKA_TOPICS=logs, audit\nLOGCANARY_DEFAULT_SENSITIVITY=high\n", encoding="utf-8")
    monkeypatch.setenv("LOGCANARY_ENV_FILE", str(env_file))
    settings = load_settings()
    assert settings.kafka_topics == ["logs", "audit"]
    assert settings.default_sensitivity == "high"
    monkeypatch.setenv("LOGCANARY_ENV_FILE", str(tmp_path / "missing.env"))
    with pytest.raises(SettingsError, match="no such file"):
        load_settings()


def test_serve_exits_2_on_bad_settings() -> None:
    env = {**os.environ, "LOGCANARY_CHECKPOINT_INTERVAL_SECONDS": "-1"}
    result = subprocess.run(
        [sys.executable, "-m", "logcanary.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "LOGCANARY_CHECKPOINT_INTERVAL_SECONDS" in result.stderr
