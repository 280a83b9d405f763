"""The ``logcanary`` command: parse, analyze, schemas, serve, demo and gate.

Each command imports what it needs when it runs: ``parse`` needs the miner alone, and starts in a tenth of the time
it took with the models, river and the verdicts imported (0.35 s) first: a pipeline parsing many small files pays it
per file.
"""

from __future__ import annotations

import argparse
import sys
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from logcanary.engine.miner import Template, TemplateMiner

if TYPE_CHECKING:
    from logcanary.engine.model import Engine
    from logcanary.schemas import LogEvent

EXIT_BAD_INPUT = 2


class InputError(Exception):
    """Bad input, worded for the person who gave it (file and line)."""


def _open_binary(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from exc


def _parse_record(template: Template) -> bytes:
    """One output line of `logcanary parse`."""
    return orjson.dumps({"template_id": template.template_id, "template": template.text}) + b"\n"


def cmd_parse(args: argparse.Namespace) -> int:
    """Templates for raw lines. Each line gets its template's *final* form, so the
    input is mined fully before anything is written (``--streaming`` writes as it goes)."""
    miner = TemplateMiner()
    out = sys.stdout.buffer
    with _open_binary(args.file) as handle:
        if args.streaming:
            for raw in handle:
                out.write(_parse_record(miner.add(raw.decode("utf-8", "replace").rstrip("\r\n"))))
            out.flush()
            return 0
        templates: list[Template] = []
        index_of: dict[int, int] = {}
        order = array("I")
        for raw in handle:
            template = miner.add(raw.decode("utf-8", "replace").rstrip("\r\n"))
            slot = index_of.get(id(template))
            if slot is None:
                slot = index_of[id(template)] = len(templates)
                templates.append(template)
            order.append(slot)
    lines = [_parse_record(template.resolve()) for template in templates]
    out.writelines(lines[slot] for slot in order)
    out.flush()
    return 0


def read_events(path: str) -> Iterator[LogEvent]:
    """Log events from a JSON-lines file; a bad line raises InputError naming file and line."""
    from pydantic import ValidationError

    from logcanary.ingestion.records import truncate_message
    from logcanary.schemas import LogEvent

    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                event = LogEvent.model_validate_json(raw)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(part) for part in error['loc']) or 'event'}: {error['msg']}"
                    for error in exc.errors()[:3]
                )
                raise InputError(f"{path}:{number}: invalid log event: {problems}") from exc
            truncate_message(event)  # as ingestion does: a huge message keeps its head and is judged
            yield event


def load(engine: Engine, path: str, deployment: str) -> str | None:
    """Feeds a file's events into ``deployment`` (whatever deployment they name); returns the service name."""
    service = None
    for event in read_events(path):
        service = service or event.service
        engine.observe("cli", deployment, event.message, event.timestamp.timestamp(), event.host, event.level)
    return service


def _loki_question(args: argparse.Namespace, command: str) -> Any:
    """The question of ``analyze``/``gate`` when the logs are in a Loki (LOGCANARY_LOKI_* fill what is not given)."""
    import os

    from logcanary.judge import DEFAULT_SELECTOR, LokiQuestion

    url = args.loki_url or os.environ.get("LOGCANARY_LOKI_URL")
    if not url or not url.startswith(("http://", "https://")):
        raise InputError(f"{command}: --loki-url (or LOGCANARY_LOKI_URL) must be an http:// or https:// URL")
    if not args.service or not args.canary:
        raise InputError(f"{command}: with Loki, give --service and --canary (and --baseline, else history)")
    canary_selector = args.canary_selector or os.environ.get("LOGCANARY_LOKI_CANARY_SELECTOR") or DEFAULT_SELECTOR
    return LokiQuestion(
        url=url,
        service=args.service,
        canary=args.canary,
        baseline=args.baseline,
        canary_selector=canary_selector,
        baseline_selector=args.baseline_selector or os.environ.get("LOGCANARY_LOKI_BASELINE_SELECTOR"),
        tenant=args.loki_tenant or os.environ.get("LOGCANARY_LOKI_TENANT"),
        token_file=args.loki_token_file or os.environ.get("LOGCANARY_LOKI_TOKEN_FILE"),
        sensitivity=args.sensitivity or "medium",
    )


def _weight(value: str) -> float:
    """A canary weight in percent, strictly between 0 and 100."""
    try:
        weight = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from exc
    if not 0 < weight < 100:
        raise argparse.ArgumentTypeError(f"{value!r} is not between 0 and 100 (exclusive)")
    return weight


def _moment(value: str, flag: str) -> float:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"analyze: {flag} {value!r} is not an RFC 3339 time ({exc})") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def cmd_analyze_loki(args: argparse.Namespace) -> int:
    """A past window of both deployments, pulled from Loki and judged in-process."""
    import asyncio

    from logcanary.judge import analyze_window
    from logcanary.settings import LimitSettings
    from logcanary.sources import SourceError
    from logcanary.verification.errors import BadSource

    question = _loki_question(args, "analyze")
    if not args.start or not args.end:
        raise InputError("analyze: with Loki, give --start and --end (RFC 3339): the window to judge")
    start, end = _moment(args.start, "--start"), _moment(args.end, "--end")
    if end <= start:
        raise InputError("analyze: --end must come after --start")
    try:
        verdict = asyncio.run(analyze_window(question, start, end, LimitSettings()))
    except (BadSource, SourceError) as exc:
        raise InputError(f"analyze: {exc}") from exc
    sys.stdout.buffer.write(orjson.dumps(verdict.model_dump(mode="json")) + b"\n")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    if args.loki_url or args.start or args.end:
        return cmd_analyze_loki(args)
    if not args.baseline or not args.canary:
        raise InputError("analyze: give --baseline and --canary (JSON-lines files), or --loki-url with a window")
    from logcanary.analysis.verdict import analyze
    from logcanary.engine.model import Engine

    engine = Engine()
    history = False
    if args.history:
        load(engine, args.history, "history")
        history = True
    load(engine, args.baseline, "baseline")
    service_name = load(engine, args.canary, "canary")
    verdict = analyze(
        engine.service("cli"),
        canary="canary",
        baseline=["baseline"],
        history=history,
        sensitivity=args.sensitivity or "medium",
        canary_weight=args.canary_weight,
    )
    verdict.service = service_name or "unknown"
    sys.stdout.buffer.write(orjson.dumps(verdict.model_dump(mode="json")) + b"\n")
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    """Writes (or, with --check, compares) the JSON Schemas generated from the pydantic models."""
    from logcanary.schemas import schema_documents

    out = Path(args.out)
    stale = []
    for name, text in schema_documents().items():
        path = out / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
            continue
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print(f"logcanary: schemas out of date (run `make schemas`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Runs the service under uvicorn (uvloop and httptools when installed)."""
    import logging
    from functools import partial

    import uvicorn

    from logcanary.api.app import create_app
    from logcanary.settings import SettingsError, load_settings

    try:
        settings = load_settings()
        logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        app = create_app(settings)  # opens the store: an unusable LOGCANARY_STORE_URL or _STATE_DIR stops here, named
    except SettingsError as exc:
        print(f"logcanary: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level))
    app.state.runtime.exit = partial(setattr, server, "should_exit", True)  # a refused process stops gracefully
    server.run()
    if (refusal := app.state.runtime.refusal) is not None:  # it stopped itself: it must not run beside its peers
        print(f"logcanary: {refusal}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    """The settings a scale-out cluster's replicas share: shown against this environment's, or adopted from it."""
    from logcanary.background import CLUSTER_WATCH_SECONDS
    from logcanary.live.cluster import ClusterSettings
    from logcanary.settings import SettingsError, load_settings
    from logcanary.store.factory import open_shared_store

    try:
        settings = load_settings()
        if settings.mode != "scale-out":
            raise SettingsError(
                "these settings run a single node: a cluster's settings are shared through a postgresql:// "
                "LOGCANARY_STORE_URL and Kafka (LOGCANARY_MODE=scale-out)"
            )
        store = open_shared_store(settings.store)
    except SettingsError as exc:  # a store that cannot be opened included
        print(f"logcanary cluster: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    mine = ClusterSettings(settings.cluster_settings())
    try:
        stored = store.load_cluster()
        if args.action == "adopt":
            store.adopt_cluster(mine.fingerprint, mine.body)
            before = "none" if stored is None else stored[0]
            print(f"the cluster's settings are now these (fingerprint {mine.fingerprint}, was {before}); replicas "
                  f"started with others stop within {CLUSTER_WATCH_SECONDS:g} s")  # fmt: skip
            return 0
    finally:
        store.close()
    if stored is None:
        print(f"no replica has run yet: the first sets the cluster's settings (these: fingerprint {mine.fingerprint})")
        return 0
    cluster = ClusterSettings.parse(stored[1])
    differences = mine.differences(cluster)
    print(f"cluster fingerprint {stored[0]}, this environment's {mine.fingerprint}")
    for line in differences:
        print(f"  {line}")
    if differences:
        print("a replica started with this environment would be refused: `logcanary cluster adopt` makes it the "
              "cluster's")  # fmt: skip
    return 1 if differences else 0


def cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    from logcanary.demo.run import run_demo

    try:
        return asyncio.run(run_demo(port=args.port, seconds=args.seconds, keep_serving=not args.no_wait))
    except KeyboardInterrupt:
        return 0


def cmd_gate_loki(args: argparse.Namespace) -> int:
    """Watches a canary in Loki in-process, no logcanary server: exit 0 pass, 1 fail, 2 otherwise."""
    import asyncio
    import os

    from logcanary.common.durations import parse_duration
    from logcanary.gate import EXIT_INCONCLUSIVE, GateReport
    from logcanary.judge import watch
    from logcanary.settings import LimitSettings

    question = _loki_question(args, "gate")
    try:
        duration = parse_duration(args.duration)
        window = parse_duration(args.baseline_window or os.environ.get("LOGCANARY_LOKI_BASELINE_WINDOW_SECONDS", "30m"))
        grace = parse_duration(args.unknown_canary_grace)
    except ValueError as exc:
        raise InputError(f"gate: {exc}") from exc
    report = GateReport(sys.stdout, sys.stderr, json=args.json, top=args.top)
    job = watch(
        question,
        duration,
        window,
        LimitSettings(),
        report,
        poll=args.poll_interval,
        fail_fast=args.fail_fast,
        unknown_canary_grace=grace,
    )
    try:
        return asyncio.run(job)
    except KeyboardInterrupt:
        print("logcanary gate: interrupted", file=sys.stderr, flush=True)
        return EXIT_INCONCLUSIVE


def cmd_gate(args: argparse.Namespace) -> int:
    """Starts an analysis (one per service of a release) on a running service, waits for the verdict: exit 0 pass,
    1 fail, 2 otherwise."""
    import os

    from logcanary.common.durations import parse_duration
    from logcanary.common.pipelines import pipeline_release, pipeline_url
    from logcanary.gate import GateOptions, run_gate
    from logcanary.gate_release import ReleaseFileError, Target, read_release_file, run_release_gate

    from_file: dict[str, Any] = {}
    targets: list[Target] = []
    if args.release_file:
        try:
            from_file, targets = read_release_file(Path(args.release_file))
        except ReleaseFileError as exc:
            raise InputError(f"gate: --release-file {exc}") from exc
    services: list[str] = args.service or []
    if args.source == "loki":
        if len(services) != 1 or targets:
            raise InputError("gate: with --source loki, give one --service (a release needs a running logcanary)")
        args.service = services[0]
        return cmd_gate_loki(args)
    if not args.url:
        raise InputError("gate: give --url (a running logcanary), or --source loki to judge Loki in-process")
    if not targets:
        if not services or not args.canary:
            raise InputError("gate: give --service and --canary (--service repeated for a release), or --release-file")
        if not args.baseline and not args.history:
            raise InputError("gate: give --baseline DEPLOYMENT, --history, or both")
        targets = [Target(service, args.canary, args.baseline, args.history) for service in services]
    try:
        parse_duration(args.duration)
    except ValueError as exc:
        raise InputError(f"gate: --duration: {exc}") from exc
    try:
        grace = parse_duration(args.unknown_canary_grace)
    except ValueError as exc:
        raise InputError(f"gate: --unknown-canary-grace: {exc}") from exc
    if not args.url.startswith(("http://", "https://")):
        raise InputError(f"gate: --url must start with http:// or https://, not {args.url!r}")
    labels = dict(from_file.get("labels") or {})
    for label in args.label:
        key, equals, value = label.partition("=")
        if not equals or not key:
            raise InputError(f"gate: --label {label!r}: give key=value")
        labels[key] = value
    environment = args.environment or from_file.get("environment")
    release = args.release or from_file.get("release") or pipeline_release(os.environ, environment)
    if len(targets) > 1 and not release:
        import uuid

        release = f"gate-{uuid.uuid4().hex[:12]}"  # a release of several services needs one id to combine them
    for stream in (sys.stdout, sys.stderr):  # verbatim log lines may not fit a CI runner's encoding
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    first = targets[0]
    options = GateOptions(
        url=args.url,
        service=first.service,
        canary=first.canary,
        baseline=first.baseline,
        history=first.history,
        duration=args.duration,
        sensitivity=args.sensitivity,
        fail_fast=args.fail_fast,
        token=args.token or os.environ.get("LOGCANARY_API_TOKEN") or None,
        timeout=args.timeout,
        request_timeout=args.request_timeout,
        poll_interval=args.poll_interval,
        top=args.top,
        json=args.json,
        unknown_canary_grace=grace,
        environment=environment,
        release=release,
        labels=tuple(labels.items()),
        pipeline_url=args.pipeline_url or from_file.get("pipeline_url") or pipeline_url(os.environ),
    )
    if len(targets) > 1 or args.release_file:
        return run_release_gate(options, targets, sys.stdout, sys.stderr)
    return run_gate(options, sys.stdout, sys.stderr)


_DEFAULT_SELECTOR = '{app="$service", version="$deployment"}'


def _loki_arguments(command: argparse.ArgumentParser) -> None:
    if not any(action.dest == "service" for action in command._actions):
        command.add_argument("--service", help="Loki: the service ($service in the selectors)")
    command.add_argument("--loki-url", help="Loki's base URL (default $LOGCANARY_LOKI_URL)")
    command.add_argument("--loki-tenant", help="X-Scope-OrgID (default $LOGCANARY_LOKI_TENANT)")
    command.add_argument("--loki-token-file", help="a file holding a bearer token (default $LOGCANARY_LOKI_TOKEN_FILE)")
    command.add_argument("--canary-selector", help=f"LogQL template of the canary's logs (default {_DEFAULT_SELECTOR})")
    command.add_argument("--baseline-selector", help="LogQL template of the baseline's logs (default: the canary's)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logcanary", description="Streaming log-anomaly verdicts for canaries.")
    commands = parser.add_subparsers(dest="command", required=True)

    parse = commands.add_parser("parse", help="template per raw log line, as JSON lines")
    parse.add_argument("file", nargs="?", default="-", help="file of raw messages, one per line ('-' = stdin)")
    parse.add_argument("--streaming", action="store_true", help="write each line's template as soon as it is read")
    parse.set_defaults(func=cmd_parse)

    check = commands.add_parser(
        "analyze",
        help="verdict on a canary against a baseline, as JSON: from JSON-lines files, or a past window in Loki",
        epilog="Files: --baseline B.jsonl --canary C.jsonl. Loki: --loki-url URL --service S --canary C --baseline B "
        "--start RFC3339 --end RFC3339 (deployment names; selectors default to LOGCANARY_LOKI_* or "
        f"{_DEFAULT_SELECTOR}). Exit 2 on bad input or a store error.",
    )
    check.add_argument("--baseline", help="JSON-lines log events of the baseline (Loki: the baseline deployment)")
    check.add_argument("--canary", help="JSON-lines log events of the canary (Loki: the canary deployment)")
    check.add_argument("--history", help="JSON-lines log events of earlier deployments (time-decayed)")
    check.add_argument("--sensitivity", choices=("low", "medium", "high"), default="medium")
    check.add_argument(
        "--canary-weight",
        type=_weight,
        metavar="PERCENT",
        help="files: the canary's share of traffic (0-100, exclusive) when a router split it; its events per second "
        "are then expected at weight / (100 - weight) of the baseline's (default: as many per host)",
    )
    _loki_arguments(check)
    check.add_argument("--start", help="Loki: start of the window judged (RFC 3339)")
    check.add_argument("--end", help="Loki: end of the window judged (RFC 3339)")
    check.set_defaults(func=cmd_analyze)

    schemas = commands.add_parser("schemas", help="write JSON Schemas of the contracts")
    schemas.add_argument("--out", default="schemas", help="folder to write into (default: schemas)")
    schemas.add_argument("--check", action="store_true", help="exit 1 when the files differ from the models")
    schemas.set_defaults(func=cmd_schemas)

    serve = commands.add_parser("serve", help="run the HTTP service (settings from LOGCANARY_* variables)")
    serve.set_defaults(func=cmd_serve)

    cluster = commands.add_parser(
        "cluster",
        help="a scale-out cluster's shared settings: show them against this environment's, or adopt these",
        description="Replicas of one cluster must share the settings that change counts or verdicts; the first "
        "replica records them in the shared store and a replica started with others is refused. `show` compares "
        "the LOGCANARY_* environment with them (exit 1 when they differ); `adopt` makes the environment's the "
        "cluster's, and running replicas started with others stop (restart them with the new settings).",
    )
    cluster.add_argument("action", choices=("show", "adopt"))
    cluster.set_defaults(func=cmd_cluster)

    demo = commands.add_parser("demo", help="embedded broker + service + replayed canary with an NPE bug")
    demo.add_argument("--port", type=int, default=8080, help="HTTP port (a free one if taken)")
    demo.add_argument("--seconds", type=float, default=30.0, help="how long the canary is watched")
    demo.add_argument("--no-wait", action="store_true", help="exit after the final verdict (0 when it failed)")
    demo.set_defaults(func=cmd_demo)

    gate = commands.add_parser(
        "gate",
        help="CI step: analyse a canary on a running service or in Loki; exit 0 pass, 1 fail, 2 otherwise",
        description="Watches a canary for --duration and exits by its final verdict: on a running logcanary (--url), "
        "or pulling its logs from Grafana Loki in-process with no logcanary server (--source loki).",
        epilog="exit codes: 0 pass, 1 fail, 2 inconclusive or any error (unreachable service or store, bad input, "
        "an interruption). Exit 2 comes at once, not after --duration, for a canary named as its own baseline, and "
        "after --unknown-canary-grace for a canary that never logged.",
    )
    gate.add_argument("--url", help="the service, e.g. http://logcanary:8080 (not with --source loki)")
    gate.add_argument(
        "--source", choices=("loki",), help="judge the canary's logs in Loki in-process, with no logcanary server"
    )
    gate.add_argument(
        "--service",
        action="append",
        help="the service; repeat it for a release of several (each with --canary and --baseline), which exits by "
        "the release's combined verdict",
    )
    _loki_arguments(gate)
    gate.add_argument("--baseline-window", help="Loki: the baseline's recent window pulled first (default 30m)")
    gate.add_argument("--canary", help="canary deployment (version label or pod-template hash)")
    gate.add_argument("--baseline", help="stable deployment running beside the canary")
    gate.add_argument("--history", action="store_true", help="compare with the service's earlier deployments")
    gate.add_argument("--duration", default="10m", help="how long to watch: seconds or 90s, 10m, 1h (default 10m)")
    gate.add_argument("--sensitivity", choices=("low", "medium", "high"), help="default: the service's")
    gate.add_argument("--fail-fast", action="store_true", help="stop as soon as the verdict fails")
    gate.add_argument(
        "--unknown-canary-grace",
        default="60s",
        help="stop with exit 2 when the canary has logged nothing after this long (a misnamed canary; default 60s, "
        "0 = at the first poll); a canary named as its own baseline stops the gate at once",
    )
    gate.add_argument("--token", help="bearer token (default: $LOGCANARY_API_TOKEN)")
    gate.add_argument("--timeout", type=float, help="give up after this many seconds (default: duration + 60)")
    gate.add_argument("--request-timeout", type=float, default=10.0, help="seconds per HTTP request (default 10)")
    gate.add_argument("--poll-interval", type=float, default=2.0, help="seconds between polls (default 2)")
    gate.add_argument("--top", type=int, default=5, help="anomalies to print (default 5)")
    gate.add_argument("--json", action="store_true", help="print the final analysis as JSON (progress to stderr)")
    gate.add_argument("--environment", help="the environment deployed to (dev, qa, prod...)")
    gate.add_argument(
        "--release",
        help="the release id its analyses share (default: from the CI run, e.g. gitlab-<CI_PIPELINE_ID>-<env>; for "
        "several services without one, a new id)",
    )
    gate.add_argument("--label", action="append", default=[], help="key=value, repeatable")
    gate.add_argument(
        "--pipeline-url",
        help="the pipeline run (default: CI_PIPELINE_URL, the GitHub Actions run, BUILD_URL, BUILDKITE_BUILD_URL)",
    )
    gate.add_argument(
        "--release-file",
        help='a JSON release: {"release", "environment", "labels", "services": [{"service", "canary", "baseline"}]}',
    )
    gate.set_defaults(func=cmd_gate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"logcanary: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
