"""A real Prometheus, run with deploy/prometheus/prometheus.yml and its alert rules, scrapes a real collector
that received GenAI spans: every dashboard query runs and shows data, and the alerts fire from the
daemon's own metrics."""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy import dashboard as board
from tests.deploy.helpers import ALERTS, DEPLOY
from tests.helpers import scrape, trace_request, wait_until

SNAPSHOTS = {
    "settle_after": "200ms",
    "interval": "50ms",
    "rules": [{"metric": "latency_ms", "above": 50, "service": "checkout-bot"}],
}
UNPRICED_MODEL = "my-finetune-v3"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",), "unknown": ("",)}


@pytest.fixture
def prometheus(prometheus_server: Any) -> Any:
    """Starts Prometheus with deploy/prometheus/prometheus.yml, changed only to scrape ``target`` and
    evaluate the rules twice a second."""

    def start(target: str) -> str:
        config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "500ms", "evaluation_interval": "500ms"}
        config["rule_files"] = [str((DEPLOY / "prometheus" / name).resolve()) for name in config["rule_files"]]
        [job] = config["scrape_configs"]
        job["static_configs"] = [{"targets": [target]}]
        return prometheus_server(config)

    return start


def send_genai_traffic(collector: Any) -> None:
    """One slow priced LLM call of checkout-bot (a budget breach), an unpriced model's call, a span with a
    bad trace id (refused: invalid_span) and a body that is not OTLP (a bad request)."""
    now = time.time_ns()
    llm = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 300,
        "gen_ai.response.time_to_first_chunk": 0.4,
    }
    unpriced = {**llm, "gen_ai.request.model": UNPRICED_MODEL}
    requests = [
        trace_request(
            os.urandom(16),
            [{"span_id": os.urandom(8), "start": now, "end": now + 120_000_000, "attributes": llm}],
            service="checkout-bot",
        ),
        trace_request(
            os.urandom(16),
            [{"span_id": os.urandom(8), "start": now, "end": now + 5_000_000, "attributes": unpriced}],
            service="support-bot",
        ),
    ]
    bad_trace_id = trace_request(b"\x01" * 15, [{"span_id": os.urandom(8)}])
    for request in [*requests, bad_trace_id]:
        response = httpx.post(
            collector.http_url + "/v1/traces",
            content=request.SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )
        assert response.status_code == 200
    garbage = httpx.post(
        collector.http_url + "/v1/traces",
        content=b"\xff\xff\xff\xff",
        headers={"content-type": "application/x-protobuf"},
    )
    assert garbage.status_code == 400


def exposed_names(exposition: str) -> set[str]:
    """Every sample name /metrics can show, including families that have no sample yet."""
    return {
        family.name + suffix
        for family in text_string_to_metric_families(exposition)
        for suffix in SUFFIXES[family.type]
    }


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_dashboard_queries_and_alert_rules_on_a_real_prometheus(start_collector: Any, prometheus: Any) -> None:
    collector = start_collector(snapshots=SNAPSHOTS, retention={"max_size": "64MiB"})  # every alert's metrics exist
    send_genai_traffic(collector)
    server = prometheus(collector.admin_url.removeprefix("http://"))

    def query(expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(server + "/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", f"{expr}: {answer}"
        return answer["data"]["result"]

    def ready() -> bool:
        try:
            return httpx.get(server + "/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=20, what="Prometheus to start")
    # Counters must move between two scrapes for increase() and rate() to see them: scrape, then send again.
    wait_until(
        lambda: query("count_over_time(genai_collector_breaches_total[1m]) >= 2"), timeout=20, what="two scrapes"
    )
    send_genai_traffic(collector)

    def firing() -> set[str]:
        alerts = httpx.get(server + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return {alert["labels"]["alertname"] for alert in alerts if alert["state"] == "firing"}

    wait_until(lambda: {"GenAITraceBudgetBreached", "GenAIUnpricedModel"} <= firing(), timeout=20, what="the alerts")
    alerts = httpx.get(server + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    unpriced = [alert for alert in alerts if alert["labels"]["alertname"] == "GenAIUnpricedModel"]
    assert [alert["labels"]["model"] for alert in unpriced] == [UNPRICED_MODEL]
    assert firing() <= {"GenAITraceBudgetBreached", "GenAIUnpricedModel"}

    groups = httpx.get(server + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(alert_rules()) and all(rule["health"] == "ok" for rule in rules), rules

    exposition = scrape(collector)
    exposed = exposed_names(exposition)
    for rule in alert_rules():
        names = board.metric_names(rule["expr"])
        assert names and names <= exposed, f"{rule['alert']}: {rule['expr']} names a metric /metrics lacks"

    for panel in board.panels(board.load()):
        shown = False
        for target in panel["targets"]:
            expr = board.expand(target["expr"])
            assert board.metric_names(expr), expr
            assert board.metric_names(expr) <= exposed, f"{panel['title']}: {expr} names a metric /metrics lacks"
            result = query(expr)
            if result:
                shown = True
                labels = set().union(*(series["metric"] for series in result))
                wanted = (board.grouping_labels(expr) | board.legend_labels(target.get("legendFormat", ""))) - {"le"}
                assert wanted <= labels, f"{panel['title']}: {expr} groups by labels its series lack"
        assert shown, f"panel {panel['title']!r} shows nothing after GenAI traffic"
