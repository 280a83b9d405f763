"""The reviewer's API: the cluster map, a service's history with risk over time, and not_a_risk feedback."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from logcanary.analysis.layout import LAYOUT
from logcanary.store.base import MAX_RISK_SAMPLES
from tests.test_api import AUTH, TOKEN, live, make_client, ndjson

MAP = "/v1/services/payments/map"


def post(client: TestClient, records: list[dict[str, object]]) -> None:
    assert client.post("/v1/events", content=ndjson(records), headers=AUTH).status_code == 202


def points(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["template_id"]: p for p in body["points"]}


def npe_of(body: dict[str, Any]) -> dict[str, Any]:
    npe: list[dict[str, Any]] = [p for p in body["points"] if "NullPointerException" in p["template"]]
    assert len(npe) == 1
    return npe[0]


def test_map_places_every_event_type_of_canary_and_baseline(tmp_path: Path) -> None:
    legacy = [{**e, "message": f"Legacy sync job ran in {n} ms"} for n, e in enumerate(live("v1", 40, 7))]
    with make_client(tmp_path, api_token=SecretStr(TOKEN), verdict_max_age_seconds=60.0) as client:
        post(client, live("v1", 1500, 1) + legacy + live("v2", 1500, 2, npe_rate=0.02))
        body = client.get(MAP, params={"canary": "v2", "baseline": "v1"}).json()
        gate = client.get("/v1/verdict", params={"service": "payments", "canary": "v2", "baseline": "v1"}).json()
        assert body["verdict"] == gate  # GET /v1/verdict's question (same defaults), answered by one computation
        assert (body["window"], body["projection"], body["analysis"], body["omitted"]) == ("5m", LAYOUT, None, 0)
        assert (body["canary"], body["baseline"]) == ("v2", ["v1"])

        found = points(body)
        canary = client.get("/v1/services/payments/clusters", params={"deployment": "v2"}).json()
        baseline = client.get("/v1/services/payments/clusters", params={"deployment": "v1"}).json()
        in_canary = {t["template_id"]: (c["cluster_id"], t["count"]) for c in canary for t in c["templates"]}
        in_baseline = {t["template_id"]: t["count"] for c in baseline for t in c["templates"]}
        assert set(found) == set(in_canary) | set(in_baseline)
        for template_id, point in found.items():
            assert point["in_canary"] == (template_id in in_canary)
            assert point["canary_count"] == in_canary.get(template_id, ("", 0))[1]
            assert point["baseline_count"] == in_baseline.get(template_id, 0)
            if point["in_canary"]:
                assert point["cluster_id"] == in_canary[template_id][0]
            assert 0 <= point["x"] <= 1 and 0 <= point["y"] <= 1
        # the page's table: the canary's clusters over the verdict's window (every event of this test is in it)
        assert [(c["cluster_id"], c["count"], c["total"], c["judged"]) for c in body["clusters"]] == [
            (c["cluster_id"], c["count"], c["count"], True) for c in canary
        ]
        rows = {t["template_id"]: t for c in body["clusters"] for t in c["templates"]}
        assert {i: (t["count"], t["examples"], t["hosts"]) for i, t in rows.items()} == {
            t["template_id"]: (t["count"], t["examples"], t["hosts"]) for c in canary for t in c["templates"]
        }

        npe = npe_of(body)
        [anomaly] = gate["anomalies"]
        assert npe["template_id"] in anomaly["template_ids"]
        assert (npe["state"], npe["finding"], npe["score"], npe["level"]) == (
            "anomalous",
            "unknown",
            anomaly["score"],
            "error",
        )
        [gone] = [p for p in found.values() if p["template"].startswith("Legacy sync job")]
        assert (gone["state"], gone["in_canary"], gone["canary_count"]) == ("vanished", False, 0)
        assert {p["state"] for p in found.values() if p not in (npe, gone)} == {"known"}
        assert body["points"][0] == npe  # anomalous first

        capped = client.get(MAP, params={"canary": "v2", "baseline": "v1", "max_points": 3}).json()
        assert [p["template_id"] for p in capped["points"]] == [p["template_id"] for p in body["points"][:3]]
        assert capped["omitted"] == len(found) - 3

        history = client.get(MAP, params={"canary": "v2"}).json()  # no baseline: earlier deployments
        assert history["baseline"] == ["history:v1"]
        assert points(history).keys() == found.keys()

        assert client.get(MAP, params={"canary": "v2", "window": "soon"}).status_code == 400
        assert client.get(MAP).status_code == 400  # neither canary nor analysis
        assert client.get("/v1/services/nope/map", params={"canary": "v2"}).status_code == 404
        unknown = client.get(MAP, params={"canary": "v9", "baseline": "v1"}).json()
        assert unknown["verdict"]["reason_code"] == "unknown_canary"
        assert {p["state"] for p in unknown["points"]} == {"vanished"}


def test_positions_do_not_move_between_refreshes_deployments_and_restarts(tmp_path: Path) -> None:
    def where(body: dict[str, Any]) -> dict[str, tuple[float, float]]:
        return {p["template_id"]: (p["x"], p["y"]) for p in body["points"]}

    with make_client(tmp_path, api_token=SecretStr(TOKEN)) as client:
        post(client, live("v1", 1500, 1) + live("v2", 1500, 2, npe_rate=0.02))
        first = where(client.get(MAP, params={"canary": "v2", "baseline": "v1"}).json())
        assert where(client.get(MAP, params={"canary": "v2", "baseline": "v1", "window": "all"}).json()) == first
        post(client, live("v3", 1500, 3))
        third = where(client.get(MAP, params={"canary": "v3", "baseline": "v2"}).json())
        shared = first.keys() & third.keys()
        assert len(shared) == len(first)  # v3 logs v2's types, and v2's exception shows as vanished
        assert {t: third[t] for t in shared} == first
    with make_client(tmp_path, api_token=SecretStr(TOKEN)) as client:  # restarted from the store
        assert where(client.get(MAP, params={"canary": "v3", "baseline": "v2"}).json()) == third


def test_not_a_risk_applies_to_its_canary_only(tmp_path: Path) -> None:
    with make_client(tmp_path, api_token=SecretStr(TOKEN)) as client:
        v2 = [{**e, "identities": ["7f9c4d"]} for e in live("v2", 1500, 2, npe_rate=0.02)]
        post(client, live("v1", 1500, 1) + v2 + live("v3", 1500, 3, npe_rate=0.02))
        npe = npe_of(client.get(MAP, params={"canary": "v2", "baseline": "v1"}).json())

        rule = {"service": "payments", "template_id": npe["template_id"], "author": "ana", "reason": "staging keys"}
        missing = client.post("/v1/feedback", json={**rule, "action": "not_a_risk"}, headers=AUTH)
        assert missing.status_code == 422
        assert "give deployment" in missing.text
        typo = client.post("/v1/feedback", json={**rule, "action": "not_a_risk", "deployment": "7f9c4e"}, headers=AUTH)
        assert typo.status_code == 404  # a rule on a name no deployment has would never apply
        assert "no deployment '7f9c4e'" in typo.text
        created = client.post(
            "/v1/feedback", json={**rule, "action": "not_a_risk", "deployment": "7f9c4d"}, headers=AUTH
        )
        assert created.status_code == 201, created.text
        feedback = created.json()
        assert (feedback["action"], feedback["deployment"], feedback["author"]) == ("not_a_risk", "7f9c4d", "ana")

        def judged(canary: str) -> dict[str, Any]:
            body: dict[str, Any] = client.get(MAP, params={"canary": canary, "baseline": "v1"}).json()
            return body

        accepted = judged("v2")  # the rule names v2 by its pod-template hash: it applies to v2
        assert accepted["verdict"]["verdict"] == "pass"
        assert accepted["verdict"]["suppressed"][0]["feedback_id"] == feedback["id"]
        point = npe_of(accepted)
        assert (point["state"], point["feedback_id"], point["feedback_action"]) == (
            "ignored",
            feedback["id"],
            "not_a_risk",
        )
        assert judged("v3")["verdict"]["verdict"] == "fail"  # the next release is judged afresh
        assert npe_of(judged("v3"))["state"] == "anomalous"

        ignored = client.post(
            "/v1/feedback", json={**rule, "action": "ignore", "deployment": "v2"}, headers=AUTH
        ).json()
        assert judged("v3")["verdict"]["verdict"] == "pass"  # ignore: every deployment
        assert client.delete(f"/v1/feedback/{ignored['id']}", headers=AUTH).status_code == 204
        assert client.delete(f"/v1/feedback/{feedback['id']}", headers=AUTH).status_code == 204
        assert judged("v2")["verdict"]["verdict"] == "fail"  # undone

        priority = {**rule, "action": "priority", "template_id": None}
        priority["template"] = next(p["template"] for p in judged("v2")["points"] if p["state"] == "known")
        assert client.post("/v1/feedback", json=priority, headers=AUTH).status_code == 201
        assert {p["finding"] for p in judged("v3")["points"] if p["state"] == "anomalous"} >= {"priority"}


def wait_completed(client: TestClient, analysis_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        analysis: dict[str, Any] = client.get(f"/v1/analyses/{analysis_id}").json()
        if analysis["status"] == "completed":
            return analysis
        time.sleep(0.2)
    raise AssertionError("the analysis did not complete")


def test_an_analysis_map_and_history_show_what_it_published(tmp_path: Path) -> None:
    with make_client(tmp_path, api_token=SecretStr(TOKEN)) as client:
        post(client, live("v1", 300, 1))
        body = {"service": "payments", "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}, "duration": 3}
        created = client.post("/v1/analyses", json=body, headers=AUTH).json()
        post(client, live("v1", 1500, 1) + live("v2", 1500, 2, npe_rate=0.02))
        analysis = wait_completed(client, created["id"])
        assert analysis["verdict"]["verdict"] == "fail"

        npe = npe_of(client.get(MAP, params={"canary": "v2", "baseline": "v1"}).json())
        rule = {"service": "payments", "action": "not_a_risk", "template_id": npe["template_id"], "deployment": "v2"}
        rule_id = client.post("/v1/feedback", json={**rule, "author": "ana"}, headers=AUTH).json()["id"]
        client.post("/v1/services/payments/deployments/v2/mark", json={"bad": True, "author": "bo"}, headers=AUTH)
        assert client.get(MAP, params={"canary": "v2", "baseline": "v1"}).json()["verdict"]["verdict"] == "pass"

        published = client.get(MAP, params={"analysis": created["id"]}).json()
        assert published["verdict"] == analysis["verdict"]  # exactly what it published, though the rule came later
        assert published["window"] == "analysis"
        assert published["analysis"]["id"] == created["id"]
        assert published["analysis"]["status"] == "completed"
        assert npe_of(published)["state"] == "anomalous"
        assert client.get("/v1/services/other/map", params={"analysis": created["id"]}).status_code == 404
        assert client.get(MAP, params={"analysis": "missing"}).status_code == 404

        history = client.get("/v1/services/payments/history").json()
        [summary] = history["analyses"]
        assert (summary["id"], summary["canary"], summary["baseline"], summary["history"]) == (
            created["id"],
            "v2",
            "v1",
            False,
        )
        assert (summary["verdict"], summary["risk"], summary["status"]) == (
            "fail",
            analysis["verdict"]["risk"],
            "completed",
        )
        samples = summary["risk_history"]
        assert 2 <= len(samples) <= MAX_RISK_SAMPLES
        assert samples[-1]["risk"] == analysis["verdict"]["risk"]
        assert [s["at"] for s in samples] == sorted(s["at"] for s in samples)
        assert [(f["id"], f["author"], f["action"]) for f in history["feedback"]] == [(rule_id, "ana", "not_a_risk")]
        assert [(m["deployment"], m["bad"], m["author"]) for m in history["marks"]] == [("v2", True, "bo")]
        assert client.get("/v1/services/payments/history", params={"limit": 0}).status_code == 422
        assert client.get("/v1/services/nope/history").status_code == 404


def test_protected_reads_cover_the_map_and_history(tmp_path: Path) -> None:
    with make_client(tmp_path, api_token=SecretStr(TOKEN), protect_reads=True) as client:
        post(client, live("v1", 300, 1) + live("v2", 300, 2))
        for path in (f"{MAP}?canary=v2&baseline=v1", "/v1/services/payments/history"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 403
            assert client.get(path, headers=AUTH).status_code == 200


def test_feedback_is_one_rule_set_with_an_audit_trail(tmp_path: Path) -> None:
    """A priority rule on an event judged not a risk is refused, naming the standing rule; it is changed instead;
    the undo says who and why; the trail holds all three, newest first, in the API and in History."""
    with make_client(tmp_path, api_token=SecretStr(TOKEN)) as client:
        post(client, live("v1", 1500, 1) + live("v2", 1500, 2, npe_rate=0.02))
        npe = npe_of(client.get(MAP, params={"canary": "v2", "baseline": "v1"}).json())
        rule = {"service": "payments", "template_id": npe["template_id"], "author": "ana", "reason": "staging keys"}
        accepted = client.post("/v1/feedback", json={**rule, "action": "not_a_risk", "deployment": "v2"}, headers=AUTH)
        assert accepted.status_code == 201
        standing = accepted.json()

        refused = client.post("/v1/feedback", json={**rule, "action": "priority", "author": "bo"}, headers=AUTH)
        assert refused.status_code == 409
        assert refused.json()["error"] == "conflicting_rule"
        assert f"PATCH /v1/feedback/{standing['id']}" in refused.json()["detail"]
        assert "not a risk in v2 by ana" in refused.json()["detail"]
        again = client.post("/v1/feedback", json={**rule, "action": "not_a_risk", "deployment": "v2"}, headers=AUTH)
        assert (again.status_code, again.json()["error"]) == (409, "conflicting_rule")
        assert "already said" in again.json()["detail"]
        assert [f["id"] for f in client.get("/v1/feedback").json()] == [standing["id"]]
        verdict = {"service": "payments", "canary": "v2", "baseline": "v1"}
        assert client.get("/v1/verdict", params=verdict).json()["verdict"] == "pass"

        change = {"action": "priority", "author": "bo", "reason": "it broke payments in prod"}
        assert client.patch(f"/v1/feedback/{standing['id']}", json=change).status_code == 401
        changed = client.patch(f"/v1/feedback/{standing['id']}", json=change, headers=AUTH)
        assert changed.status_code == 200, changed.text
        assert (changed.json()["id"], changed.json()["action"]) == (standing["id"], "priority")
        judged = client.get("/v1/verdict", params=verdict).json()
        assert (judged["verdict"], judged["anomalies"][0]["priority"]) == ("fail", True)

        undo = {"author": "cy", "reason": "fixed in v3"}
        assert client.delete(f"/v1/feedback/{standing['id']}", params=undo, headers=AUTH).status_code == 204
        assert client.get("/v1/feedback").json() == []
        assert client.patch(f"/v1/feedback/{standing['id']}", json=change, headers=AUTH).status_code == 404

        trail = client.get("/v1/feedback/audit", params={"service": "payments"}).json()
        assert [(c["change"], c["author"], c["reason"], c["rule"]["action"]) for c in trail] == [
            ("undone", "cy", "fixed in v3", "priority"),
            ("changed", "bo", "it broke payments in prod", "priority"),
            ("created", "ana", "staging keys", "not_a_risk"),
        ]
        assert trail[1]["previous"]["action"] == "not_a_risk"
        assert {c["rule"]["id"] for c in trail} == {standing["id"]}
        assert [c["at"] for c in trail] == sorted((c["at"] for c in trail), reverse=True)
        assert client.get("/v1/feedback/audit", params={"service": "other"}).json() == []
        history = client.get("/v1/services/payments/history").json()
        assert history["feedback"] == []
        assert [c["id"] for c in history["feedback_changes"]] == [c["id"] for c in trail]
    with make_client(tmp_path, api_token=SecretStr(TOKEN)) as client:  # kept by the store
        assert len(client.get("/v1/feedback/audit").json()) == 3


def test_one_page_one_scope(tmp_path: Path) -> None:
    """The table's rows come from the map's verdict: after the canary stopped logging (an empty 5-minute window) the
    verdict is inconclusive, and no row, dot or finding claims otherwise; a new event below the fail score is new,
    never known."""
    from datetime import UTC, datetime, timedelta

    from logcanary.demo.traffic import events

    past = datetime.now(UTC) - timedelta(minutes=20)
    old = [*events("v1", 1500, seed=1, start=past, seconds=60), *events("v2", 1500, seed=2, npe_rate=0.02, start=past)]
    with make_client(tmp_path, api_token=SecretStr(TOKEN)) as client:
        post(client, old)
        quiet = client.get(MAP, params={"canary": "v2", "baseline": "v1"}).json()
        assert quiet["verdict"]["reason_code"] == "no_canary_events"
        assert quiet["points"] == [p for p in quiet["points"] if p["state"] == "vanished"] == []
        assert quiet["clusters"] and all(not c["judged"] and c["count"] == 0 for c in quiet["clusters"])
        assert sum(c["total"] for c in quiet["clusters"]) == 1500
        everything = client.get(MAP, params={"canary": "v2", "baseline": "v1", "window": "all"}).json()
        assert everything["verdict"]["verdict"] == "fail"
        assert npe_of(everything)["state"] == "anomalous"
        assert all(c["judged"] and c["count"] == c["total"] for c in everything["clusters"])

        note = [{**e, "message": f"Warmed cache shard {n}"} for n, e in enumerate(live("v3", 2, 8))]
        post(client, live("v1", 1500, 1) + live("v3", 1500, 3) + note)
        judged = client.get(MAP, params={"canary": "v3", "baseline": "v1"}).json()
        assert judged["verdict"]["verdict"] == "pass"
        [warmed] = [p for p in judged["points"] if p["template"].startswith("Warmed cache")]
        assert (warmed["state"], warmed["baseline_count"]) == ("new", 0)  # two info lines: below the fail score
        assert {p["state"] for p in judged["points"] if p is not warmed} <= {"known", "vanished"}


def test_an_on_demand_verdict_links_to_its_own_window(tmp_path: Path) -> None:
    """What Argo Rollouts stores (GET /v1/verdict, compact) carries a page for people: the whole question with the
    window's end fixed and the top anomaly open. Later events, or the canary going quiet, do not change it.

    The events are stamped in the past, as the logs a deploy tool asks about are: the live answer's window is
    open-ended (an event stamped ahead of logcanary's clock still counts) while the page's ends at the time the
    verdict was computed, so events stamped over the next second (``live``) fell outside the page whenever that
    second crossed a 10-second bucket after the verdict was computed (risk 97.5 asked, 95.0 on the page)."""
    from urllib.parse import parse_qs, urlsplit

    from logcanary.demo.traffic import events

    def logged(deployment: str, seed: int, npe_rate: float = 0.0) -> list[dict[str, object]]:
        start = datetime.now(UTC) - timedelta(seconds=2)  # over a second that ended before the verdict is asked
        return list(events(deployment, 1500, seed=seed, npe_rate=npe_rate, start=start, seconds=1))

    with make_client(tmp_path, public_url="https://logcanary.example.com") as client:
        post(client, logged("v1", 1) + logged("v2", 2, npe_rate=0.02))
        question = {"service": "payments", "canary": "v2", "baseline": "v1", "compact": "true"}
        asked = client.get("/v1/verdict", params=question).json()
        assert asked["verdict"] == "fail" and "NullPointerException" in asked["reason"]
        page = urlsplit(asked["page"])
        assert (page.scheme, page.netloc, page.path) == ("https", "logcanary.example.com", "/ui")
        query = {key: value for key, [value] in parse_qs(page.query).items()}
        assert query.keys() == {"service", "canary", "baseline", "window", "until", "expand"}
        assert (query["window"], query["expand"]) == ("5m", asked["anomalies"][0]["cluster_id"])

        later = datetime.fromisoformat(query["until"]) + timedelta(seconds=30)  # after the window the gate asked
        burst = [
            {
                **e,
                "level": "ERROR",
                "message": f"Connection pool exhausted after {n} ms",
                "timestamp": later.isoformat(),
            }
            for n, e in enumerate(events("v2", 300, seed=9))
        ]
        post(client, burst)
        now = client.get("/v1/verdict", params={**question, "window": "all"}).json()
        assert now["anomalies"][0]["template"].startswith("Connection pool exhausted")  # the live answer moved on
        fixed = {k: v for k, v in query.items() if k != "expand"}
        again = client.get("/v1/verdict", params={**fixed, "compact": "true"}).json()
        assert {k: again[k] for k in ("verdict", "risk", "reason", "anomalies")} == {
            k: asked[k] for k in ("verdict", "risk", "reason", "anomalies")
        }
        mapped = client.get(MAP, params={k: v for k, v in fixed.items() if k != "service"}).json()
        assert mapped["verdict"]["anomalies"] == client.get("/v1/verdict", params=fixed).json()["anomalies"]

        analysis = client.post(
            "/v1/analyses",
            json={"service": "payments", "canary": {"deployment": "v2"}, "baseline": {"deployment": "v1"}},
        ).json()
        assert analysis["page"] == f"https://logcanary.example.com/ui?analysis={analysis['id']}" + (
            f"&expand={analysis['verdict']['anomalies'][0]['cluster_id']}" if analysis["verdict"]["anomalies"] else ""
        )
        assert client.get(f"/v1/analyses/{analysis['id']}").json()["verdict"]["page"] is None  # the analysis has one


def test_a_template_logged_by_more_hosts_than_are_kept_says_so(tmp_path: Path) -> None:
    """64 hosts are kept per template: past them the table says 64+ (hosts_capped), never a count of 64."""
    with make_client(tmp_path) as client:
        wide = [{**e, "host": f"pod-{n % 70}"} for n, e in enumerate(live("v2", 700, 2))]
        post(client, live("v1", 700, 1) + wide)
        body = client.get(MAP, params={"canary": "v2", "baseline": "v1"}).json()
        busy = max((t for c in body["clusters"] for t in c["templates"]), key=lambda t: t["count"])
        assert (len(busy["hosts"]), busy["hosts_capped"]) == (64, True)
        quiet = client.get(MAP, params={"canary": "v1", "baseline": "v2"}).json()
        assert not any(t["hosts_capped"] for c in quiet["clusters"] for t in c["templates"])
