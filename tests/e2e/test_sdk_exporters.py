"""The OpenTelemetry Python SDK's own OTLP exporters, configured only by OTEL_EXPORTER_OTLP_* variables."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

EXPORTERS = {"grpc": GrpcSpanExporter, "http/protobuf": HttpSpanExporter}


def exporter_from_environment(monkeypatch: pytest.MonkeyPatch, endpoint: str, protocol: str, **extra: str) -> Any:
    """The exporter an app gets from OTEL_EXPORTER_OTLP_PROTOCOL, built with no arguments at all."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    return EXPORTERS[protocol]()


def emit_agent_trace(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("checkout.agent", "1.2.3")
    with tracer.start_as_current_span("invoke_agent checkout", kind=SpanKind.INTERNAL) as root:
        root.set_attribute("gen_ai.agent.name", "checkout")
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as llm:
            llm.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 812,
                    "gen_ai.request.temperature": 0.2,
                    "gen_ai.response.finish_reasons": ["stop"],
                    "gen_ai.request.stream": True,
                }
            )
            llm.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "Where is my order?"})
        tool = tracer.start_span("execute_tool lookup_order", links=[Link(llm.get_span_context(), {"why": "caused"})])
        tool.set_status(Status(StatusCode.ERROR, "order service timed out"))
        tool.end()


@pytest.mark.parametrize(
    "protocol, extra_environment",
    [
        ("grpc", {}),
        ("http/protobuf", {}),
        ("grpc", {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}),
        ("http/protobuf", {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}),
    ],
)
def test_sdk_exporter_spans_read_back_intact(
    collector: Any, monkeypatch: pytest.MonkeyPatch, protocol: str, extra_environment: dict[str, str]
) -> None:
    port = collector.collector.ports["otlp_grpc" if protocol == "grpc" else "otlp_http"]
    exporter = exporter_from_environment(monkeypatch, f"http://127.0.0.1:{port}", protocol, **extra_environment)
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout-bot", "deployment.environment": "test"})
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    memory = InMemorySpanExporter()  # what the SDK believes it sent, to compare with what was stored
    provider.add_span_processor(SimpleSpanProcessor(memory))
    emit_agent_trace(provider)
    assert provider.force_flush(10_000)
    provider.shutdown()

    sent: list[ReadableSpan] = list(memory.get_finished_spans())
    assert len(sent) == 3
    rows = {
        row[0]: row
        for row in collector.query(
            "SELECT span_id, trace_id, parent_span_id, name, kind, start_time_unix_nano, end_time_unix_nano,"
            " duration_ns, status_code, status_message, service_name, scope_name, scope_version,"
            " resource_attributes, attributes, events, links FROM spans_with_resource"
        )
    }
    assert len(rows) == 3
    for span in sent:
        context = span.get_span_context()
        row = rows[f"{context.span_id:016x}"]
        (
            _,
            trace_id,
            parent,
            name,
            kind,
            start,
            end,
            duration,
            status,
            status_message,
            service,
            scope,
            scope_version,
            resource,
            attributes,
            events,
            links,
        ) = row
        assert trace_id == f"{context.trace_id:032x}"
        assert parent == (f"{span.parent.span_id:016x}" if span.parent else None)
        assert name == span.name
        assert kind == span.kind.name.lower()
        assert (start, end, duration) == (span.start_time, span.end_time, span.end_time - span.start_time)
        assert status == span.status.status_code.name.lower()
        assert status_message == span.status.description
        assert service == "checkout-bot"
        assert (scope, scope_version) == ("checkout.agent", "1.2.3")
        assert json.loads(resource)["deployment.environment"] == "test"
        assert json.loads(attributes) == {
            key: list(value) if isinstance(value, tuple) else value for key, value in span.attributes.items()
        }
        assert json.loads(events) == [
            {"name": event.name, "time_unix_nano": event.timestamp, "attributes": dict(event.attributes)}
            for event in span.events
        ]
        stored_links = json.loads(links)
        for stored in stored_links:
            assert isinstance(stored.pop("flags"), int)  # the W3C flags plus OTLP's is-remote bits, as sent
        assert stored_links == [
            {
                "trace_id": f"{link.context.trace_id:032x}",
                "span_id": f"{link.context.span_id:016x}",
                "attributes": dict(link.attributes),
            }
            for link in span.links
        ]
