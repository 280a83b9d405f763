"""Notifications of ended analyses (service/logcanary/notify.py) against a real HTTP receiver on 127.0.0.1.

The receiver is a ``http.server`` in a thread that records every request and answers from a script of statuses;
stopping it and starting it again on the same port is a webhook that is down, then up. The end-to-end test runs a
real ``logcanary serve`` whose analysis fails and checks what the receiver got.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from prometheus_client import CollectorRegistry

from logcanary.analysis.verdict import analyze
from logcanary.demo.embedded_broker import free_port
from logcanary.demo.traffic import SERVICE, events
from logcanary.engine.model import Engine
from logcanary.notify import Notifier, generic_message, slack_message
from logcanary.schemas import AnalysisSpec, Verdict
from logcanary.settings import Settings, SettingsError, Webhook, load_settings, parse_webhooks
from logcanary.store.base import AnalysisRecord

from .conftest import Launcher, ServiceProcess

# -- a real receiver -----------------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """An HTTP server on 127.0.0.1 recording what it is sent. It answers the statuses scripted for the path (key ""
    for any path) in turn, then 200, each after ``delay`` seconds."""

    def __init__(self, port: int | None = None, delay: float = 0.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.statuses: dict[str, list[int]] = {}
        self.delay = delay
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    script = receiver.statuses.get(self.path, receiver.statuses.get("", []))
                    status = script.pop(0) if script else 200
                time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"the receiver got {len(self.received())} requests, not {count}, in {timeout} s")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


# -- an ended analysis ---------------------------------------------------------------------------------------------


def failing_verdict() -> dict[str, Any]:
    """A real verdict: the demo's canary throwing NullPointerExceptions, judged by the engine."""
    engine = Engine()
    for deployment, npe in (("v1", 0.0), ("v2", 0.05)):
        for event in events(deployment, 600, seed=1, npe_rate=npe):
            stamp = datetime.fromisoformat(event["timestamp"]).timestamp()
            engine.observe(SERVICE, deployment, event["message"], stamp, event["host"], event["level"])
    verdict = analyze(engine.service(SERVICE), canary="v2", baseline=["v1"], history=False, sensitivity="medium")
    assert verdict.verdict == "fail"
    return verdict.model_dump(mode="json")


FAILING = failing_verdict()


def ended(
    verdict: dict[str, Any] | None = None, status: str = "completed", where: dict[str, Any] | None = None
) -> AnalysisRecord:
    now = time.time()
    return AnalysisRecord(
        id=uuid.uuid4().hex,
        service=SERVICE,
        request=AnalysisSpec.model_validate(
            {
                "service": SERVICE,
                "canary": {"deployment": "v2"},
                "baseline": {"deployment": "v1", "history": False},
                "duration": 600.0,
                "sensitivity": "medium",
                "fail_fast": True,
            }
            | (where or {})
        ),
        status=status,  # type: ignore[arg-type]
        started_at=now - 60,
        ends_at=now + 540,
        verdict=Verdict.model_validate(FAILING if verdict is None else verdict),
        finished_at=now,
    )


def settings(*webhooks: Webhook, **values: Any) -> Settings:
    defaults: dict[str, Any] = {
        "notify_backoff_seconds": 0.1,
        "notify_backoff_max_seconds": 0.4,
        "notify_timeout_seconds": 2.0,
        "public_url": "https://logcanary.example.com/",
    }
    return Settings(notify_webhooks=list(webhooks), **{**defaults, **values})


def count(registry: CollectorRegistry, result: str) -> float:
    return registry.get_sample_value("logcanary_notifications_total", {"result": result}) or 0.0


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


# -- settings ------------------------------------------------------------------------------------------------------


def test_webhooks_are_read_from_one_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "LOGCANARY_NOTIFY_WEBHOOKS",
        "slack=https://hooks.slack.com/services/T0/B0/secret, json=http://ops.example:8080/hook?a=b "
        "https://other.example/h",
    )
    monkeypatch.setenv("LOGCANARY_NOTIFY_ON", "fail, Inconclusive")
    monkeypatch.setenv("LOGCANARY_PUBLIC_URL", "https://logcanary.example.com")
    loaded = load_settings()
    assert [(w.format, w.url) for w in loaded.notify_webhooks] == [
        ("slack", "https://hooks.slack.com/services/T0/B0/secret"),
        ("json", "http://ops.example:8080/hook?a=b"),
        ("json", "https://other.example/h"),
    ]
    assert loaded.notify_webhooks[0].where == "https://hooks.slack.com"  # logs never show the secret path
    assert loaded.notify_on == ["fail", "inconclusive"]
    monkeypatch.setenv("LOGCANARY_NOTIFY_WEBHOOKS", '[{"url": "https://a.example/x", "format": "slack"}]')
    assert load_settings().notify_webhooks == [Webhook(url="https://a.example/x", format="slack")]
    monkeypatch.delenv("LOGCANARY_NOTIFY_WEBHOOKS")
    monkeypatch.delenv("LOGCANARY_NOTIFY_ON")
    assert load_settings().notify_webhooks == []
    assert load_settings().notify_on == ["fail"]


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("LOGCANARY_NOTIFY_WEBHOOKS", "teams=https://a.example/x", "unknown format 'teams'"),
        ("LOGCANARY_NOTIFY_WEBHOOKS", "ftp://a.example/x", "webhook 1: .*not an http"),
        ("LOGCANARY_NOTIFY_WEBHOOKS", "https://ok.example slack=hooks.slack.com", "webhook 2"),
        ("LOGCANARY_NOTIFY_WEBHOOKS", '[{"url": "https://a.example", "format": "xml"}]', "webhook 1"),
        ("LOGCANARY_NOTIFY_WEBHOOKS", "[not json", "not a JSON list"),
        ("LOGCANARY_NOTIFY_ON", "fail,maybe", "LOGCANARY_NOTIFY_ON"),
        ("LOGCANARY_NOTIFY_MAX_ATTEMPTS", "0", "LOGCANARY_NOTIFY_MAX_ATTEMPTS"),
    ],
)
def test_bad_notification_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable) as raised:
        load_settings()
    assert len(str(raised.value).splitlines()) == 1
    import re

    assert re.search(says, str(raised.value)), str(raised.value)


def test_parse_webhooks_keeps_equals_signs_of_queries() -> None:
    assert parse_webhooks("https://a.example/h?token=x=y") == [Webhook(url="https://a.example/h?token=x=y")]


# -- the messages --------------------------------------------------------------------------------------------------


def test_the_generic_message_names_the_analysis_and_its_top_anomaly() -> None:
    record = ended()
    message = generic_message(record, "https://logcanary.example.com/")
    top = FAILING["anomalies"][0]
    assert message["analysis_id"] == record.id
    assert (message["service"], message["canary"], message["baseline"]) == (SERVICE, "v2", ["v1"])
    assert message["verdict"] == "fail"
    assert message["risk"] == FAILING["risk"] > 50
    assert message["reason_code"] == "anomalies"
    assert message["top_anomaly"]["template"] == top["template"]
    assert "java.lang.NullPointerException" in message["top_anomaly"]["example"]
    assert message["top_anomaly"]["example"] == top["examples"][0]
    assert message["top_anomaly"]["example_from"] == "canary"
    link = urlsplit(message["url"])
    assert (link.scheme, link.netloc, link.path) == ("https", "logcanary.example.com", "/ui")
    query = parse_qs(link.query, keep_blank_values=True)
    assert query == {"analysis": [record.id], "expand": [top["cluster_id"]]}  # the verdict as published
    assert message["analysis_url"] == f"https://logcanary.example.com/v1/analyses/{record.id}"
    assert message["finished_at"].endswith("Z")
    assert (message["environment"], message["release"], message["release_url"]) == (None, None, None)
    where = {"environment": "qa", "release": "2026.12.07-1", "labels": {"team": "pay"}}
    released = generic_message(ended(where=where), "https://logcanary.example.com/")
    assert (released["environment"], released["release"], released["labels"]) == ("qa", "2026.12.07-1", {"team": "pay"})
    assert released["release_url"] == "https://logcanary.example.com/ui?view=release&release=2026.12.07-1"


def notifier_for(config: Settings, registry: CollectorRegistry) -> Notifier:
    """A notifier of these settings, linking to their base URL."""
    return Notifier(config, config.base_url, registry)


def test_the_slack_message_has_text_and_blocks_within_slacks_limits() -> None:
    verdict = json.loads(json.dumps(FAILING))
    anomaly = verdict["anomalies"][0]
    anomaly["examples"][0] = "<script>&``` " + "x" * 5000 + "\n" * 50  # long, and characters Slack escapes
    anomaly["template"] = "t" * 4000
    message = slack_message(generic_message(ended(verdict), "http://svc:8080"))
    assert set(message) == {"text", "blocks"}
    assert message["text"].startswith(":x: logcanary: payments canary v2: FAIL (risk")
    assert "<http://svc:8080/ui?analysis=" in message["text"] and "&expand=" in message["text"]
    blocks = message["blocks"]
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150
    texts = [block["text"]["text"] for block in blocks if block["type"] == "section"]
    assert all(len(text) <= 3000 for text in texts)
    example = texts[-1]
    assert example.startswith("*Example*\n```&lt;script&gt;&amp;`\u200b``")  # escaped, and ``` cannot close it
    assert "…" in example  # cut, and marked
    assert blocks[-1]["type"] == "context"


def test_an_inconclusive_verdict_has_no_anomaly_to_show() -> None:
    verdict = {**FAILING, "verdict": "inconclusive", "anomalies": [], "anomaly_count": 0, "risk": 0.0}
    verdict["reason_code"] = "unknown_canary"
    message = generic_message(ended(verdict), "http://svc:8080")
    assert message["top_anomaly"] is None
    assert "expand" not in message["url"]
    slack = slack_message(message)
    assert slack["text"].startswith(":warning:")
    assert [block["type"] for block in slack["blocks"]] == ["header", "section", "context"]


# -- the notifier against a real receiver --------------------------------------------------------------------------


def test_each_webhook_gets_its_format_once(receiver: Receiver) -> None:
    registry = CollectorRegistry()
    notifier = notifier_for(
        settings(Webhook(url=f"{receiver.url}/slack", format="slack"), Webhook(url=f"{receiver.url}/json")),
        registry,
    )

    async def scenario() -> None:
        await notifier.start()
        record = ended()
        notifier.analysis_ended(record)
        notifier.analysis_ended(ended(status="cancelled"))  # not an end with a verdict
        notifier.analysis_ended(ended({**FAILING, "verdict": "pass"}))  # not in notify_on
        await until(lambda: count(registry, "sent") == 2)
        await notifier.stop(grace=1)

    asyncio.run(scenario())
    got = {request.path: request for request in receiver.received()}
    assert set(got) == {"/slack", "/json"}
    assert set(got["/slack"].json()) == {"text", "blocks"}
    body = got["/json"].json()
    assert body["verdict"] == "fail"
    assert "NullPointerException" in body["top_anomaly"]["example"]
    assert got["/json"].headers["content-type"] == "application/json"
    assert got["/json"].headers["idempotency-key"] == f"logcanary-{body['analysis_id']}-json"
    assert got["/slack"].headers["idempotency-key"] == f"logcanary-{body['analysis_id']}-slack"
    assert got["/json"].headers["user-agent"].startswith("logcanary/")
    assert (count(registry, "failed"), count(registry, "dropped")) == (0, 0)


def test_a_webhook_that_is_down_gets_the_message_once_it_is_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="logcanary.notify")
    down = Receiver()  # its port is free: nothing listens yet, so every try is refused
    registry = CollectorRegistry()
    notifier = notifier_for(settings(Webhook(url=f"{down.url}/hook"), notify_max_attempts=20), registry)
    record = ended()

    async def scenario() -> float:
        await notifier.start()
        started = time.perf_counter()
        notifier.analysis_ended(record)
        took = time.perf_counter() - started
        await until(lambda: caplog.text.count("ConnectError") >= 3)  # tried, and retried, while down
        assert count(registry, "sent") == 0
        down.start()
        await until(lambda: count(registry, "sent") == 1)
        await notifier.stop(grace=1)
        return took

    try:
        took = asyncio.run(scenario())
    finally:
        down.stop()
    assert took < 0.05  # the hook only queues
    got = down.received()
    assert len(got) == 1
    assert got[0].json()["analysis_id"] == record.id
    assert count(registry, "failed") == 0


def test_retries_back_off_and_keep_the_idempotency_key(receiver: Receiver) -> None:
    receiver.statuses = {"": [503, 429, 500]}
    registry = CollectorRegistry()
    notifier = notifier_for(
        settings(Webhook(url=receiver.url), notify_backoff_seconds=0.2, notify_backoff_max_seconds=1), registry
    )

    async def scenario() -> None:
        await notifier.start()
        notifier.analysis_ended(ended())
        await until(lambda: count(registry, "sent") == 1)
        await notifier.stop(grace=1)

    started = time.monotonic()
    asyncio.run(scenario())
    took = time.monotonic() - started
    got = receiver.received()
    assert len(got) == 4
    assert len({request.headers["idempotency-key"] for request in got}) == 1
    assert len({request.body for request in got}) == 1
    assert took >= 0.2 + 0.4 + 0.8  # waits of 0.2, 0.4, 0.8 s between the four tries
    assert notifier.backoff(1) == 0.2
    assert notifier.backoff(3) == 0.8
    assert notifier.backoff(10) == 1  # bounded
    assert notifier.backoff(1, retry_after=0.5) == 0.5  # a Retry-After is honoured
    assert notifier.backoff(1, retry_after=3600) == 1  # within the bound


def test_tries_are_bounded_and_a_refusal_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = {"/a": [502, 502, 502], "/b": [404]}
    registry = CollectorRegistry()
    notifier = notifier_for(
        settings(Webhook(url=f"{receiver.url}/a"), Webhook(url=f"{receiver.url}/b"), notify_max_attempts=3), registry
    )

    async def scenario() -> None:
        await notifier.start()
        notifier.analysis_ended(ended())
        await until(lambda: count(registry, "failed") == 2)
        await notifier.stop(grace=1)

    asyncio.run(scenario())
    paths = sorted(request.path for request in receiver.received())
    assert paths == ["/a", "/a", "/a", "/b"]  # three tries, then given up; refused once, not retried
    assert count(registry, "sent") == 0


def test_a_full_queue_drops_and_counts_without_blocking(receiver: Receiver) -> None:
    receiver.delay = 0.3
    registry = CollectorRegistry()
    notifier = notifier_for(settings(Webhook(url=receiver.url), notify_queue_size=2), registry)

    async def scenario() -> float:
        await notifier.start()
        started = time.perf_counter()
        for _ in range(5):  # nothing runs in between: the first two fill the queue, three are dropped
            notifier.analysis_ended(ended())
        took = time.perf_counter() - started
        assert count(registry, "dropped") == 3
        await until(lambda: count(registry, "sent") == 2)
        await notifier.stop(grace=1)
        return took

    assert asyncio.run(scenario()) < 0.1
    assert len(receiver.received()) == 2


def test_an_analysis_ending_in_another_thread_is_sent(receiver: Receiver) -> None:
    registry = CollectorRegistry()
    notifier = notifier_for(settings(Webhook(url=receiver.url)), registry)

    async def scenario() -> None:
        await notifier.start()
        await asyncio.to_thread(notifier.analysis_ended, ended())  # as at start-up, where load() runs in a thread
        await until(lambda: count(registry, "sent") == 1)
        await notifier.stop(grace=1)

    asyncio.run(scenario())
    assert len(receiver.received()) == 1


def test_stopping_waits_briefly_then_counts_what_is_left() -> None:
    nowhere = Receiver()  # never started
    registry = CollectorRegistry()
    notifier = notifier_for(
        settings(
            Webhook(url=nowhere.url), notify_max_attempts=20, notify_backoff_seconds=5, notify_backoff_max_seconds=5
        ),
        registry,
    )

    async def scenario() -> float:
        await notifier.start()
        for _ in range(6):
            notifier.analysis_ended(ended())
        await asyncio.sleep(0.2)  # four are being tried (and waiting to retry), two queued
        started = time.monotonic()
        await notifier.stop(grace=0.3)
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 2
    assert count(registry, "dropped") == 6
    assert count(registry, "sent") + count(registry, "failed") == 0


def test_without_webhooks_nothing_runs() -> None:
    registry = CollectorRegistry()
    notifier = notifier_for(settings(), registry)

    async def scenario() -> None:
        await notifier.start()
        notifier.analysis_ended(ended())
        await notifier.stop(grace=1)

    asyncio.run(scenario())
    assert count(registry, "sent") + count(registry, "failed") + count(registry, "dropped") == 0


# -- end to end: a real service, a real analysis that fails --------------------------------------------------------


def live(deployment: str, n: int, seed: int, npe_rate: float = 0.0) -> list[dict[str, Any]]:
    return list(events(deployment, n, seed=seed, npe_rate=npe_rate, start=datetime.now(UTC), seconds=1))


def send(service: ServiceProcess, records: list[dict[str, Any]]) -> None:
    answer = httpx.post(f"{service.url}/v1/events", json=records, timeout=30)
    assert answer.status_code == 202, answer.text


def test_a_failing_analysis_of_a_real_service_notifies_the_receiver(
    receiver: Receiver, service_process: Launcher
) -> None:
    service = service_process(
        {
            "LOGCANARY_NOTIFY_WEBHOOKS": f"slack={receiver.url}/slack json={receiver.url}/json",
            "LOGCANARY_NOTIFY_ON": "fail,inconclusive",
            "LOGCANARY_PUBLIC_URL": "https://logcanary.example.com",
        }
    )
    service.start()
    send(service, live("v1", 200, seed=0))
    with service.client() as client:
        body = {
            "service": SERVICE,
            "canary": {"deployment": "v2"},
            "baseline": {"deployment": "v1"},
            "duration": 120,
            "fail_fast": True,
        }
        created = client.post("/v1/analyses", json=body)
        assert created.status_code == 201, created.text
        failing = created.json()["id"]
        send(service, live("v1", 400, seed=1) + live("v2", 400, seed=2, npe_rate=0.05))
        got = receiver.wait_for(2)
        unknown = client.post("/v1/analyses", json={**body, "canary": {"deployment": "v9"}, "duration": 1}).json()["id"]
        got = receiver.wait_for(4)
        time.sleep(4.5)  # two more passes of the analysis loop: nothing is sent again
        got = receiver.received()
        analysis = client.get(f"/v1/analyses/{failing}").json()
        metrics = client.get("/metrics").text
    assert analysis["status"] == "completed" and analysis["verdict"]["verdict"] == "fail"
    by_analysis: dict[str, list[Received]] = {}
    for request in got:
        key = request.headers["idempotency-key"]
        by_analysis.setdefault(key.split("-")[1], []).append(request)
    assert sorted(by_analysis) == sorted([failing, unknown])
    assert all(len(requests) == 2 for requests in by_analysis.values())  # one message per webhook, once
    messages = {request.path: request.json() for request in by_analysis[failing]}
    generic = messages["/json"]
    assert (generic["analysis_id"], generic["verdict"], generic["canary"]) == (failing, "fail", "v2")
    assert generic["risk"] == analysis["verdict"]["risk"]
    assert "java.lang.NullPointerException" in generic["top_anomaly"]["template"]
    assert "EncryptionService.encrypt" in generic["top_anomaly"]["example"]
    assert generic["url"].startswith(f"https://logcanary.example.com/ui?analysis={failing}&expand=")
    assert generic["analysis_url"] == f"https://logcanary.example.com/v1/analyses/{failing}"
    assert "FAIL" in messages["/slack"]["text"]
    assert any("NullPointerException" in json.dumps(block) for block in messages["/slack"]["blocks"])
    other = {request.path: request.json() for request in by_analysis[unknown]}
    assert other["/json"]["verdict"] == "inconclusive"
    assert other["/json"]["reason_code"] == "unknown_canary"
    assert 'logcanary_notifications_total{result="sent"} 4.0' in metrics
    assert 'logcanary_notifications_total{result="dropped"} 0.0' in metrics
