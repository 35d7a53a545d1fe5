"""OTLP payloads to records: parse protobuf or OTLP/JSON, validate ids, flatten attributes.

Pure functions, no I/O. A span that cannot be stored (an id of the wrong length) is left out
and counted in the returned ``Rejection``; the rest of the request goes on.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from collector.model import NO_REJECTION, Attributes, LogEvent, Rejection, Span

RequestT = TypeVar("RequestT", bound=Message)

SPAN_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}

TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8

# What a JSON id that is not hex (a base64 id, say) becomes: no id has its length, so the span is
# rejected as a bad id. Not empty, because an empty parent id means "root span".
NOT_HEX = b"<not hex>"


class PayloadError(ValueError):
    """The request as a whole cannot be parsed: answered with 400 / INVALID_ARGUMENT."""


# --- parsing -------------------------------------------------------------------------------

def parse_protobuf(body: bytes, message_type: type[RequestT]) -> RequestT:
    try:
        return message_type.FromString(body)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise PayloadError(f"body is not a valid protobuf {message_type.DESCRIPTOR.name}: {error}") from None


# OTLP/JSON carries ids as hex where protobuf's canonical JSON mapping expects base64.
# Each entry: the path of lists down to the records, and the id fields of those records
# (a nested tuple names a list inside the record whose items carry ids too, such as links).
_JSON_ID_PATHS: dict[type[Message], tuple[tuple[str, ...], tuple[Any, ...]]] = {
    ExportTraceServiceRequest: (
        ("resourceSpans", "scopeSpans", "spans"),
        ("traceId", "spanId", "parentSpanId", ("links", ("traceId", "spanId"))),
    ),
    ExportLogsServiceRequest: (("resourceLogs", "scopeLogs", "logRecords"), ("traceId", "spanId")),
    ExportMetricsServiceRequest: ((), ()),
}


def parse_json(body: bytes, message_type: type[RequestT]) -> RequestT:
    """Parse OTLP/JSON: hex ids, lowerCamelCase keys, int64 as string or number, unknown fields ignored."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise PayloadError(f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise PayloadError("body is not valid OTLP/JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise PayloadError("body must be a JSON object")
    path, id_fields = _JSON_ID_PATHS[message_type]
    for record in _walk(document, path):
        _hex_ids_to_base64(record, id_fields)
    try:
        return json_format.ParseDict(document, message_type(), ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise PayloadError(f"body is not a valid OTLP/JSON {message_type.DESCRIPTOR.name}: {error}") from None


def _walk(node: Any, path: tuple[str, ...]) -> Iterable[dict[str, Any]]:
    if not path:
        if isinstance(node, dict):
            yield node
        return
    children = node.get(path[0]) if isinstance(node, dict) else None
    if isinstance(children, list):
        for child in children:
            yield from _walk(child, path[1:])


def _hex_ids_to_base64(record: dict[str, Any], id_fields: tuple[Any, ...]) -> None:
    for field in id_fields:
        if isinstance(field, tuple):
            nested_key, nested_fields = field
            for nested in record.get(nested_key) or ():
                if isinstance(nested, dict):
                    _hex_ids_to_base64(nested, nested_fields)
            continue
        value = record.get(field)
        if not isinstance(value, str) or not value:
            continue
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = NOT_HEX
        record[field] = base64.b64encode(raw).decode("ascii")


# --- attributes ----------------------------------------------------------------------------

def _double(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


_VALUE_READERS: dict[str, Callable[[AnyValue], Any]] = {
    "string_value": lambda v: v.string_value,
    "int_value": lambda v: v.int_value,
    "bool_value": lambda v: v.bool_value,
    "double_value": lambda v: _double(v.double_value),
    "array_value": lambda v: [any_value(item) for item in v.array_value.values],
    "kvlist_value": lambda v: attributes(v.kvlist_value.values),
    "bytes_value": lambda v: base64.b64encode(v.bytes_value).decode("ascii"),
}


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as a JSON-ready Python value (bytes as base64, non-finite doubles as strings)."""
    kind = value.WhichOneof("value")
    return _VALUE_READERS[kind](value) if kind else None


def attributes(key_values: Iterable[KeyValue]) -> Attributes:
    result: Attributes = {}
    for key_value in key_values:
        value = key_value.value
        kind = value.WhichOneof("value")
        # Most attribute values are strings: read them without the dispatch.
        result[key_value.key] = (
            value.string_value if kind == "string_value" else _VALUE_READERS[kind](value) if kind else None
        )
    return result


# --- spans ---------------------------------------------------------------------------------

def _span_ids(span: Any) -> tuple[str, str, str | None] | str:
    """The span's hex ids, or the reason they are unusable."""
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    if len(trace_id) != TRACE_ID_BYTES or not any(trace_id):
        return f"invalid trace_id {_show(trace_id)}: expected 16 non-zero bytes (32 hex characters in OTLP/JSON)"
    if len(span_id) != SPAN_ID_BYTES or not any(span_id):
        return f"invalid span_id {_show(span_id)}: expected 8 non-zero bytes (16 hex characters in OTLP/JSON)"
    if parent and len(parent) != SPAN_ID_BYTES:
        return f"invalid parent_span_id {_show(parent)}: expected 8 bytes or none"
    for link in span.links:
        if len(link.trace_id) != TRACE_ID_BYTES or len(link.span_id) != SPAN_ID_BYTES:
            return "invalid link: trace_id must be 16 bytes and span_id 8 bytes"
    return trace_id.hex(), span_id.hex(), parent.hex() if any(parent) else None


def _show(raw: bytes) -> str:
    if raw == NOT_HEX:
        return "(not hex)"
    return f"'{binascii.hexlify(raw).decode()}' ({len(raw)} bytes)" if raw else "(empty)"


def _events(span: Any) -> list[dict[str, Any]]:
    events = []
    for event in span.events:
        record: dict[str, Any] = {
            "name": event.name,
            "time_unix_nano": event.time_unix_nano,
            "attributes": attributes(event.attributes),
        }
        if event.dropped_attributes_count:
            record["dropped_attributes_count"] = event.dropped_attributes_count
        events.append(record)
    return events


def _links(span: Any) -> list[dict[str, Any]]:
    links = []
    for link in span.links:
        record: dict[str, Any] = {
            "trace_id": link.trace_id.hex(),
            "span_id": link.span_id.hex(),
            "attributes": attributes(link.attributes),
        }
        if link.trace_state:
            record["trace_state"] = link.trace_state
        if link.flags:
            record["flags"] = link.flags
        links.append(record)
    return links


def _resource(resource: Any) -> tuple[Attributes, str | None]:
    """A resource's attributes and its ``service.name``."""
    resource_attributes = attributes(resource.attributes)
    service_name = resource_attributes.get("service.name")
    return resource_attributes, service_name if isinstance(service_name, str) else None


def decode_spans(request: ExportTraceServiceRequest) -> tuple[list[Span], Rejection]:
    """Every storable span of the request, and what was rejected."""
    spans: list[Span] = []
    rejected = 0
    first_reason: str | None = None
    for resource_spans in request.resource_spans:
        resource_attributes, service_name = _resource(resource_spans.resource)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            scope_name = scope.name or None
            scope_version = scope.version or None
            for span in scope_spans.spans:
                ids = _span_ids(span)
                if isinstance(ids, str):
                    rejected += 1
                    first_reason = first_reason or f"span {span.name!r}: {ids}"
                    continue
                status = span.status
                spans.append(
                    Span(
                        trace_id=ids[0],
                        span_id=ids[1],
                        parent_span_id=ids[2],
                        trace_state=span.trace_state or None,
                        flags=span.flags,
                        name=span.name,
                        kind=SPAN_KINDS.get(span.kind, "unspecified"),
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        status_code=STATUS_CODES.get(status.code, "unset"),
                        status_message=status.message or None,
                        service_name=service_name,
                        scope_name=scope_name,
                        scope_version=scope_version,
                        resource_attributes=resource_attributes,
                        attributes=attributes(span.attributes),
                        events=_events(span) if span.events else [],
                        links=_links(span) if span.links else [],
                        dropped_attributes_count=span.dropped_attributes_count,
                        dropped_events_count=span.dropped_events_count,
                        dropped_links_count=span.dropped_links_count,
                    )
                )
    return spans, Rejection(rejected, first_reason) if rejected else NO_REJECTION


def count_spans(request: ExportTraceServiceRequest) -> int:
    """The request's spans, valid or not, without decoding them."""
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


def count_log_records(request: ExportLogsServiceRequest) -> int:
    return sum(len(scope.log_records) for resource in request.resource_logs for scope in resource.scope_logs)


def count_data_points(request: ExportMetricsServiceRequest) -> int:
    total = 0
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                if kind:
                    total += len(getattr(metric, kind).data_points)
    return total


# --- log records ---------------------------------------------------------------------------

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
