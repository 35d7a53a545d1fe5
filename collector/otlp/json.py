"""OTLP/JSON payloads: parsed into protobuf messages, or trace requests decoded straight to records."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from collector.model import NO_REJECTION, Attributes, Rejection, Span
from collector.otlp.common import (
    SPAN_KINDS,
    STATUS_CODES,
    _base64,
    _double,
    _enum_name,
    _event,
    _link,
    _with_service_name,
)
from collector.otlp.limits import NOT_HEX, PayloadError, TooDeep, _span_ids, _times_problem
from collector.otlp.protobuf import RequestT

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
    """The JSON object of the body, not yet read as OTLP.

    Read by orjson, in a third less time than the json module; what orjson refuses (NaN and Infinity,
    numbers beyond a double, a lone surrogate, nesting past 1,024 levels, UTF-16, a byte order mark) is
    read by the json module, which takes or refuses it as before. The one difference: orjson reads an
    integer beyond 64 bits as a float, which every OTLP field refuses as the json module's integer was
    refused, out of range (the message shows the float's digits). An integer just below -2^63 rounds to
    -2^63 as a float; ``_json_int`` refuses every float of that size, since an integer that fits 64 bits
    comes from orjson as an integer.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = _load_json_module(body)
    return _json_document(document)


def _json_document(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise PayloadError("body must be a JSON object")
    return document


def _load_json_module(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise PayloadError(f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise PayloadError("body is not valid OTLP/JSON: nested too deeply") from None


def parse_json(body: bytes, message_type: type[RequestT]) -> RequestT:
    """Parse OTLP/JSON: hex ids, lowerCamelCase keys, int64 as string or number, unknown fields ignored.

    Read by the json module, not orjson: ``json_format`` would take orjson's float for an integer beyond 64 bits
    that rounds into range (traces, the hot path, are read by ``decode_json_spans``, which refuses those)."""
    document = _json_document(_load_json_module(body))
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
_FLOAT_BEYOND_64_BITS = float(2**63)  # orjson's reading of a JSON integer that does not fit 64 bits
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
    elif type(value) is str and value.isdigit() and value.isascii():  # most: OTLP/JSON sends int64 as strings
        number = int(value)
    elif value is None:
        return 0
    elif type(value) is float and not -_FLOAT_BEYOND_64_BITS < value < _FLOAT_BEYOND_64_BITS:
        raise _not_otlp(field, f"{value!r} is out of range")  # an integer beyond 64 bits, read by orjson
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


def _json_enum(value: Any, field: str, names: Mapping[str, int]) -> int:
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
        if type(value) is dict and len(value) == 1:
            # Most attribute values are strings, and most others integers: read them without the dispatch.
            text = value.get("stringValue")
            if type(text) is str:
                result[key] = text
                continue
            number = value.get("intValue")
            if number is not None and depth + 2 <= _MAX_MESSAGE_DEPTH:
                result[key] = _json_int(number, "intValue", _INT64)
                continue
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
        for link, (trace_id, span_id) in zip(links, link_ids, strict=True)
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
            record = Span(  # positional, in the order of its fields: a third of the cost of keywords
                trace_id,
                span_id,
                parent_span_id,
                _json_string(span.get("traceState"), "traceState") or None,
                _json_int(span.get("flags"), "flags", _UINT32),
                name,
                _enum_name(SPAN_KINDS, _json_enum(span.get("kind"), "kind", _SPAN_KIND_NAMES)),
                _json_int(span.get("startTimeUnixNano"), "startTimeUnixNano", _UINT64),
                _json_int(span.get("endTimeUnixNano"), "endTimeUnixNano", _UINT64),
                _enum_name(STATUS_CODES, _json_enum(status.get("code"), "code", _STATUS_CODE_NAMES)),
                _json_string(status.get("message"), "message") or None,
                service_name,
                scope_name,
                scope_version,
                resource_attributes,
                _json_attributes(span, "attributes", 4),
                _json_events(span),
                _json_links(links, link_ids),
                _json_int(span.get("droppedAttributesCount"), "droppedAttributesCount", _UINT32),
                _json_int(span.get("droppedEventsCount"), "droppedEventsCount", _UINT32),
                _json_int(span.get("droppedLinksCount"), "droppedLinksCount", _UINT32),
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
