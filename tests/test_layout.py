"""The cluster map's layout (logcanary.analysis.layout): similar event types sit close, and placed ones never move.

The measure of issue 21: for each event type of a Loghub set (mined by logcanary's own miner) that has a similar
one at all, is its nearest dot on the drawn map (960 x 400 pixels) one of its 3 most similar templates (cosine of
words, the measure the clusters use; ties broken by template id, so no tie counts for it)? With the content-only
projection that was about chance (Hadoop 7 of 103, Zookeeper 7 of 42); the layout must reach half on every set.
The sets are ../shared/eval/data/loghub2k (LOGCANARY_LOGHUB_DIR elsewhere); without them the test skips, and fails
with CI=true.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pytest

from logcanary.analysis.layout import ASPECT, place
from logcanary.analysis.projection import MARGIN, position
from logcanary.engine.clustering import cosine, template_terms
from logcanary.engine.masking import Masker
from logcanary.engine.miner import Template, TemplateMiner
from tests.ci import in_ci
from tests.conftest import ROOT

LOGHUB = Path(os.environ.get("LOGCANARY_LOGHUB_DIR", ROOT.parent / "shared" / "eval" / "data" / "loghub2k"))
SETS = ("Hadoop", "Zookeeper", "BGL", "Linux", "Spark", "OpenStack")
WIDTH = 960.0  # the page's map (ui.js MAP_WIDTH x MAP_HEIGHT)

Places = dict[str, tuple[float, float]]


def templates_of(name: str) -> list[Template]:
    path = LOGHUB / f"{name}.csv"
    if not path.exists():
        if in_ci():
            pytest.fail(f"CI=true and the Loghub sets are missing ({path})", pytrace=False)
        pytest.skip(f"the Loghub sets are not at {LOGHUB} (set LOGCANARY_LOGHUB_DIR)")
    miner = TemplateMiner(Masker())
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            miner.add(row["Content"])
    return list(miner.templates.values())


def words(templates: list[Template]) -> dict[str, dict[str, int]]:
    return {t.template_id: dict(template_terms(t)) for t in templates}


def neighbourhoods_kept(templates: list[Template], places: Places, of: set[str] | None = None) -> tuple[int, int]:
    """(dots whose nearest drawn dot is one of their 3 most similar templates, dots with a similar template)."""
    terms = {t.template_id: template_terms(t) for t in templates}
    drawn = {i: (x * WIDTH, y * WIDTH * ASPECT) for i, (x, y) in places.items()}
    kept = counted = 0
    for dot in of or terms:
        similar = sorted(((cosine(terms[dot], terms[o]), o) for o in terms if o != dot), key=lambda s: (-s[0], s[1]))
        if not similar or similar[0][0] == 0:
            continue  # nothing is similar to it: no neighbourhood to keep
        counted += 1
        nearest = min((o for o in terms if o != dot), key=lambda o: math.dist(drawn[dot], drawn[o]))
        kept += nearest in {o for _, o in similar[:3]}
    return kept, counted


@pytest.mark.parametrize("name", SETS)
def test_a_dots_nearest_neighbour_is_one_of_its_most_similar(name: str) -> None:
    templates = templates_of(name)
    places = place(words(templates), {})
    assert set(places) == {t.template_id for t in templates}
    assert all(MARGIN <= x <= 1 - MARGIN and MARGIN <= y <= 1 - MARGIN for x, y in places.values())
    kept, counted = neighbourhoods_kept(templates, places)
    before, _ = neighbourhoods_kept(templates, {t.template_id: position(t) for t in templates})
    print(f"{name}: {len(templates)} templates; nearest dot among the 3 most similar: {kept} of {counted} "
          f"({kept / counted:.0%}), with the projection alone {before} ({before / counted:.0%})")  # fmt: skip
    assert kept >= counted / 2
    assert kept >= 2 * before
    assert place(words(templates), {}) == places  # the same input, the same places, to the bit


def test_placed_dots_never_move_and_new_ones_settle_by_their_neighbours() -> None:
    """A service's map grows: the templates of a first deployment are placed, then those the next ones add. The
    first keep their places exactly; the new ones land by their most similar templates as often as a whole layout
    does (pooled over the sets: they are few per set)."""
    kept = counted = 0
    for name in SETS:
        templates = templates_of(name)
        first = templates[: int(len(templates) * 0.9)]
        placed = place(words(first), {})
        anchors = {t.template_id: (placed[t.template_id], dict(template_terms(t))) for t in first}
        added = place(words(templates), anchors)
        assert set(added) == {t.template_id for t in templates[len(first) :]}  # only the new ones get a place
        assert place(words(templates), anchors) == added
        found, of = neighbourhoods_kept(templates, {**placed, **added}, set(added))
        kept, counted = kept + found, counted + of
    print(f"new event types next to one of their 3 most similar: {kept} of {counted}")
    assert kept >= counted / 2


def test_similar_events_sit_close_and_unrelated_ones_apart() -> None:
    """The issue's example, among Hadoop's event types: a cache hit and a cache miss, 189 px apart before."""
    hit = Template(tokens=["Cache", "hit", "for", "cart", "<*>"])
    miss = Template(tokens=["Cache", "miss", "for", "cart", "<*>"])
    templates = [*templates_of("Hadoop"), hit, miss]
    places = place(words(templates), {})
    drawn = {i: (x * WIDTH, y * WIDTH * ASPECT) for i, (x, y) in places.items()}
    apart = math.dist(drawn[hit.template_id], drawn[miss.template_id])
    pair = (hit.template_id, miss.template_id)
    others = [math.dist(drawn[hit.template_id], p) for i, p in drawn.items() if i not in pair]
    assert apart < min(others)  # each other's nearest
    assert apart < 40
