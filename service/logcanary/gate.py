"""``logcanary gate``: a pipeline step that waits for a canary's verdict and turns it into an exit code.

A plain HTTP client of a running service, usable from any CI system: it starts an analysis
(``POST /v1/analyses``), polls it (``GET /v1/analyses/{id}`` is a pure read; the service evaluates
running analyses every 2 s), prints one progress line per poll, then the final verdict with its
evidence, and exits :data:`EXIT_PASS`, :data:`EXIT_FAIL` or :data:`EXIT_INCONCLUSIVE` (also every
error: unreachable service, an error answer, a timeout, an interruption). SIGINT and SIGTERM cancel
the analysis (``DELETE /v1/analyses/{id}``) before exiting.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from logcanary.common.links import analysis_page
from logcanary.common.text import ELLIPSIS, cut

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_INCONCLUSIVE = 2  # also every error: the pipeline must not go on without a verdict

GRACE_SECONDS = 60.0  # default --timeout: the analysis's duration plus this
UNKNOWN_CANARY_GRACE_SECONDS = 60.0  # default --unknown-canary-grace: a canary's first logs may take this long
OUTAGE_SECONDS = 30.0  # polls keep retrying a service that stops answering (a restart) for this long
EXAMPLE_LINES = 8
EXAMPLE_LINE_CHARS = 240
EXAMPLE_CHARS = 1200
TEMPLATE_CHARS = 240

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # keeps \t and \n; an ESC from a log line never reaches a terminal
_COLOURS = {"pass": "32", "fail": "31", "inconclusive": "33"}

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class GateOptions:
    url: str
    service: str
    canary: str
    baseline: str | None = None
    history: bool = False
    duration: str = "10m"
    sensitivity: str | None = None
    fail_fast: bool = False
    token: str | None = None
    timeout: float | None = None  # overall seconds; None = the analysis's duration + GRACE_SECONDS
    request_timeout: float = 10.0
    poll_interval: float = 2.0
    top: int = 5
    json: bool = False
    unknown_canary_grace: float = UNKNOWN_CANARY_GRACE_SECONDS
    environment: str | None = None
    release: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    pipeline_url: str | None = None


def hopeless(verdict: Json, canary: str, elapsed: float, grace: float) -> str | None:
    """Why no wait can change an inconclusive verdict, so the gate stops at once (None: wait on). A canary named as
    its own baseline stays so; a canary that never logged, past ``grace`` seconds, is most likely misnamed (a typo,
    a version label where the pods carry a hash), and waiting the whole duration would only cost CI minutes."""
    code = verdict.get("reason_code")
    if code == "canary_is_baseline":
        return f"the canary {canary!r} was named as its own baseline: give the stable deployment, or --history"
    if code == "unknown_canary" and elapsed >= grace:
        return (
            f"no event of canary {canary!r} in {elapsed:.0f} s (--unknown-canary-grace {grace:g}): check its name "
            "(GET /v1/services lists the deployments and their identities)"
        )
    return None


def analysis_body(o: GateOptions) -> Json:
    """The ``POST /v1/analyses`` body of the gate's options: the question, and where the analysis belongs (what the
    gate was told, and that the gate asked)."""
    baseline: Json = {"history": o.history}
    if o.baseline:
        baseline["deployment"] = o.baseline
    body: Json = {
        "service": o.service,
        "canary": {"deployment": o.canary},
        "baseline": baseline,
        "duration": o.duration,
        "fail_fast": o.fail_fast,
        "requested_by": "gate",
    }
    if o.sensitivity:
        body["sensitivity"] = o.sensitivity
    given = {"environment": o.environment, "release": o.release, "pipeline_url": o.pipeline_url}
    body.update({key: value for key, value in given.items() if value})
    if o.labels:
        body["labels"] = dict(o.labels)
    return body


class GateError(Exception):
    """Why the gate could not reach a verdict, worded for the CI log."""


class Unreachable(GateError):
    """No answer at all: connection refused, DNS, TLS, a timeout."""


class ErrorAnswer(GateError):
    """The service answered with an error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Interrupted(BaseException):
    """SIGINT or SIGTERM: cancel the analysis, then exit."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@contextmanager
def _signal_handlers(handler: Any) -> Iterator[None]:
    """SIGINT and SIGTERM handled by ``handler`` meanwhile (in the main thread; elsewhere nothing changes)."""
    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _signals_interrupt() -> AbstractContextManager[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted`."""

    def handler(signum: int, _: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    return _signal_handlers(handler)


def _ignore_signals() -> AbstractContextManager[None]:
    """While cancelling, a second Ctrl-C or SIGTERM does not cut the DELETE short."""
    return _signal_handlers(signal.SIG_IGN)


def _describe_detail(detail: Any) -> str:
    if isinstance(detail, list):  # 422: [{"loc": [...], "msg": ...}]
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return "" if detail is None else str(detail)


def _error_answer(method: str, path: str, response: httpx.Response) -> ErrorAnswer:
    """The service's ``{"error", "detail"}`` answer, as one line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        text = f"{body['error']}: {_describe_detail(body.get('detail'))}".rstrip(": ")
    else:
        text = _clean(response.text.strip())[:300] or response.reason_phrase
    hint = ""
    if response.status_code in (401, 403):
        hint = " (give --token or set LOGCANARY_API_TOKEN)"
    return ErrorAnswer(f"{method} {path} answered {response.status_code} {text}{hint}", response.status_code)


def _clean(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def cut_example(text: str) -> list[str]:
    """A verbatim log line, cut to a readable size: at most EXAMPLE_LINES lines of EXAMPLE_LINE_CHARS."""
    lines = _clean(text.rstrip("\n")).split("\n")
    shown: list[str] = []
    used = 0
    for line in lines[:EXAMPLE_LINES]:
        if used >= EXAMPLE_CHARS:
            break
        room = min(EXAMPLE_LINE_CHARS, EXAMPLE_CHARS - used)
        shown.append(line if len(line) <= room else cut(line, room))
        used += min(len(line), room)
    if len(shown) < len(lines):
        shown.append(f"{ELLIPSIS} ({len(lines) - len(shown)} more lines)")
    return shown


def one_line(text: str, limit: int) -> str:
    return cut(" ".join(_clean(text).split()), limit)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class GateReport:
    """What a gate prints: progress lines, then the verdict with its evidence (to stderr with ``json``, where
    stdout gets the final document), and the exit code the verdict means. Shared by the HTTP gate and the one that
    judges a log store in-process (:mod:`logcanary.judge`)."""

    def __init__(self, out: TextIO, err: TextIO, *, json: bool = False, top: int = 5) -> None:
        self.stdout = out
        self.err = err
        self.json = json
        self.top = top
        self.out = err if json else out
        self.colour = self.out.isatty() and "NO_COLOR" not in os.environ

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def paint(self, verdict: str, width: int = 0) -> str:
        """The verdict, coloured on a terminal (never in a CI log), padded to ``width``."""
        code = _COLOURS.get(verdict)
        padding = " " * max(0, width - len(verdict))
        return (f"\x1b[1;{code}m{verdict}\x1b[0m" if self.colour and code else verdict) + padding

    def progress(self, analysis: Json, elapsed: float) -> None:
        verdict = analysis.get("verdict") or {}
        status = str(analysis.get("status"))
        if not verdict:
            self.say(f"  {elapsed:5.0f}s  {status:<9}  (not evaluated yet)")
            return
        name = str(verdict.get("verdict"))
        why = f"  ({verdict.get('reason_code')})" if name == "inconclusive" else ""
        self.say(
            f"  {elapsed:5.0f}s  {status:<9}  canary events {verdict.get('canary_events', 0):>7}"
            f"  verdict {self.paint(name, 12)}  risk {float(verdict.get('risk', 0)):5.1f}{why}"
        )

    def document(self, data: Json) -> None:
        """With ``json``: the final document on stdout."""
        if self.json:
            print(json.dumps(data, indent=2, ensure_ascii=False), file=self.stdout, flush=True)

    def report(self, verdict: Json, details: str | None) -> int:
        """The verdict with its evidence, and the exit code it means."""
        say = self.say
        name = str(verdict.get("verdict"))
        say()
        say(f"verdict: {self.paint(name)}  risk {float(verdict.get('risk', 0)):.1f}  ({verdict.get('reason_code')})")
        say(f"reason: {one_line(str(verdict.get('reason', '')), 400)}")
        baseline = ", ".join(verdict.get("baseline") or []) or "none"
        say(
            f"canary {verdict.get('canary')}: {verdict.get('canary_events', 0)} events;"
            f" baseline {baseline}: {_number(verdict.get('baseline_events', 0))} events"
        )
        anomalies: list[Json] = verdict.get("anomalies") or []
        count = int(verdict.get("anomaly_count", len(anomalies)))
        if anomalies:
            shown = anomalies[: self.top]
            strongest = f", the {len(shown)} strongest" if len(shown) < count else ""
            say(f"anomalies: {count}{strongest}:")
            for number, anomaly in enumerate(shown, start=1):
                for line in describe_anomaly(anomaly, number):
                    say(line)
        suppressed = verdict.get("suppressed") or []
        if suppressed:
            say(f"suppressed by feedback rules: {len(suppressed)} event type(s)")
        source = verdict.get("source")
        if isinstance(source, dict):
            lines = ", ".join(f"{side} {count}" for side, count in (source.get("lines") or {}).items())
            say(f"pulled from {source.get('type')} {source.get('url')}: {lines} lines")
        if details:
            say(f"details: {details}")
        return EXIT_PASS if name == "pass" else EXIT_FAIL if name == "fail" else EXIT_INCONCLUSIVE


class Gate:
    """One run of the gate: start, poll, report. ``out`` gets progress and the report (stderr with --json)."""

    def __init__(
        self,
        options: GateOptions,
        out: TextIO,
        err: TextIO,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options
        self.err = err
        self.output = GateReport(out, err, json=options.json, top=options.top)
        headers = {"Accept": "application/json", "User-Agent": "logcanary-gate"}
        if options.token:
            headers["Authorization"] = f"Bearer {options.token}"
        self.client = client or httpx.Client(
            base_url=options.url.rstrip("/"), headers=headers, timeout=options.request_timeout
        )
        self.clock = clock
        self.sleep = sleep
        self.analysis_id: str | None = None
        self.say = self.output.say

    # -- HTTP --------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Json | None = None, timeout: float | None = None) -> Json:
        try:
            response = self.client.request(
                method, path, json=body, timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT
            )
        except httpx.TimeoutException as exc:
            raise Unreachable(f"{method} {path}: no answer from {self.options.url} ({type(exc).__name__})") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise Unreachable(f"cannot reach {self.options.url}: {exc or type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise _error_answer(method, path, response)
        try:
            data = response.json()
        except ValueError as exc:
            raise GateError(f"{method} {path} answered {response.status_code} with a body that is not JSON") from exc
        if not isinstance(data, dict):
            raise GateError(f"{method} {path} answered {response.status_code} with unexpected JSON")
        return data

    def poll(self, path: str, deadline: float) -> Json:
        """GET, retrying transport errors and 502-504 (a restarting service) for up to OUTAGE_SECONDS."""
        failing_since: float | None = None
        while True:
            try:
                return self.request("GET", path)
            except GateError as exc:
                transient = isinstance(exc, Unreachable) or (
                    isinstance(exc, ErrorAnswer) and exc.status in (502, 503, 504)
                )
                now = self.clock()
                failing_since = now if failing_since is None else failing_since
                if not transient or now - failing_since >= OUTAGE_SECONDS or now >= deadline:
                    raise
                self.say(f"  (poll failed, retrying: {exc})")
                self.sleep(min(self.options.poll_interval, max(0.0, deadline - now)))

    def cancel(self) -> None:
        if self.analysis_id is None:
            return
        path = f"/v1/analyses/{quote(self.analysis_id, safe='')}"
        try:
            self.request("DELETE", path, timeout=5.0)
            print(f"logcanary gate: cancelled analysis {self.analysis_id}", file=self.err, flush=True)
        except GateError as exc:
            print(f"logcanary gate: could not cancel analysis {self.analysis_id}: {exc}", file=self.err, flush=True)

    # -- the run -----------------------------------------------------------------------------------

    def body(self) -> Json:
        return analysis_body(self.options)

    def run(self) -> int:
        with _signals_interrupt():
            try:
                return self._run()
            except GateError as exc:
                print(f"logcanary gate: error: {exc}", file=self.err, flush=True)
                return EXIT_INCONCLUSIVE
            except Interrupted as exc:
                print(f"logcanary gate: {exc.name} received", file=self.err, flush=True)
                with _ignore_signals():
                    self.cancel()
                return EXIT_INCONCLUSIVE
            finally:
                self.client.close()

    def _run(self) -> int:
        started = self.clock()
        analysis = self.request("POST", "/v1/analyses", self.body())
        self.analysis_id = str(analysis["id"])
        length = seconds_between(analysis.get("started_at"), analysis.get("ends_at"))
        timeout = self.options.timeout if self.options.timeout is not None else (length or 0) + GRACE_SECONDS
        deadline = started + timeout
        against = " and ".join(
            ([f"baseline {self.options.baseline}"] if self.options.baseline else [])
            + (["history"] if self.options.history else [])
        )
        self.say(
            f"logcanary gate: analysis {self.analysis_id}: {self.options.service} canary {self.options.canary}"
            f" against {against}, {_number(length) + ' s' if length is not None else self.options.duration},"
            f" sensitivity {analysis.get('sensitivity')}{', fail fast' if self.options.fail_fast else ''}"
        )
        path = f"/v1/analyses/{quote(self.analysis_id, safe='')}"
        while True:
            self.progress(analysis, self.clock() - started)
            if analysis.get("status") != "running":
                break
            verdict = analysis.get("verdict") or {}
            why = hopeless(verdict, self.options.canary, self.clock() - started, self.options.unknown_canary_grace)
            if why is not None:
                self.cancel()
                print(f"logcanary gate: stopped early: {why}", file=self.err, flush=True)
                self.output.document(analysis)
                return self.output.report(verdict, self.details(analysis))
            now = self.clock()
            if now >= deadline:
                self.cancel()
                raise GateError(f"no final verdict after {timeout:g} s (--timeout); the analysis was cancelled")
            self.sleep(min(self.options.poll_interval, deadline - now))
            analysis = self.poll(path, deadline)
        return self.finish(analysis)

    def progress(self, analysis: Json, elapsed: float) -> None:
        self.output.progress(analysis, elapsed)

    def finish(self, analysis: Json) -> int:
        status = analysis.get("status")
        verdict: Json | None = analysis.get("verdict")
        self.output.document(analysis)
        if status == "cancelled":
            print(f"logcanary gate: analysis {self.analysis_id} was cancelled by someone else", file=self.err)
            return EXIT_INCONCLUSIVE
        if not verdict:
            print(f"logcanary gate: analysis {self.analysis_id} ended ({status}) without a verdict", file=self.err)
            return EXIT_INCONCLUSIVE
        return self.output.report(verdict, self.details(analysis))

    def details(self, analysis: Json) -> str:
        """The page of the analysis as it published this verdict, its top anomaly open: what the gate acted on,
        whenever the link is opened (a live page would judge the last 5 minutes by then)."""
        verdict = analysis.get("verdict") or {}
        anomalies = verdict.get("anomalies") or []
        cluster = str(anomalies[0].get("cluster_id")) if anomalies else None
        return analysis_page(self.options.url, str(analysis.get("id") or self.analysis_id), cluster)


def describe_anomaly(anomaly: Json, number: int) -> list[str]:
    """An anomaly as a few indented lines: kind, counts, template, one verbatim example."""
    kind = str(anomaly.get("kind"))
    direction = anomaly.get("direction")
    label = "drop (frequency, down)" if kind == "frequency" and direction == "down" else kind
    if kind == "frequency" and direction == "up":
        label = "frequency (up)"
    counts = f"canary {anomaly.get('canary_count', 0)}, baseline {anomaly.get('baseline_count', 0)}"
    ratio = anomaly.get("ratio")
    if ratio is not None:
        counts += f", share ratio {float(ratio):.2f}"
    hosts = anomaly.get("hosts") or []
    if hosts:
        counts += f", {len(hosts)} host{'s' if len(hosts) != 1 else ''}"
    lines = [
        f"  {number}. {label}  level {anomaly.get('level')}  score {float(anomaly.get('score', 0)):.1f}  ({counts})",
        f"     template: {one_line(str(anomaly.get('template', '')), TEMPLATE_CHARS)}",
    ]
    if direction == "down":
        examples, title = anomaly.get("baseline_examples") or [], "baseline example"
    else:
        examples, title = anomaly.get("examples") or [], "example"
    if examples:
        first, *rest = cut_example(str(examples[0]))
        lines.append(f"     {title}: {first}")
        lines.extend(f"       {line}" for line in rest)
    return lines


def seconds_between(start: Any, end: Any) -> float | None:
    try:
        return (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds()
    except ValueError:
        return None


def run_gate(options: GateOptions, out: TextIO, err: TextIO) -> int:
    return Gate(options, out, err).run()
