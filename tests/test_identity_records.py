"""Records carry every name of their deployment; Flagger's primary is a deployment of its target's service."""

from __future__ import annotations

from typing import Any

import orjson

from logcanary.ingestion.records import decode_record
from logcanary.schemas import LogEvent


def _one(value: Any) -> LogEvent:
    decoded = decode_record(orjson.dumps(value))
    assert decoded.rejections == []
    [event] = decoded.events
    return event


def _fluent_bit(labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "@timestamp": 1714564800.5,
        "log": "GET /cart 200\n",
        "kubernetes": {"pod_name": "checkout-6f7d9c8b4-x2x9z", "container_name": "checkout", "labels": labels},
        **extra,
    }


def _otlp(attributes: dict[str, str]) -> dict[str, Any]:
    resource = [{"key": key, "value": {"stringValue": value}} for key, value in attributes.items()]
    return {
        "resourceLogs": [
            {"resource": {"attributes": resource}, "scopeLogs": [{"logRecords": [{"body": {"stringValue": "hi"}}]}]}
        ]
    }


def test_argo_record_keeps_the_hash_beside_the_version() -> None:
    labels = {"app": "checkout", "version": "v2", "rollouts-pod-template-hash": "6f7d9c8b4", "pod-template-hash": "1"}
    event = _one(_fluent_bit(labels))
    assert (event.service, event.deployment) == ("checkout", "v2")
    assert event.identities == ["6f7d9c8b4", "1"]
    # Vector's pod_labels and the app.kubernetes.io/version label the same way; duplicates are named once.
    vector = {"message": "hi", "kubernetes": {"pod_labels": {"app": "checkout", "app.kubernetes.io/version": "v2",
                                                             "version": "v2", "pod-template-hash": "7"}}}  # fmt: skip
    event = _one(vector)
    assert (event.deployment, event.identities) == ("v2", ["7"])


def test_without_a_second_name_there_are_no_identities() -> None:
    event = _one(_fluent_bit({"app": "checkout", "pod-template-hash": "7d9f8c6b5"}))
    assert (event.deployment, event.identities) == ("7d9f8c6b5", [])


def test_otlp_service_version_and_hashes() -> None:
    event = _one(
        _otlp({"service.name": "checkout", "service.version": "1.5.0",
               "k8s.pod.labels.rollouts-pod-template-hash": "6f7d9c8b4", "k8s.pod.template.hash": "abc"})
    )  # fmt: skip
    assert (event.service, event.deployment) == ("checkout", "1.5.0")
    assert event.identities == ["6f7d9c8b4", "abc"]


def test_native_identities_are_kept_with_extra_keys_too() -> None:
    native = {"timestamp": "2024-05-01T12:00:00Z", "service": "s", "deployment": "v2", "message": "m",
              "identities": ["6f7d9c8b4"]}  # fmt: skip
    assert _one(native).identities == ["6f7d9c8b4"]
    mapped = _one({**native, "stream": "stdout"})
    assert (mapped.deployment, mapped.identities, mapped.attributes) == ("v2", ["6f7d9c8b4"], {"stream": "stdout"})


def test_flagger_primary_pods_are_the_primary_deployment_of_the_target_service() -> None:
    primary = _one(_fluent_bit({"app": "checkout-primary", "version": "v1", "pod-template-hash": "5b4c"}))
    assert (primary.service, primary.deployment) == ("checkout", "checkout-primary")
    assert primary.identities == ["v1", "5b4c"]
    canary = _one(_fluent_bit({"app": "checkout", "version": "v2", "pod-template-hash": "6f7d"}))
    assert (canary.service, canary.deployment, canary.identities) == ("checkout", "v2", ["6f7d"])
    by_name = _one(_fluent_bit({"app.kubernetes.io/name": "cart-primary"}))
    assert (by_name.service, by_name.deployment) == ("cart", "cart-primary")
    # OTLP: the SDK names the service; the k8sattributes processor names the workload.
    otlp = _one(_otlp({"service.name": "checkout", "service.version": "v1", "k8s.deployment.name": "checkout-primary"}))
    assert (otlp.service, otlp.deployment, otlp.identities) == ("checkout", "checkout-primary", ["v1"])


def test_an_explicit_service_or_a_bare_suffix_is_not_rewritten() -> None:
    explicit = _one({"service": "db-primary", "deployment": "v1", "message": "m", "stream": "stdout"})
    assert (explicit.service, explicit.deployment) == ("db-primary", "v1")
    other_workload = _one(_fluent_bit({"app": "billing-primary"}, service="db"))
    assert (other_workload.service, other_workload.deployment) == ("db", "unknown")
    bare = _one(_fluent_bit({"app": "-primary"}))
    assert (bare.service, bare.deployment) == ("-primary", "unknown")
