"""One name rule at every door: every name ingestion accepts is readable by every route that takes a name, and the
names no route could reach ('a//b', '/abs', 'trailing/', 'a/./b', '.') are refused at the door with a reason."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import orjson
import pytest

from logcanary.schemas import valid_name
from tests.test_api import live, make_client, ndjson

ACCEPTED = ["team/api", "payments", "a.b_c:d@e+f-g", "x/y/z", "v1.2.3", "sha256:abc/1.2.3", "...x", "a/.hidden"]
REFUSED = ["a//b", "/abs", "trailing/", "a/./b", ".", "..", "a/../b", "sp ace", "", "x" * 254]


@pytest.mark.parametrize("name", REFUSED)
def test_names_no_route_could_reach_are_refused_with_a_reason(tmp_path: Path, name: str) -> None:
    assert not valid_name(name)
    with make_client(tmp_path) as client:
        answer = client.post("/v1/events", content=ndjson([{**live("v1", 1, 1)[0], "service": name}]))
        assert answer.status_code == 400
        assert [e["reason"] for e in answer.json()["detail"]["errors"]] == [
            "invalid_name" if name else "missing_service"
        ]
        assert client.get("/v1/verdict", params={"service": name, "canary": "v2"}).status_code == 422


def test_every_accepted_name_is_read_back_by_every_route(tmp_path: Path) -> None:
    assert all(valid_name(name) for name in ACCEPTED)
    records = []
    for n, name in enumerate(ACCEPTED):
        for deployment, npe in ((f"{name}/base", 0.0), (f"{name}/canary", 0.05)):
            for record in live("v", 200, n, npe_rate=npe):
                records.append({**record, "service": name, "deployment": deployment})
    with make_client(tmp_path) as client:
        assert client.post("/v1/events", content=ndjson(records)).json()["accepted"] == len(records)
        listed = {s["service"]: s for s in client.get("/v1/services").json()}
        assert set(listed) == set(ACCEPTED)
        for name in ACCEPTED:
            base, canary = f"{name}/base", f"{name}/canary"
            assert {d["deployment"] for d in listed[name]["deployments"]} == {base, canary}
            query = {"service": name, "canary": canary, "baseline": base, "window": "all"}
            assert client.get("/v1/verdict", params=query).json()["verdict"] == "fail", name
            assert client.post("/v1/verdict", json=query).json()["canary"] == canary
            for path in (name, quote(name, safe="")):  # as written, and as a page encodes it
                clusters = client.get(f"/v1/services/{path}/clusters", params={"deployment": canary})
                assert clusters.status_code == 200 and clusters.json(), (name, path)
                found = client.get(f"/v1/services/{path}/map", params={"canary": canary, "baseline": base})
                assert found.status_code == 200 and found.json()["service"] == name, (name, path)
                assert client.get(f"/v1/services/{path}/history").json()["service"] == name
            created = client.post(
                "/v1/analyses",
                json={"service": name, "canary": {"deployment": canary}, "baseline": {"deployment": base}},
            )
            assert created.status_code == 201, created.text
            assert client.get(f"/v1/analyses/{created.json()['id']}").json()["service"] == name
            mark = client.post(f"/v1/services/{name}/deployments/{base}/mark", json={"bad": True})
            assert mark.status_code == 200 and mark.json()["deployment"] == base, mark.text
            rule = {"service": name, "action": "ignore", "template": "x <*>", "deployment": canary}
            assert client.post("/v1/feedback", json=rule).status_code == 201
            assert [f["service"] for f in client.get("/v1/feedback", params={"service": name}).json()] == [name]


def test_the_page_reaches_a_name_with_a_slash(tmp_path: Path) -> None:
    """The page builds its API URLs with encodeURIComponent: '/' travels as %2F and still finds the service."""
    with make_client(tmp_path) as client:
        body = [{**r, "service": "team/api"} for r in live("v1", 50, 1) + live("v2", 50, 2)]
        client.post("/v1/events", content=ndjson(body))
        answer = client.get("/v1/services/team%2Fapi/clusters?deployment=v2")
        assert answer.status_code == 200 and orjson.loads(answer.content)
