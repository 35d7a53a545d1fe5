"""Settling keeps up with ingest: no fixed number of traces per interval; the backlog's age is a gauge."""

from __future__ import annotations

import time
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.helpers import metric_value, otlp_request, scrape, wait_until

PROTOBUF = {"content-type": "application/x-protobuf"}


def many_traces(count: int) -> ExportTraceServiceRequest:
    """``count`` one-span traces, each span a root."""
    request = otlp_request(1)
    for _ in range(count - 1):
        request.resource_spans[0].scope_spans[0].spans.extend(otlp_request(1).resource_spans[0].scope_spans[0].spans)
    return request


def settled(running: Any) -> int:
    return running.query("SELECT count(*) FROM traces WHERE settled_at_unix_nano IS NOT NULL")[0][0]


def oldest_unsettled_age(running: Any) -> float:
    metrics = scrape(running)
    return metric_value(metrics, "genai_collector_oldest_unsettled_trace_age_seconds")


def test_a_backlog_of_traces_settles_in_one_interval_not_500_per_interval(start_collector: Any) -> None:
    running = start_collector(snapshots={"settle_after": "0s", "interval": "2s"})
    for _ in range(3):
        response = httpx.post(
            running.http_url + "/v1/traces", content=many_traces(600).SerializeToString(), headers=PROTOBUF
        )
        assert response.status_code == 200
    sent = time.monotonic()
    wait_until(lambda: settled(running) == 1800, 3.5, "1,800 traces to settle within one interval")
    assert time.monotonic() - sent < 3.5
    metrics = scrape(running)
    assert metric_value(metrics, "genai_collector_settled_traces_total") == 1800
    assert oldest_unsettled_age(running) == 0


def test_the_oldest_unsettled_trace_age_is_exported(start_collector: Any) -> None:
    running = start_collector(snapshots={"settle_after": "1h", "interval": "100ms"})
    body = otlp_request(2).SerializeToString()
    response = httpx.post(running.http_url + "/v1/traces", content=body, headers=PROTOBUF)
    assert response.status_code == 200
    wait_until(lambda: oldest_unsettled_age(running) >= 0.5, 5, "the oldest unsettled trace to age")
