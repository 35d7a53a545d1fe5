"""The admin endpoint: liveness, readiness, and an exposition Prometheus accepts."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest

from tests.helpers import metric_value, otlp_request, require_tool, scrape


def test_healthz_and_readyz_answer_while_running(collector: Any) -> None:
    assert httpx.get(collector.admin_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(collector.admin_url + "/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


@pytest.mark.usefixtures("ingest_workers")
def test_metrics_exposition_passes_promtool(collector: Any) -> None:
    request = otlp_request(3)
    answer = httpx.post(
        collector.http_url + "/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert answer.status_code == 200
    exposition = scrape(collector)
    assert metric_value(exposition, "genai_collector_receiver_accepted_spans_total", transport="http") == 3
    assert metric_value(exposition, "genai_collector_request_duration_seconds_count", transport="http") == 1
    assert metric_value(exposition, "genai_collector_queue_capacity") == collector.settings.queue_capacity
    assert metric_value(exposition, "genai_collector_ingest_workers") == collector.settings.ingest.processes
    assert metric_value(exposition, "genai_collector_database_size_bytes", file="main") > 0
    assert "_created" not in exposition
    checked = subprocess.run(
        [require_tool("promtool"), "check", "metrics"], input=exposition, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.usefixtures("ingest_workers")
def test_metrics_in_openmetrics_format_when_asked(collector: Any) -> None:
    answer = httpx.get(
        collector.admin_url + "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.rstrip().endswith("# EOF")
