"""OTLP log records to ``LogEvent`` records."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from collector.model import NO_REJECTION, LogEvent, Rejection
from collector.otlp.common import _resource, any_value, attributes
from collector.otlp.limits import SPAN_ID_BYTES, TRACE_ID_BYTES, _show


def count_log_records(request: ExportLogsServiceRequest) -> int:
    return sum(len(scope.log_records) for resource in request.resource_logs for scope in resource.scope_logs)


def _log_ids(record: Any) -> tuple[str | None, str | None] | str:
    trace_id, span_id = record.trace_id, record.span_id
    if trace_id and len(trace_id) != TRACE_ID_BYTES:
        return f"invalid trace_id {_show(trace_id)}: expected 16 bytes or none"
    if span_id and len(span_id) != SPAN_ID_BYTES:
        return f"invalid span_id {_show(span_id)}: expected 8 bytes or none"
    return (trace_id.hex() if any(trace_id) else None, span_id.hex() if any(span_id) else None)


def decode_log_records(request: ExportLogsServiceRequest) -> tuple[list[LogEvent], Rejection]:
    """Every log record with usable ids, as ``LogEvent`` (source ``log``); the event name comes from
    the record's ``event_name`` or its ``event.name`` attribute."""
    events: list[LogEvent] = []
    rejected = 0
    first_reason: str | None = None
    for resource_logs in request.resource_logs:
        resource_attributes, service_name = _resource(resource_logs.resource)
        for scope_logs in resource_logs.scope_logs:
            scope_name = scope_logs.scope.name or None
            for record in scope_logs.log_records:
                ids = _log_ids(record)
                if isinstance(ids, str):
                    rejected += 1
                    first_reason = first_reason or f"log record: {ids}"
                    continue
                record_attributes = attributes(record.attributes)
                name = record.event_name or record_attributes.get("event.name")
                events.append(
                    LogEvent(
                        trace_id=ids[0],
                        span_id=ids[1],
                        time_unix_nano=record.time_unix_nano or record.observed_time_unix_nano,
                        observed_time_unix_nano=record.observed_time_unix_nano or None,
                        name=name if isinstance(name, str) and name else None,
                        source="log",
                        severity_number=record.severity_number or None,
                        severity_text=record.severity_text or None,
                        body=any_value(record.body) if record.HasField("body") else None,
                        attributes=record_attributes,
                        service_name=service_name,
                        scope_name=scope_name,
                        resource_attributes=resource_attributes,
                    )
                )
    return events, Rejection(rejected, first_reason) if rejected else NO_REJECTION
