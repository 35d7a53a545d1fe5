"""OTLP payloads to records: parse protobuf or OTLP/JSON, validate ids, flatten attributes.

Pure functions, no I/O. A span that cannot be stored (an id of the wrong length) is left out
and counted in the returned ``Rejection``; the rest of the request goes on.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

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


class TooDeep(PayloadError):
    """A value nested deeper than the parser goes; the request is read again with such values cut."""


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


def load_json(body: bytes) -> dict[str, Any]:
    """The JSON object of the body, not yet read as OTLP."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise PayloadError(f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise PayloadError("body is not valid OTLP/JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise PayloadError("body must be a JSON object")
    return document


def parse_json(body: bytes, message_type: type[RequestT]) -> RequestT:
    """Parse OTLP/JSON: hex ids, lowerCamelCase keys, int64 as string or number, unknown fields ignored."""
    document = load_json(body)
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


# --- values nested too deep ----------------------------------------------------------------

MAX_VALUE_DEPTH = 20  # AnyValue levels kept when a request nests deeper than its parser allows
DEEP_VALUE_MARKER = f"[nested deeper than {MAX_VALUE_DEPTH} levels: cut]"
_ANY_VALUE = AnyValue.DESCRIPTOR
_DEEP_VALUE = AnyValue(string_value=DEEP_VALUE_MARKER).SerializeToString()


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_FIXED_SIZES = {0: None, 1: 8, 5: 4}


def _shallow_message(data: bytes, descriptor: Any, values: int, cut: list[int]) -> bytes:
    """The protobuf ``data`` of a ``descriptor`` message with every AnyValue below ``MAX_VALUE_DEPTH``
    levels replaced by the marker (``values`` is the AnyValue depth of ``data``); ``cut[0]`` counts them.
    Only the recursive messages are looked into: the work is linear and the recursion bounded."""
    if descriptor is _ANY_VALUE:
        if values >= MAX_VALUE_DEPTH:
            cut[0] += 1
            return _DEEP_VALUE
        values += 1
    out = bytearray()
    position = 0
    while position < len(data):
        start = position
        key, position = _varint(data, position)
        wire_type = key & 7
        if wire_type == 2:
            key_end = position
            length, position = _varint(data, position)
            end = position + length
            if end > len(data):
                raise ValueError("truncated field")
            field = descriptor.fields_by_number.get(key >> 3)
            if field is not None and field.message_type is not None:
                inner = _shallow_message(data[position:end], field.message_type, values, cut)
                out += data[start:key_end] + _encode_varint(len(inner)) + inner
            else:
                out += data[start:end]
            position = end
        elif wire_type in _FIXED_SIZES:
            size = _FIXED_SIZES[wire_type]
            if size is None:
                _, position = _varint(data, position)
            else:
                position += size
            out += data[start:position]
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
    return bytes(out)


def shallow_json_values(document: dict[str, Any]) -> int:
    """Cut, in place, every AnyValue of an OTLP/JSON trace document nested deeper than ``MAX_VALUE_DEPTH``
    levels to the marker; returns how many were cut. For a document whose decoding raised ``TooDeep``."""
    cut = [0]
    holders: list[Any] = []
    for resource_spans in _dicts(document.get("resourceSpans")):
        holders.append(resource_spans.get("resource"))
        for scope_spans in _dicts(resource_spans.get("scopeSpans")):
            holders.append(scope_spans.get("scope"))
            for span in _dicts(scope_spans.get("spans")):
                holders += [span, *_dicts(span.get("events")), *_dicts(span.get("links"))]
    for holder in _dicts(holders):
        _shallow_json_key_values(holder.get("attributes"), 1, cut)
    return cut[0]


def _dicts(items: Any) -> list[dict[str, Any]]:
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _shallow_json_key_values(key_values: Any, level: int, cut: list[int]) -> None:
    for key_value in _dicts(key_values):
        if "value" in key_value:
            key_value["value"] = _shallow_json_value(key_value["value"], level, cut)


def _shallow_json_value(value: Any, level: int, cut: list[int]) -> Any:
    """An AnyValue ``level`` levels deep (1 for an attribute's value), cut past ``MAX_VALUE_DEPTH``."""
    if not isinstance(value, dict):
        return value
    if level > MAX_VALUE_DEPTH:
        cut[0] += 1
        return {"stringValue": DEEP_VALUE_MARKER}
    array = value.get("arrayValue")
    if isinstance(array, dict) and isinstance(array.get("values"), list):
        array["values"] = [_shallow_json_value(item, level + 1, cut) for item in array["values"]]
    kvlist = value.get("kvlistValue")
    if isinstance(kvlist, dict):
        _shallow_json_key_values(kvlist.get("values"), level + 1, cut)
    return value


# --- attributes ----------------------------------------------------------------------------


def _double(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _base64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


_VALUE_READERS: dict[str, Callable[[AnyValue], Any]] = {
    "string_value": lambda v: v.string_value,
    "int_value": lambda v: v.int_value,
    "bool_value": lambda v: v.bool_value,
    "double_value": lambda v: _double(v.double_value),
    "array_value": lambda v: [any_value(item) for item in v.array_value.values],
    "kvlist_value": lambda v: attributes(v.kvlist_value.values),
    "bytes_value": lambda v: _base64(v.bytes_value),
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


def _span_ids(
    trace_id: bytes, span_id: bytes, parent: bytes, link_ids: Iterable[tuple[bytes, bytes]]
) -> tuple[str, str, str | None] | str:
    """The span's hex ids, or the reason they are unusable."""
    if len(trace_id) != TRACE_ID_BYTES or not any(trace_id):
        return f"invalid trace_id {_show(trace_id)}: expected 16 non-zero bytes (32 hex characters in OTLP/JSON)"
    if len(span_id) != SPAN_ID_BYTES or not any(span_id):
        return f"invalid span_id {_show(span_id)}: expected 8 non-zero bytes (16 hex characters in OTLP/JSON)"
    if parent and len(parent) != SPAN_ID_BYTES:
        return f"invalid parent_span_id {_show(parent)}: expected 8 bytes or none"
    for link_trace_id, link_span_id in link_ids:
        if len(link_trace_id) != TRACE_ID_BYTES or len(link_span_id) != SPAN_ID_BYTES:
            return "invalid link: trace_id must be 16 bytes and span_id 8 bytes"
    return trace_id.hex(), span_id.hex(), parent.hex() if any(parent) else None


def _enum_name(names: dict[int, str], number: int) -> str:
    """A known enum value's name; an unknown one (a newer OTLP, a bad client) keeps its number."""
    return names.get(number) or str(number)


# SQLite integers are signed 64-bit: a time at or above 2**63 (valid uint64 in OTLP) would turn into a
# floating-point value and lose its nanoseconds, so the span is rejected alone.
_MAX_TIME = 2**63 - 1


def _times_problem(start: int, end: int) -> str | None:
    if start > _MAX_TIME or end > _MAX_TIME:
        return f"start or end time at or above 2^63 ns (year 2262): {start}, {end}"
    return None


def without_conflicting_duplicates(spans: list[Span]) -> tuple[list[Span], int]:
    """``spans`` without the later copies of a span id that a request repeats with other content (the
    first copy is kept, as storage would), and how many were left out. Identical copies stay: storage
    keeps one and counts the rest as duplicates."""
    if len({(span.trace_id, span.span_id) for span in spans}) == len(spans):
        return spans, 0
    first: dict[tuple[str, str], Span] = {}
    kept = []
    for span in spans:
        key = (span.trace_id, span.span_id)
        seen = first.setdefault(key, span)
        if seen is span or seen == span:
            kept.append(span)
    return kept, len(spans) - len(kept)


def _show(raw: bytes) -> str:
    if raw == NOT_HEX:
        return "(not hex)"
    return f"'{binascii.hexlify(raw).decode()}' ({len(raw)} bytes)" if raw else "(empty)"


def _event(name: str, time_unix_nano: int, event_attributes: Attributes, dropped_attributes: int) -> dict[str, Any]:
    record: dict[str, Any] = {"name": name, "time_unix_nano": time_unix_nano, "attributes": event_attributes}
    if dropped_attributes:
        record["dropped_attributes_count"] = dropped_attributes
    return record


def _link(trace_id: bytes, span_id: bytes, link_attributes: Attributes, trace_state: str, flags: int) -> dict[str, Any]:
    record: dict[str, Any] = {"trace_id": trace_id.hex(), "span_id": span_id.hex(), "attributes": link_attributes}
    if trace_state:
        record["trace_state"] = trace_state
    if flags:
        record["flags"] = flags
    return record


def _events(span: Any) -> list[dict[str, Any]]:
    return [
        _event(event.name, event.time_unix_nano, attributes(event.attributes), event.dropped_attributes_count)
        for event in span.events
    ]


def _links(span: Any) -> list[dict[str, Any]]:
    return [
        _link(link.trace_id, link.span_id, attributes(link.attributes), link.trace_state, link.flags)
        for link in span.links
    ]


def _with_service_name(resource_attributes: Attributes) -> tuple[Attributes, str | None]:
    service_name = resource_attributes.get("service.name")
    return resource_attributes, service_name if isinstance(service_name, str) else None


def _resource(resource: Any) -> tuple[Attributes, str | None]:
    """A resource's attributes and its ``service.name``."""
    return _with_service_name(attributes(resource.attributes))


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
                ids = _span_ids(
                    span.trace_id,
                    span.span_id,
                    span.parent_span_id,
                    [(link.trace_id, link.span_id) for link in span.links] if span.links else (),
                )
                if not isinstance(ids, str):
                    ids = _times_problem(span.start_time_unix_nano, span.end_time_unix_nano) or ids
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
                        kind=_enum_name(SPAN_KINDS, span.kind),
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        status_code=_enum_name(STATUS_CODES, status.code),
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


# --- OTLP/JSON traces, straight to records -------------------------------------------------
#
# The same spans as ``decode_spans(parse_json(body))`` without building the protobuf message, which
# protobuf's pure-Python ``json_format`` makes the most expensive step of a JSON request. The
# readers below accept what ``json_format.ParseDict`` accepts for these fields (int64 as string or
# number, enums as numbers or names, "NaN" and "Infinity" doubles, null as the default) and answer
# a ``PayloadError`` for what it refuses; keys are lowerCamelCase only, as OTLP/JSON requires.

_JSON_PREFIX = "body is not a valid OTLP/JSON ExportTraceServiceRequest"
_MAX_MESSAGE_DEPTH = 100  # json_format's limit on nested messages, counted the same way

# A lone surrogate can only come from a "\\uD800"-"\\uDFFF" escape: look for those in the body
# before reading any string twice.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)
_UINT32 = (0, 2**32 - 1)
_INT32 = (-(2**31), 2**31 - 1)

_SPAN_KIND_NAMES = dict(trace_pb2.Span.SpanKind.items())
_STATUS_CODE_NAMES = dict(trace_pb2.Status.StatusCode.items())


def _not_otlp(field: str, problem: str) -> PayloadError:
    return PayloadError(f"{_JSON_PREFIX}: {field}: {problem}")


def _json_object(value: Any, field: str) -> dict[str, Any]:
    """A message: null is an empty one."""
    if type(value) is dict:
        return value
    if value is None:
        return {}
    raise _not_otlp(field, f"expected an object, not {type(value).__name__}")


def _json_objects(container: dict[str, Any], field: str) -> list[dict[str, Any]]:
    """A repeated message field: null or absent is empty, null items are refused."""
    items = container.get(field)
    if items is None:
        return []
    if type(items) is not list:
        raise _not_otlp(field, f"expected a list, not {type(items).__name__}")
    for item in items:
        if type(item) is not dict:
            raise _not_otlp(field, f"expected a list of objects, found {type(item).__name__}")
    return items


def _json_string(value: Any, field: str) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    raise _not_otlp(field, f"expected a string, not {type(value).__name__}")


def _json_int(value: Any, field: str, bounds: tuple[int, int]) -> int:
    """An integer as json_format reads one: a number or a string, integral, in the field's range."""
    if type(value) is int:
        number = value
    elif value is None:
        return 0
    elif (
        isinstance(value, bool)
        or (isinstance(value, float) and not value.is_integer())
        or (isinstance(value, str) and " " in value)
    ):
        raise _not_otlp(field, f"not an integer: {value!r}")
    else:
        try:
            number = int(value)
        except ValueError:
            try:
                real = float(value)
            except ValueError:
                raise _not_otlp(field, f"not an integer: {value!r}") from None
            if not real.is_integer():
                raise _not_otlp(field, f"not an integer: {value!r}") from None
            number = int(real)
        except (TypeError, OverflowError):
            raise _not_otlp(field, f"not an integer: {value!r}") from None
    if not bounds[0] <= number <= bounds[1]:
        raise _not_otlp(field, f"{number} is out of range")
    return number


def _json_enum(value: Any, field: str, names: dict[str, int]) -> int:
    """An open enum: its number, or the name of one of its values."""
    if type(value) is int:
        number = value
    elif value is None:
        return 0
    elif isinstance(value, str) and value in names:
        return names[value]
    else:
        try:
            number = int(value)
        except ValueError:
            return 0  # an unknown name is ignored, like an unknown field
        except (TypeError, OverflowError):
            raise _not_otlp(field, f"not an enum value: {value!r}") from None
    if not _INT32[0] <= number <= _INT32[1]:
        raise _not_otlp(field, f"{number} is out of range")
    return number


def _json_double(value: Any) -> float | str:
    """A double (a number, "NaN", "Infinity" or "-Infinity"), stored as ``any_value`` stores one."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _not_otlp("doubleValue", f'{value} must be quoted ("NaN", "Infinity", "-Infinity")')
    if value == "nan":
        raise _not_otlp("doubleValue", 'use "NaN", not "nan"')
    try:
        return _double(float(value))
    except (TypeError, ValueError):
        raise _not_otlp("doubleValue", f"not a number: {value!r}") from None


def _json_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise _not_otlp("boolValue", f"expected true or false, not {value!r}")


def _json_bytes(value: Any) -> str:
    """A bytes value, base64 (standard or URL-safe) in OTLP/JSON, stored as standard base64 like ``any_value``."""
    try:
        encoded = value.encode("utf-8") if isinstance(value, str) else value
        return _base64(base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4)))
    except (TypeError, ValueError, AttributeError):
        raise _not_otlp("bytesValue", f"not base64: {value!r}") from None


def _json_id(value: Any, field: str) -> bytes:
    """An id in hex; one that is not hex becomes ``NOT_HEX`` and is rejected with its span."""
    if type(value) is not str:
        if value is None:
            return b""
        raise _not_otlp(field, f"expected a hex string, not {type(value).__name__}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        return NOT_HEX


# Each AnyValue kind: its reader, given the value and the message depth of the AnyValue.
_JSON_VALUE_READERS: dict[str, Callable[[Any, int], Any]] = {
    "stringValue": lambda v, depth: _json_string(v, "stringValue"),
    "intValue": lambda v, depth: _json_int(v, "intValue", _INT64),
    "boolValue": lambda v, depth: _json_bool(v),
    "doubleValue": lambda v, depth: _json_double(v),
    "arrayValue": lambda v, depth: [
        _json_any_value(item, depth + 2) for item in _json_objects(_json_object(v, "arrayValue"), "values")
    ],
    "kvlistValue": lambda v, depth: _json_attributes(_json_object(v, "kvlistValue"), "values", depth + 1),
    "bytesValue": lambda v, depth: _json_bytes(v),
}


def _json_any_value(value: dict[str, Any], depth: int) -> Any:
    if depth > _MAX_MESSAGE_DEPTH:
        raise TooDeep(f"{_JSON_PREFIX}: value: nested deeper than {_MAX_MESSAGE_DEPTH} messages")
    kind = None
    for key, content in value.items():
        if content is not None and key in _JSON_VALUE_READERS:
            if kind is not None:
                raise _not_otlp("value", f"both {kind} and {key}")
            kind = key
    if kind in ("arrayValue", "kvlistValue") and depth == _MAX_MESSAGE_DEPTH:
        raise TooDeep(f"{_JSON_PREFIX}: {kind}: nested deeper than {_MAX_MESSAGE_DEPTH} messages")
    return _JSON_VALUE_READERS[kind](value[kind], depth) if kind else None


def _json_attributes(container: dict[str, Any], field: str, depth: int) -> Attributes:
    """The KeyValue list ``field`` of ``container``, a message ``depth`` messages deep in the request."""
    result: Attributes = {}
    for key_value in _json_objects(container, field):
        key = key_value.get("key")
        if type(key) is not str:
            key = _json_string(key, "key")
        value = key_value.get("value")
        if type(value) is dict and len(value) == 1 and type(value.get("stringValue")) is str:
            # Most attribute values are strings: read them without the dispatch.
            result[key] = value["stringValue"]
        else:
            result[key] = _json_any_value(_json_object(value, "value"), depth + 2)
    return result


def _json_events(span: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _event(
            _json_string(event.get("name"), "name"),
            _json_int(event.get("timeUnixNano"), "timeUnixNano", _UINT64),
            _json_attributes(event, "attributes", 5),
            _json_int(event.get("droppedAttributesCount"), "droppedAttributesCount", _UINT32),
        )
        for event in _json_objects(span, "events")
    ]


def _json_links(links: list[dict[str, Any]], link_ids: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    return [
        _link(
            trace_id,
            span_id,
            _json_attributes(link, "attributes", 5),
            _json_string(link.get("traceState"), "traceState"),
            _json_int(link.get("flags"), "flags", _UINT32),
        )
        for link, (trace_id, span_id) in zip(links, link_ids)
    ]


def parse_json_traces(body: bytes) -> dict[str, Any]:
    """The OTLP/JSON trace request document of the body, for ``count_json_spans`` and ``decode_json_spans``."""
    document = load_json(body)
    if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(document):
        raise PayloadError(f"{_JSON_PREFIX}: a string holds an unpaired surrogate")
    return document


def _has_lone_surrogate(node: Any) -> bool:
    if isinstance(node, str):
        return _LONE_SURROGATE.search(node) is not None
    if isinstance(node, dict):
        return any(_has_lone_surrogate(key) or _has_lone_surrogate(value) for key, value in node.items())
    if isinstance(node, list):
        return any(_has_lone_surrogate(item) for item in node)
    return False


def _json_scope_spans(document: dict[str, Any]) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    """Each ``(resourceSpans, scopeSpans)`` pair of the document."""
    for resource_spans in _json_objects(document, "resourceSpans"):
        for scope_spans in _json_objects(resource_spans, "scopeSpans"):
            yield resource_spans, scope_spans


def count_json_spans(document: dict[str, Any]) -> int:
    """The document's spans, valid or not, without decoding them; a ``PayloadError`` when its lists are not lists."""
    return sum(len(_json_objects(scope_spans, "spans")) for _, scope_spans in _json_scope_spans(document))


def decode_json_spans(document: dict[str, Any]) -> tuple[list[Span], Rejection]:
    """``decode_spans`` for an OTLP/JSON document (``json.loads`` of the body): the same spans and rejection."""
    spans: list[Span] = []
    rejected = 0
    first_reason: str | None = None
    resource: tuple[Attributes, str | None] = ({}, None)
    last_resource_spans: dict[str, Any] | None = None
    for resource_spans, scope_spans in _json_scope_spans(document):
        if resource_spans is not last_resource_spans:
            last_resource_spans = resource_spans
            resource_message = _json_object(resource_spans.get("resource"), "resource")
            resource = _with_service_name(_json_attributes(resource_message, "attributes", 3))
        resource_attributes, service_name = resource
        scope = _json_object(scope_spans.get("scope"), "scope")
        scope_name = _json_string(scope.get("name"), "name") or None
        scope_version = _json_string(scope.get("version"), "version") or None
        for span in _json_objects(scope_spans, "spans"):
            name = _json_string(span.get("name"), "name")
            links = _json_objects(span, "links")
            link_ids = [
                (_json_id(link.get("traceId"), "traceId"), _json_id(link.get("spanId"), "spanId")) for link in links
            ]
            ids = _span_ids(
                _json_id(span.get("traceId"), "traceId"),
                _json_id(span.get("spanId"), "spanId"),
                _json_id(span.get("parentSpanId"), "parentSpanId"),
                link_ids,
            )
            trace_id, span_id, parent_span_id = ("", "", None) if isinstance(ids, str) else ids
            status = _json_object(span.get("status"), "status")
            record = Span(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent_span_id,
                trace_state=_json_string(span.get("traceState"), "traceState") or None,
                flags=_json_int(span.get("flags"), "flags", _UINT32),
                name=name,
                kind=_enum_name(SPAN_KINDS, _json_enum(span.get("kind"), "kind", _SPAN_KIND_NAMES)),
                start_time_unix_nano=_json_int(span.get("startTimeUnixNano"), "startTimeUnixNano", _UINT64),
                end_time_unix_nano=_json_int(span.get("endTimeUnixNano"), "endTimeUnixNano", _UINT64),
                status_code=_enum_name(STATUS_CODES, _json_enum(status.get("code"), "code", _STATUS_CODE_NAMES)),
                status_message=_json_string(status.get("message"), "message") or None,
                service_name=service_name,
                scope_name=scope_name,
                scope_version=scope_version,
                resource_attributes=resource_attributes,
                attributes=_json_attributes(span, "attributes", 4),
                events=_json_events(span),
                links=_json_links(links, link_ids),
                dropped_attributes_count=_json_int(
                    span.get("droppedAttributesCount"), "droppedAttributesCount", _UINT32
                ),
                dropped_events_count=_json_int(span.get("droppedEventsCount"), "droppedEventsCount", _UINT32),
                dropped_links_count=_json_int(span.get("droppedLinksCount"), "droppedLinksCount", _UINT32),
            )
            # Every field is read before the ids are judged: a span that is not OTLP fails the
            # request as ParseDict would, whatever its ids.
            if not isinstance(ids, str):
                ids = _times_problem(record.start_time_unix_nano, record.end_time_unix_nano) or ids
            if isinstance(ids, str):
                rejected += 1
                first_reason = first_reason or f"span {name!r}: {ids}"
                continue
            spans.append(record)
    return spans, Rejection(rejected, first_reason) if rejected else NO_REJECTION


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
