"""Deployment identity through the real app: the names Argo Rollouts and Flagger pass find the right deployments,
history holds only earlier deployments that did not fail, and all of it survives a restart."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from logcanary.api.app import create_app
from logcanary.demo.traffic import events
from logcanary.engine.model import MAX_IDENTITIES, Engine
from logcanary.settings import Settings

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(Settings(state_dir=tmp_path, api_token=SecretStr(TOKEN))))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path) as test_client:
        yield test_client


def pod_logs(
    labels: dict[str, str], count: int, seed: int, npe_rate: float = 0.0, start: datetime | None = None
) -> list[dict[str, Any]]:
    """What Fluent Bit's Kubernetes filter sends for a pod with these labels (docs/shippers.md recipe)."""
    when = start or datetime.now(UTC)
    return [
        {
            "@timestamp": datetime.fromisoformat(str(event["timestamp"])).timestamp(),
            "log": f"{event['message']}\n",
            "level": event["level"],
            "kubernetes": {"pod_name": event["host"], "namespace_name": "prod", "labels": labels},
        }
        for event in events("x", count, seed=seed, npe_rate=npe_rate, start=when, seconds=1)
    ]


def send(client: TestClient, records: list[dict[str, Any]]) -> None:
    body = b"".join(orjson.dumps(record) + b"\n" for record in records)
    response = client.post("/v1/events", content=body, headers=AUTH)
    assert response.status_code == 202, response.text
    assert response.json()["rejected"] == 0


def judged(verdict: dict[str, Any]) -> tuple[str, str, list[str]]:
    """What a verdict judged: (verdict, canary, baseline), on canonical deployment names."""
    return verdict["verdict"], verdict["canary"], verdict["baseline"]


ARGO_STABLE = {"app": "checkout", "version": "v1", "rollouts-pod-template-hash": "5b4c8d7f9"}
ARGO_CANARY = {"app": "checkout", "version": "v2", "rollouts-pod-template-hash": "6f7d9c8b4"}


def send_argo_rollout(client: TestClient) -> None:
    send(client, pod_logs(ARGO_STABLE, 1500, 1) + pod_logs(ARGO_CANARY, 1500, 2, npe_rate=0.02))


def test_argo_hashes_and_versions_both_find_the_deployments(client: TestClient) -> None:
    send_argo_rollout(client)
    for canary, baseline in (("6f7d9c8b4", "5b4c8d7f9"), ("v2", "v1"), ("6f7d9c8b4", "v1")):
        verdict = client.get("/v1/verdict", params={"service": "checkout", "canary": canary, "baseline": baseline})
        assert verdict.status_code == 200
        assert judged(verdict.json()) == ("fail", "v2", ["v1"])
        assert verdict.json()["canary_events"] == 1500

    [service] = client.get("/v1/services").json()
    assert {d["deployment"]: d["identities"] for d in service["deployments"]} == {
        "v1": ["5b4c8d7f9"],
        "v2": ["6f7d9c8b4"],
    }
    by_hash = client.get("/v1/services/checkout/clusters", params={"deployment": "6f7d9c8b4"})
    assert by_hash.json() == client.get("/v1/services/checkout/clusters", params={"deployment": "v2"}).json()
    assert client.get("/v1/services/checkout/clusters", params={"deployment": "0000000"}).status_code == 404

    analysis = {"service": "checkout", "canary": {"deployment": "6f7d9c8b4"},
                "baseline": {"deployment": "5b4c8d7f9"}, "duration": "10m"}  # fmt: skip
    created = client.post("/v1/analyses", json=analysis, headers=AUTH)
    assert created.status_code == 201
    assert created.json()["canary"] == {"deployment": "6f7d9c8b4"}  # what was asked stays as asked
    assert (created.json()["verdict"]["verdict"], created.json()["verdict"]["canary"]) == ("fail", "v2")

    unknown = client.get("/v1/verdict", params={"service": "checkout", "canary": "7d4f9c6b58", "baseline": "v1"})
    assert (unknown.json()["verdict"], unknown.json()["reason_code"]) == ("inconclusive", "unknown_canary")
    assert client.get("/v1/verdict", params={"service": "nope", "canary": "v2"}).status_code == 404


def flagger_hook(name: str, **metadata: str) -> dict[str, Any]:
    return {"name": name, "namespace": "prod", "phase": "Progressing", "checksum": "6b5d4c", "metadata": metadata}


def test_flagger_webhook_finds_primary_and_canary_without_a_mapping(client: TestClient) -> None:
    # Flagger relabels the primary's pods app: <name>-primary; the canary's keep app: <name>.
    send(client, pod_logs({"app": "checkout-primary", "pod-template-hash": "5b4c"}, 1500, 1))
    send(client, pod_logs({"app": "checkout", "pod-template-hash": "6f7d"}, 1500, 2, npe_rate=0.02))
    send(client, pod_logs({"app": "cart-primary", "version": "v7", "pod-template-hash": "1a2b"}, 1500, 3))
    send(client, pod_logs({"app": "cart", "version": "v8", "pod-template-hash": "3c4d"}, 1500, 4))

    services = {s["service"]: s for s in client.get("/v1/services").json()}
    assert sorted(services) == ["cart", "checkout"]
    assert {d["deployment"]: d["identities"] for d in services["checkout"]["deployments"]} == {
        "checkout-primary": ["5b4c"],
        "6f7d": [],
    }

    npe = client.post("/v1/verdict", json=flagger_hook("checkout"))
    assert npe.status_code == 412  # no fail_status given: a failing verdict still fails Flagger's check
    assert judged(npe.json()) == ("fail", "6f7d", ["checkout-primary"])

    clean = client.post("/v1/verdict", json=flagger_hook("cart", owner="team-cart", window="5m"))
    assert clean.status_code == 200  # an unknown metadata key (owner) is ignored, not a 422
    assert judged(clean.json()) == ("pass", "v8", ["cart-primary"])

    unknown = client.post("/v1/verdict", json=flagger_hook("cart", canary="7d4f9c6b58"))
    assert unknown.status_code == 412  # inconclusive is a failed check: Flagger has no 'inconclusive'
    assert unknown.json()["reason_code"] == "unknown_canary"
    own_status = client.post("/v1/verdict", json=flagger_hook("cart", canary="7d4f9c6b58", fail_status="424"))
    assert own_status.status_code == 424
    assert client.post("/v1/verdict", json=flagger_hook("payments")).status_code == 404
    assert client.post("/v1/verdict", json=flagger_hook("cart", fail_status="teapot")).status_code == 422

    # The flat query keeps its meaning: 200 for every verdict unless fail_status is given, and then for fail only.
    flat = {"service": "cart", "canary": "7d4f9c6b58", "baseline": "cart-primary"}
    assert client.post("/v1/verdict", json=flat).status_code == 200
    assert client.post("/v1/verdict", json={**flat, "fail_status": 412}).status_code == 200
    assert client.get("/v1/verdict", params={**flat, "canary": "cart"}).json()["verdict"] == "pass"


def test_history_is_earlier_deployments_that_did_not_fail_and_are_not_marked_bad(client: TestClient) -> None:
    now = datetime.now(UTC)
    plan = [  # deployment, first event, NPE rate
        ("v1", now - timedelta(days=2), 0.0),
        ("v3", now - timedelta(days=1), 0.0),
        ("v2", now + timedelta(seconds=30), 0.05),  # analysed below: its events fall in the analysis' window
        # Within the clock-skew allowance (LOGCANARY_MAX_CLOCK_SKEW_SECONDS): later stamps would be clamped.
        ("v4", now + timedelta(minutes=2), 0.0),  # the canary judged against history
        ("v5", now + timedelta(minutes=4), 0.0),  # later than the canary: never its history
    ]
    for index, (deployment, start, npe_rate) in enumerate(plan):
        labels = {"app": "payments", "version": deployment, "pod-template-hash": f"hash{deployment}"}
        send(client, pod_logs(labels, 300, index, npe_rate=npe_rate, start=start))

    def history() -> list[str]:
        verdict = client.get("/v1/verdict", params={"service": "payments", "canary": "v4", "window": "all"})
        return verdict.json()["baseline"]  # type: ignore[no-any-return]

    assert history() == ["history:v2", "history:v3", "history:v1"]

    failing = {"service": "payments", "canary": {"deployment": "v2"}, "baseline": {"history": True},
               "duration": "10m", "fail_fast": True}  # fmt: skip
    analysis = client.post("/v1/analyses", json=failing, headers=AUTH).json()
    assert (analysis["status"], analysis["verdict"]["verdict"]) == ("completed", "fail")
    assert history() == ["history:v3", "history:v1"]

    mark = {"bad": True, "author": "oncall", "reason": "corrupted carts"}
    assert client.post("/v1/services/payments/deployments/hashv3/mark", json=mark).status_code == 401
    marked = client.post("/v1/services/payments/deployments/hashv3/mark", json=mark, headers=AUTH)
    assert marked.status_code == 200
    assert (marked.json()["deployment"], marked.json()["bad"], marked.json()["author"]) == ("v3", True, "oncall")
    assert history() == ["history:v1"]

    deployments = {d["deployment"]: d for d in client.get("/v1/services").json()[0]["deployments"]}
    assert deployments["v3"]["mark"]["reason"] == "corrupted carts"
    assert {name for name, d in deployments.items() if d["excluded_from_history"]} == {"v2", "v3"}

    # A person's mark wins over a failed analysis: a false alarm can be let back in.
    cleared = client.post("/v1/services/payments/deployments/v2/mark", json={"bad": False}, headers=AUTH)
    assert cleared.status_code == 200
    assert history() == ["history:v2", "history:v1"]

    missing = client.post("/v1/services/payments/deployments/v9/mark", json=mark, headers=AUTH)
    assert missing.status_code == 404
    assert client.post("/v1/services/nope/deployments/v1/mark", json=mark, headers=AUTH).status_code == 404
    invalid = client.post("/v1/services/payments/deployments/v1/mark", json={"bad": "maybe"}, headers=AUTH)
    assert invalid.status_code == 422


def test_identities_and_marks_survive_a_restart(tmp_path: Path) -> None:
    with make_client(tmp_path) as first:
        send_argo_rollout(first)
        mark = first.post("/v1/services/checkout/deployments/5b4c8d7f9/mark", json={"bad": True}, headers=AUTH)
        assert mark.status_code == 200
        services = first.get("/v1/services").json()
    with make_client(tmp_path) as second:
        assert second.get("/v1/services").json() == services
        verdict = second.get("/v1/verdict", params={"service": "checkout", "canary": "6f7d9c8b4",
                                                    "baseline": "5b4c8d7f9"}).json()  # fmt: skip
        assert judged(verdict) == ("fail", "v2", ["v1"])
        assert second.get("/v1/verdict", params={"service": "checkout", "canary": "v2"}).json()["baseline"] == []


def test_a_state_file_from_before_identities_opens_and_upgrades(tmp_path: Path) -> None:
    with make_client(tmp_path) as first:
        send_argo_rollout(first)
    # Make the file look like one written before this change: no marks table, no identities in the blobs; and, as
    # every file then, without schema_version and the tables versioned migrations added since.
    db = sqlite3.connect(Settings(state_dir=tmp_path).state_file)
    for table in (
        "deployment_marks",
        "schema_version",
        "shard_owners",
        "origin_offsets",
        "repartition_topics",
        "cluster_settings",
    ):
        db.execute(f"DROP TABLE {table}")
    for service, deployment, blob in db.execute("SELECT service, deployment, state FROM deployments").fetchall():
        data = orjson.loads(blob)
        del data["identities"]
        db.execute(
            "UPDATE deployments SET state = ? WHERE service = ? AND deployment = ?",
            (orjson.dumps(data), service, deployment),
        )
    db.commit()
    db.close()
    with make_client(tmp_path) as second:
        [service] = second.get("/v1/services").json()
        assert [d["identities"] for d in service["deployments"]] == [[], []]
        assert [d["events"] for d in service["deployments"]] == [1500, 1500]
        marked = second.post("/v1/services/checkout/deployments/v1/mark", json={"bad": True}, headers=AUTH)
        assert marked.status_code == 200
        send_argo_rollout(second)  # new records bring the identities back
        assert second.get("/v1/services").json()[0]["deployments"][1]["identities"] == ["6f7d9c8b4"]


def test_resolution_rules_and_the_identity_cap() -> None:
    engine = Engine()
    engine.observe("s", "v1", "started", 10.0, identities=["shared", "h1"])
    engine.observe("s", "v2", "started", 20.0, identities=["shared", "h2"])
    engine.observe("s", "s-primary", "started", 30.0, identities=["h3"])
    service = engine.service("s")
    resolved = [service.resolve(name) for name in ("v1", "h1", "h2", "h3", "s-primary")]
    assert resolved == ["v1", "v1", "v2", "s-primary", "s-primary"]
    assert service.resolve("shared") == "v2"  # several carry it: the newest deployment
    assert service.resolve("s") == "v2"  # the service's own name: its newest deployment that is not the primary
    assert service.resolve("nope") is None
    for index in range(MAX_IDENTITIES + 5):
        engine.observe("s", "v1", "started", 11.0, identities=[f"hash{index}"])
    identities = list(service.deployments["v1"].identities)
    assert len(identities) == MAX_IDENTITIES
    assert identities[-1] == f"hash{MAX_IDENTITIES + 4}"  # the newest names are kept
    assert service.resolve("h1") is None
