"""helm/logcanary/values.schema.json: the chart's defaults pass, the values that used to render and then stop the pod
(or were silently ignored) are refused, and the overrides the chart supports pass.

Helm validates the schema against the values it coalesced: the chart's values.yaml, then each override on top, where
a null deletes the key (so `--set kafka.topics=null` leaves no `topics` at all). `helm_values` does the same here, and
the schema is checked with the `jsonschema` package (Draft 7, the draft the schema declares and both of Helm's
validators support), case by case; tests/test_chart_render.py has Helm itself apply it to a few of them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT

CHART = ROOT / "helm" / "logcanary"
SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)

SASL = {"bootstrapServers": "kafka:9092", "securityProtocol": "SASL_SSL"}
POSTGRES = "postgresql://logcanary:secret@postgres.db:5432/logcanary"


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing: maps merge key by key, anything else replaces, and a null deletes the key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def helm_values(override: dict[str, Any]) -> dict[str, Any]:
    return merge(DEFAULTS, override)


def errors(values: dict[str, Any]) -> list[jsonschema.ValidationError]:
    return list(VALIDATOR.iter_errors(values))


def paths(values: dict[str, Any]) -> set[str]:
    """Where each error is, as dotted paths ("" for the top level)."""
    return {".".join(str(part) for part in error.absolute_path) for error in errors(values)}


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    definition: dict[str, Any] = SCHEMA["definitions"][ref.removeprefix("#/definitions/")]
    return definition


def test_the_schema_is_a_valid_draft_7_schema() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_the_chart_defaults_are_valid() -> None:
    assert errors(DEFAULTS) == []


def open_objects(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Objects of values.yaml whose schema accepts keys it does not declare (maps of strings aside)."""
    found = set()
    for key, value in values.items():
        node = resolve(schema["properties"][key])
        path = f"{prefix}{key}"
        if not isinstance(value, dict):
            continue
        additional = node.get("additionalProperties", True)
        if additional is True:
            found.add(path)
        elif additional is False:
            found |= open_objects(value, node, path + ".")
    return found


def test_every_object_the_chart_owns_is_closed() -> None:
    """Only Kubernetes objects passed through as they are stay open; a typo anywhere else is an error."""
    assert SCHEMA["additionalProperties"] is False
    assert open_objects(DEFAULTS, SCHEMA) == {
        "podSecurityContext",
        "securityContext",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "affinity",
    }


@pytest.mark.parametrize(
    ("override", "where"),
    [
        # Three of the four of issue 11 that rendered and then stopped the pod at start (the fourth,
        # sasl.mechanism=plain, is now upper-cased by the chart, as the protocol is).
        ({"config": {"logLevel": "INFO"}}, "config.logLevel"),
        ({"kafka": {"sasl": {"mechanism": "Plain"}}}, "kafka.sasl.mechanism"),
        ({"kafka": {"sasl": {"mechanism": "GSSAPI"}}}, "kafka.sasl.mechanism"),
        ({"config": {"defaultSensitivity": "Medium"}}, "config.defaultSensitivity"),
        ({"kafka": {"topics": None}}, "kafka"),  # deleted by the null, as Helm does: required
        ({"kafka": {"topics": []}}, "kafka.topics"),
        # Several replicas need the PostgreSQL store (the SQLite file cannot be shared).
        ({"replicaCount": 3}, ""),
        ({"replicaCount": 2, "existingSecret": "s"}, ""),  # no existingSecretKeys.storeUrl
        ({"replicaCount": 2, "store": {"url": POSTGRES}, "existingSecret": "s"}, ""),  # store.url is then ignored
        ({"replicaCount": 2, "store": {"url": POSTGRES}}, "kafka.bootstrapServers"),  # no Kafka: no sharing
        ({"replicaCount": 0}, "replicaCount"),
        ({"replicaCount": "3"}, "replicaCount"),
        # Misspelt keys.
        ({"replicacount": 3}, ""),
        ({"ingres": {"enabled": True}}, ""),
        ({"config": {"loglevel": "debug"}}, "config"),
        ({"kafka": {"bootstrapServer": "kafka:9092"}}, "kafka"),
        ({"serviceMonitor": {"enable": True}}, "serviceMonitor"),
        # Wrong types and values.
        ({"kafka": {"securityProtocol": "TLS"}}, "kafka.securityProtocol"),
        ({"kafka": {"bootstrapServers": "kafka"}}, "kafka.bootstrapServers"),
        ({"kafka": {"topics": ["logs", "bad topic"]}}, "kafka.topics.1"),
        ({"containerPort": "8080"}, "containerPort"),
        ({"containerPort": 70000}, "containerPort"),
        ({"service": {"type": "ExternalName"}}, "service.type"),
        ({"podAnnotations": {"prometheus.io/port": 9090}}, "podAnnotations.prometheus.io/port"),
        ({"config": {"checkpointIntervalSeconds": 0}}, "config.checkpointIntervalSeconds"),
        ({"config": {"checkpointIntervalSeconds": "5s"}}, "config.checkpointIntervalSeconds"),
        ({"config": {"maxTemplatesPerService": 5}}, "config.maxTemplatesPerService"),
        ({"config": {"publicUrl": "logcanary.example.com"}}, "config.publicUrl"),
        ({"config": {"rootPath": "logcanary"}}, "config.rootPath"),
        ({"image": {"pullPolicy": "always"}}, "image.pullPolicy"),
        ({"image": {"digest": "abc123"}}, "image.digest"),
        ({"persistence": {"size": "5GB"}}, "persistence.size"),
        ({"persistence": {"accessModes": []}}, "persistence.accessModes"),
        ({"persistence": {"retentionPolicy": {"whenDeleted": "Keep"}}}, "persistence.retentionPolicy.whenDeleted"),
        ({"stateDir": "data"}, "stateDir"),
        ({"resources": {"limit": {"cpu": "2"}}}, "resources"),
        ({"serviceMonitor": {"interval": "30 seconds"}}, "serviceMonitor.interval"),
        ({"extraEnv": [{"value": "x"}]}, "extraEnv.0"),
        ({"prometheusRule": {"enabled": "yes"}}, "prometheusRule.enabled"),
        ({"prometheusRule": {"disabledAlerts": ["LogcanaryDown"]}}, "prometheusRule.disabledAlerts.0"),
        ({"store": {"url": "mysql://db/logcanary"}}, "store.url"),
        ({"store": {"url": "sqlite:///var/lib/logcanary/state.sqlite"}}, "store.url"),  # stateDir is the SQLite store
        ({"store": {"schema": "logcanary-prod"}}, "store.schema"),
        ({"store": {"uri": POSTGRES}}, "store"),
        ({"existingSecret": "s", "store": {"url": POSTGRES}}, "store.url"),  # read from existingSecret only
        ({"kafka": {"repartitionTopic": "logs by service"}}, "kafka.repartitionTopic"),
        ({"podDisruptionBudget": {"enabled": "auto"}}, "podDisruptionBudget.enabled"),
        ({"podDisruptionBudget": {"maxUnavailable": "one"}}, "podDisruptionBudget.maxUnavailable"),
        ({"podDisruptionBudget": {"minAvailable": -1}}, "podDisruptionBudget.minAvailable"),
        ({"ingress": {"enabled": True, "hosts": []}}, "ingress.hosts"),
        ({"ingress": {"hosts": [{"host": "Logcanary.example.com", "paths": [{"path": "/"}]}]}}, "ingress.hosts.0.host"),
        (
            {"ingress": {"hosts": [{"host": "a.example.com", "paths": [{"path": "v1"}]}]}},
            "ingress.hosts.0.paths.0.path",
        ),
        (
            {"ingress": {"hosts": [{"paths": [{"path": "/", "pathType": "prefix"}]}]}},
            "ingress.hosts.0.paths.0.pathType",
        ),
        ({"ingress": {"tls": [{"secret": "t"}]}}, "ingress.tls.0"),
        ({"networkPolicy": {"enabled": True, "from": [{}]}}, "networkPolicy.from.0"),
        ({"networkPolicy": {"from": [{"pods": {"app": "x"}}]}}, "networkPolicy.from.0"),
        ({"networkPolicy": {"restrictEgress": "yes"}}, "networkPolicy.restrictEgress"),
        (
            {"networkPolicy": {"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "port": 5432}]}},
            "networkPolicy.egress.0",
        ),
        ({"helmTest": {"enabled": "true"}}, "helmTest.enabled"),
        ({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "grafanaDashboard.labels.grafana_dashboard"),
        ({"grafanaDashboard": {"folder": "logcanary"}}, "grafanaDashboard"),
        # Required combinations.
        ({"kafka": {**SASL, "sasl": {"username": "u", "password": "p"}}}, "kafka.sasl.mechanism"),
        ({"kafka": {**SASL, "sasl": {"mechanism": "PLAIN", "password": "p"}}}, "kafka.sasl.username"),
        ({"kafka": {**SASL, "sasl": {"mechanism": "PLAIN", "username": "u"}}}, ""),  # no password anywhere
        (
            {"existingSecret": "s", "existingSecretKeys": {"kafkaSaslPassword": ""}}
            | {"kafka": {**SASL, "sasl": {"mechanism": "PLAIN", "username": "u", "password": "p"}}},
            "",  # with existingSecret, the password is read from it only
        ),
        ({"kafka": {"ssl": {"tlsSecret": {"name": "kafka-tls", "certKey": "tls.crt"}}}}, "kafka.ssl.tlsSecret.keyKey"),
        ({"loki": {"url": "loki:3100"}}, "loki.url"),  # a URL, with its scheme
        ({"loki": {"canarySelector": 'app="x"'}}, "loki.canarySelector"),  # a stream selector starts with {
        ({"loki": {"baselineWindowSeconds": 0}}, "loki.baselineWindowSeconds"),
        ({"loki": {"existingSecret": "Loki_Creds"}}, "loki.existingSecret"),
        ({"loki": {"token": "s3cret"}}, "loki"),  # a token is never a value: existingSecret
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else None,
)
def test_refused(override: dict[str, Any], where: str) -> None:
    found = paths(helm_values(override))
    assert where in found, found


@pytest.mark.parametrize(
    ("key", "value"),
    [("logLevel", "INFO"), ("defaultSensitivity", "Medium"), ("logLevel", 1), ("defaultSensitivity", True)],
)
def test_config_enums_are_case_sensitive_as_the_service_is(key: str, value: object) -> None:
    assert paths(helm_values({"config": {key: value}})) == {f"config.{key}"}


def test_null_topics_are_refused_in_a_values_file_too() -> None:
    """A values file (not a --set) handed to a validator as it is: null is not a list of topics."""
    values = copy.deepcopy(DEFAULTS)
    values["kafka"]["topics"] = None
    assert paths(values) == {"kafka.topics"}


@pytest.mark.parametrize(
    "override",
    [
        {"config": {"logLevel": "debug", "defaultSensitivity": "high"}},
        {"config": {"logLevel": None, "defaultSensitivity": None}},
        {"config": {"checkpointIntervalSeconds": 2.5, "maxTemplatesPerService": 50000}},
        {"config": {"checkpointIntervalSeconds": "10", "maxTemplatesPerService": "20000"}},
        {"config": {"publicUrl": "https://logcanary.example.com/base"}},
        {"config": {"publicUrl": "https://tools.example.com/logcanary", "rootPath": "/logcanary"}},
        {"kafka": {"bootstrapServers": "kafka-0.kafka:9092,kafka-1.kafka:9092", "topics": ["logs", "audit.logs"]}},
        # The chart upper-cases the protocol (not the mechanism).
        {"kafka": {**SASL, "securityProtocol": "sasl_ssl", "sasl": {"mechanism": "SCRAM-SHA-512", "username": "u"}}}
        | {"existingSecret": "logcanary-secrets"},
        {"kafka": {**SASL, "sasl": {"mechanism": "PLAIN", "username": "u", "password": "p"}}},
        # ... and the mechanism too.
        {"kafka": {**SASL, "sasl": {"mechanism": "plain", "username": "u", "password": "p"}}},
        {"kafka": {**SASL, "sasl": {"mechanism": "scram-sha-256", "username": "u", "password": "p"}}},
        # SASL settings without Kafka are not read.
        {"kafka": {"securityProtocol": "SASL_PLAINTEXT"}},
        {"kafka": {"bootstrapServers": "kafka:9093", "securityProtocol": "SSL"}}
        | {"kafka": {"ssl": {"tlsSecret": {"name": "kafka-tls", "certKey": "tls.crt", "keyKey": "tls.key"}}}},
        {"image": {"repository": "registry.example.com/logcanary", "tag": "0.2.0", "digest": "sha256:" + "a" * 64}},
        {"persistence": {"enabled": False}},
        {"persistence": {"existingClaim": "logcanary-data", "accessModes": None, "size": None}},
        {"persistence": {"size": "20Gi", "storageClass": "-", "retentionPolicy": {"enabled": True}}},
        {"resources": {"requests": {"cpu": 0.5, "memory": "1Gi"}, "limits": None}},
        {"podAnnotations": None, "podLabels": {"team": "platform"}},
        {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "interval": "1m30s"}},
        {"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}}
        | {"prometheusRule": {"alertLabels": {"team": "platform"}, "disabledAlerts": ["LogcanaryAnalysisFailing"]}},
        {"extraEnv": [{"name": "LOGCANARY_MASK_PATTERNS", "value": "token=[A-Za-z0-9]+"}]},
        {"extraEnvFrom": [{"secretRef": {"name": "logcanary-extra"}}]},
        {"livenessProbe": None, "tolerations": [{"key": "dedicated", "operator": "Exists"}]},
        {"global": {"imageRegistry": "registry.example.com"}},  # as a subchart
        # Scale-out: several replicas on the PostgreSQL store, its URL in the chart's Secret or in existingSecret.
        {"replicaCount": 3, "store": {"url": POSTGRES, "schema": "logcanary_prod"}, "persistence": {"enabled": False}}
        | {"kafka": {"bootstrapServers": "kafka:9092"}},
        {"replicaCount": 2, "store": {"url": "postgres://db/logcanary"}, "kafka": {"bootstrapServers": "kafka:9092"}},
        {"replicaCount": 2, "existingSecret": "s", "existingSecretKeys": {"storeUrl": "store-url"}}
        | {"kafka": {"bootstrapServers": "kafka:9092"}},
        {"store": {"url": POSTGRES}},  # one replica on PostgreSQL
        {"kafka": {"bootstrapServers": "kafka:9092", "repartitionTopic": "logs.by-service"}},
        {"podDisruptionBudget": {"enabled": True, "minAvailable": "50%"}},
        {"podDisruptionBudget": {"enabled": False, "maxUnavailable": None}},
        {"ingress": {"enabled": True}},
        {"ingress": {"enabled": True, "className": "nginx", "annotations": {"a": "b"}, "labels": {"c": "d"}}}
        | {"ingress": {"hosts": [{"host": "*.example.com", "paths": [{"path": "/v1", "pathType": "Exact"}]}]}}
        | {"ingress": {"tls": [{"secretName": "t", "hosts": ["logcanary.example.com"]}]}},
        {"ingress": {"enabled": True, "hosts": [{"host": "", "paths": [{"path": "/"}]}]}},
        {"networkPolicy": {"enabled": True, "from": [{"namespaceSelector": {"matchLabels": {"team": "platform"}}}]}}
        | {"networkPolicy": {"restrictEgress": True, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}},
        {"networkPolicy": {"enabled": True, "from": None, "egress": None}},
        {"helmTest": {"enabled": False}},
        {"grafanaDashboard": {"enabled": True, "namespace": "monitoring", "annotations": {"grafana_folder": "x"}}},
        {"grafanaDashboard": {"labels": {"grafana_dashboard": "1", "release": "kube-prometheus-stack"}}},
        {"loki": {"url": "http://loki-gateway.loki.svc.cluster.local", "tenant": "shop", "existingSecret": "loki"}},
        {"loki": {"url": "https://logs.example.com", "existingSecret": "cloud", "username": "123", "passwordKey": "k"}}
        | {
            "loki": {
                "canarySelector": '{app="$service", version="$deployment"} |= "level"',
                "baselineWindowSeconds": "600",
            }
        },
    ],
    ids=json.dumps,
)
def test_accepted(override: dict[str, Any]) -> None:
    assert [error.message for error in errors(helm_values(override))] == []


def test_disabled_alerts_name_the_alerts_of_the_rules_file() -> None:
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    enum = SCHEMA["properties"]["prometheusRule"]["properties"]["disabledAlerts"]["items"]["enum"]
    assert sorted(enum) == sorted(names)
