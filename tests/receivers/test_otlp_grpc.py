"""OTLP/gRPC against a running collector, with real channels and the generated stubs."""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.helpers import metric_value, otlp_request, scrape, span_keys

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SMALL_LIMIT = 64 * 1024
RETRY_TRAILERS = ("grpc-status-details-bin", "google.rpc.retryinfo-bin")


@pytest.fixture
def channel(collector: Any) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(collector.grpc_target) as opened:
        yield opened


def stored_keys(running: Any) -> set[tuple[str, str]]:
    return set(running.query("SELECT trace_id, span_id FROM spans"))


def export_raw(channel: grpc.Channel, body: bytes, **options: Any) -> Any:
    """Send ``body`` as the Export message exactly as given, bypassing the client's serializer."""
    call = channel.unary_unary(
        TRACE_EXPORT,
        request_serializer=lambda raw: raw,
        response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString,
    )
    return call(body, timeout=10, **options)


def request_of_size(size: int) -> ExportTraceServiceRequest:
    """One span whose attribute makes the serialized request about ``size`` bytes."""
    return otlp_request(1, attributes={"gen_ai.input.messages": "x" * size})


def trailer_keys(error: grpc.RpcError) -> set[str]:
    return {key for key, _ in error.trailing_metadata() or ()}


def counter(exposition: str, name: str, **labels: str) -> float:
    """The counter ``genai_collector_<name>_total`` of the gRPC transport."""
    return metric_value(exposition, f"genai_collector_{name}_total", transport="grpc", **labels)


# --- success -------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip], ids=["plain", "gzip"])
def test_export_is_stored_before_the_answer(collector: Any, channel: grpc.Channel, compression: Any) -> None:
    request = otlp_request(3, service="agent")
    answer = trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10, compression=compression)

    assert not answer.HasField("partial_success")
    assert stored_keys(collector) == set(span_keys(request))
    assert collector.query("SELECT DISTINCT service_name FROM spans") == [("agent",)]
    assert counter(scrape(collector), "receiver_accepted_spans", receiver="otlp") == 3
    assert counter(scrape(collector), "requests", signal="traces", status="OK") == 1


def test_empty_request_is_success(collector: Any, channel: grpc.Channel) -> None:
    answer = trace_service_pb2_grpc.TraceServiceStub(channel).Export(ExportTraceServiceRequest(), timeout=10)
    assert not answer.HasField("partial_success")
    assert counter(scrape(collector), "requests", signal="traces", status="OK") == 1


def test_bad_ids_get_partial_success(collector: Any, channel: grpc.Channel) -> None:
    request = otlp_request(3)
    request.resource_spans[0].scope_spans[0].spans[2].span_id = b""
    answer = trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10)

    assert answer.partial_success.rejected_spans == 1
    assert answer.partial_success.error_message == (
        "1 span rejected; first: span 'span 2': invalid span_id (empty): "
        "expected 8 non-zero bytes (16 hex characters in OTLP/JSON)"
    )
    assert stored_keys(collector) == set(span_keys(request)[:2])
    exposition = scrape(collector)
    assert counter(exposition, "receiver_accepted_spans") == 2
    assert counter(exposition, "receiver_refused_spans", reason="invalid_span") == 1
    assert counter(exposition, "requests", signal="traces", status="OK") == 1


def test_resending_does_not_duplicate_rows(collector: Any, channel: grpc.Channel) -> None:
    request = otlp_request(2)
    stub = trace_service_pb2_grpc.TraceServiceStub(channel)
    for _ in range(2):
        assert not stub.Export(request, timeout=10).HasField("partial_success")
    assert collector.query("SELECT count(*) FROM spans") == [(2,)]


@pytest.mark.parametrize(
    "stub_type, request_, signal, count",
    [
        (
            logs_service_pb2_grpc.LogsServiceStub,
            logs_service_pb2.ExportLogsServiceRequest(
                resource_logs=[{"scope_logs": [{"log_records": [{"event_name": "app.audit"}] * 3}]}]
            ),
            "logs",
            3,
        ),
        (
            metrics_service_pb2_grpc.MetricsServiceStub,
            metrics_service_pb2.ExportMetricsServiceRequest(
                resource_metrics=[
                    {"scope_metrics": [{"metrics": [{"name": "m", "sum": {"data_points": [{"as_int": 1}] * 2}}]}]}
                ]
            ),
            "metrics",
            2,
        ),
    ],
    ids=["logs", "metrics"],
)
def test_logs_and_metrics_are_accepted_and_counted_as_dropped(
    collector: Any, channel: grpc.Channel, stub_type: Any, request_: Any, signal: str, count: int
) -> None:
    answer = stub_type(channel).Export(request_, timeout=10)

    assert not answer.HasField("partial_success")
    assert counter(scrape(collector), "receiver_dropped_items", receiver="otlp", signal=signal) == count
    assert counter(scrape(collector), "requests", signal=signal, status="OK") == 1
    assert collector.query("SELECT count(*) FROM spans") == [(0,)]
    assert collector.query("SELECT count(*) FROM events") == [(0,)]


def test_genai_events_over_grpc_land_with_their_span(collector: Any, channel: grpc.Channel) -> None:
    trace_id, span_id = os.urandom(16), os.urandom(8)
    spans = otlp_request(1, trace_id=trace_id)
    spans.resource_spans[0].scope_spans[0].spans[0].span_id = span_id
    trace_service_pb2_grpc.TraceServiceStub(channel).Export(spans, timeout=10)
    logs = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            {
                "scope_logs": [
                    {
                        "log_records": [
                            {
                                "event_name": "gen_ai.choice",
                                "trace_id": trace_id,
                                "span_id": span_id,
                                "time_unix_nano": 1,
                                "body": {"string_value": "sent to ops@example.com"},
                            }
                        ]
                    }
                ]
            }
        ]
    )
    assert not logs_service_pb2_grpc.LogsServiceStub(channel).Export(logs, timeout=10).HasField("partial_success")
    joined = collector.query(
        "SELECT spans.name, events.name, events.body FROM events JOIN spans USING (trace_id, span_id)"
    )
    assert joined == [("span 0", "gen_ai.choice", '"sent to [REDACTED:email]"')]
    assert counter(scrape(collector), "receiver_accepted_log_records", receiver="otlp") == 1


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"\xff\xff\xff\xff", b"\x0a\x05ab"], ids=["bad-tag", "truncated"])
def test_corrupt_bytes_are_invalid_argument(collector: Any, channel: grpc.Channel, body: bytes) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        export_raw(channel, body)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("body is not a valid protobuf ExportTraceServiceRequest: ")
    assert not trailer_keys(raised.value) & set(RETRY_TRAILERS)
    assert counter(scrape(collector), "receiver_bad_requests", reason="malformed") == 1
    assert counter(scrape(collector), "requests", signal="traces", status="INVALID_ARGUMENT") == 1


def test_oversize_message_is_resource_exhausted_without_retry_info(start_collector: Any) -> None:
    running = start_collector(grpc_max_receive_size="64KiB")
    request = request_of_size(SMALL_LIMIT + 1000)
    size = request.ByteSize()
    with grpc.insecure_channel(running.grpc_target) as channel, pytest.raises(grpc.RpcError) as raised:
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10)

    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert raised.value.details() == f"message of {size} bytes is larger than the 65536-byte limit"
    assert not trailer_keys(raised.value) & set(RETRY_TRAILERS)
    exposition = scrape(running)
    assert counter(exposition, "receiver_bad_requests", reason="too_large") == 1
    assert counter(exposition, "requests", signal="traces", status="RESOURCE_EXHAUSTED") == 1
    assert running.query("SELECT count(*) FROM spans") == [(0,)]


def test_a_message_just_under_the_limit_is_taken(start_collector: Any) -> None:
    running = start_collector(grpc_max_receive_size="64KiB")
    request = request_of_size(SMALL_LIMIT - 1000)
    assert request.ByteSize() <= SMALL_LIMIT
    with grpc.insecure_channel(running.grpc_target) as channel:
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10)
    assert stored_keys(running) == set(span_keys(request))


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip], ids=["plain", "gzip"])
def test_far_oversize_message_is_resource_exhausted_quickly(start_collector: Any, compression: Any) -> None:
    """Past gRPC's own ceiling (a few times our limit) the refusal comes from gRPC; a gzip bomb included."""
    running = start_collector(grpc_max_receive_size="64KiB")
    request = request_of_size(10 * 1024 * 1024)
    if compression == grpc.Compression.Gzip:
        assert len(gzip.compress(request.SerializeToString())) < SMALL_LIMIT
    started = time.monotonic()
    with grpc.insecure_channel(running.grpc_target) as channel, pytest.raises(grpc.RpcError) as raised:
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10, compression=compression)

    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert not trailer_keys(raised.value) & set(RETRY_TRAILERS)
    assert time.monotonic() - started < 2.0
    assert running.query("SELECT count(*) FROM spans") == [(0,)]


def test_unknown_method_is_unimplemented(channel: grpc.Channel) -> None:
    call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Upload")
    with pytest.raises(grpc.RpcError) as raised:
        call(b"", timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


# --- health --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "service",
    [
        "",
        "opentelemetry.proto.collector.trace.v1.TraceService",
        "opentelemetry.proto.collector.logs.v1.LogsService",
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
    ],
    ids=["server", "traces", "logs", "metrics"],
)
def test_health_check_is_serving(channel: grpc.Channel, service: str) -> None:
    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_health_check_of_an_unknown_service_is_not_found(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
