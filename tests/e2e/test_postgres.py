"""The whole collector on PostgreSQL: the SDK's exporters send over OTLP/HTTP and gRPC, and the query API
answers what the same collector on SQLite answers for the same traffic."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from websockets.sync.client import connect

from tests.e2e.test_sdk_exporters import emit_agent_trace
from tests.helpers import otlp_request, wait_until
from tests.postgres import Cluster, server_binaries
from tests.query.test_live import breaches_in, live_url, of_type, receive_until, traces_in

SNAPSHOTS = {
    "settle_after": "200ms",
    "interval": "50ms",
    "rules": [{"metric": "latency_ms", "above": 0}, {"metric": "cost_usd", "above": 0.000001}],
}


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> Iterator[str]:
    with postgres_cluster.database("e2e", url=True) as url:
        yield url


def recorded_traffic(traces: int) -> list[ReadableSpan]:
    """Agent traces as the SDK records them, to be sent the same to each collector."""
    spans: list[ReadableSpan] = []
    for index in range(traces):
        memory = InMemorySpanExporter()  # shut down with its provider
        provider = TracerProvider(resource=Resource.create({"service.name": f"checkout-bot-{index % 2}"}))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        emit_agent_trace(provider)
        provider.shutdown()
        spans.extend(memory.get_finished_spans())
    return spans


def send(collector: Any, spans: list[ReadableSpan]) -> None:
    """Half the spans over gRPC, half over HTTP, each half twice (a client's retry stores nothing new)."""
    grpc = GrpcSpanExporter(endpoint=collector.grpc_target, insecure=True)
    http = HttpSpanExporter(endpoint=f"{collector.http_url}/v1/traces")
    for exporter, part in ((grpc, spans[::2]), (http, spans[1::2])):
        for _ in range(2):
            assert exporter.export(part) == SpanExportResult.SUCCESS
        exporter.shutdown()


def answers(collector: Any, start_ns: int, end_ns: int) -> dict[str, Any]:
    """What the REST API says about the traffic: the trace list, each trace, stats, breaches, the filters."""
    window = {"start": str(start_ns), "end": str(end_ns)}
    with httpx.Client(base_url=collector.query_url, timeout=10) as client:

        def get(path: str, **params: Any) -> Any:
            response = client.get(path, params=params)
            assert response.status_code == 200, response.text
            return response.json()

        traces = get("/api/v1/traces", limit=100, **window)
        found = {
            "traces": traces,
            "services": get("/api/v1/services"),
            "models": get("/api/v1/models", **window),
            "latency": get("/api/v1/stats/latency", bucket="1h", **window),
            "llm_latency": get("/api/v1/stats/latency", of="llm", group_by="model", bucket="1h", **window),
            "cost": get("/api/v1/stats/cost", group_by="service", bucket="1h", **window),
        }
        breaches = get("/api/v1/breaches", limit=100)
        for breach in breaches["data"]:  # numbered and timed by each store as it settled
            breach.pop("id")
            breach.pop("computed_at_unix_nano")
        found["breaches"] = sorted(breaches["data"], key=lambda breach: (breach["trace_id"], breach["metric"]))
        for summary in traces["data"]:
            trace_id = summary["trace_id"]
            trace = found[trace_id] = get(f"/api/v1/traces/{trace_id}")
            for span in trace["spans"]:
                found[f"{trace_id}/{span['span_id']}"] = get(f"/api/v1/traces/{trace_id}/spans/{span['span_id']}")
    return found


def test_the_collector_on_postgresql_answers_as_on_sqlite(postgres_url: str, start_collector: Any) -> None:
    spans = recorded_traffic(6)
    start_ns = min(span.start_time or 0 for span in spans) - 10**9
    end_ns = time.time_ns() + 60 * 10**9
    on_sqlite = start_collector(snapshots=SNAPSHOTS)
    on_postgres = start_collector(db=postgres_url, snapshots=SNAPSHOTS)
    for collector in (on_sqlite, on_postgres):
        send(collector, spans)

    def settled(collector: Any) -> bool:
        page = httpx.get(f"{collector.query_url}/api/v1/traces", params={"limit": 100}).json()
        return len(page["data"]) == 6 and all(summary["settled"] for summary in page["data"])

    for collector in (on_sqlite, on_postgres):
        wait_until(lambda collector=collector: settled(collector), timeout=20, what=f"6 settled traces in {collector}")
    expected = answers(on_sqlite, start_ns, end_ns)
    found = answers(on_postgres, start_ns, end_ns)
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert found[key] == value, key  # percentiles too: both engines count the same bins
    assert len(expected["breaches"]) == 12 and sum(s["span_count"] for s in expected["traces"]["data"]) == 18


def test_postgresql_down_is_503_and_unready_then_the_collector_recovers(start_collector: Any) -> None:
    """Stopped under the collector: ingest and queries answer 503 with a retry hint and /readyz is unready;
    started again, the client's retry is stored and the collector is ready, without a restart."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL's server binaries are not installed")
    cluster = Cluster(binaries).start()  # its own, to stop without disturbing the session's
    try:
        collector = start_collector(db=cluster.url())
        headers = {"Content-Type": "application/x-protobuf"}
        request = otlp_request(3).SerializeToString()
        traces = f"{collector.query_url}/api/v1/traces"
        assert httpx.post(f"{collector.http_url}/v1/traces", content=request, headers=headers).status_code == 200
        assert httpx.get(f"{collector.admin_url}/readyz").status_code == 200

        cluster.stop()
        refused = httpx.post(
            f"{collector.http_url}/v1/traces", content=otlp_request(2).SerializeToString(), headers=headers, timeout=30
        )
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        unready = httpx.get(f"{collector.admin_url}/readyz")
        assert unready.status_code == 503 and "the last database write failed" in unready.json()["reasons"]
        busy = httpx.get(traces, timeout=30)
        assert busy.status_code == 503 and busy.headers["Retry-After"]

        cluster.resume()
        retried = httpx.post(
            f"{collector.http_url}/v1/traces", content=otlp_request(2).SerializeToString(), headers=headers, timeout=30
        )
        assert retried.status_code == 200
        assert httpx.get(f"{collector.admin_url}/readyz").status_code == 200
        page = httpx.get(traces).json()
        assert sorted(summary["span_count"] for summary in page["data"]) == [2, 3]
    finally:
        cluster.remove()


def test_the_live_feed_of_every_replica_hears_what_any_replica_settled(postgres_url: str, start_collector: Any) -> None:
    """Two collectors on one database: a trace sent to one reaches the WebSocket clients of both, once each,
    with its breach."""
    first = start_collector(db=postgres_url, snapshots=SNAPSHOTS)
    second = start_collector(db=postgres_url, snapshots=SNAPSHOTS)
    with connect(live_url(first)) as on_first, connect(live_url(second)) as on_second:
        for websocket in (on_first, on_second):
            receive_until(websocket, lambda messages: of_type(messages, "subscribed"))
        request = otlp_request(3)
        trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
        headers = {"Content-Type": "application/x-protobuf"}
        response = httpx.post(f"{first.http_url}/v1/traces", content=request.SerializeToString(), headers=headers)
        assert response.status_code == 200
        for websocket in (on_first, on_second):
            messages = [
                message
                for _, message in receive_until(
                    websocket, lambda messages: traces_in(messages) and breaches_in(messages)
                )
            ]
            assert [summary["trace_id"] for summary in traces_in(messages)] == [trace_id]
            assert {breach["trace_id"] for breach in breaches_in(messages)} == {trace_id}
        # nothing more comes: the settling replica did not also tell its own feed in-process
        later: list[dict[str, Any]] = []
        deadline = time.monotonic() + 1.5
        with contextlib.suppress(TimeoutError):
            while (remaining := deadline - time.monotonic()) > 0:
                later.append(json.loads(on_first.recv(timeout=remaining)))
        assert traces_in(later) == []
