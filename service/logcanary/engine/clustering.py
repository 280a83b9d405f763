"""Online clustering of templates with river's TextClust.

Templates are fine-grained: one event type can still yield a few templates
(a parameter that spans a varying number of tokens, a reworded field). The
clusterer groups templates whose constant words are alike, so the analysis
compares *clusters* and a reworded parameter is not mistaken for a new event.

River is fed once per new template, never per event, so the hot path does not
pay for it. Each deployment has its own clusterer; clusters of two deployments
are matched by the cosine similarity of their word vectors
(:func:`cosine`), never by river's internal micro-cluster index, which differs
from one model to the next.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from river.cluster import TextClust

from logcanary.engine.caps import DEFAULT_CAPS
from logcanary.engine.masking import WILDCARD
from logcanary.engine.memory import RIVER_BYTES, RIVER_MODEL_BYTES, RIVER_TERM_BYTES
from logcanary.engine.miner import Template

DEFAULT_RADIUS = 0.3  # TextClust's tf-idf cosine distance under which a template joins a cluster
DEFAULT_MAX_CLUSTERS = DEFAULT_CAPS.max_clusters_per_deployment
OTHER_CLUSTER_ID = "other"
MAX_TERMS = 64  # distinct words per template given to river and kept per cluster member, first seen first
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_$]+")


def template_terms(template: Template) -> Counter[str]:
    """The words a template is made of: constant words, exception class and frames.

    A bounded bag: the first ``MAX_TERMS`` distinct words (the first words name the event), then the trace's
    exception and frames, so river's state per template does not grow with the message.
    """
    words: Counter[str] = Counter()
    for token in template.tokens:
        if token != WILDCARD:
            for found in _WORD.findall(token):
                word = found.lower()
                if word in words or len(words) < MAX_TERMS:
                    words[word] += 1
    if template.signature:
        words.update(f"@{part}" for part in template.signature.split("|"))
    return words


def cosine(left: Counter[str], right: Counter[str]) -> float:
    """Cosine similarity of two word-count vectors (0 when either is empty)."""
    if len(left) > len(right):
        left, right = right, left
    dot = sum(count * right.get(word, 0) for word, count in left.items())
    if not dot:
        return 0.0
    norm = math.sqrt(sum(c * c for c in left.values())) * math.sqrt(sum(c * c for c in right.values()))
    return dot / norm


@dataclass(eq=False, slots=True)
class Cluster:
    """Templates river put together. Its id is its founding template's *current* id: content-derived,
    and the same after a restart even if the founder has generalised since (None founder: 'other')."""

    founder: Template | None
    templates: list[Template] = field(default_factory=list)
    terms: Counter[str] = field(default_factory=Counter)

    @property
    def cluster_id(self) -> str:
        return OTHER_CLUSTER_ID if self.founder is None else self.founder.resolve().template_id

    def add(self, template: Template, terms: Counter[str]) -> None:
        self.templates.append(template)
        self.terms.update(terms)


def _shard_key(template: Template, terms: Counter[str]) -> str:
    """Templates only cluster with templates sharing their leading word (or trace exception).

    TextClust compares a new template with every micro-cluster of its model, so
    one model per leading word keeps learning cheap however many templates a
    deployment has, while near-duplicates (which share their first words) still meet.
    """
    if template.signature:
        return "@" + template.signature.split("|", 1)[0]
    return next(iter(terms), "")


class TemplateClusterer:
    """Assigns each new template to a cluster, learning one template at a time."""

    def __init__(self, radius: float = DEFAULT_RADIUS, max_clusters: int = DEFAULT_MAX_CLUSTERS) -> None:
        self.radius = radius
        self.max_clusters = max_clusters
        self.clusters: dict[tuple[str, int], Cluster] = {}  # by (shard, river micro-cluster key)
        self.other = Cluster(None)
        self._models: dict[str, TextClust] = {}
        self._of_template: dict[Template, Cluster] = {}
        self.bytes = 0  # estimated memory of what it learnt (logcanary.engine.memory)

    def __len__(self) -> int:
        return len(self.clusters)

    def _model(self, shard: str) -> TextClust:
        model = self._models.get(shard)
        if model is None:
            # No fading and no automatic merging: a cluster must not vanish or change
            # members behind the analysis' back while a canary is being judged.
            self.bytes += RIVER_MODEL_BYTES
            model = self._models[shard] = TextClust(  # type: ignore[no-untyped-call]
                radius=self.radius,
                fading_factor=1e-9,
                tgap=10**12,
                term_fading=False,
                real_time_fading=False,
                auto_merge=False,
            )
        return model

    def cluster_of(self, template: Template) -> Cluster:
        """The cluster of a template, learning it first if it is new."""
        found = self._of_template.get(template)
        if found is not None:
            return found
        terms = template_terms(template)
        if not terms:
            terms = Counter({"<empty>": 1})
        if len(self.clusters) >= self.max_clusters:
            cluster = self.other
        else:
            shard = _shard_key(template, terms)
            model = self._model(shard)
            micro = model.micro_clusters
            sizes = {key: mc.n for key, mc in micro.items()}
            model.learn_one(dict(terms))  # type: ignore[no-untyped-call]
            key = next((k for k, mc in micro.items() if sizes.get(k) != mc.n), None)
            if key is None:  # nothing changed: river saw no terms
                cluster = self.other
            else:
                cluster = self.clusters.get((shard, key)) or self.clusters.setdefault((shard, key), Cluster(template))
        cluster.add(template, terms)
        self._of_template[template] = cluster
        self.bytes += RIVER_BYTES + RIVER_TERM_BYTES * len(terms)
        return cluster

    def all(self) -> list[Cluster]:
        """Every cluster, the overflow one last when it holds anything."""
        return [*self.clusters.values(), *([self.other] if self.other.templates else [])]
