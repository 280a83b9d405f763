"""Protected reads (LOGCANARY_PROTECT_READS) and feedback as a user writes it (the README's example, verbatim)."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from logcanary.settings import SettingsError, load_settings
from tests.conftest import ROOT
from tests.test_api import AUTH, TOKEN, live, make_client, ndjson

READS = [
    ("GET", "/v1/verdict?service=payments&canary=v2&baseline=v1"),
    ("POST", "/v1/verdict"),
    ("GET", "/v1/analyses"),
    ("GET", "/v1/analyses/{id}"),
    ("GET", "/v1/feedback"),
    ("GET", "/v1/services"),
    ("GET", "/v1/services/payments/clusters?deployment=v1"),
]
OPEN = ["/healthz", "/readyz", "/metrics", "/ui", "/ui/static/ui.js", "/openapi.json"]


def read(client: TestClient, method: str, path: str, analysis_id: str, headers: dict[str, str]) -> int:
    path = path.replace("{id}", analysis_id)
    if method == "POST":
        body = {"service": "payments", "canary": "v2", "baseline": "v1"}
        return int(client.post(path, json=body, headers=headers).status_code)
    return int(client.get(path, headers=headers).status_code)


def test_protected_reads_need_the_token(tmp_path: Path) -> None:
    with make_client(tmp_path, api_token=SecretStr(TOKEN), protect_reads=True) as client:
        client.post("/v1/events", content=ndjson(live("v1", 300, 1) + live("v2", 300, 2)), headers=AUTH)
        body = {"service": "payments", "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}}
        analysis_id = client.post("/v1/analyses", json=body, headers=AUTH).json()["id"]
        for method, path in READS:
            assert read(client, method, path, analysis_id, {}) == 401, path
            assert read(client, method, path, analysis_id, {"Authorization": "Bearer nope"}) == 403, path
            assert read(client, method, path, analysis_id, AUTH) == 200, path
        for path in OPEN:  # health, metrics, the page itself and the API description stay open
            assert client.get(path).status_code == 200, path
        assert client.get("/v1/services").json()["error"] == "unauthorized"


def test_reads_are_open_by_default(tmp_path: Path) -> None:
    with make_client(tmp_path, api_token=SecretStr(TOKEN)) as client:
        client.post("/v1/events", content=ndjson(live("v1", 300, 1) + live("v2", 300, 2)), headers=AUTH)
        body = {"service": "payments", "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}}
        analysis_id = client.post("/v1/analyses", json=body, headers=AUTH).json()["id"]
        for method, path in READS:
            assert read(client, method, path, analysis_id, {}) == 200, path


def test_protect_reads_without_a_token_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOGCANARY_API_TOKEN", raising=False)
    monkeypatch.setenv("LOGCANARY_PROTECT_READS", "true")
    with pytest.raises(SettingsError, match="LOGCANARY_PROTECT_READS=true needs LOGCANARY_API_TOKEN"):
        load_settings()


def readme_feedback_example() -> dict[str, object]:
    """The body of the README's `POST /v1/feedback {...}` example, as written."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"`POST /v1/feedback (\{[^`]*\})`", text)
    assert match, "the README's feedback example is gone"
    body: dict[str, object] = orjson.loads(match.group(1))
    return body


def test_readme_feedback_example_works_verbatim(tmp_path: Path) -> None:
    """The worked example: v2 fails on its NullPointerException; after the README's feedback, v3 passes."""
    with make_client(tmp_path) as client:
        client.post("/v1/events", content=ndjson(live("v1", 3000, 1) + live("v2", 3000, 2, npe_rate=0.01)))
        failed = client.get("/v1/verdict", params={"service": "payments", "canary": "v2", "baseline": "v1"}).json()
        assert failed["verdict"] == "fail"
        example = readme_feedback_example()
        assert example["template_id"] == failed["anomalies"][0]["template_ids"][0]

        created = client.post("/v1/feedback", json=example)
        assert created.status_code == 201, created.text
        rule = created.json()
        assert "java.lang.NullPointerException" in rule["template"]  # looked up in the service's templates
        assert rule["template_id"] == example["template_id"]

        client.post("/v1/events", content=ndjson(live("v3", 3000, 3, npe_rate=0.01)))
        later = client.get("/v1/verdict", params={"service": "payments", "canary": "v3", "baseline": "v1"}).json()
        assert later["verdict"] == "pass", later["anomalies"]
        assert [s["feedback_id"] for s in later["suppressed"]] == [rule["id"]]


def test_feedback_names_a_template_the_service_knows(tmp_path: Path) -> None:
    with make_client(tmp_path) as client:
        client.post("/v1/events", content=ndjson(live("v1", 50, 1)))
        unknown = client.post("/v1/feedback", json={"service": "payments", "action": "ignore", "template_id": "0" * 16})
        assert unknown.status_code == 404
        assert unknown.json()["detail"].startswith("no template '0000000000000000' in service 'payments'")
        no_service = client.post("/v1/feedback", json={"service": "nope", "action": "ignore", "template_id": "ab"})
        assert no_service.status_code == 404
        neither = client.post("/v1/feedback", json={"service": "payments", "action": "ignore"})
        assert neither.status_code == 422
        assert "template_id" in str(neither.json()["detail"])
        text_only = client.post("/v1/feedback", json={"service": "payments", "action": "priority", "template": "boom"})
        assert text_only.status_code == 201
        assert client.get("/v1/feedback").json()[0]["template"] == "boom"
