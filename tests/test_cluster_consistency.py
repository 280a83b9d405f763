"""Replicas that cannot disagree: a replica started with other settings, another topic, or a store of its own
beside a scale-out cluster is refused, naming the difference; `logcanary cluster adopt` changes the cluster's
settings and stops the replicas still running the old ones. Real replicas, real broker, real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from logcanary.demo.embedded_broker import EmbeddedBroker
from logcanary.live.cluster import ClusterSettings, Member
from logcanary.settings import Settings
from tests.conftest import ROOT, Launcher, ServiceProcess
from tests.kafka_helpers import produce
from tests.test_scale_out import _events, _expected, _scale_out_env, _wait_exact


def _refused(process: ServiceProcess, timeout: float = 60) -> str:
    """The log of a process that must stop by itself with exit code 2 (started or not)."""
    try:
        process.start(timeout=timeout)
    except RuntimeError as exc:  # it exited before it was ready: refused at start
        assert "exited with 2" in str(exc), str(exc)
        return process.log.read_text()
    assert process.process is not None
    assert process.process.wait(timeout) == 2  # ready, then refused once it joined the consumer group
    return process.log.read_text()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logcanary.cli", *args],
        check=False,
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- what is compared ------------------------------------------------------------------------------------------


def test_differences_name_each_setting_with_both_values() -> None:
    mine = ClusterSettings({"LOGCANARY_DEFAULT_SENSITIVITY": "high", "LOGCANARY_KAFKA_TOPICS": ["logs"]})
    cluster = ClusterSettings({"LOGCANARY_DEFAULT_SENSITIVITY": "medium", "LOGCANARY_KAFKA_TOPICS": ["logs"]})
    assert mine.differences(cluster) == ['LOGCANARY_DEFAULT_SENSITIVITY is "high" here but "medium" in the cluster']
    assert mine.refusal(ClusterSettings.parse(mine.body), "db") is None
    assert "LOGCANARY_DEFAULT_SENSITIVITY" in (mine.refusal(cluster, "db") or "")
    assert mine.fingerprint != cluster.fingerprint


def test_the_default_repartition_topic_spelled_out_is_the_same_setting() -> None:
    implicit = Settings(kafka_group_id="g")
    explicit = Settings(kafka_group_id="g", kafka_repartition_topic="g.by-service")
    assert (
        ClusterSettings(implicit.cluster_settings()).fingerprint
        == ClusterSettings(explicit.cluster_settings()).fingerprint
    )
    other = Settings(kafka_group_id="g", default_sensitivity="high")
    assert (
        ClusterSettings(other.cluster_settings()).fingerprint
        != ClusterSettings(implicit.cluster_settings()).fingerprint
    )


def test_the_store_is_named_without_host_or_password() -> None:
    settings = Settings(store_url="postgresql://u:secret@db.example:5432/logs", store_schema="canary")
    assert settings.cluster_settings()["LOGCANARY_STORE"] == "postgresql database logs, schema canary"
    assert Settings().cluster_settings()["LOGCANARY_STORE"] == "sqlite"


def test_members_are_read_from_client_ids_or_member_ids() -> None:
    me = Member("scale-out", "0123456789ab", "pod-0.7")
    assert Member.parse(me.client_id) == me
    # Tansu describes members with an empty client id; the member id is the client id and a UUID
    assert Member.parse("", f"{me.client_id}-1e08a4b1-a9e1-4bc4-91df-a678ac6b133b") == me
    assert Member.parse("logcanary") is None  # an older release
    single = Member("single", "0123456789ab", "host.9")
    reasons, strangers = me.conflicts([(me.client_id, ""), ("", single.client_id + "-x"), ("logcanary", "")])
    assert len(reasons) == 1 and "single node" in reasons[0] and strangers == ["logcanary"]
    assert me.conflict(Member("scale-out", "0123456789ab", "pod-1.7")) is None  # a peer
    assert "other settings" in (me.conflict(Member("scale-out", "ffffffffffff", "pod-1.7")) or "")
    assert single.conflict(single) is None  # itself
    assert "another single node" in (single.conflict(Member("single", "0123456789ab", "host.10")) or "")


# -- real replicas ---------------------------------------------------------------------------------------------


def test_replicas_with_other_settings_a_topic_of_their_own_or_sqlite_are_refused(
    kafka: EmbeddedBroker, service_process: Launcher, pg_schema: str, tmp_path: Path
) -> None:
    env, topic = _scale_out_env(kafka, pg_schema, partitions=2)
    first = service_process(env)
    first.start(timeout=60)

    log = _refused(service_process({**env, "LOGCANARY_DEFAULT_SENSITIVITY": "high"}))
    assert 'LOGCANARY_DEFAULT_SENSITIVITY is "high" here but "medium" in the cluster' in log

    log = _refused(service_process({**env, "LOGCANARY_KAFKA_TOPICS": "other-logs"}))
    assert 'LOGCANARY_KAFKA_TOPICS is ["other-logs"] here but ["' + topic + '"] in the cluster' in log

    # A single node with its own SQLite store, in the cluster's consumer group: only the group shows it
    single = {k: v for k, v in env.items() if k not in ("LOGCANARY_STORE_URL", "LOGCANARY_STORE_SCHEMA")}
    single["LOGCANARY_STATE_DIR"] = str(tmp_path / "single")
    log = _refused(service_process(single))
    assert "runs scaled out (sharing a PostgreSQL store), this replica as a single node" in log

    # The cluster never stopped counting, exactly, and nothing was counted by the refused ones
    produce(kafka.bootstrap_servers, topic, _events(600, 0))
    _wait_exact([first], _expected(600), timeout=60)


def test_adopting_new_settings_stops_the_replicas_running_the_old_ones(
    kafka: EmbeddedBroker, service_process: Launcher, pg_schema: str
) -> None:
    env, topic = _scale_out_env(kafka, pg_schema, partitions=2)
    old = service_process(env)
    old.start(timeout=60)
    new_env = {**env, "LOGCANARY_DEFAULT_SENSITIVITY": "high"}

    shown = _cli("cluster", "show", env=new_env)
    assert shown.returncode == 1 and "LOGCANARY_DEFAULT_SENSITIVITY" in shown.stdout, shown
    assert _cli("cluster", "show", env=env).returncode == 0

    adopted = _cli("cluster", "adopt", env=new_env)
    assert adopted.returncode == 0, adopted.stderr
    assert old.process is not None
    assert old.process.wait(30) == 2  # it noticed within the watch interval and stopped itself
    assert "the cluster adopted other settings" in old.log.read_text()

    new = service_process(new_env)
    new.start(timeout=60)
    produce(kafka.bootstrap_servers, topic, _events(300, 0))
    _wait_exact([new], _expected(300), timeout=60)


@pytest.mark.parametrize("action", ["show", "adopt"])
def test_the_cluster_command_needs_a_shared_store(action: str, tmp_path: Path) -> None:
    done = _cli("cluster", action, env={"LOGCANARY_STATE_DIR": str(tmp_path)})
    assert done.returncode == 2 and "single node" in done.stderr
