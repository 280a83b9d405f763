"""Where an event type sits on the cluster map: a stable 2-D projection of its words.

The map shows every event type of a canary and its baseline as a dot. People compare maps across refreshes and
across releases, so a dot must never move unless its template changed. A learned layout (t-SNE, PCA over the
current templates) would move every dot whenever one template is added. Here a position depends on the template's
own content only:

1. Its features are its words (:func:`logcanary.engine.clustering.template_terms`: constant words, and for a stack
   trace its exception and top frames), each weighted ``1 + ln(count)``; a word also contributes its character
   trigrams at a third of its weight, so ``PaymentProcessor`` and ``PaymentService`` share something.
2. Each feature has a fixed random direction in the plane: two standard normal deviates derived from a BLAKE2b hash
   of the feature (the same in every process and release; Python's ``hash`` is salted per process and is not used).
3. The position is the weighted sum of these directions over the feature vector's norm: a Gaussian random
   projection. Two templates whose feature vectors have cosine ``c`` land at an expected distance proportional to
   ``sqrt(2 (1 - c))`` in this space, so similar templates sit close together and unrelated ones far apart (on
   average: two dimensions cannot keep every distance).
4. Each coordinate goes through the normal distribution's CDF, so the map fills the unit square evenly, and a tiny
   offset derived from the template id keeps templates with the same words (they differ in where their values
   are) from covering each other exactly.

Changing any of this moves every dot of every map: ``PROJECTION`` names the version, and a test pins positions.
Pure computation, no I/O.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Mapping
from functools import lru_cache
from statistics import NormalDist

from logcanary.engine.clustering import template_terms
from logcanary.engine.miner import Template

PROJECTION = "words-blake2b-gaussian-v1"
MARGIN = 0.04  # positions stay within [MARGIN, 1 - MARGIN]: room for a dot's radius at the edges
JITTER = 0.008  # largest offset between templates of the same words
TRIGRAM_WEIGHT = 1 / 3  # a word's trigrams together weigh this fraction of the word
POSITIONS_KEPT = 1 << 15
_SALT = b"logcanary/map/v1"
_NORMAL = NormalDist()
_UNIT = float(1 << 53)
_positions: OrderedDict[str, tuple[float, float]] = OrderedDict()


def _uniforms(key: str, count: int) -> list[float]:
    """``count`` numbers in (0, 1) determined by ``key`` alone."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8 * count, person=_SALT[:16]).digest()
    return [
        ((int.from_bytes(digest[8 * i : 8 * i + 8], "big") >> 11) + 0.5) / _UNIT  # 53 bits, never 0 or 1
        for i in range(count)
    ]


@lru_cache(maxsize=1 << 16)  # words and trigrams recur across templates: about 6 MB at most
def direction(feature: str) -> tuple[float, float]:
    """The fixed random direction of a feature: two independent standard normal deviates."""
    first, second = _uniforms(feature, 2)
    return _NORMAL.inv_cdf(first), _NORMAL.inv_cdf(second)


def features(template: Template) -> dict[str, float]:
    """The weighted features of a template: its words and, at a lower weight, their character trigrams."""
    return term_features(template_terms(template))


def term_features(terms: Mapping[str, int]) -> dict[str, float]:
    """:func:`features` of a template's words (:func:`~logcanary.engine.clustering.template_terms`)."""
    out: dict[str, float] = {}
    for word, count in terms.items():
        weight = 1.0 + math.log(count)
        out["w:" + word] = out.get("w:" + word, 0.0) + weight
        plain = word.lstrip("@")
        grams = [plain[i : i + 3] for i in range(len(plain) - 2)]
        for gram in grams:
            out["g:" + gram] = out.get("g:" + gram, 0.0) + weight * TRIGRAM_WEIGHT / len(grams)
    return out


def project(weights: Mapping[str, float], key: str) -> tuple[float, float]:
    """The position in the unit square of a feature vector; ``key`` (a template id) only sets the tiny offset."""
    x = y = norm = 0.0
    for feature, weight in sorted(weights.items()):  # a fixed order: the same floating-point sum everywhere
        dx, dy = direction(feature)
        x += weight * dx
        y += weight * dy
        norm += weight * weight
    if norm > 0:
        x, y = x / math.sqrt(norm), y / math.sqrt(norm)
    jx, jy = _uniforms("jitter:" + key, 2)
    span = 1 - 2 * MARGIN
    return (
        round(MARGIN + span * _clamp(_NORMAL.cdf(x) + JITTER * (2 * jx - 1)), 6),
        round(MARGIN + span * _clamp(_NORMAL.cdf(y) + JITTER * (2 * jy - 1)), 6),
    )


def project_terms(terms: Mapping[str, int], key: str) -> tuple[float, float]:
    """The content projection of a template's words: where the map's layout starts a template it has no
    neighbours for (:mod:`logcanary.analysis.layout`)."""
    return project(term_features(terms), key)


def unit_pair(key: str) -> tuple[float, float]:
    """Two numbers in (0, 1) determined by ``key`` alone (the same in every process)."""
    first, second = _uniforms(key, 2)
    return first, second


def position(template: Template) -> tuple[float, float]:
    """Where a template sits on every map of its service: a function of its content (words and id) alone.

    Remembered by template id (a hash of the content, so an id always has the same position), for the
    ``POSITIONS_KEPT`` most recently drawn templates.
    """
    key = template.template_id
    found = _positions.get(key)
    if found is None:
        found = _positions[key] = project(features(template), key)
        if len(_positions) > POSITIONS_KEPT:
            _positions.popitem(last=False)
    else:
        _positions.move_to_end(key)
    return found


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))
