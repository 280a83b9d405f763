"""``logcanary gate`` over a release of several services: one analysis per service, all sharing the release id,
then ``GET /v1/releases/{release}`` polled until none runs. It prints one line per service and one link to the
release, and exits by the combined verdict (fail if any service fails; see README "Releases").

The HTTP machinery (retries through a restart, cancelling on SIGINT/SIGTERM, the error wording) is the single
gate's (:class:`logcanary.gate.Gate`); only what differs for several analyses is here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from logcanary.common.links import release_page
from logcanary.gate import (
    EXIT_FAIL,
    EXIT_INCONCLUSIVE,
    EXIT_PASS,
    GRACE_SECONDS,
    Gate,
    GateError,
    GateOptions,
    Json,
    analysis_body,
    cut_example,
    one_line,
    seconds_between,
)

TEMPLATE_CHARS = 160
EXAMPLE_LINES = 3  # of a failing service's top example: enough for the message and its exception


@dataclass(frozen=True, slots=True)
class Target:
    """One service of the release: its canary, and what it is compared with."""

    service: str
    canary: str
    baseline: str | None = None
    history: bool = False


class ReleaseFileError(ValueError):
    """A release file that cannot be used, worded for the CI log."""


def read_release_file(path: Path) -> tuple[dict[str, Any], list[Target]]:
    """A release file (JSON): ``{"release", "environment", "labels", "services": [{"service", "canary",
    "baseline", "history"}]}``; returns its metadata and its targets."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReleaseFileError(f"{path}: {exc}") from exc
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, list) or not services:
        raise ReleaseFileError(f'{path}: give "services": a list of {{"service", "canary", "baseline"}}')
    targets = []
    for number, item in enumerate(services, start=1):
        if not isinstance(item, dict) or not item.get("service") or not item.get("canary"):
            raise ReleaseFileError(f"{path}: services[{number}] needs service and canary")
        if not item.get("baseline") and not item.get("history"):
            raise ReleaseFileError(f"{path}: services[{number}] needs baseline, or history: true")
        targets.append(
            Target(str(item["service"]), str(item["canary"]), item.get("baseline"), bool(item.get("history")))
        )
    metadata = {key: data[key] for key in ("release", "environment", "labels", "pipeline_url") if key in data}
    return metadata, targets


class ReleaseGate(Gate):
    """One gate run over several services: start them all, poll the release, report each and the whole."""

    def __init__(self, options: GateOptions, targets: list[Target], out: TextIO, err: TextIO, **kwargs: Any) -> None:
        if not options.release:
            raise ValueError("a release gate needs a release id")
        super().__init__(options, out, err, **kwargs)
        self.targets = targets
        self.started: dict[str, str] = {}  # service -> analysis id
        self.ended: set[str] = set()  # analyses seen completed or cancelled: nothing to cancel
        self.release: str = options.release

    def target_body(self, target: Target) -> Json:
        options = dataclasses.replace(
            self.options,
            service=target.service,
            canary=target.canary,
            baseline=target.baseline,
            history=target.history,
        )
        return analysis_body(options)

    def cancel(self) -> None:
        """Cancels every analysis of the release this gate started that still runs."""
        for analysis_id in self.started.values():
            if analysis_id in self.ended:
                continue
            self.analysis_id = analysis_id
            super().cancel()
        self.analysis_id = None

    def _run(self) -> int:
        started = self.clock()
        longest = 0.0
        for target in self.targets:
            try:
                analysis = self.request("POST", "/v1/analyses", self.target_body(target))
            except GateError:
                self.cancel()  # a release is judged whole or not at all
                raise
            self.started[target.service] = str(analysis["id"])
            longest = max(longest, seconds_between(analysis.get("started_at"), analysis.get("ends_at")) or 0.0)
        timeout = self.options.timeout if self.options.timeout is not None else longest + GRACE_SECONDS
        deadline = started + timeout
        where = f" in {self.options.environment}" if self.options.environment else ""
        self.say(f"logcanary gate: release {self.release}{where}: {len(self.targets)} services")
        for target in self.targets:
            against = " and ".join(
                ([f"baseline {target.baseline}"] if target.baseline else []) + (["history"] if target.history else [])
            )
            self.say(f"  {target.service}: canary {target.canary} against {against}: {self.started[target.service]}")
        path = f"/v1/releases/{quote(self.release, safe='')}"
        release = self.poll(path, deadline)
        while True:
            self.progress_release(release, self.clock() - started)
            if release.get("status") != "running" or not self._ours_running(release):
                break
            if self.options.fail_fast and release.get("verdict") == "fail":
                self.cancel()
                break
            now = self.clock()
            if now >= deadline:
                self.cancel()
                raise GateError(f"no final verdict after {timeout:g} s (--timeout); the analyses were cancelled")
            self.sleep(min(self.options.poll_interval, deadline - now))
            release = self.poll(path, deadline)
        return self.report_release(release)

    def _ours_running(self, release: Json) -> bool:
        """Whether an analysis this gate started still runs (noting those that ended)."""
        mine = set(self.started.values())
        services = [s for s in release.get("services", []) if s.get("analysis_id") in mine]
        self.ended.update(str(s["analysis_id"]) for s in services if s.get("status") != "running")
        return len(self.ended) < len(mine)

    def progress_release(self, release: Json, elapsed: float) -> None:
        parts = [
            f"{s.get('service')} {self.output.paint(str(s.get('verdict')))} {_risk(s)}"
            for s in release.get("services", [])
        ]
        self.say(f"  {elapsed:5.0f}s  {release.get('status'):<9}  " + "  |  ".join(parts))

    def report_release(self, release: Json) -> int:
        """Each service's line (its top anomaly under it when it did not pass), one link to the release, and the
        exit code of the combined verdict."""
        self.output.document(release)
        say = self.say
        services: list[Json] = release.get("services", [])
        width = max((len(str(s.get("service"))) for s in services), default=0)
        name = str(release.get("verdict"))
        say()
        say(f"release {self.release}: {self.output.paint(name)}  ({one_line(str(release.get('reason', '')), 300)})")
        for service in services:
            verdict = str(service.get("verdict"))
            say(
                f"  {service.get('service')!s:<{width}}  {self.output.paint(verdict, 12)}  {_risk(service)}"
                f"  canary {service.get('canary')}  ({service.get('status')})"
            )
            top = service.get("top_anomaly")
            if verdict != "pass" and isinstance(top, dict):
                say(f"      {top.get('kind')} {top.get('level')}: {one_line(str(top.get('template')), TEMPLATE_CHARS)}")
                if top.get("example"):  # its head: the message and the exception under it
                    first, *rest = cut_example(str(top["example"]))[:EXAMPLE_LINES]
                    say(f"      example: {first}")
                    for line in rest:
                        say(f"        {line}")
        say(f"release page: {release_page(self.options.url, self.release)}")
        return EXIT_PASS if name == "pass" else EXIT_FAIL if name == "fail" else EXIT_INCONCLUSIVE


def _risk(service: Json) -> str:
    risk = service.get("risk")
    return f"risk {float(risk):5.1f}" if risk is not None else "risk     -"


def run_release_gate(options: GateOptions, targets: list[Target], out: TextIO, err: TextIO) -> int:
    return ReleaseGate(options, targets, out, err).run()
