"""Values of known events: what the engine counts at a template's variable positions, and the verdict rules that
read them (one value rising; a new line logged one for one with a known event)."""

import random
import uuid

import orjson
import pytest

from logcanary.analysis.verdict import analyze
from logcanary.engine.masking import Masker
from logcanary.engine.memory import stats_bytes
from logcanary.engine.model import Engine
from logcanary.engine.stats import MAX_VALUES, TemplateStats
from logcanary.schemas import Verdict
from logcanary.store.codec import StoredState, _stats_data, _stats_from, encode_deployment, encode_miner, restore

SERVICE = "metadata"
PATHS = [f"/2009-04-04/meta-data/{name}" for name in ("hostname", "instance-type", "local-ipv4", "public-keys")]
TARGET = "/2009-04-04/meta-data/instance-id"
START = 1_700_000_000.0


def request(rng: random.Random, path: str) -> str:
    """A request line as OpenStack's metadata API logs it: a request id, a client, the path, numbers."""
    return (
        f"nova.metadata.wsgi.server [req-{uuid.UUID(int=rng.getrandbits(128))} - - - - -] 10.0.0.{rng.randint(2, 250)}"
        f' "GET {path} HTTP/1.1" status: {rng.choice((200, 404))} len: {rng.randint(100, 900)} time: {rng.random():.7f}'
    )


def ingest(engine: Engine, deployment: str, lines: list[str], start: float) -> None:
    for index, line in enumerate(lines):
        engine.observe(SERVICE, deployment, line, start + index * 2.0, "api-0", "INFO")


def background(rng: random.Random, count: int) -> list[str]:
    """Other traffic of the service, the same on both sides: it keeps the verdict's data sufficient."""
    tasks = ("sync", "audit", "heal")
    return [f"periodic task {rng.choice(tasks)} ran in {rng.randint(1, 99)} ms" for _ in range(count)]


def requests(rng: random.Random, target: int, others: int) -> list[str]:
    lines = [request(rng, TARGET) for _ in range(target)] + [request(rng, rng.choice(PATHS)) for _ in range(others)]
    rng.shuffle(lines)
    return lines


def judged(canary_target: int, canary_others: int, seed: int = 1) -> tuple[Engine, Verdict]:
    rng = random.Random(seed)
    engine = Engine()
    ingest(engine, "v1", requests(rng, 4, 36) + background(rng, 200), START)
    ingest(engine, "v2", requests(rng, canary_target, canary_others) + background(rng, 200), START + 3600)
    return engine, analyze(engine.service(SERVICE), canary="v2", baseline=["v1"])


def request_stats(engine: Engine, deployment: str) -> TemplateStats:
    model = engine.service(SERVICE).deployments[deployment]
    return next(stats for template, stats in model.stats.items() if '"GET' in template.text)


def test_the_engine_counts_the_path_but_never_ids_or_numbers() -> None:
    engine, _ = judged(10, 30)
    stats = request_stats(engine, "v1")
    template = next(t for t in engine.service(SERVICE).deployments["v1"].stats if '"GET' in t.text)
    counted = {template.tokens[position] for position in stats.positions}
    assert "<*>" in counted  # the path's position (masked whole as a path)
    by_position = stats.value_counts()
    paths = next(values for values in by_position.values() if TARGET in values)
    assert paths[TARGET] == 4
    assert sum(paths.values()) == 40
    for values in by_position.values():  # the client address, status, length and time are values alone: not counted
        assert not any(value.startswith(("10.0.0.", "len", "time")) or value.isdigit() for value in values)


def test_one_path_of_a_known_request_rising_fails_the_canary() -> None:
    """The metadata API's request line: 4 of 40 requests ask for the instance id in the baseline, 40 of 40 in the
    canary (a guest retrying what it cannot read). The event's count barely moves; its value does."""
    _, verdict = judged(40, 0)
    assert verdict.verdict == "fail", verdict.reason
    top = verdict.anomalies[0]
    assert top.kind == "frequency" and top.direction == "up"
    assert "/<*>/meta-data/instance-id" in top.template
    assert (top.baseline_count, top.canary_count) == (4, 40)
    assert all('"GET ' in example for example in top.examples)


def test_the_same_mix_of_paths_passes() -> None:
    _, verdict = judged(4, 36, seed=2)
    assert verdict.verdict == "pass", verdict.anomalies


def test_a_value_the_baseline_never_logged_is_not_a_rise() -> None:
    """A new deployment brings new names (pods, hosts, versions): a value never seen is not tested."""
    rng = random.Random(3)
    engine = Engine()
    ingest(engine, "v1", [f"worker pod-alpha ready in {rng.randint(1, 99)} ms" for _ in range(60)], START)
    ingest(engine, "v1", [f"worker pod-beta ready in {rng.randint(1, 99)} ms" for _ in range(60)], START + 200)
    ingest(engine, "v1", [f"worker pod-gamma ready in {rng.randint(1, 99)} ms" for _ in range(60)], START + 400)
    ingest(engine, "v2", [f"worker pod-delta ready in {rng.randint(1, 99)} ms" for _ in range(120)], START + 3600)
    verdict = analyze(engine.service(SERVICE), canary="v2", baseline=["v1"])
    assert verdict.verdict == "pass", verdict.anomalies


def test_crowded_values_drop_the_position_of_ids_and_keep_the_others() -> None:
    stats = TemplateStats()
    tokens = ["user", "<*>", "did", "<*>"]
    stats.track(tokens, ["user", "u-first", "did", "login"])
    for index in range(3 * MAX_VALUES):
        words = ["user", f"u-{index:04d}x", "did", ("login", "logout")[index % 2]]
        stats.add(START + index, "h", 1, " ".join(words), words=words)
    assert stats.positions == (3,)  # the ids' position went once it showed more values than the room
    assert stats.value_counts() == {3: {"login": 3 * MAX_VALUES // 2, "logout": 3 * MAX_VALUES // 2}}  # none lost


def test_values_survive_the_store_and_count_in_the_memory_estimate() -> None:
    engine, _ = judged(10, 30)
    stats = request_stats(engine, "v2")
    assert stats.values and stats.value_bytes > 0
    restored = _stats_from(_stats_data(stats))
    assert restored.positions == stats.positions
    assert restored.value_counts() == stats.value_counts()
    assert restored.value_bytes == stats.value_bytes
    assert stats_bytes(restored) == stats_bytes(stats)


def test_merged_stats_keep_the_values_both_count() -> None:
    left, right = TemplateStats(), TemplateStats()
    left.track(["a", "<*>", "<*>"], ["a", "x", "red"])
    right.track(["a", "<*>", "<*>"], ["a", "7", "blue"])  # its second position holds a number: not counted
    left.add(START, "h", 1, "a x red", words=["a", "x", "red"])
    right.add(START, "h", 1, "a 7 blue", words=["a", "7", "blue"])
    merged = TemplateStats()
    merged.merge(left)
    merged.merge(right)
    assert merged.positions == (2,)
    assert merged.value_counts() == {2: {"red": 1, "blue": 1}}


def companions(level: str, new_line: str, one_for_one: bool) -> Verdict:
    """A flow whose known line is followed, in the canary, by a new line: in step with it, or not."""
    rng = random.Random(4)
    engine = Engine()
    for index in range(300):
        engine.observe(SERVICE, "v1", f"Query product with name {rng.randint(1, 9)}x", START + index * 0.5, "p", "INFO")
        engine.observe(SERVICE, "v1", f"List products took {rng.randint(1, 99)} ms", START + index * 0.5, "p", "INFO")
    for index in range(300):
        at = START + 3600 + index * 0.5
        engine.observe(SERVICE, "v2", f"Query product with name {rng.randint(1, 9)}x", at, "p", "INFO")
        engine.observe(SERVICE, "v2", f"List products took {rng.randint(1, 99)} ms", at, "p", "INFO")
        if one_for_one or index % 3 == 0:
            engine.observe(SERVICE, "v2", new_line, at + 0.001, "p", level)
    return analyze(engine.service(SERVICE), canary="v2", baseline=["v1"])


def test_a_new_info_line_logged_one_for_one_with_a_known_event_is_its_second_line() -> None:
    verdict = companions("INFO", "Query product successfully", one_for_one=True)
    assert verdict.verdict == "pass", verdict.anomalies


@pytest.mark.parametrize(
    ("level", "line", "one_for_one"),
    [
        ("ERROR", "Query product successfully", True),  # an error is judged as any error
        ("INFO", "Query product failed: no catalog", True),  # its words name a failure
        ("INFO", "Query product successfully", False),  # not in step with the known event
    ],
)
def test_a_new_line_that_is_no_companion_is_still_new(level: str, line: str, one_for_one: bool) -> None:
    verdict = companions(level, line, one_for_one)
    assert verdict.verdict == "fail"
    assert verdict.anomalies[0].kind == "unknown"


def test_stats_stored_before_values_were_counted_count_them_after_a_restore() -> None:
    """A store written by an earlier version has no values: its templates count them from the restore on."""
    engine, _ = judged(10, 30)
    miner_blob = encode_miner(engine.service(SERVICE).miner)
    deployment = orjson.loads(encode_deployment(engine.service(SERVICE).deployments["v1"]))
    for entry in deployment["templates"]:
        entry.pop("values", None)  # as an earlier version wrote it
    restored = Engine()
    restore(
        restored,
        StoredState(miners={SERVICE: miner_blob}, deployments={(SERVICE, "v1"): orjson.dumps(deployment)}),
    )
    assert not request_stats(restored, "v1").values
    rng = random.Random(5)
    ingest(restored, "v1", [request(rng, TARGET) for _ in range(7)], START + 7200)
    paths = request_stats(restored, "v1").value_counts()
    assert any(counts.get(TARGET) == 7 for counts in paths.values()), paths


def test_values_are_read_only_when_the_window_holds_the_event() -> None:
    """Values are counted over a deployment's life. A long-running baseline whose earlier hours logged another mix of
    paths is not compared by its values with the canary's minutes: the same mix in the window passes."""
    rng = random.Random(6)
    engine = Engine()
    ingest(engine, "v1", [request(rng, rng.choice(PATHS)) for _ in range(400)], START)  # hours before the window
    window_start = START + 7200
    ingest(engine, "v1", requests(rng, 10, 30) + background(rng, 200), window_start)
    ingest(engine, "v2", requests(rng, 10, 30) + background(rng, 200), window_start)
    service = engine.service(SERVICE)
    window = (window_start, window_start + 3600)
    assert analyze(service, canary="v2", baseline=["v1"], window=window).verdict == "pass"
    whole_life = analyze(service, canary="v2", baseline=["v1"])  # no window: the baseline's whole life is the scope
    assert whole_life.verdict == "fail" and "/<*>/meta-data/instance-id" in whole_life.anomalies[0].template


def test_words_stay_aligned_with_tokens_when_masking_folds_a_unit_or_a_date() -> None:
    """A number and its unit, or a textual date, are one token: it keeps its first word, and the words after it
    stay beside their tokens, so such messages count their values too."""
    masker = Masker()
    tokens, words = masker.split("served /api/users in 12 ms (1.2 KB) for alice")
    assert tokens == ["served", "<*>", "in", "<*>", "for", "alice"]
    assert words == ["served", "/api/users", "in", "12", "for", "alice"]
    tokens, words = masker.split("job nightly started Sun Jul 10 03:55:09 2005 on node-a")
    assert tokens == ["job", "nightly", "started", "<*>", "on", "node-a"]
    assert words == ["job", "nightly", "started", "Sun", "on", "node-a"]
