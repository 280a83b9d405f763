"""Notifications: when an analysis ends with a verdict named in ``LOGCANARY_NOTIFY_ON`` (``fail`` by default),
each webhook of ``LOGCANARY_NOTIFY_WEBHOOKS`` gets one JSON message, Slack-compatible or generic.

**Never in the way.** :meth:`Notifier.analysis_ended` is the hook ``logcanary.analyses`` calls where an analysis
completes (on the loop, or in the start-up thread for analyses that ended while the service was down). It builds the
message (a few kilobytes: the top anomaly and one example, cut) and puts one delivery per webhook on a bounded
``asyncio.Queue``; it never waits, never does I/O and never raises. A full queue drops the message and counts it
(``logcanary_notifications_total{result="dropped"}``). A few worker tasks send the queue with one ``httpx``
client: a request is bounded by ``LOGCANARY_NOTIFY_TIMEOUT_SECONDS``, and a webhook that is down costs those
workers, never ingestion or verdicts.

**Retries.** Connection errors, timeouts, 408, 425, 429 and 5xx answers are tried again, at most
``LOGCANARY_NOTIFY_MAX_ATTEMPTS`` times in all, after ``LOGCANARY_NOTIFY_BACKOFF_SECONDS`` doubling each time up to
``LOGCANARY_NOTIFY_BACKOFF_MAX_SECONDS`` (a ``Retry-After`` of seconds is honoured within that bound). Other answers
(a 404, a 400 for a malformed payload, a redirect) are not retried: the operator must fix the URL. Every request of
one message carries the same ``Idempotency-Key`` (``logcanary-<analysis id>-<format>``), so a receiver can drop a
retry of a message it did get.

**Once per analysis end.** The hook runs where the analysis turns ``completed``, which happens once. Messages live
in memory: those still queued when the process stops (after a short grace at shutdown) are counted as dropped, and
an analysis that completed but whose completion was not saved before a crash completes again after the restart, so
its message may be sent twice (the same idempotency key).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson
from prometheus_client import CollectorRegistry, Counter

from logcanary.common.backoff import Backoff
from logcanary.common.links import analysis_page, release_page
from logcanary.common.text import ELLIPSIS, cut
from logcanary.common.times import rfc3339
from logcanary.settings import NotifyFormat, NotifySettings, Webhook
from logcanary.store.base import AnalysisRecord

log = logging.getLogger(__name__)

RESULTS: Final = ("sent", "failed", "dropped")
WORKERS: Final = 4  # deliveries in flight at once: one webhook that is down does not hold up the others
RETRYABLE_STATUS: Final = frozenset({408, 425, 429})  # and every 5xx
EXAMPLE_CHARS: Final = 2000  # of the top anomaly's example, in the generic message
SLACK_EXAMPLE_CHARS: Final = 1500  # Slack: a section's text holds at most 3,000 characters
SLACK_EXAMPLE_LINES: Final = 20
SLACK_TEMPLATE_CHARS: Final = 600
SLACK_HEADER_CHARS: Final = 150  # Slack's limit for a header block
ICONS: Final = {"fail": ":x:", "inconclusive": ":warning:", "pass": ":white_check_mark:"}


def _version() -> str:
    try:
        return importlib.metadata.version("logcanary")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _time(epoch: float | None) -> str | None:
    return None if epoch is None else rfc3339(epoch)


def _cut(text: str, chars: int, lines: int | None = None) -> str:
    """At most ``chars`` characters (and ``lines`` lines), the last one ``…`` when cut."""
    if lines is not None and text.count("\n") >= lines:
        return cut("\n".join(text.split("\n")[:lines]) + ELLIPSIS, chars)
    return cut(text, chars)


def generic_message(record: AnalysisRecord, base_url: str) -> dict[str, Any]:
    """The generic JSON message of an ended analysis (also what the Slack message is made from)."""
    verdict = record.verdict
    request = record.request
    canary = verdict.canary if verdict else request.canary.deployment
    control = request.baseline.deployment
    top = None
    top_cluster = None
    if verdict and verdict.anomalies:
        anomaly = verdict.anomalies[0]
        top_cluster = anomaly.cluster_id
        examples = anomaly.examples or anomaly.baseline_examples
        top = {
            "kind": anomaly.kind,
            "direction": anomaly.direction,
            "cluster_id": anomaly.cluster_id,
            "template": anomaly.template,
            "template_ids": anomaly.template_ids,
            "level": anomaly.level,
            "canary_count": anomaly.canary_count,
            "baseline_count": anomaly.baseline_count,
            "score": anomaly.score,
            "example": _cut(examples[0], EXAMPLE_CHARS) if examples else None,
            "example_from": ("canary" if anomaly.examples else "baseline") if examples else None,
        }
    base = base_url.rstrip("/")
    return {
        "event": "analysis.completed",
        "analysis_id": record.id,
        "service": record.service,
        "canary": canary,
        "baseline": verdict.baseline if verdict else ([control] if control else []),
        "history": request.baseline.history,
        "verdict": verdict.verdict if verdict else "inconclusive",
        "risk": verdict.risk if verdict else 0.0,
        "reason": verdict.reason if verdict else "",
        "reason_code": verdict.reason_code if verdict else None,
        "anomaly_count": verdict.anomaly_count if verdict else 0,
        "canary_events": verdict.canary_events if verdict else 0,
        "baseline_events": verdict.baseline_events if verdict else 0,
        "sensitivity": request.sensitivity,
        "started_at": _time(record.started_at),
        "finished_at": _time(record.finished_at),
        "top_anomaly": top,
        "url": analysis_page(base, record.id, top_cluster),
        "analysis_url": f"{base}/v1/analyses/{record.id}",
        "environment": request.environment,
        "release": request.release,
        "release_url": release_page(base, request.release) if request.release else None,
        "labels": request.labels,
        "pipeline_url": request.pipeline_url,
    }


def _mrkdwn(text: str) -> str:
    """Slack's escaping of text: the three control characters, nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    """A Slack code block; a ``` inside cannot close it."""
    return "```" + _mrkdwn(text).replace("```", "`\u200b``") + "```"


def slack_message(message: dict[str, Any]) -> dict[str, Any]:
    """A Slack-compatible message (``text`` for notifications and clients without blocks, and ``blocks``):
    Slack's incoming webhooks; Mattermost and Rocket.Chat read ``text``."""
    verdict = str(message["verdict"])
    service, canary = message["service"], message["canary"]
    baseline = ", ".join(message["baseline"]) or "earlier deployments"
    risk = float(message["risk"])
    link = f"<{message['url']}|Open in logcanary>"
    headline = f"{service} canary {canary}: {verdict.upper()} (risk {risk:.0f})"
    text = f"{ICONS.get(verdict, '')} logcanary: {_mrkdwn(headline)}. {_mrkdwn(str(message['reason']))} {link}"
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(f"{ICONS.get(verdict, '')} {headline}", 140), "emoji": True},
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"*{_mrkdwn(service)}*: canary `{_mrkdwn(canary)}` against {_mrkdwn(baseline)}\n"
                f"{_mrkdwn(_cut(str(message['reason']), 1000))}\n{link}",
            },
        },
    ]
    top = message["top_anomaly"]
    if top is not None:
        kind = top["kind"] if not top.get("direction") else f"{top['kind']} {top['direction']}"
        counts = f"{top['canary_count']} in the canary, {top['baseline_count']} in the baseline"
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*Top anomaly* ({_mrkdwn(str(kind))}, level {_mrkdwn(str(top['level']))}, {counts})\n"
                    + _code(_cut(str(top["template"]), SLACK_TEMPLATE_CHARS)),
                },
            }
        )
        if top["example"] is not None:
            label = "Example" if top["example_from"] == "canary" else "Example (baseline; the canary lost it)"
            example = _cut(str(top["example"]), SLACK_EXAMPLE_CHARS, SLACK_EXAMPLE_LINES)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*{label}*\n{_code(example)}"}})
    count, code = message["anomaly_count"], message["reason_code"]
    context = f"analysis {message['analysis_id']} · {count} anomalies in all · {code}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _mrkdwn(context)}]})
    return {"text": text, "blocks": blocks}


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message for one webhook."""

    webhook: Webhook
    body: bytes
    key: str  # Idempotency-Key: the same for every try
    analysis_id: str


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # absent, or an HTTP date: the backoff decides


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Notifier:
    """Sends the messages of ended analyses to the configured webhooks, from a bounded queue (module docstring)."""

    def __init__(
        self,
        config: NotifySettings,
        base_url: str,
        registry: CollectorRegistry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.base_url = base_url  # of the links in messages (LOGCANARY_PUBLIC_URL)
        self.webhooks = list(config.notify_webhooks)
        self.notify_on = frozenset(config.notify_on)
        self.results = Counter(
            "logcanary_notifications",
            "Webhook messages of ended analyses, by result: sent (2xx), failed (refused, or every try failed), "
            "dropped (the queue was full, or still queued at shutdown).",
            ["result"],
            registry=registry,
        )
        for result in RESULTS:
            self.results.labels(result)  # every series exists from the start
        self._transport = transport
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Delivery] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    def count(self, result: str, n: int = 1) -> None:
        self.results.labels(result).inc(n)

    async def start(self) -> None:
        """Starts the workers (nothing when no webhook is configured)."""
        if not self.webhooks or self._workers:
            return
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=self.config.notify_queue_size)
        self._client = httpx.AsyncClient(
            timeout=self.config.notify_timeout_seconds,
            headers={"User-Agent": f"logcanary/{_version()}"},
            transport=self._transport,
            follow_redirects=False,
        )
        self._workers = [asyncio.create_task(self._work(), name=f"notify-{n}") for n in range(WORKERS)]
        where = ", ".join(f"{webhook.format} {webhook.where}" for webhook in self.webhooks)
        log.info("notifications of %s analyses go to %s", "/".join(sorted(self.notify_on)), where)

    async def stop(self, grace: float) -> None:
        """Waits at most ``grace`` seconds for queued messages, then stops; what is left is counted as dropped."""
        if not self._workers or self._queue is None:
            return
        queue = self._queue
        with contextlib.suppress(TimeoutError):  # at once when nothing is queued or in flight
            await asyncio.wait_for(queue.join(), grace)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        left = queue.qsize()
        if left:
            self.count("dropped", left)
            log.warning("%d notification(s) not sent: the service stopped", left)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._loop = None

    # -- the hook ------------------------------------------------------------------------------------------------

    def analysis_ended(self, record: AnalysisRecord) -> None:
        """Called once where an analysis completes: queues its message for every webhook when its verdict is one
        to notify. From the loop or any other thread; never blocks, never raises."""
        try:
            verdict = record.verdict.verdict if record.verdict else None
            if not self.webhooks or record.status != "completed" or verdict not in self.notify_on:
                return
            message = generic_message(record, self.base_url)
            bodies: dict[NotifyFormat, bytes] = {}
            deliveries = []
            for webhook in self.webhooks:
                body = bodies.get(webhook.format)
                if body is None:
                    shaped = slack_message(message) if webhook.format == "slack" else message
                    body = bodies[webhook.format] = orjson.dumps(shaped)
                deliveries.append(Delivery(webhook, body, f"logcanary-{record.id}-{webhook.format}", record.id))
            loop = self._loop
            if loop is None or loop.is_closed():
                self.count("dropped", len(deliveries))
                log.warning("analysis %s: notification dropped, the notifier is not running", record.id)
            elif _running_loop() is loop:
                self._enqueue(deliveries)
            else:
                loop.call_soon_threadsafe(self._enqueue, deliveries)
        except Exception:  # a notification must never break an analysis
            log.exception("analysis %s: could not queue its notification", record.id)

    def _enqueue(self, deliveries: list[Delivery]) -> None:
        assert self._queue is not None
        for delivery in deliveries:
            try:
                self._queue.put_nowait(delivery)
            except asyncio.QueueFull:
                self.count("dropped")
                log.warning(
                    "analysis %s: notification to %s dropped, %d messages are waiting (LOGCANARY_NOTIFY_QUEUE_SIZE)",
                    delivery.analysis_id,
                    delivery.webhook.where,
                    self._queue.qsize(),
                )

    # -- sending -------------------------------------------------------------------------------------------------

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            delivery = await self._queue.get()
            try:
                self.count("sent" if await self.deliver(delivery) else "failed")
            except asyncio.CancelledError:
                self.count("dropped")
                raise
            except Exception:
                self.count("failed")
                log.exception("analysis %s: notification to %s failed", delivery.analysis_id, delivery.webhook.where)
            finally:
                self._queue.task_done()

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1, 2, ...): doubling, bounded."""
        config = self.config
        return Backoff(config.notify_backoff_seconds, config.notify_backoff_max_seconds, attempt - 1).next(retry_after)

    async def deliver(self, delivery: Delivery) -> bool:
        """Posts one message, trying again on errors worth it; True once a webhook answered 2xx."""
        assert self._client is not None
        attempts = self.config.notify_max_attempts
        headers = {"Content-Type": "application/json", "Idempotency-Key": delivery.key}
        where = delivery.webhook.where
        for attempt in range(1, attempts + 1):
            retry_after = None
            try:
                async with self._client.stream(
                    "POST", delivery.webhook.url, content=delivery.body, headers=headers
                ) as response:  # the answer's body is never read: a receiver cannot make us hold a large one
                    status = response.status_code
                    if 200 <= status < 300:
                        log.info("analysis %s: notified %s (try %d)", delivery.analysis_id, where, attempt)
                        return True
                    if status not in RETRYABLE_STATUS and status < 500:
                        log.warning(
                            "analysis %s: %s refused the notification with HTTP %d: not retried (check the URL)",
                            delivery.analysis_id,
                            where,
                            status,
                        )
                        return False
                    problem = f"HTTP {status}"
                    retry_after = _retry_after(response)
            except httpx.HTTPError as exc:  # refused, reset, timed out, bad TLS ...
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt == attempts:
                log.warning(
                    "analysis %s: notification to %s failed after %d tries, the last with %s",
                    delivery.analysis_id,
                    where,
                    attempts,
                    problem,
                )
                return False
            wait = self.backoff(attempt, retry_after)
            log.info(
                "analysis %s: notification to %s: %s; try %d of %d in %.1f s",
                delivery.analysis_id,
                where,
                problem,
                attempt + 1,
                attempts,
                wait,
            )
            await asyncio.sleep(wait)
        return False
