"""The cluster map's projection (logcanary.analysis.projection): a template's place depends on its content alone."""

from __future__ import annotations

import math
import random
import statistics
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from logcanary.analysis import projection
from logcanary.analysis.projection import MARGIN, features, position, project
from logcanary.engine.masking import Masker
from logcanary.engine.miner import Template, TemplateMiner

from .conftest import ROOT

NPE = Template(
    tokens=["Failed", "to", "process", "payment", "<*>", "java.lang.NullPointerException:", "Cannot", "invoke"],
    signature="java.lang.NullPointerException|EncryptionService.encrypt|PaymentProcessor.tokenize",
)
LOGIN = Template(tokens=["User", "<*>", "logged", "in", "from", "<*>"])


def test_positions_are_pinned() -> None:
    """Changing the projection moves every dot on every map: it must be a deliberate change (bump PROJECTION)."""
    assert projection.PROJECTION == "words-blake2b-gaussian-v1"
    assert position(NPE) == (0.822986, 0.523976)
    assert position(LOGIN) == (0.35799, 0.513617)


def test_the_same_in_every_process() -> None:
    """No salted hash() anywhere: another interpreter with another PYTHONHASHSEED places templates identically."""
    code = (
        "from tests.test_projection import NPE, LOGIN; from logcanary.analysis.projection import position; "
        "print(position(NPE), position(LOGIN))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ("0", "1", "12345")
    }
    assert outputs == {f"{position(NPE)} {position(LOGIN)}\n"}


def test_a_position_depends_on_the_template_alone() -> None:
    """Other templates, counts, order of arrival or a cache do not move it."""
    before = position(NPE)
    miner = TemplateMiner(Masker(()))
    for n in range(200):
        miner.add(f"unrelated event {n} type{n % 7} happened")
    projection._positions.clear()
    projection.direction.cache_clear()
    assert position(NPE) == before
    copy = Template(tokens=list(NPE.tokens), signature=NPE.signature, size=999)
    assert position(copy) == before


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=30).filter(lambda t: not t.isspace()), min_size=0, max_size=40))
def test_positions_stay_on_the_map(tokens: list[str]) -> None:
    x, y = position(Template(tokens=tokens or ["<*>"]))
    assert MARGIN <= x <= 1 - MARGIN
    assert MARGIN <= y <= 1 - MARGIN


def test_similar_templates_sit_closer_than_unrelated_ones() -> None:
    """Templates that share most words land near each other; unrelated ones are on average three times further."""
    rng = random.Random(7)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 10))) for _ in range(3000)]
    near, far = [], []
    for _ in range(300):
        base = rng.sample(words, 8)
        variant = list(base)
        variant[rng.randrange(8)] = rng.choice(words)
        other = rng.sample(words, 8)
        a, b, c = (position(Template(tokens=t)) for t in (base, variant, other))
        near.append(math.dist(a, b))
        far.append(math.dist(a, c))
    assert statistics.mean(far) > 2.5 * statistics.mean(near)
    assert sum(n < f for n, f in zip(near, far, strict=True)) / len(near) > 0.8


def test_templates_with_the_same_words_do_not_cover_each_other() -> None:
    """Two templates that differ only in where their values are: the same words, a small offset apart."""
    a = Template(tokens=["Cache", "hit", "for", "<*>"])
    b = Template(tokens=["Cache", "hit", "<*>", "for"])
    assert features(a) == features(b)
    assert 0 < math.dist(position(a), position(b)) < 0.03


def test_a_trace_is_placed_by_its_exception_and_frames_too() -> None:
    """The same message thrown from another place is another event type, near the first."""
    elsewhere = Template(tokens=NPE.tokens, signature="java.lang.NullPointerException|KeyStore.load|Boot.main")
    assert position(elsewhere) != position(NPE)
    assert math.dist(position(elsewhere), position(NPE)) < math.dist(position(LOGIN), position(NPE))


def test_project_is_a_weighted_random_projection() -> None:
    """Scaling every weight changes nothing (the vector is normalised); an empty one sits in the middle."""
    weights = features(NPE)
    assert project({k: 3 * v for k, v in weights.items()}, "id") == project(weights, "id")
    x, y = project({}, "id")
    assert abs(x - 0.5) < 0.01 and abs(y - 0.5) < 0.01
