"""Per-deployment counts, buckets, examples, clusters and the memory bounds."""

import random
import string

from logcanary.engine.caps import Caps
from logcanary.engine.clustering import TemplateClusterer, cosine, template_terms
from logcanary.engine.model import BUCKET_SECONDS, MAX_EXAMPLES, MAX_HOSTS, Engine


def test_counts_buckets_hosts_examples() -> None:
    engine = Engine()
    for index in range(100):
        engine.observe(
            "svc", "v1", f"Request {index} served in {index % 7} ms", 1000.0 + index, f"h{index % 3}", "info"
        )
    deployment = engine.service("svc").deployment("v1")
    [(template, stats)] = deployment.templates().items()
    assert template.text == "Request <*> served in <*>"  # the unit folds into the value
    assert stats.count == 100
    assert sorted(stats.hosts) == ["h0", "h1", "h2"]
    assert len(stats.examples) == MAX_EXAMPLES
    assert sum(stats.buckets.values()) == 100
    assert all(bucket % BUCKET_SECONDS == 0 for bucket in stats.buckets)
    assert stats.count_between(1000, 1010) == 10
    assert (stats.first_seen, stats.last_seen) == (1000.0, 1099.0)


def test_deployments_share_template_ids() -> None:
    engine = Engine()
    a = engine.observe("svc", "v1", "User 17 logged in", 1.0)
    b = engine.observe("svc", "v2", "User 99 logged in", 2.0)
    assert a is b


def test_memory_is_bounded_for_random_input() -> None:
    rng = random.Random(7)
    engine = Engine(
        caps=Caps(max_templates_per_service=300, max_templates_per_deployment=200, max_clusters_per_deployment=50)
    )
    for index in range(20_000):
        words = " ".join(
            "".join(rng.choices(string.ascii_letters, k=rng.randint(3, 9))) for _ in range(rng.randint(1, 6))
        )
        engine.observe("svc", "v1", words, float(index), host=f"host-{index}")
    service = engine.service("svc")
    deployment = service.deployment("v1")
    assert len(service.miner) <= 300
    assert len(deployment.stats) <= 200
    assert len(deployment.clusterer) <= 50
    assert all(len(s.hosts) <= MAX_HOSTS for s in deployment.stats.values())
    counted = sum(s.count for s in deployment.stats.values()) + deployment.other.count
    assert counted == deployment.events == 20_000


def test_river_clusters_similar_templates_and_matches_across_deployments() -> None:
    engine = Engine()
    lines = ["Disk sda full on node 1", "Disk sdb full on node 2 at mount point x", "Payment authorized for order 5"]
    for deployment in ("v1", "v2"):
        for line in lines:
            engine.observe("svc", deployment, line, 1.0)
    service = engine.service("svc")
    v1 = service.deployment("v1").clusterer.all()
    v2 = service.deployment("v2").clusterer.all()
    for cluster in v2:
        best = max(v1, key=lambda other: cosine(cluster.terms, other.terms))
        assert best.cluster_id == cluster.cluster_id  # same content, same id, found by similarity


def test_clusterer_caps_clusters() -> None:
    clusterer = TemplateClusterer(max_clusters=3)
    engine = Engine()
    for word in ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]:
        template = engine.observe("s", "d", f"{word} {word}x {word}y", 1.0)
        clusterer.cluster_of(template)
    assert len(clusterer) == 3
    assert clusterer.other.templates
    assert template_terms(clusterer.other.templates[0])


def test_deployments_per_service_are_capped_least_recently_seen_first() -> None:
    engine = Engine(caps=Caps(max_deployments_per_service=3))
    for index, deployment in enumerate(["v1", "v2", "v3", "v4", "v5"]):
        engine.observe("svc", deployment, "request served", float(index))
    assert sorted(engine.service("svc").deployments) == ["v3", "v4", "v5"]
    assert engine.evicted == [("svc", "v1"), ("svc", "v2")]
    engine.observe("svc", "v3", "request served", 10.0)  # v3 is now the most recent
    engine.observe("svc", "v6", "request served", 11.0)
    assert sorted(engine.service("svc").deployments) == ["v3", "v5", "v6"]
