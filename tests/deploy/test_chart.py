"""The Helm chart, linted and rendered by Helm's own engine (helm-python-sdk ships it as a library)."""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import kubernetes_validate
import psycopg
import pytest
import yaml

from collector.config import Section, Settings
from tests.deploy.helpers import (
    CHART,
    EVERYTHING_ON,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    by_kind,
    collector_file,
    render,
)
from tests.helpers import Daemon, collector_environment, trace_request
from tests.postgres import Cluster

INFO = 1  # helm lint severities: 1 info, 2 warning, 3 error; clean means none at all

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest with shipped schemas.
KUBERNETES_VERSIONS = ("1.27", kubernetes_validate.latest_version())

# API keys and TLS from existing Secrets, mutual TLS on OTLP, /metrics behind the admin key.
KEYS_AND_TLS: dict[str, Any] = {
    "apiKeys": [
        {"name": "checkout-app", "existingSecret": "otlp-keys", "secretKey": "checkout", "scopes": ["ingest"]},
        {"name": "prometheus", "existingSecret": "scrape-key", "secretKey": "key", "scopes": ["admin"]},
    ],
    "tls": {"existingSecret": "collector-tls", "clientAuth": True},
    "serviceMonitor": {"enabled": True, "tlsConfig": {"insecureSkipVerify": True}},
    "config": {"auth": {"protect_metrics": True, "max_failures_per_minute": 10}},
}

# Replicas sharing a PostgreSQL database whose URL (and password) come from an existing Secret.
POSTGRES: dict[str, Any] = {
    "storage": {"type": "postgres", "postgres": {"existingSecret": "collector-db", "passwordKey": "password"}},
    "replicaCount": 3,
}
POSTGRES_AUTOSCALED: dict[str, Any] = {
    **POSTGRES,
    "storage": {"type": "postgres", "postgres": {"existingSecret": "collector-db", "caSecret": "postgres-ca"}},
    "autoscaling": {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 8,
        "targetMemoryUtilizationPercentage": 80,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}},
    },
    "podDisruptionBudget": {"maxUnavailable": 1},
    "networkPolicy": {
        "enabled": True,
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 5432, "protocol": "TCP"}]}],
    },
}

COMBINATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "service-monitor": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    "ingress": {"ingress": {"enabled": True, "className": "nginx"}},
    "network-policy-and-pdb": {"networkPolicy": {"enabled": True}, "podDisruptionBudget": {"enabled": True}},
    "no-persistence": {"persistence": {"enabled": False}},
    "existing-claim": {"persistence": {"existingClaim": "collector-data"}},
    "everything-on": EVERYTHING_ON,
    "keys-and-tls": KEYS_AND_TLS,
    "postgres": POSTGRES,
    "postgres-autoscaled": POSTGRES_AUTOSCALED,
}


def lint_findings(values: dict[str, Any] | None = None, **options: Any) -> list[dict[str, Any]]:
    report = helm.lint(CHART, values, strict=True, **options)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    return [message for message in report["messages"] if message["severity"] >= INFO]


def test_helm_lint_is_clean() -> None:
    assert lint_findings() == []
    assert lint_findings(EVERYTHING_ON) == []
    assert lint_findings(EVERYTHING_ON, kube_version="v1.27.0") == []
    assert lint_findings(POSTGRES_AUTOSCALED) == []


def test_default_render_is_a_single_writer_statefulset_with_a_volume() -> None:
    manifests = by_kind(render())
    assert set(manifests) == {"ServiceAccount", "ConfigMap", "Service", "StatefulSet"}
    statefulset = manifests["StatefulSet"]
    spec = statefulset["spec"]
    assert statefulset["metadata"]["name"] == FULLNAME
    assert statefulset["metadata"]["namespace"] == NAMESPACE
    assert spec["replicas"] == 1
    assert spec["serviceName"] == manifests["Service"]["metadata"]["name"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}
    assert spec["podManagementPolicy"] == "OrderedReady"
    [claim] = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"

    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts["/data"]["name"] == "data"
    assert mounts["/etc/genai-collector"]["readOnly"] is True
    assert {volume["name"]: volume for volume in pod["volumes"]}["tmp"]["emptyDir"] == {"sizeLimit": "64Mi"}
    assert "command" not in container and "args" not in container  # the image's entry point: genai-collector serve
    assert container["image"] == "genai-collector:0.1.0"


def test_pod_environment_follows_the_image_contract() -> None:
    [container] = by_kind(render())["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    environment = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert environment == {
        "GENAI_COLLECTOR_CONFIG": "/etc/genai-collector/collector.yaml",
        "GENAI_COLLECTOR_DB": "/data/genai-collector.db",
        "GENAI_COLLECTOR_GRPC_ENDPOINT": "0.0.0.0:4317",
        "GENAI_COLLECTOR_HTTP_ENDPOINT": "0.0.0.0:4318",
        "GENAI_COLLECTOR_ADMIN_ENDPOINT": "0.0.0.0:8888",
    }
    assert {port["name"]: port["containerPort"] for port in container["ports"]} == {
        "otlp-grpc": 4317,
        "otlp-http": 4318,
        "http-admin": 8888,
    }


def test_probes_and_security_context() -> None:
    pod = by_kind(render())["StatefulSet"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-admin"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http-admin"}
    assert "memory" in container["resources"]["limits"]
    # ingest.workers is left to auto (2 workers on 2 CPUs or more), and the memory request is sized for them
    assert container["resources"]["requests"]["memory"] == "384Mi"
    assert "ingest" not in yaml.safe_load(collector_file(render()))
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # Longer than the daemon's default shutdown_timeout (10s), so the queue drains before SIGKILL.
    assert pod["terminationGracePeriodSeconds"] > 10


def test_service_ports() -> None:
    service = by_kind(render())["Service"]
    assert service["spec"]["ports"] == [
        {"name": "otlp-grpc", "port": 4317, "targetPort": "otlp-grpc", "protocol": "TCP", "appProtocol": "grpc"},
        {"name": "otlp-http", "port": 4318, "targetPort": "otlp-http", "protocol": "TCP", "appProtocol": "http"},
        {"name": "http-admin", "port": 8888, "targetPort": "http-admin", "protocol": "TCP", "appProtocol": "http"},
    ]
    pod_labels = by_kind(render())["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_query_api_stays_in_the_pod_unless_exposed() -> None:
    """Loopback by default (no env, no port); exposed, a port on every interface (reads then need a key)."""
    default = by_kind(render())
    [container] = default["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    assert "GENAI_COLLECTOR_QUERY__ENDPOINT" not in {variable["name"] for variable in container["env"]}
    assert Settings().query.endpoint.host == "127.0.0.1"
    assert "http-query" not in {port["name"] for port in default["Service"]["spec"]["ports"]}

    with pytest.raises(helm.HelmError, match="add an apiKeys entry with the read scope"):
        render({"queryApi": {"expose": True}})
    read_key = {"name": "grafana", "existingSecret": "query-keys", "secretKey": "grafana", "scopes": ["read"]}
    render({"queryApi": {"expose": True}, "apiKeys": [read_key]})
    exposed = by_kind(
        render(
            {
                "queryApi": {"expose": True},
                "networkPolicy": {"enabled": True},
                "config": {"auth": {"allow_unauthenticated_reads": True}},
            }
        )
    )
    [container] = exposed["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    environment = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert environment["GENAI_COLLECTOR_QUERY__ENDPOINT"] == "0.0.0.0:16686"
    assert {"name": "http-query", "containerPort": 16686, "protocol": "TCP"} in container["ports"]
    assert {
        "name": "http-query",
        "port": 16686,
        "targetPort": "http-query",
        "protocol": "TCP",
        "appProtocol": "http",
    } in exposed["Service"]["spec"]["ports"]
    rules = exposed["NetworkPolicy"]["spec"]["ingress"]
    assert [port["port"] for port in rules[-1]["ports"]] == ["http-query"]


def test_more_than_one_replica_is_refused_in_sqlite_mode() -> None:
    with pytest.raises(helm.HelmError) as refused:
        render({"replicaCount": 2})
    assert "replicaCount is 2, but storage.type sqlite has a single writer: set replicaCount to 1" in str(refused.value)
    assert by_kind(render({"replicaCount": 0}))["StatefulSet"]["spec"]["replicas"] == 0


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCont": 2}, "additional properties 'replicaCont' not allowed"),
        ({"serviceMonitor": {"enable": True}}, "additional properties 'enable' not allowed"),
        ({"config": {"queue_capacty": 50_000}}, "additional properties 'queue_capacty' not allowed"),
        ({"config": {"snapshots": {"rules": [{"metric": "latency", "above": 1}]}}}, "'latency' does not match"),
        ({"config": {"db": "/elsewhere.db"}}, "additional properties 'db' not allowed"),
        (
            {"config": {"redaction": {"hash_key": "in-a-configmap-0123"}}},
            "additional properties 'hash_key' not allowed",
        ),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of"),
        ({"config": {"retention": {"max_sise": "1GiB"}}}, "additional properties 'max_sise' not allowed"),
        ({"config": {"retention": {"max_age": "a week"}}}, "'a week' does not match"),
    ],
)
def test_a_typo_in_values_is_refused_by_the_schema(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm.HelmError) as refused:
        render(values)
    assert "values don't meet the specifications of the schema" in str(refused.value)
    assert complaint in str(refused.value)


def test_hash_mode_without_a_key_is_refused_and_the_key_comes_from_a_secret() -> None:
    with pytest.raises(helm.HelmError) as refused:
        render({"config": {"redaction": {"detectors": {"email": "hash"}}}})
    assert "set redactionHashKey.existingSecret" in str(refused.value)

    manifests = by_kind(
        render({"config": {"redaction": {"mode": "hash"}}, "redactionHashKey": {"existingSecret": "keys"}})
    )
    [container] = manifests["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    [hash_key] = [
        variable for variable in container["env"] if variable["name"] == "GENAI_COLLECTOR_REDACTION__HASH_KEY"
    ]
    assert hash_key["valueFrom"] == {"secretKeyRef": {"name": "keys", "key": "hash-key"}}
    assert "hash_key" not in collector_file(list(manifests.values()))
    # With redaction off, the hash mode is never used and needs no key.
    render({"config": {"redaction": {"enabled": False, "mode": "hash"}}})


def test_config_values_are_rendered_into_the_configmap() -> None:
    manifests = render(
        {"config": {"queue_capacity": 50_000, "snapshots": {"rules": [{"metric": "cost_usd", "above": 0.05}]}}}
    )
    config = yaml.safe_load(collector_file(manifests))
    assert config["queue_capacity"] == 50_000
    assert config["snapshots"]["rules"] == [{"metric": "cost_usd", "above": 0.05}]
    assert config["log_format"] == "json"  # the chart's default


def test_a_config_change_changes_the_checksum_that_rolls_the_pod() -> None:
    def checksum(values: dict[str, Any]) -> str:
        return by_kind(render(values))["StatefulSet"]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    with helm.Chart.load(CHART) as chart:
        configmap = chart.render({}, name=RELEASE, namespace=NAMESPACE)["genai-collector/templates/configmap.yaml"]
    assert checksum({}) == hashlib.sha256(configmap.encode()).hexdigest()
    assert checksum({"config": {"log_level": "debug"}}) != checksum({})
    assert checksum({"service": {"annotations": {"a": "b"}}}) == checksum({})


def check_config(environment: dict[str, str]) -> dict[str, Any]:
    """The effective settings `genai-collector check-config` (the image's program) prints for ``environment``."""
    genai_collector = Path(sys.executable).with_name("genai-collector")
    result = subprocess.run(
        [str(genai_collector), "check-config"], capture_output=True, text=True, env=environment, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_rendered_config_is_accepted_by_the_daemon(tmp_path: Path) -> None:
    """check-config reads the ConfigMap's file with the pod's environment, the secret filled in."""
    manifests = render(EVERYTHING_ON)
    config_file = tmp_path / "collector.yaml"
    config_file.write_text(collector_file(manifests))
    [container] = by_kind(manifests)["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    pod_environment = {
        variable["name"]: variable.get("value", "a-secret-from-kubernetes") for variable in container["env"]
    }
    pod_environment["GENAI_COLLECTOR_CONFIG"] = str(config_file)

    effective = check_config(collector_environment(**pod_environment))
    assert effective["db"] == "/data/genai-collector.db"
    assert effective["http_endpoint"] == "0.0.0.0:4318"
    assert effective["log_level"] == "debug"  # from extraEnv, over the file
    assert effective["queue_capacity"] == 50_000
    assert effective["redaction"]["hash_key"] == "**********"
    assert effective["redaction"]["rules"][0]["name"] == "ticket"
    assert effective["pricing"]["models"]["my-finetune-v3"]["input"] == 1.0
    assert effective["snapshots"]["settle_after"] == 15.0
    assert [rule["metric"] for rule in effective["snapshots"]["rules"]] == [
        "latency_ms",
        "latency_ms",
        "cost_usd",
        "eval:faithfulness",
    ]
    assert effective["metrics"]["dimensions"] == ["service", "agent"]
    assert effective["retention"] == {
        "max_age": 3 * 86400.0,
        "max_size": 40 * 2**30,
        "low_water_mark": 0.85,
        "snapshots_max_age": 90 * 86400.0,
        "interval": 1.0,
    }


def test_default_config_is_accepted_by_the_daemon(tmp_path: Path) -> None:
    config_file = tmp_path / "collector.yaml"
    config_file.write_text(collector_file(render()))
    effective = check_config(collector_environment(GENAI_COLLECTOR_CONFIG=str(config_file)))
    assert effective["log_format"] == "json"
    assert effective["retention"]["max_size"] == 8 * 2**30  # under the default 10Gi volume


def test_service_monitor_scrapes_the_admin_port_of_this_service() -> None:
    manifests = by_kind(render({"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}))
    monitor, service = manifests["ServiceMonitor"], manifests["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "http-admin", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert "http-admin" in {port["name"] for port in service["spec"]["ports"]}


def test_ingress_routes_otlp_http() -> None:
    ingress = by_kind(render({"ingress": {"enabled": True, "className": "nginx"}}))["Ingress"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "otlp.example.com"
    assert rule["http"]["paths"] == [
        {
            "path": "/v1",
            "pathType": "Prefix",
            "backend": {"service": {"name": FULLNAME, "port": {"name": "otlp-http"}}},
        }
    ]


def test_network_policy_and_disruption_budget() -> None:
    manifests = by_kind(render({"networkPolicy": {"enabled": True}, "podDisruptionBudget": {"enabled": True}}))
    pod_labels = manifests["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
    policy = manifests["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert [sorted(port["port"] for port in rule["ports"]) for rule in policy["ingress"]] == [
        ["otlp-grpc", "otlp-http"],
        ["http-admin"],
    ]
    assert all("from" not in rule for rule in policy["ingress"])  # no peers given: from anywhere
    assert policy["egress"] == []  # the collector opens no connection

    budget = manifests["PodDisruptionBudget"]["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["minAvailable"] == 1 and "maxUnavailable" not in budget
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    evictable = by_kind(render({"podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}}))
    assert evictable["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in evictable["PodDisruptionBudget"]["spec"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_every_rendered_manifest_validates_against_the_kubernetes_schemas(combination: str, version: str) -> None:
    """Strict schemas (no unknown field) of the Kubernetes API, shipped offline by kubernetes-validate."""
    checked = []
    for manifest in render(COMBINATIONS[combination]):
        if manifest["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # Prometheus Operator CRDs: see test_prometheus_rule_* and test_service_monitor_*
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(f"{manifest['kind']} is invalid for Kubernetes {version} at {path}: {error.message}")
        checked.append(manifest["kind"])
    workload = "Deployment" if "storage" in COMBINATIONS[combination] else "StatefulSet"
    assert {workload, "Service", "ConfigMap"} <= set(checked)


def test_the_strict_schemas_do_catch_a_misspelled_field() -> None:
    """The validation above is not vacuous: an unknown field of a StatefulSet fails it."""
    statefulset = copy.deepcopy(by_kind(render())["StatefulSet"])
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSIONS[0], strict=True)


def test_config_schema_knows_exactly_the_daemon_options() -> None:
    """values.schema.json's `config` has every daemon option but those the chart sets, and nothing else."""
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())["properties"]["config"]["properties"]
    chart_owned = {"db", "grpc_endpoint", "http_endpoint", "admin_endpoint", "tls"}  # tls: from tls.existingSecret
    assert set(schema) == set(Settings.model_fields) - chart_owned
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, Section) and name not in chart_owned:
            # secrets, or set by the chart
            chart_set = {"redaction": {"hash_key"}, "auth": {"api_keys"}, "query": {"endpoint"}}.get(name, set())
            assert set(schema[name]["properties"]) == set(section.model_fields) - chart_set, name


def leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Every leaf of a values mapping (a scalar, a list or an empty mapping) as a dotted path."""
    keys = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            keys.extend(leaf_keys(value, f"{path}."))
        else:
            keys.append(path)
    return keys


def test_every_value_is_documented_in_the_chart_readme() -> None:
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    undocumented = [key for key in leaf_keys(values) if f"| `{key}` |" not in readme]
    assert undocumented == []


def test_every_schema_property_has_a_default_in_values() -> None:
    """A key the schema allows but values.yaml lacks would be undocumented; `config` keys are the daemon's."""
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) == set(values)


def test_keys_and_tls_come_from_existing_secrets(tmp_path: Path) -> None:
    manifests = render(KEYS_AND_TLS)
    kinds = by_kind(manifests)
    pod = kinds["StatefulSet"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["api-key-0"]["secret"] == {"secretName": "otlp-keys", "items": [{"key": "checkout", "path": "key"}]}
    assert volumes["tls"]["secret"] == {"secretName": "collector-tls"}
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["api-key-1"] == {
        "name": "api-key-1",
        "mountPath": "/var/run/secrets/genai-collector/keys/prometheus",
        "readOnly": True,
    }
    assert mounts["tls"]["mountPath"] == "/var/run/secrets/genai-collector/tls"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"

    config = yaml.safe_load(collector_file(manifests))
    assert config["auth"]["api_keys"][0] == {
        "name": "checkout-app",
        "key_file": "/var/run/secrets/genai-collector/keys/checkout-app/key",
        "scopes": ["ingest"],
    }
    assert config["tls"]["otlp_http"] == {"client_ca_file": "/var/run/secrets/genai-collector/tls/ca.crt"}
    assert "admin" not in config["tls"]  # the kubelet's probes carry no client certificate

    [endpoint] = kinds["ServiceMonitor"]["spec"]["endpoints"]
    assert endpoint["scheme"] == "https" and endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": "scrape-key", "key": "key"}}

    config_file = tmp_path / "collector.yaml"
    config_file.write_text(collector_file(manifests))
    effective = check_config(collector_environment(GENAI_COLLECTOR_CONFIG=str(config_file)))
    assert effective["auth"]["protect_metrics"] is True
    assert effective["tls"]["cert_file"] == "/var/run/secrets/genai-collector/tls/tls.crt"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"config": {"auth": {"protect_metrics": True}}}, "needs an apiKeys entry with the admin scope"),
        ({"tls": {"clientAuth": True}}, "tls.clientAuth needs tls.existingSecret"),
        ({"apiKeys": [KEYS_AND_TLS["apiKeys"][0]] * 2}, "apiKeys has the name checkout-app twice"),
        ({"config": {"auth": {"api_keys": []}}}, "additional properties 'api_keys' not allowed"),
    ],
)
def test_impossible_key_and_tls_values_are_refused(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm.HelmError) as refused:
        render(values)
    assert complaint in str(refused.value)


def test_postgres_renders_a_deployment_of_replicas_without_a_volume() -> None:
    """storage.type postgres: a Deployment of replicaCount pods, the database URL and password from the Secret, no
    claim and no /data; a PodDisruptionBudget by default; no HorizontalPodAutoscaler unless asked."""
    manifests = by_kind(render(POSTGRES))
    assert set(manifests) == {"ServiceAccount", "ConfigMap", "Service", "Deployment", "PodDisruptionBudget"}
    deployment = manifests["Deployment"]
    spec = deployment["spec"]
    assert deployment["metadata"]["name"] == FULLNAME
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "RollingUpdate"}
    assert "volumeClaimTemplates" not in spec and "serviceName" not in spec
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert {mount["mountPath"] for mount in container["volumeMounts"]} == {"/etc/genai-collector", "/tmp"}
    assert {volume["name"] for volume in pod["volumes"]} == {"config", "tmp"}
    environment = {variable["name"]: variable for variable in container["env"]}
    assert environment["GENAI_COLLECTOR_DB"] == {
        "name": "GENAI_COLLECTOR_DB",
        "valueFrom": {"secretKeyRef": {"name": "collector-db", "key": "url"}},
    }
    assert environment["PGPASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "collector-db", "key": "password"}}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-admin"}
    assert manifests["Service"]["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()

    budget = manifests["PodDisruptionBudget"]["spec"]
    assert budget["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert budget["minAvailable"] == 1 and "maxUnavailable" not in budget

    without_password = by_kind(render({"storage": {"type": "postgres", "postgres": {"existingSecret": "db"}}}))
    [container] = without_password["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert not {"PGPASSWORD", "PGSSLROOTCERT"} & {variable["name"] for variable in container["env"]}


def test_postgres_server_ca_is_mounted_for_libpq() -> None:
    """storage.postgres.caSecret: the CA mounted read-only and named by PGSSLROOTCERT (sslmode=verify-full)."""
    values = {
        "storage": {"type": "postgres", "postgres": {"existingSecret": "db", "caSecret": "pg-ca", "caKey": "root.pem"}}
    }
    pod = by_kind(render(values))["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    environment = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert environment["PGSSLROOTCERT"] == "/var/run/secrets/genai-collector/postgres/ca.crt"
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["postgres-ca"] == {
        "name": "postgres-ca",
        "mountPath": "/var/run/secrets/genai-collector/postgres",
        "readOnly": True,
    }
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["postgres-ca"]["secret"] == {"secretName": "pg-ca", "items": [{"key": "root.pem", "path": "ca.crt"}]}


SELECTOR = {"app.kubernetes.io/name": "genai-collector", "app.kubernetes.io/instance": RELEASE}


def test_postgres_disruption_budget_is_configurable() -> None:
    def budget(values: dict[str, Any]) -> dict[str, Any] | None:
        manifests = by_kind(render({**POSTGRES, "podDisruptionBudget": values}))
        return manifests["PodDisruptionBudget"]["spec"] if "PodDisruptionBudget" in manifests else None

    assert budget({"maxUnavailable": 1}) == {
        "selector": {
            "matchLabels": {"app.kubernetes.io/name": "genai-collector", "app.kubernetes.io/instance": RELEASE}
        },
        "maxUnavailable": 1,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    assert budget({"minAvailable": "50%"})["minAvailable"] == "50%"  # type: ignore[index]
    assert budget({"enabled": False}) is None
    # SQLite: none unless enabled (one pod), as before.
    assert "PodDisruptionBudget" not in by_kind(render())


def test_postgres_autoscaler_is_off_by_default_and_owns_the_replica_count_when_on() -> None:
    assert "HorizontalPodAutoscaler" not in by_kind(render(POSTGRES))
    manifests = by_kind(render(POSTGRES_AUTOSCALED))
    assert "replicas" not in manifests["Deployment"]["spec"]  # the autoscaler's, not reset by each upgrade
    autoscaler = manifests["HorizontalPodAutoscaler"]
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME},
        "minReplicas": 2,
        "maxReplicas": 8,
        "metrics": [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
            },
            {
                "type": "Resource",
                "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}},
            },
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}},
    }
    assert manifests["NetworkPolicy"]["spec"]["egress"] == POSTGRES_AUTOSCALED["networkPolicy"]["egress"]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"storage": {"type": "postgres"}}, "storage.type postgres needs storage.postgres.existingSecret"),
        ({"storage": {"postgres": {"existingSecret": "db"}}}, "set storage.type to postgres"),
        ({"autoscaling": {"enabled": True}}, "autoscaling.enabled needs storage.type postgres"),
        (
            {**POSTGRES, "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}},
            "minReplicas (5) is above",
        ),
        (
            {**POSTGRES, "autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": None}},
            "autoscaling.enabled needs a target",
        ),
        ({**POSTGRES, "networkPolicy": {"enabled": True}}, "the collector must reach its database"),
        ({**POSTGRES, "persistence": {"existingClaim": "old-data"}}, "keeps no data in the pod"),
        ({**POSTGRES, "updateStrategy": {"type": "OnDelete"}}, "OnDelete is a StatefulSet's"),
        ({"updateStrategy": {"type": "Recreate"}}, "Recreate is a Deployment's"),
        ({"storage": {"type": "mysql"}}, "at '/storage/type': value must be one of"),
        ({"storage": {"postgres": {"url": "postgresql://in-a-configmap"}}}, "additional properties 'url' not allowed"),
    ],
)
def test_impossible_storage_values_are_refused(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm.HelmError) as refused:
        render(values)
    assert complaint in str(refused.value)


def pod_environment(manifests: list[dict[str, Any]], config_file: Path, secrets: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet sets it: values as written, Secret keys from ``secrets``."""
    workload = next(manifest for manifest in manifests if manifest["kind"] in ("StatefulSet", "Deployment"))
    [container] = workload["spec"]["template"]["spec"]["containers"]
    environment = {}
    for variable in container["env"]:
        reference = variable.get("valueFrom", {}).get("secretKeyRef")
        environment[variable["name"]] = secrets[reference["key"]] if reference else variable["value"]
    environment["GENAI_COLLECTOR_CONFIG"] = str(config_file)
    return environment


def test_postgres_pod_environment_is_accepted_by_the_daemon(tmp_path: Path) -> None:
    """check-config takes the database URL the Secret passes as GENAI_COLLECTOR_DB, both schemes of it."""
    manifests = render(POSTGRES)
    config_file = tmp_path / "collector.yaml"
    config_file.write_text(collector_file(manifests))
    for url in (
        "postgresql://collector@db.example.com:5432/genai?sslmode=require",
        "postgres://collector@db.example.com/genai?sslmode=verify-full&connect_timeout=5",
    ):
        secrets = {"url": url, "password": "from-the-secret"}
        effective = check_config(collector_environment(**pod_environment(manifests, config_file, secrets)))
        assert effective["db"] == url
        assert effective["http_endpoint"] == "0.0.0.0:4318"
        assert effective["retention"]["max_age"] == 7 * 86400.0


def test_rendered_postgres_replicas_share_one_real_database(tmp_path: Path, postgres_cluster: Cluster) -> None:
    """Two collectors started with the Deployment's environment (the Secret's URL and password, the ConfigMap's
    file; ports moved to 0 by flags, which outrank it) on a real PostgreSQL: both ready, each stores what it is
    sent, into the one database."""
    manifests = render({**POSTGRES, "replicaCount": 2})
    config_file = tmp_path / "collector.yaml"
    config_file.write_text(collector_file(manifests))
    with postgres_cluster.database("chart", url=True) as url:
        environment = pod_environment(manifests, config_file, {"url": url, "password": "unused-by-trust"})
        with Daemon(None, environment=environment) as first, Daemon(None, environment=environment) as second:
            sent = []
            for daemon in (first.wait_listening(60), second.wait_listening(60)):
                trace_id = os.urandom(16)
                request = trace_request(trace_id, [{"span_id": os.urandom(8), "name": "chat gpt-4o"}])
                response = httpx.post(
                    f"{daemon.http_url}/v1/traces",
                    content=request.SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf"},
                    timeout=30,
                )
                assert response.status_code == 200, response.text
                sent.append(trace_id.hex())
        with psycopg.connect(url) as connection:
            stored = sorted(row[0] for row in connection.execute("SELECT trace_id FROM spans"))
    assert stored == sorted(sent)
