"""End to end: an agent trace over budget, sent by the OpenTelemetry SDK, becomes a breached row in
metric_snapshots and a breach in /metrics, which a real Prometheus server scrapes (OpenMetrics, with
the trace id as an exemplar)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.helpers import metric_value, otlp_request, scrape, wait_until

SNAPSHOTS = {
    "settle_after": "500ms",
    "interval": "100ms",
    "rules": [
        {"metric": "latency_ms", "above": 30_000},
        {"metric": "latency_ms", "above": 50, "service": "checkout-bot"},
        {"metric": "cost_usd", "above": 0.05},
    ],
}
BREACH_RULE = "latency_ms > 50 [service=checkout-bot]"


def send_slow_agent_trace(collector: Any) -> str:
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout-bot"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=collector.grpc_target, insecure=True)))
    tracer = provider.get_tracer("checkout")
    with tracer.start_as_current_span("invoke_agent checkout") as root:
        root.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "checkout"})
        with tracer.start_as_current_span("chat gpt-4o") as llm:
            llm.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 1200,
                    "gen_ai.usage.output_tokens": 300,
                    "gen_ai.response.time_to_first_chunk": 0.4,
                }
            )
            time.sleep(0.08)  # over the 50 ms budget of checkout-bot
    assert provider.force_flush(10_000)
    provider.shutdown()
    return f"{root.get_span_context().trace_id:032x}"


def test_over_budget_trace_is_a_breached_snapshot_and_a_breach_in_metrics(start_collector: Any) -> None:
    collector = start_collector(snapshots=SNAPSHOTS)
    trace_id = send_slow_agent_trace(collector)
    sent_at = time.monotonic()

    def snapshot_rows() -> list[tuple[Any, ...]]:
        return collector.query(
            "SELECT metric, threshold, breached, rule FROM metric_snapshots WHERE trace_id = ? ORDER BY metric",
            trace_id,
        )

    wait_until(lambda: len(snapshot_rows()) == 2, timeout=5)
    assert time.monotonic() - sent_at < 0.5 + 3  # the quiet period plus a few seconds
    assert snapshot_rows() == [("cost_usd", 0.05, 0, "cost_usd > 0.05"), ("latency_ms", 50.0, 1, BREACH_RULE)]
    breaches = collector.query(
        "SELECT trace_id, metric FROM metric_snapshots WHERE breached = 1 AND computed_at > ?", 0
    )
    assert breaches == [(trace_id, "latency_ms")]

    exposition = scrape(collector)
    assert metric_value(exposition, "genai_collector_breaches_total", rule=BREACH_RULE, metric="latency_ms") == 1
    assert metric_value(exposition, "gen_ai_client_token_usage_count", gen_ai_token_type="input") == 1
    assert metric_value(exposition, "genai_collector_cost_usd_total", service_name="checkout-bot") == pytest.approx(
        (1200 * 2.5 + 300 * 10.0) / 1e6
    )

    openmetrics = httpx.get(
        collector.admin_url + "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
    ).text
    exemplars = [
        sample.exemplar.labels["trace_id"]
        for family in text_string_to_metric_families(openmetrics)
        for sample in family.samples
        if sample.exemplar is not None
    ]
    assert trace_id in exemplars


def test_a_late_span_recomputes_without_a_second_breach(start_collector: Any) -> None:
    collector = start_collector(snapshots=SNAPSHOTS)
    trace_id = send_slow_agent_trace(collector)
    wait_until(lambda: collector.query("SELECT count(*) FROM metric_snapshots") == [(2,)], timeout=5)
    late = otlp_request(1, service="checkout-bot", trace_id=bytes.fromhex(trace_id))
    late.resource_spans[0].scope_spans[0].spans[0].parent_span_id = os.urandom(8)
    response = httpx.post(
        collector.http_url + "/v1/traces",
        content=late.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    wait_until(lambda: collector.query("SELECT settled_at_unix_nano IS NOT NULL FROM traces") == [(1,)], timeout=5)
    wait_until(
        lambda: (
            collector.query("SELECT span_count FROM traces") == [(3,)]
            and collector.query("SELECT settled_at_unix_nano IS NOT NULL FROM traces") == [(1,)]
        ),
        timeout=5,
    )
    assert collector.query("SELECT count(*) FROM metric_snapshots") == [(2,)]
    exposition = scrape(collector)
    assert metric_value(exposition, "genai_collector_breaches_total", rule=BREACH_RULE, metric="latency_ms") == 1


def test_hostile_model_names_keep_series_bounded(start_collector: Any) -> None:
    collector = start_collector(metrics={"max_label_values": 50})
    for start in range(0, 10_000, 1_000):
        request = otlp_request(0)
        scope = request.resource_spans[0].scope_spans[0]
        for index in range(start, start + 1_000):
            span = (
                otlp_request(1, attributes={"gen_ai.request.model": f"model-{index}", "gen_ai.usage.input_tokens": 5})
                .resource_spans[0]
                .scope_spans[0]
                .spans[0]
            )
            scope.spans.append(span)
        response = httpx.post(
            collector.http_url + "/v1/traces",
            content=request.SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )
        assert response.status_code == 200
    exposition = scrape(collector)
    models = {
        line.split('gen_ai_request_model="', 1)[1].split('"', 1)[0]
        for line in exposition.splitlines()
        if line.startswith("gen_ai_client_token_usage_count")
    }
    assert len(models) == 51 and "_other" in models
    unpriced = {line for line in exposition.splitlines() if line.startswith("genai_collector_unpriced_spans_total")}
    assert len(unpriced) == 51
    assert metric_value(exposition, "gen_ai_client_token_usage_count", gen_ai_request_model="_other") == 10_000 - 50


# --- a real Prometheus server -------------------------------------------------------------


def test_real_prometheus_scrapes_breaches_and_exemplars(start_collector: Any, prometheus_server: Any) -> None:
    collector = start_collector(snapshots=SNAPSHOTS)
    trace_id = send_slow_agent_trace(collector)
    wait_until(lambda: collector.query("SELECT count(*) FROM metric_snapshots WHERE breached = 1") == [(1,)], timeout=5)
    server = prometheus_server(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "genai-collector",
                    "static_configs": [{"targets": [collector.admin_url.removeprefix("http://")]}],
                }
            ],
        }
    )

    def query(expression: str) -> list[dict[str, Any]]:
        try:
            answer = httpx.get(server + "/api/v1/query", params={"query": expression}, timeout=2).json()
        except (httpx.HTTPError, ValueError):  # not up yet, or not an answer yet
            return []
        return answer.get("data", {}).get("result", [])

    wait_until(lambda: query('up{job="genai-collector"} == 1'), timeout=20)
    wait_until(lambda: query("genai_collector_breaches_total"), timeout=20)
    (breach,) = query("genai_collector_breaches_total")
    assert breach["metric"]["rule"] == BREACH_RULE and breach["value"][1] == "1"

    def exemplar_trace_ids() -> set[str]:
        now = time.time()
        try:  # Prometheus may still be starting: not an answer yet, so poll again
            answer = httpx.get(
                server + "/api/v1/query_exemplars",
                params={"query": "gen_ai_client_operation_duration_seconds_bucket", "start": now - 60, "end": now},
                timeout=2,
            ).json()
        except (httpx.HTTPError, ValueError):
            return set()
        return {
            exemplar["labels"]["trace_id"]
            for series in answer.get("data", [])
            for exemplar in series.get("exemplars", [])
        }

    wait_until(lambda: trace_id in exemplar_trace_ids(), timeout=20)
    health = httpx.get(server + "/api/v1/targets").json()
    (target,) = health["data"]["activeTargets"]
    assert target["health"] == "up", json.dumps(target)
