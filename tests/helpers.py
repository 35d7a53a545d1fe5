"""Helpers shared by the tests: building OTLP requests and reading /metrics."""

from __future__ import annotations

import os
import time
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from prometheus_client.parser import text_string_to_metric_families


def key_values(attributes: dict[str, Any]) -> list[KeyValue]:
    result = []
    for key, value in attributes.items():
        if isinstance(value, bool):
            any_value = AnyValue(bool_value=value)
        elif isinstance(value, int):
            any_value = AnyValue(int_value=value)
        elif isinstance(value, float):
            any_value = AnyValue(double_value=value)
        else:
            any_value = AnyValue(string_value=str(value))
        result.append(KeyValue(key=key, value=any_value))
    return result


def otlp_request(
    count: int,
    *,
    service: str = "test-service",
    trace_id: bytes | None = None,
    attributes: dict[str, Any] | None = None,
) -> ExportTraceServiceRequest:
    """A request with ``count`` spans of one trace (a fresh random trace unless ``trace_id`` is given)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(key_values({"service.name": service}))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "tests"
    trace_id = trace_id or os.urandom(16)
    now = time.time_ns()
    for index in range(count):
        span = scope_spans.spans.add()
        span.trace_id = trace_id
        span.span_id = os.urandom(8)
        span.name = f"span {index}"
        span.kind = 3
        span.start_time_unix_nano = now
        span.end_time_unix_nano = now + 1_000_000
        span.attributes.extend(key_values(attributes or {}))
    return request


def metric_value(exposition: str, sample_name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when it is absent)."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0
