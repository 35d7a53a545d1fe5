"""deploy/prometheus and the chart's PrometheusRule, checked by promtool: one set of alert rules, each fired
by a unit test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from tests.deploy.helpers import ALERTS, CHART, DEPLOY, NAMESPACE, RELEASE, by_kind, promtool, render

PROMETHEUS = DEPLOY / "prometheus"


def alert_names(rules: dict[str, Any]) -> list[str]:
    return [rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def test_scrape_config_is_valid() -> None:
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert f"SUCCESS: {len(alert_names(yaml.safe_load(ALERTS.read_text())))} rules found" in result.stdout


def test_alert_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", "alerts_test.yml", cwd=PROMETHEUS)
    assert "SUCCESS" in result.stdout


def test_every_alert_is_fired_by_a_unit_test() -> None:
    alerts = alert_names(yaml.safe_load(ALERTS.read_text()))
    unit_tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    fired = {
        case["alertname"]
        for test in unit_tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert len(alerts) >= 5
    assert set(alerts) == fired


def test_deploy_alerts_are_the_chart_file() -> None:
    """One source: deploy/prometheus/alerts.yml is a link to the file the chart's PrometheusRule reads."""
    link = PROMETHEUS / "alerts.yml"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()  # relative, so it survives a clone
    assert link.resolve() == ALERTS.resolve()


def test_prometheus_rule_carries_the_alerts_and_promtool_accepts_them(tmp_path: Path) -> None:
    """The PrometheusRule CRD is not in the Kubernetes schemas: its groups are checked by promtool instead."""
    rule = by_kind(render({"prometheusRule": {"enabled": True, "labels": {"release": "prom"}}}))["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(rule["spec"]) == {"groups"}
    assert rule["metadata"]["labels"]["release"] == "prom"
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())

    extracted = tmp_path / "prometheusrule-groups.yml"
    extracted.write_text(yaml.safe_dump(rule["spec"]))
    result = promtool("check", "rules", str(extracted))
    assert f"SUCCESS: {len(alert_names(rule['spec']))} rules found" in result.stdout


def test_packaged_chart_keeps_its_alert_rules(tmp_path: Path) -> None:
    """`helm package` follows .helmignore: the archive must still carry files/alerts.yml."""
    archive = helm.package(CHART, destination=tmp_path)
    with helm.Config(namespace=NAMESPACE, storage_driver="memory") as config:
        release = config.install(archive, RELEASE, {"prometheusRule": {"enabled": True}}, dry_run="client")
    [rule] = [m for m in yaml.safe_load_all(release["manifest"]) if m and m["kind"] == "PrometheusRule"]
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())
