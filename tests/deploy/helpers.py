"""Helpers of the deployment tests: the chart rendered by Helm's own engine, and the Prometheus tools."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from tests.helpers import REPO, require_tool

CHART = REPO / "helm" / "genai-collector"
DEPLOY = REPO / "deploy"
ALERTS = CHART / "files" / "alerts.yml"  # deploy/prometheus/alerts.yml links to it
RELEASE = "genai"
NAMESPACE = "observability"
FULLNAME = "genai-genai-collector"

# Everything optional switched on: the largest set of manifests the chart renders.
EVERYTHING_ON: dict[str, Any] = {
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "tls": [{"hosts": ["otlp.example.com"], "secretName": "otlp-tls"}],
    },
    "networkPolicy": {
        "enabled": True,
        "otlpFrom": [{"namespaceSelector": {"matchLabels": {"otlp-client": "true"}}}],
        "adminFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "queryFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
    },
    "podDisruptionBudget": {"enabled": True},
    "queryApi": {"expose": True},  # reads without a key: config.auth.allow_unauthenticated_reads below
    "redactionHashKey": {"existingSecret": "genai-collector-redaction"},
    "persistence": {"storageClass": "fast-ssd", "retentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"}},
    "podAnnotations": {"example.com/team": "ai"},
    "extraEnv": [{"name": "GENAI_COLLECTOR_LOG_LEVEL", "value": "debug"}],
    "config": {
        "auth": {"allow_unauthenticated_reads": True},
        "queue_capacity": 50_000,
        "batch_size": 5_000,
        "shutdown_timeout": "20s",
        "cors_origins": ["https://app.example.com"],
        "redaction": {
            "mode": "hash",
            "detectors": {"ipv4": "off", "email": "mask"},
            "rules": [{"name": "ticket", "pattern": r"TICKET-\d{6}", "mode": "mask"}],
        },
        "pricing": {
            "models": {
                "my-finetune-v3": {"input": 1.0, "output": 2.0},
                "groq/llama-3.1-8b-instant": {"input": 0.05, "output": 0.08},
            }
        },
        "limits": {"max_attribute_length": 32_768, "max_attributes": 128, "max_events": 64},
        "logs": {"keep_other": True},
        "snapshots": {
            "settle_after": "15s",
            "max_wait": "10m",
            "rules": [
                {"metric": "latency_ms", "above": 30_000},
                {"metric": "latency_ms", "above": 8_000, "service": "checkout-bot"},
                {"metric": "cost_usd", "above": 0.05},
                {"metric": "eval:faithfulness", "below": 0.85},
            ],
        },
        "metrics": {"max_label_values": 100, "dimensions": ["service", "agent"]},
        "retention": {"max_age": "3d", "max_size": "40GiB", "low_water_mark": 0.85, "snapshots_max_age": "90d"},
    },
}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The manifests ``helm install --dry-run=client`` renders for ``values`` (schema checked, hooks included)."""
    with helm.Config(namespace=NAMESPACE, storage_driver="memory") as config:
        release = config.install(str(CHART), RELEASE, values or {}, dry_run="client")
    return [manifest for manifest in yaml.safe_load_all(release["manifest"]) if manifest]


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The rendered manifests by kind; the chart renders at most one of each."""
    kinds = [manifest["kind"] for manifest in manifests]
    assert len(kinds) == len(set(kinds)), f"more than one manifest of a kind: {kinds}"
    return {manifest["kind"]: manifest for manifest in manifests}


def collector_file(manifests: list[dict[str, Any]]) -> str:
    """The daemon's config file as the ConfigMap carries it."""
    return by_kind(manifests)["ConfigMap"]["data"]["collector.yaml"]


def promtool(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs promtool; a failure shows its whole output."""
    result = subprocess.run(
        [require_tool("promtool", package="prometheus"), *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )
    assert result.returncode == 0, f"promtool {' '.join(arguments)} failed:\n{result.stdout}\n{result.stderr}"
    return result
