"""OTLP decoding: protobuf and OTLP/JSON payloads to records, and the limits a request must keep.

Pure functions, no I/O: ``protobuf`` and ``json`` turn trace requests into spans, ``logs`` turns log
records into events, ``limits`` rejects what cannot be stored and cuts what is nested too deep, and
``common`` holds what they share (attribute values, enum names, event and link records).
"""

from collector.otlp.common import SPAN_KINDS, STATUS_CODES, any_value, attributes
from collector.otlp.json import count_json_spans, decode_json_spans, load_json, parse_json, parse_json_traces
from collector.otlp.limits import (
    DEEP_VALUE_MARKER,
    MAX_VALUE_DEPTH,
    NOT_HEX,
    SPAN_ID_BYTES,
    TRACE_ID_BYTES,
    PayloadError,
    TooDeep,
    shallow_json_values,
    without_conflicting_duplicates,
)
from collector.otlp.logs import count_log_records, decode_log_records
from collector.otlp.protobuf import count_data_points, count_spans, decode_spans, parse_otlp_protobuf, parse_protobuf

__all__ = [
    "DEEP_VALUE_MARKER",
    "MAX_VALUE_DEPTH",
    "NOT_HEX",
    "SPAN_ID_BYTES",
    "SPAN_KINDS",
    "STATUS_CODES",
    "TRACE_ID_BYTES",
    "PayloadError",
    "TooDeep",
    "any_value",
    "attributes",
    "count_data_points",
    "count_json_spans",
    "count_log_records",
    "count_spans",
    "decode_json_spans",
    "decode_log_records",
    "decode_spans",
    "load_json",
    "parse_json",
    "parse_json_traces",
    "parse_otlp_protobuf",
    "parse_protobuf",
    "shallow_json_values",
    "without_conflicting_duplicates",
]
