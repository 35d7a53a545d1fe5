"""OTLP protobuf payloads to records: parse, validate ids, flatten attributes.

Pure functions, no I/O. A span that cannot be stored (an id of the wrong length) is left out
and counted in the returned ``Rejection``; the rest of the request goes on.
"""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.model import NO_REJECTION, Rejection, Span
from collector.otlp.common import SPAN_KINDS, STATUS_CODES, _enum_name, _event, _link, _resource, attributes
from collector.otlp.limits import PayloadError, _shallow_message, _span_ids, _times_problem

RequestT = TypeVar("RequestT", bound=Message)


# --- parsing -------------------------------------------------------------------------------


def parse_protobuf(body: bytes, message_type: type[RequestT]) -> RequestT:
    try:
        return message_type.FromString(body)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise PayloadError(f"body is not a valid protobuf {message_type.DESCRIPTOR.name}: {error}") from None


def parse_otlp_protobuf(body: bytes, message_type: type[RequestT]) -> tuple[RequestT, int]:
    """``parse_protobuf``, except that a request with an attribute value nested deeper than the parser
    goes (about 31 levels) is not refused: such values are cut to ``DEEP_VALUE_MARKER`` at
    ``MAX_VALUE_DEPTH`` levels and the rest is kept. Returns the message and how many values were cut."""
    try:
        return message_type.FromString(body), 0
    except (DecodeError, RuntimeError, ValueError) as error:
        if "Depth" not in str(error):
            raise PayloadError(f"body is not a valid protobuf {message_type.DESCRIPTOR.name}: {error}") from None
    cut = [0]
    try:
        shallow = _shallow_message(body, message_type.DESCRIPTOR, 0, cut)
    except (IndexError, ValueError):
        raise PayloadError(f"body is not a valid protobuf {message_type.DESCRIPTOR.name}") from None
    return parse_protobuf(shallow, message_type), cut[0]


# --- spans ---------------------------------------------------------------------------------


def _events(events: Any) -> list[dict[str, Any]]:
    return [
        _event(event.name, event.time_unix_nano, attributes(event.attributes), event.dropped_attributes_count)
        for event in events
    ]


def _links(links: Any) -> list[dict[str, Any]]:
    return [
        _link(link.trace_id, link.span_id, attributes(link.attributes), link.trace_state, link.flags) for link in links
    ]


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
                # Each field is read once: every read of a protobuf field builds a new Python object.
                links = span.links
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                ids = _span_ids(
                    span.trace_id,
                    span.span_id,
                    span.parent_span_id,
                    [(link.trace_id, link.span_id) for link in links] if links else (),
                )
                if not isinstance(ids, str):
                    ids = _times_problem(start, end) or ids
                if isinstance(ids, str):
                    rejected += 1
                    first_reason = first_reason or f"span {span.name!r}: {ids}"
                    continue
                status = span.status
                events = span.events
                spans.append(
                    Span(  # positional, in the order of its fields: a third of the cost of keywords
                        *ids,  # trace_id, span_id, parent_span_id
                        span.trace_state or None,
                        span.flags,
                        span.name,
                        _enum_name(SPAN_KINDS, span.kind),
                        start,
                        end,
                        _enum_name(STATUS_CODES, status.code),
                        status.message or None,
                        service_name,
                        scope_name,
                        scope_version,
                        resource_attributes,
                        attributes(span.attributes),
                        _events(events) if events else [],
                        _links(links) if links else [],
                        span.dropped_attributes_count,
                        span.dropped_events_count,
                        span.dropped_links_count,
                    )
                )
    return spans, Rejection(rejected, first_reason) if rejected else NO_REJECTION


def count_spans(request: ExportTraceServiceRequest) -> int:
    """The request's spans, valid or not, without decoding them."""
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


def count_data_points(request: ExportMetricsServiceRequest) -> int:
    total = 0
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                if kind:
                    total += len(getattr(metric, kind).data_points)
    return total
