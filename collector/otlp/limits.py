"""What a request may not hold, and what becomes of it.

A request that cannot be parsed as a whole raises ``PayloadError`` (400 / INVALID_ARGUMENT). A span whose
ids or times cannot be stored is left out and counted as rejected; a repeated span id with other content
is set aside. Attribute values nested deeper than the parsers go are cut to a marker, in protobuf and in
OTLP/JSON, and the rest of the request is kept.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from collector.model import Span

TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8

# What a JSON id that is not hex (a base64 id, say) becomes: no id has its length, so the span is
# rejected as a bad id. Not empty, because an empty parent id means "root span".
NOT_HEX = b"<not hex>"


class PayloadError(ValueError):
    """The request as a whole cannot be parsed: answered with 400 / INVALID_ARGUMENT."""


class TooDeep(PayloadError):
    """A value nested deeper than the parser goes; the request is read again with such values cut."""


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


# --- spans ---------------------------------------------------------------------------------


# All-zero ids are invalid; compared whole, which costs less than ``any()`` over their bytes.
_ZERO_TRACE_ID = bytes(TRACE_ID_BYTES)
_ZERO_SPAN_ID = bytes(SPAN_ID_BYTES)


def _span_ids(
    trace_id: bytes, span_id: bytes, parent: bytes, link_ids: Iterable[tuple[bytes, bytes]]
) -> tuple[str, str, str | None] | str:
    """The span's hex ids, or the reason they are unusable."""
    if len(trace_id) != TRACE_ID_BYTES or trace_id == _ZERO_TRACE_ID:
        return f"invalid trace_id {_show(trace_id)}: expected 16 non-zero bytes (32 hex characters in OTLP/JSON)"
    if len(span_id) != SPAN_ID_BYTES or span_id == _ZERO_SPAN_ID:
        return f"invalid span_id {_show(span_id)}: expected 8 non-zero bytes (16 hex characters in OTLP/JSON)"
    if parent and len(parent) != SPAN_ID_BYTES:
        return f"invalid parent_span_id {_show(parent)}: expected 8 bytes or none"
    for link_trace_id, link_span_id in link_ids:
        if len(link_trace_id) != TRACE_ID_BYTES or len(link_span_id) != SPAN_ID_BYTES:
            return "invalid link: trace_id must be 16 bytes and span_id 8 bytes"
    return trace_id.hex(), span_id.hex(), parent.hex() if parent and parent != _ZERO_SPAN_ID else None


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
