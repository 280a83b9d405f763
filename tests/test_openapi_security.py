"""The OpenAPI document declares the bearer scheme (so /docs can send the token) and the API keeps its auth answers."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from tests.test_api import AUTH, TOKEN, make_client

MUTATING = {"post", "put", "patch", "delete"}
# A question in a body: a read, or with a release a deploy tool's measurement kept. Like GET /v1/verdict it needs the
# token only with LOGCANARY_PROTECT_READS, since Argo Rollouts and Flagger call it as they read verdicts.
READS_OF_THE_VERDICT = {("post", "/v1/verdict")}


def test_openapi_declares_bearer_and_mutations_reference_it(tmp_path: Path) -> None:
    with make_client(tmp_path) as client:
        spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    bearer = [name for name, scheme in schemes.items() if scheme == {**scheme, "type": "http", "scheme": "bearer"}]
    assert len(bearer) == 1
    mutations = [
        (method, path, operation)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if method in MUTATING and (method, path) not in READS_OF_THE_VERDICT
    ]
    assert len(mutations) >= 6  # events, analyses (create, cancel), feedback (add, delete), mark
    for method, path, operation in mutations:
        assert {bearer[0]: []} in operation.get("security", []), (method, path)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "security" not in spec["paths"][path]["get"], path


def test_bearer_answers_unchanged(tmp_path: Path) -> None:
    with make_client(tmp_path, api_token=SecretStr(TOKEN)) as client:
        missing = client.delete("/v1/feedback/nope")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.json() == {"error": "unauthorized", "detail": "send Authorization: Bearer <token>"}
        basic = client.delete("/v1/feedback/nope", headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401
        wrong = client.delete("/v1/feedback/nope", headers={"Authorization": "Bearer nope"})
        assert (wrong.status_code, wrong.json()) == (403, {"error": "forbidden", "detail": "wrong token"})
        assert "www-authenticate" not in wrong.headers
        lower = client.delete("/v1/feedback/nope", headers={"Authorization": f"bearer {TOKEN}"})
        assert lower.status_code == 404  # past auth: the scheme is case-insensitive
        assert client.delete("/v1/feedback/nope", headers=AUTH).status_code == 404
        spaced = client.delete("/v1/feedback/nope", headers={"Authorization": f"Bearer  {TOKEN} "})
        assert spaced.status_code == 404  # the token is stripped
        blank = client.delete("/v1/feedback/nope", headers={"Authorization": "Bearer   "})
        assert blank.status_code == 403  # a token, and a wrong one (httptools passes it through as sent)
        assert client.get("/v1/feedback").status_code == 200  # reads need no token without LOGCANARY_PROTECT_READS
