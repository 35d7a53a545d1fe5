"""The Grafana dashboard and its provisioning files (their queries run on a real Prometheus in
test_monitoring_e2e.py)."""

from __future__ import annotations

import yaml

from tests.deploy import dashboard as board
from tests.deploy.helpers import DEPLOY

GRAFANA = DEPLOY / "grafana"


def test_dashboard_has_a_prometheus_datasource_variable_used_by_every_panel() -> None:
    dashboard = board.load()
    assert dashboard["uid"] == "genai-collector" and dashboard["title"]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("service", "model"):
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    for panel in board.panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert board.expand(target["expr"])


def test_panel_ids_are_unique_and_the_grid_has_no_overlap() -> None:
    dashboard = board.load()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_dashboard_covers_cost_tokens_latency_budgets_and_the_collector() -> None:
    exprs = " ".join(target["expr"] for panel in board.panels(board.load()) for target in panel["targets"])
    titles = [panel["title"] for panel in board.panels(board.load())]
    assert "Cost by model (USD per hour)" in titles and "Cost by service (USD per hour)" in titles
    assert any("per 1,000 requests" in title for title in titles)
    for needle in (
        "sum by (gen_ai_provider_name, gen_ai_request_model) (rate(genai_collector_cost_usd_total",
        "sum by (service_name) (rate(genai_collector_cost_usd_total",
        "gen_ai_client_token_usage_sum",
        "histogram_quantile(0.5, sum by (le) (rate(gen_ai_client_operation_duration_seconds_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(gen_ai_client_operation_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(gen_ai_client_operation_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
        "genai_collector_breaches_total",
        "genai_collector_receiver_refused_spans_total",
        "genai_collector_queue_size",
    ):
        assert needle in exprs, needle


def test_provisioning_points_at_the_dashboard_and_the_compose_prometheus() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [datasource] = datasources["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    assert datasource["isDefault"] is True

    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "genai-collector.yml").read_text())
    [provider] = providers["providers"]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = dict(
        volume.rsplit(":", 2)[:2] for volume in compose["services"]["grafana"]["volumes"] if volume.startswith(".")
    )
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./grafana/genai-collector.json"] == f"{provider['options']['path']}/genai-collector.json"


def test_the_collector_is_a_jaeger_data_source_and_exemplars_link_to_it() -> None:
    """A latency spike leads to its trace in one click: exemplars carry trace_id, Prometheus links it to the
    collector's Jaeger API (served on query.endpoint, port 16686, in compose)."""
    [jaeger] = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "jaeger.yml").read_text())["datasources"]
    assert jaeger["type"] == "jaeger" and jaeger["url"] == "http://collector:16686"
    [prometheus] = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert prometheus["jsonData"]["exemplarTraceIdDestinations"] == [
        {"name": "trace_id", "datasourceUid": jaeger["uid"]}
    ]
    histogram_targets = [
        target
        for panel in board.panels(board.load())
        for target in panel.get("targets", [])
        if "_bucket" in target.get("expr", "")
        and "genai_collector_commit" not in target["expr"]
        and "request_duration" not in target["expr"]
    ]
    assert len(histogram_targets) >= 9
    assert all(target.get("exemplar") is True for target in histogram_targets)
