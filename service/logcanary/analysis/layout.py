"""Where event types sit on the cluster map: a layout over their similarity, with anchored places.

A reviewer reads the map by neighbourhood: a red dot among grey ones of its family is a variant of a known event, a
red dot on its own is something new. A content-only projection (:mod:`logcanary.analysis.projection`) kept dots
still but not close: two dimensions hold only the average trend of a random projection, so a dot's nearest
neighbour was one of its three most similar event types about as often as by chance. Here the layout is computed
over the templates' similarity, and a place once given is kept:

1. **Similarity** is the cosine of the templates' words (:func:`logcanary.engine.clustering.template_terms`:
   constant words, and for a stack trace its exception and top frames), the measure the clusters and the verdict's
   neighbour search use. Each new template is linked to its ``NEIGHBOURS`` most similar templates (ties broken by
   template id, so the links are the same in every process).
2. **A seeded force layout.** A link pulls its ends together with a force of constant size times their similarity
   (the LinLog model: groups contract into islands instead of spreading evenly), every pair of dots within a few
   ideal distances pushes apart (Fruchterman and Reingold's ``ideal² / distance``), and a weak gravity keeps the
   whole on the map. A new template starts beside its most similar anchored template (or, with none similar, at its
   content projection), and the temperature cools in a fixed number of steps: the same input gives the same places.
3. **Anchors never move.** Templates placed before (``anchors``) exert their forces but keep their places; only the
   ``new`` ones move. The caller records the places it is given (:mod:`logcanary.verification.places`), so a dot
   stays put across refreshes, restarts, deployments and replicas, and a new event type settles beside its nearest
   known neighbours.

Distances are laid out as the page draws them (960 x 400: ``ASPECT``). Measured on Loghub's sets
(tests/test_layout.py): a dot's nearest drawn neighbour is one of its three most similar templates for 80-97% of the
dots (4-18% with the projection alone: chance); a first map of 500 event types takes about a second. Pure
computation: no I/O, no clock, no randomness but hashes of the template ids.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from logcanary.analysis.projection import MARGIN, PROJECTION, project_terms, unit_pair

LAYOUT = f"similarity-linlog-v1 (seeds: {PROJECTION})"
ASPECT = 400 / 960  # the map's height over its width (the page draws 960 x 400): distances are laid out as drawn
NEIGHBOURS = 2  # links per new template: its most similar others (more links blur the neighbourhoods)
STEPS = 150  # force steps: enough to settle, a fixed number so the result never depends on timing
START_TEMPERATURE = 0.08  # the longest move of a step at first (map widths), cooling geometrically
COOLING = 0.97
REPULSION = 0.3  # push between two dots: REPULSION x ideal² / distance
ATTRACTION = 1.0  # pull along a link: ATTRACTION x ideal x similarity, whatever the distance
GRAVITY = 0.5  # pull of every moving dot toward the middle (x distance from it) in a first layout, off the edges
GRAVITY_ANCHORED = 0.05  # ... among anchored dots, which hold the new ones on the map already
GRAVITY_ACROSS = 0.3  # ... weaker across the map's width, so the layout fills its wide shape
MAX_FILL = 3.0  # a first layout is scaled up to fill the map, at most this much
FILL_MARGIN = 28 / 960  # ... up to this far from the edges (28 pixels as drawn: a large dot's radius)
SPREAD = 0.6  # ideal distance between dots: SPREAD x sqrt(area / dots)
MIN_IDEAL = 0.012  # ... but never less than this (a dozen pixels)
REACH = 3.0  # repulsion acts within this many ideal distances (grid cells of this size)
NEAR_ANCHOR = 0.25  # a new template starts beside an anchored one only when this similar
OFFSET = 0.5  # ... this many ideal distances off it, in a direction of its own

Point = tuple[float, float]
Words = Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Link:
    """A template's similar other (its index in the layout) and how similar they are."""

    other: int
    similarity: float


def nearest(terms: list[Words], ids: list[str], of: Iterable[int], count: int) -> dict[int, list[Link]]:
    """The ``count`` most similar templates (cosine of words above 0; ties by id) of each template in ``of``.

    Only templates that share a word can be similar, so candidates come from an index of words."""
    norms = [math.sqrt(sum(c * c for c in t.values())) for t in terms]
    by_word: dict[str, list[int]] = {}
    for index, words in enumerate(terms):
        for word in words:
            by_word.setdefault(word, []).append(index)
    out: dict[int, list[Link]] = {}
    for index in of:
        dots: dict[int, int] = {}
        for word, weight in terms[index].items():
            for other in by_word[word]:
                if other != index:
                    dots[other] = dots.get(other, 0) + weight * terms[other][word]
        scored = [(dot / (norms[index] * norms[other]), other) for other, dot in dots.items()]
        scored.sort(key=lambda item: (-item[0], ids[item[1]]))
        out[index] = [Link(other, similarity) for similarity, other in scored[:count]]
    return out


def place(new: Mapping[str, Words], anchors: Mapping[str, tuple[Point, Words]]) -> dict[str, Point]:
    """Places for the ``new`` templates (id -> words) among the ``anchors`` (id -> (place, words)), which keep theirs.

    Places are in the unit square (x across, y down), within ``MARGIN`` of its edges, as the map draws them."""
    fresh = sorted(id_ for id_ in new if id_ not in anchors)
    if not fresh:
        return {}
    fixed = sorted(anchors)
    ids = fresh + fixed
    terms: list[Words] = [new[i] for i in fresh] + [anchors[i][1] for i in fixed]
    moving = len(fresh)
    links = nearest(terms, ids, range(moving), NEIGHBOURS)
    ideal = max(MIN_IDEAL, SPREAD * math.sqrt(ASPECT / len(ids)))

    # Laid out in a 1 x ASPECT rectangle: the map's own proportions.
    positions = [[0.0, 0.0] for _ in ids]
    for index, id_ in enumerate(fixed, start=moving):
        x, y = anchors[id_][0]
        positions[index] = [x, y * ASPECT]
    for index, id_ in enumerate(fresh):
        positions[index] = _start(id_, terms[index], links[index], positions, moving, ideal)
    edges: dict[tuple[int, int], float] = {}
    for index, found in links.items():
        for link in found:
            key = (min(index, link.other), max(index, link.other))
            edges[key] = max(edges.get(key, 0.0), link.similarity)
    pulls = [(a, b, ATTRACTION * ideal * weight) for (a, b), weight in sorted(edges.items())]

    gravity = GRAVITY_ANCHORED if anchors else GRAVITY
    temperature = START_TEMPERATURE
    for _ in range(STEPS):
        moves = _repulsion(positions, moving, ideal)
        for a, b, pull in pulls:
            dx = positions[a][0] - positions[b][0]
            dy = positions[a][1] - positions[b][1]
            length = math.hypot(dx, dy)
            if length == 0:
                continue
            dx, dy = dx / length * pull, dy / length * pull
            if a < moving:
                moves[a][0] -= dx
                moves[a][1] -= dy
            if b < moving:
                moves[b][0] += dx
                moves[b][1] += dy
        for index in range(moving):
            move, at = moves[index], positions[index]
            move[0] += (0.5 - at[0]) * gravity * GRAVITY_ACROSS
            move[1] += (0.5 * ASPECT - at[1]) * gravity
            length = math.hypot(move[0], move[1])
            if length > 0:
                step = min(length, temperature) / length
                at[0] = _inside(at[0] + move[0] * step)
                at[1] = _inside(at[1] + move[1] * step, ASPECT)
        temperature *= COOLING
    if not anchors:
        _fill(positions)
    return {id_: (round(positions[i][0], 6), round(positions[i][1] / ASPECT, 6)) for i, id_ in enumerate(fresh)}


def _fill(positions: list[list[float]]) -> None:
    """Scales a first layout (nothing anchored yet) evenly about its middle to fill the map: the strong gravity that
    keeps a small layout off the edges leaves a large one in the middle. One factor for both axes keeps every
    neighbourhood; it is at most ``MAX_FILL``, so two or three dots do not fly to the corners."""
    xs = [p[0] for p in positions]
    ys = [p[1] for p in positions]
    width, height = max(xs) - min(xs), max(ys) - min(ys)
    across, down = 1 - 2 * FILL_MARGIN, ASPECT - 2 * FILL_MARGIN
    factor = min(MAX_FILL, across / width if width else MAX_FILL, down / height if height else MAX_FILL)
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    for p in positions:
        p[0] = _inside(0.5 + (p[0] - cx) * factor)
        p[1] = _inside(0.5 * ASPECT + (p[1] - cy) * factor, ASPECT)


def _start(
    id_: str, words: Words, links: list[Link], positions: list[list[float]], moving: int, ideal: float
) -> list[float]:
    """Where a new template starts: beside its most similar anchored template when one is similar enough (a little
    off it, in a direction of the template's own), else at its content projection."""
    near = [link for link in links if link.other >= moving and link.similarity >= NEAR_ANCHOR]
    if not near:
        x, y = project_terms(words, id_)
        return [x, y * ASPECT]
    x, y = positions[near[0].other]
    angle = 2 * math.pi * unit_pair("start:" + id_)[0]
    return [_inside(x + OFFSET * ideal * math.cos(angle)), _inside(y + OFFSET * ideal * math.sin(angle), ASPECT)]


def _repulsion(positions: list[list[float]], moving: int, ideal: float) -> list[list[float]]:
    """The push on every moving dot from each dot within ``REACH`` ideal distances, found through a grid of cells
    that wide (a step costs about linear time). Two dots on one spot part along a direction fixed by their indexes."""
    reach = REACH * ideal
    cells: dict[tuple[int, int], list[int]] = {}
    for index, (x, y) in enumerate(positions):
        cells.setdefault((int(x / reach), int(y / reach)), []).append(index)
    strength = REPULSION * ideal * ideal
    moves = [[0.0, 0.0] for _ in range(moving)]
    for index in range(moving):
        x, y = positions[index]
        cx, cy = int(x / reach), int(y / reach)
        move = moves[index]
        for gx in (cx - 1, cx, cx + 1):
            for gy in (cy - 1, cy, cy + 1):
                for other in cells.get((gx, gy), ()):
                    if other == index:
                        continue
                    dx = x - positions[other][0]
                    dy = y - positions[other][1]
                    d2 = dx * dx + dy * dy
                    if d2 >= reach * reach:
                        continue
                    if d2 < 1e-12:
                        angle = (index * 7919 + other * 104729) % 360 * math.pi / 180
                        dx, dy, d2 = math.cos(angle) * 1e-6, math.sin(angle) * 1e-6, 1e-12
                    push = strength / d2
                    move[0] += dx * push
                    move[1] += dy * push
    return moves


def _inside(value: float, side: float = 1.0) -> float:
    """Within the margin of a side of the map ``side`` long."""
    return min(side * (1.0 - MARGIN), max(side * MARGIN, value))
