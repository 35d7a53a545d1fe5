"""collector/otlp/: OTLP protobuf and OTLP/JSON to spans, as pure functions (tables of cases)."""

from __future__ import annotations

import base64
import importlib.util
import json
import math
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from collector.model import NO_REJECTION, Rejection, Span
from collector.otlp import (
    PayloadError,
    count_data_points,
    count_json_spans,
    count_log_records,
    count_spans,
    decode_json_spans,
    decode_spans,
    parse_json,
    parse_json_traces,
    parse_protobuf,
    without_conflicting_duplicates,
)
from tests.helpers import otlp_request, trace_request

TRACE_HEX = "5b8efff798038103d269b633813fc60c"
SPAN_HEX = "eee19b7ec3c1b174"
PARENT_HEX = "eee19b7ec3c1b173"

# The example of opentelemetry-proto's examples/trace.json: upper-case hex ids, int64 times as strings.
SPEC_EXAMPLE = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
            "scopeSpans": [
                {
                    "scope": {
                        "name": "my.library",
                        "version": "1.0.0",
                        "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}],
                    },
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "parentSpanId": "EEE19B7EC3C1B173",
                            "name": "I'm a server span",
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": "1544712661000000000",
                            "kind": 2,
                            "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}],
                        }
                    ],
                }
            ],
        }
    ]
}


# --- builders ------------------------------------------------------------------------------


def json_request(*spans: dict[str, Any], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OTLP/JSON trace request document with ``spans`` under one resource and scope."""
    resource_spans: dict[str, Any] = {"scopeSpans": [{"scope": {"name": "tests"}, "spans": list(spans)}]}
    if resource is not None:
        resource_spans["resource"] = resource
    return {"resourceSpans": [resource_spans]}


def json_span(**fields: Any) -> dict[str, Any]:
    span: dict[str, Any] = {"traceId": TRACE_HEX, "spanId": SPAN_HEX, "name": "span"}
    span.update(fields)
    return {key: value for key, value in span.items() if value is not None}


def decode_json(document: dict[str, Any]) -> tuple[list[Span], Rejection]:
    """The document decoded both ways (through a protobuf message, and straight to records), which must agree."""
    body = json.dumps(document).encode()
    through_message = decode_spans(parse_json(body, ExportTraceServiceRequest))
    assert decode_json_directly(body) == through_message
    return through_message


def decode_json_directly(body: bytes) -> tuple[list[Span], Rejection]:
    """What the HTTP receiver does with an OTLP/JSON trace request."""
    document = parse_json_traces(body)
    count = count_json_spans(document)
    spans, rejection = decode_json_spans(document)
    assert count == len(spans) + rejection.count
    return spans, rejection


def decode_one_json(**fields: Any) -> Span:
    spans, rejection = decode_json(json_request(json_span(**fields)))
    assert rejection == NO_REJECTION, rejection.message
    assert len(spans) == 1
    return spans[0]


def proto_request(*spans: trace_pb2.Span, service_name: Any = "svc") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    if service_name is not None:
        resource_spans.resource.attributes.append(KeyValue(key="service.name", value=any_of(service_name)))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def proto_span(name: str = "span", **fields: Any) -> trace_pb2.Span:
    values: dict[str, Any] = {"trace_id": bytes.fromhex(TRACE_HEX), "span_id": bytes.fromhex(SPAN_HEX)}
    values.update(fields)
    return trace_pb2.Span(name=name, **values)


def any_of(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(string_value=value)


def decode_one_proto(span: trace_pb2.Span) -> Span:
    spans, rejection = decode_spans(proto_request(span))
    assert rejection == NO_REJECTION, rejection.message
    return spans[0]


def rejection_of(span: trace_pb2.Span) -> Rejection:
    spans, rejection = decode_spans(proto_request(span))
    assert spans == []
    return rejection


# --- OTLP/JSON -----------------------------------------------------------------------------


def test_spec_example_json_decodes_to_one_server_span() -> None:
    spans, rejection = decode_json(SPEC_EXAMPLE)
    assert rejection == NO_REJECTION
    assert spans == [
        Span(
            trace_id=TRACE_HEX,
            span_id=SPAN_HEX,
            parent_span_id=PARENT_HEX,
            trace_state=None,
            flags=0,
            name="I'm a server span",
            kind="server",
            start_time_unix_nano=1544712660000000000,
            end_time_unix_nano=1544712661000000000,
            status_code="unset",
            status_message=None,
            service_name="my.service",
            scope_name="my.library",
            scope_version="1.0.0",
            resource_attributes={"service.name": "my.service"},
            attributes={"my.span.attr": "some value"},
            events=[],
            links=[],
            dropped_attributes_count=0,
            dropped_events_count=0,
            dropped_links_count=0,
        )
    ]


@pytest.mark.parametrize(
    "trace_id, span_id",
    [
        (TRACE_HEX, SPAN_HEX),
        (TRACE_HEX.upper(), SPAN_HEX.upper()),
        ("5B8efff798038103D269b633813fc60C", "EeE19b7eC3c1B174"),
    ],
    ids=["lower", "upper", "mixed"],
)
def test_json_hex_ids_are_case_insensitive(trace_id: str, span_id: str) -> None:
    span = decode_one_json(traceId=trace_id, spanId=span_id, parentSpanId=PARENT_HEX.upper())
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE_HEX, SPAN_HEX, PARENT_HEX)


@pytest.mark.parametrize(
    "start, end, int_value",
    [
        ("1544712660000000000", "1544712661000000000", "9007199254740993"),
        (1544712660000000000, 1544712661000000000, 9007199254740993),
    ],
    ids=["strings", "numbers"],
)
def test_json_int64_as_string_or_number(start: Any, end: Any, int_value: Any) -> None:
    span = decode_one_json(
        startTimeUnixNano=start,
        endTimeUnixNano=end,
        attributes=[{"key": "big", "value": {"intValue": int_value}}],
    )
    assert span.start_time_unix_nano == 1544712660000000000
    assert span.end_time_unix_nano == 1544712661000000000
    assert span.attributes == {"big": 9007199254740993}  # 2**53 + 1: no float on the way


@pytest.mark.parametrize(
    "kind, name",
    [
        (0, "unspecified"),
        (1, "internal"),
        (2, "server"),
        (3, "client"),
        (4, "producer"),
        (5, "consumer"),
        (9, "9"),  # an unknown kind keeps its number
    ],
)
def test_json_span_kind_as_integer(kind: int, name: str) -> None:
    assert decode_one_json(kind=kind).kind == name


@pytest.mark.parametrize("code, name", [(0, "unset"), (1, "ok"), (2, "error"), (7, "7")])
def test_json_status_code_as_integer(code: int, name: str) -> None:
    span = decode_one_json(status={"code": code, "message": "why"})
    assert (span.status_code, span.status_message) == (name, "why")


def test_json_unknown_fields_are_ignored_at_every_level() -> None:
    document = json_request(
        json_span(
            futureField={"nested": [1, 2]},
            attributes=[{"key": "k", "value": {"stringValue": "v"}, "futureKeyField": 1}],
            events=[{"name": "e", "timeUnixNano": "5", "futureEventField": True}],
        ),
        resource={"attributes": [], "futureResourceField": "x"},
    )
    document["futureTopLevel"] = {"a": 1}
    document["resourceSpans"][0]["scopeSpans"][0]["futureScopeField"] = []
    spans, rejection = decode_json(document)
    assert rejection == NO_REJECTION
    assert spans[0].attributes == {"k": "v"}
    assert spans[0].events == [{"name": "e", "time_unix_nano": 5, "attributes": {}}]


def test_json_camel_case_keys_fill_every_span_field() -> None:
    span = decode_one_json(
        traceState="vendor=1",
        flags=257,
        droppedAttributesCount=1,
        droppedEventsCount=2,
        droppedLinksCount=3,
        status={"code": 2, "message": "boom"},
    )
    assert span.trace_state == "vendor=1"
    assert span.flags == 257
    assert (span.dropped_attributes_count, span.dropped_events_count, span.dropped_links_count) == (1, 2, 3)
    assert (span.status_code, span.status_message) == ("error", "boom")


def test_json_base64_ids_of_the_spec_example_are_rejected_not_misdecoded() -> None:
    """The pain point of other receivers: base64 ids read as if they were the canonical protobuf mapping."""
    span = json_span(
        traceId=base64.b64encode(bytes.fromhex(TRACE_HEX)).decode(),  # "W47/95gDgQPSabYzgT/GDA=="
        spanId=base64.b64encode(bytes.fromhex(SPAN_HEX)).decode(),
    )
    spans, rejection = decode_json(json_request(span))
    assert spans == []
    assert rejection == Rejection(
        1, "span 'span': invalid trace_id (not hex): expected 16 non-zero bytes (32 hex characters in OTLP/JSON)"
    )


@pytest.mark.parametrize(
    "field, reason",
    [
        ("spanId", "invalid span_id (not hex): expected 8 non-zero bytes (16 hex characters in OTLP/JSON)"),
        ("parentSpanId", "invalid parent_span_id (not hex): expected 8 bytes or none"),
    ],
    ids=["span", "parent"],
)
def test_json_base64_span_and_parent_ids_are_rejected(field: str, reason: str) -> None:
    """A base64 parent id must not turn a child span into a root span."""
    span = json_span(**{field: base64.b64encode(bytes.fromhex(PARENT_HEX)).decode()})
    spans, rejection = decode_json(json_request(span))
    assert spans == []
    assert rejection == Rejection(1, f"span 'span': {reason}")


@pytest.mark.parametrize(
    "trace_id, span_id",
    [
        pytest.param("5b8efff7-9803-8103-d269-b633813fc60c", SPAN_HEX, id="uuid-style"),
        pytest.param(TRACE_HEX[:-1], SPAN_HEX, id="odd-length"),
        pytest.param(TRACE_HEX, "zzzzzzzzzzzzzzzz", id="non-hex-of-right-length"),
        pytest.param(TRACE_HEX, "eee19b7ec3c1b1", id="short"),
        pytest.param(TRACE_HEX + "00", SPAN_HEX, id="long"),
        pytest.param("", SPAN_HEX, id="empty"),
    ],
)
def test_json_ids_that_are_not_16_or_8_hex_bytes_are_rejected(trace_id: str, span_id: str) -> None:
    spans, rejection = decode_json(json_request(json_span(traceId=trace_id, spanId=span_id)))
    assert (spans, rejection.count) == ([], 1)


def test_json_snake_case_ids_are_rejected_not_misdecoded() -> None:
    """Original field names are not OTLP/JSON; protobuf's parser reads them as base64, which must not yield an id."""
    document = json_request({"trace_id": TRACE_HEX, "span_id": SPAN_HEX, "name": "snake"})
    body = json.dumps(document).encode()
    spans, rejection = decode_spans(parse_json(body, ExportTraceServiceRequest))
    assert (spans, rejection.count) == ([], 1)
    # Read straight from the document, original field names are unknown fields: the span has no ids.
    spans, rejection = decode_json_directly(body)
    assert (spans, rejection.count) == ([], 1)
    assert rejection.first_reason == (
        "span 'snake': invalid trace_id (empty): expected 16 non-zero bytes (32 hex characters in OTLP/JSON)"
    )


def test_json_link_ids_are_hex() -> None:
    link = {"traceId": TRACE_HEX.upper(), "spanId": PARENT_HEX, "traceState": "a=b", "flags": 1}
    span = decode_one_json(links=[link])
    assert span.links == [
        {"trace_id": TRACE_HEX, "span_id": PARENT_HEX, "attributes": {}, "trace_state": "a=b", "flags": 1}
    ]


def test_json_attribute_values_of_every_type() -> None:
    attributes = [
        {"key": "string", "value": {"stringValue": "text"}},
        {"key": "int", "value": {"intValue": "-7"}},
        {"key": "double", "value": {"doubleValue": 0.25}},
        {"key": "bool", "value": {"boolValue": True}},
        {"key": "array", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 1}]}}},
        {"key": "kvlist", "value": {"kvlistValue": {"values": [{"key": "inner", "value": {"boolValue": False}}]}}},
        {"key": "bytes", "value": {"bytesValue": "aGVsbG8="}},  # bytes values stay base64 in OTLP/JSON
        {"key": "nan", "value": {"doubleValue": "NaN"}},
        {"key": "inf", "value": {"doubleValue": "Infinity"}},
        {"key": "-inf", "value": {"doubleValue": "-Infinity"}},
        {"key": "empty", "value": {}},
    ]
    assert decode_one_json(attributes=attributes).attributes == {
        "string": "text",
        "int": -7,
        "double": 0.25,
        "bool": True,
        "array": ["a", 1],
        "kvlist": {"inner": False},
        "bytes": "aGVsbG8=",
        "nan": "nan",
        "inf": "inf",
        "-inf": "-inf",
        "empty": None,
    }


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "body is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        (b"{", "body is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (b"\xff\xfe{}", None),
        (b"[]", "body must be a JSON object"),
        (b"null", "body must be a JSON object"),
        (b'"resourceSpans"', "body must be a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "body is not valid OTLP/JSON: nested too deeply"),
        (b'{"resourceSpans": 5}', None),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}', None),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 5}]}]}]}', None),
    ],
    ids=[
        "empty",
        "truncated",
        "not-utf8",
        "array",
        "null",
        "string",
        "deeply-nested",
        "wrong-type",
        "bad-int64",
        "id-not-a-string",
    ],
)
def test_json_that_is_not_an_otlp_request_is_a_payload_error(body: bytes, message: str | None) -> None:
    with pytest.raises(PayloadError) as raised:
        parse_json(body, ExportTraceServiceRequest)
    if message is not None:
        assert str(raised.value) == message
    with pytest.raises(PayloadError) as raised:
        decode_json_directly(body)
    if message is not None:
        assert str(raised.value) == message


def test_json_logs_and_metrics_parse_with_hex_ids() -> None:
    logs = {
        "resourceLogs": [
            {"scopeLogs": [{"logRecords": [{"traceId": TRACE_HEX, "spanId": SPAN_HEX, "body": {"stringValue": "x"}}]}]}
        ]
    }
    parsed_logs = parse_json(json.dumps(logs).encode(), ExportLogsServiceRequest)
    record = parsed_logs.resource_logs[0].scope_logs[0].log_records[0]
    assert (record.trace_id.hex(), record.span_id.hex()) == (TRACE_HEX, SPAN_HEX)
    gauge = {"name": "m", "gauge": {"dataPoints": [{"asInt": "3"}, {"asDouble": 1.5}]}}
    metrics = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [gauge]}]}]}
    assert count_data_points(parse_json(json.dumps(metrics).encode(), ExportMetricsServiceRequest)) == 2


# --- protobuf ------------------------------------------------------------------------------


def test_protobuf_round_trip() -> None:
    request = proto_request(proto_span("a", parent_span_id=bytes.fromhex(PARENT_HEX)))
    parsed = parse_protobuf(request.SerializeToString(), ExportTraceServiceRequest)
    assert parsed == request


@pytest.mark.parametrize(
    "body",
    [b"\xff\xff\xff", b"\x0a\x05ab", b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80"],
    ids=["bad-tag", "truncated-field", "overlong-varint"],
)
def test_corrupt_protobuf_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError, match=r"^body is not a valid protobuf ExportTraceServiceRequest: "):
        parse_protobuf(body, ExportTraceServiceRequest)


def test_protobuf_string_with_invalid_utf8_is_a_payload_error() -> None:
    body = proto_request(proto_span("ab")).SerializeToString().replace(b"ab", b"\xff\xfe")
    with pytest.raises(PayloadError):
        parse_protobuf(body, ExportTraceServiceRequest)


# --- ids -----------------------------------------------------------------------------------

ZERO_TRACE = bytes(16)
ZERO_SPAN = bytes(8)


@pytest.mark.parametrize(
    "fields, reason",
    [
        (
            {"trace_id": b"\x01" * 15},
            (
                "invalid trace_id '010101010101010101010101010101' (15 bytes): "
                "expected 16 non-zero bytes (32 hex characters in OTLP/JSON)"
            ),
        ),
        ({"trace_id": b"\x01" * 17}, None),
        ({"trace_id": b""}, "invalid trace_id (empty): expected 16 non-zero bytes (32 hex characters in OTLP/JSON)"),
        (
            {"trace_id": ZERO_TRACE},
            (
                "invalid trace_id '00000000000000000000000000000000' (16 bytes): "
                "expected 16 non-zero bytes (32 hex characters in OTLP/JSON)"
            ),
        ),
        (
            {"span_id": b"\x02" * 7},
            "invalid span_id '02020202020202' (7 bytes): expected 8 non-zero bytes (16 hex characters in OTLP/JSON)",
        ),
        ({"span_id": b"\x02" * 9}, None),
        ({"span_id": b""}, "invalid span_id (empty): expected 8 non-zero bytes (16 hex characters in OTLP/JSON)"),
        (
            {"span_id": ZERO_SPAN},
            "invalid span_id '0000000000000000' (8 bytes): expected 8 non-zero bytes (16 hex characters in OTLP/JSON)",
        ),
        ({"parent_span_id": b"\x03" * 4}, "invalid parent_span_id '03030303' (4 bytes): expected 8 bytes or none"),
        ({"parent_span_id": b"\x03" * 16}, None),
        (
            {"links": [trace_pb2.Span.Link(trace_id=b"\x01" * 16, span_id=b"\x02" * 4)]},
            "invalid link: trace_id must be 16 bytes and span_id 8 bytes",
        ),
        ({"links": [trace_pb2.Span.Link(trace_id=b"", span_id=b"\x02" * 8)]}, None),
    ],
    ids=[
        "trace-15",
        "trace-17",
        "trace-empty",
        "trace-zero",
        "span-7",
        "span-9",
        "span-empty",
        "span-zero",
        "parent-4",
        "parent-16",
        "link-span-4",
        "link-trace-empty",
    ],
)
def test_spans_with_unusable_ids_are_rejected_with_a_reason(fields: dict[str, Any], reason: str | None) -> None:
    rejection = rejection_of(proto_span("bad", **fields))
    assert rejection.count == 1
    if reason is not None:
        assert rejection.first_reason == f"span 'bad': {reason}"


@pytest.mark.parametrize(
    "parent, expected",
    [(b"", None), (ZERO_SPAN, None), (bytes.fromhex(PARENT_HEX), PARENT_HEX)],
    ids=["absent", "all-zero", "present"],
)
def test_parent_span_id(parent: bytes, expected: str | None) -> None:
    assert decode_one_proto(proto_span(parent_span_id=parent)).parent_span_id == expected


@pytest.mark.parametrize(
    "parent, expected",
    [(None, None), ("", None), ("0000000000000000", None), (PARENT_HEX.upper(), PARENT_HEX)],
    ids=["absent", "empty", "all-zero", "upper-case"],
)
def test_json_parent_span_id(parent: str | None, expected: str | None) -> None:
    assert decode_one_json(parentSpanId=parent).parent_span_id == expected


# --- attributes, events, links -------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (AnyValue(string_value="text"), "text"),
        (AnyValue(string_value=""), ""),
        (AnyValue(int_value=-(2**63)), -(2**63)),
        (AnyValue(int_value=2**63 - 1), 2**63 - 1),
        (AnyValue(double_value=1.5), 1.5),
        (AnyValue(double_value=math.nan), "nan"),
        (AnyValue(double_value=math.inf), "inf"),
        (AnyValue(double_value=-math.inf), "-inf"),
        (AnyValue(bool_value=False), False),
        (AnyValue(bytes_value=b"\x00\xff"), "AP8="),
        (AnyValue(), None),
    ],
    ids=["string", "empty-string", "int-min", "int-max", "double", "nan", "inf", "-inf", "bool", "bytes", "unset"],
)
def test_attribute_value_types(value: AnyValue, expected: Any) -> None:
    span = decode_one_proto(proto_span(attributes=[KeyValue(key="k", value=value)]))
    assert span.attributes == {"k": expected}
    json.dumps(span.attributes, allow_nan=False)  # storable as strict JSON


def test_nested_array_and_kvlist_values() -> None:
    inner = AnyValue(kvlist_value={"values": [KeyValue(key="n", value=AnyValue(double_value=math.nan))]})
    array = AnyValue(array_value={"values": [AnyValue(int_value=1), AnyValue(string_value="two"), inner]})
    kvlist = AnyValue(kvlist_value={"values": [KeyValue(key="list", value=array)]})
    span = decode_one_proto(proto_span(attributes=[KeyValue(key="outer", value=kvlist)]))
    assert span.attributes == {"outer": {"list": [1, "two", {"n": "nan"}]}}


def test_events_and_links() -> None:
    event = trace_pb2.Span.Event(
        name="gen_ai.choice",
        time_unix_nano=123,
        attributes=[KeyValue(key="index", value=AnyValue(int_value=0))],
        dropped_attributes_count=2,
    )
    plain_event = trace_pb2.Span.Event(name="plain", time_unix_nano=124)
    link = trace_pb2.Span.Link(
        trace_id=b"\x0a" * 16,
        span_id=b"\x0b" * 8,
        attributes=[KeyValue(key="why", value=AnyValue(string_value="caused"))],
    )
    span = decode_one_proto(proto_span(events=[event, plain_event], links=[link]))
    assert span.events == [
        {"name": "gen_ai.choice", "time_unix_nano": 123, "attributes": {"index": 0}, "dropped_attributes_count": 2},
        {"name": "plain", "time_unix_nano": 124, "attributes": {}},
    ]
    assert span.links == [{"trace_id": "0a" * 16, "span_id": "0b" * 8, "attributes": {"why": "caused"}}]


# --- resource, scope, kind and status ------------------------------------------------------


@pytest.mark.parametrize(
    "service_name, expected",
    [("checkout", "checkout"), ("", ""), (None, None), (42, None), (True, None)],
    ids=["string", "empty", "absent", "int", "bool"],
)
def test_service_name_from_resource(service_name: Any, expected: str | None) -> None:
    spans, _ = decode_spans(proto_request(proto_span(), service_name=service_name))
    assert spans[0].service_name == expected


def test_resource_and_scope_are_shared_by_their_spans() -> None:
    request = proto_request(proto_span("a", span_id=b"\x01" * 8), proto_span("b", span_id=b"\x02" * 8))
    scope = request.resource_spans[0].scope_spans[0].scope
    scope.name, scope.version = "openinference.instrumentation", "0.1.2"
    spans, _ = decode_spans(request)
    assert [(span.scope_name, span.scope_version) for span in spans] == [("openinference.instrumentation", "0.1.2")] * 2
    assert spans[0].resource_attributes == spans[1].resource_attributes == {"service.name": "svc"}


def test_missing_scope_is_none() -> None:
    span = decode_one_proto(proto_span())
    assert (span.scope_name, span.scope_version) == (None, None)


@pytest.mark.parametrize(
    "kind, name",
    [
        (trace_pb2.Span.SPAN_KIND_UNSPECIFIED, "unspecified"),
        (trace_pb2.Span.SPAN_KIND_INTERNAL, "internal"),
        (trace_pb2.Span.SPAN_KIND_SERVER, "server"),
        (trace_pb2.Span.SPAN_KIND_CLIENT, "client"),
        (trace_pb2.Span.SPAN_KIND_PRODUCER, "producer"),
        (trace_pb2.Span.SPAN_KIND_CONSUMER, "consumer"),
        (42, "42"),
    ],
)
def test_kind_names(kind: int, name: str) -> None:
    assert decode_one_proto(proto_span(kind=kind)).kind == name


@pytest.mark.parametrize(
    "code, message, expected",
    [
        (trace_pb2.Status.STATUS_CODE_UNSET, "", ("unset", None)),
        (trace_pb2.Status.STATUS_CODE_OK, "", ("ok", None)),
        (trace_pb2.Status.STATUS_CODE_ERROR, "rate limited", ("error", "rate limited")),
        (9, "", ("9", None)),
    ],
)
def test_status_names(code: int, message: str, expected: tuple[str, str | None]) -> None:
    span = decode_one_proto(proto_span(status=trace_pb2.Status(code=code, message=message)))
    assert (span.status_code, span.status_message) == expected


# --- partial rejection ---------------------------------------------------------------------


def test_mixed_good_and_bad_spans_keep_the_good_ones_and_name_the_first_bad_one() -> None:
    request = proto_request(
        proto_span("good-1", span_id=b"\x01" * 8),
        proto_span("bad-1", trace_id=b"\x01" * 15),
        proto_span("good-2", span_id=b"\x02" * 8),
        proto_span("bad-2", span_id=ZERO_SPAN),
        proto_span("good-3", span_id=b"\x03" * 8),
    )
    spans, rejection = decode_spans(request)
    assert [span.name for span in spans] == ["good-1", "good-2", "good-3"]
    assert rejection.count == 2
    assert rejection.message == (
        "2 spans rejected; first: span 'bad-1': invalid trace_id '010101010101010101010101010101' (15 bytes): "
        "expected 16 non-zero bytes (32 hex characters in OTLP/JSON)"
    )


def test_bad_spans_across_resources_are_all_counted() -> None:
    request = ExportTraceServiceRequest()
    for service in ("a", "b"):
        other = proto_request(proto_span("good", span_id=service.encode() * 8), proto_span("bad", span_id=b""))
        other.resource_spans[0].resource.attributes[0].value.string_value = service
        request.resource_spans.extend(other.resource_spans)
    spans, rejection = decode_spans(request)
    assert [span.service_name for span in spans] == ["a", "b"]
    assert rejection.count == 2


def test_one_rejected_span_message_is_singular() -> None:
    _, rejection = decode_spans(proto_request(proto_span("good"), proto_span("bad", trace_id=b"")))
    assert rejection.message.startswith("1 span rejected; first: span 'bad': ")


def test_all_good_has_no_rejection() -> None:
    spans, rejection = decode_spans(proto_request(proto_span()))
    assert len(spans) == 1
    assert rejection is NO_REJECTION
    assert rejection.message == ""


def test_empty_request_decodes_to_nothing() -> None:
    assert decode_spans(ExportTraceServiceRequest()) == ([], NO_REJECTION)
    assert decode_spans(parse_json(b"{}", ExportTraceServiceRequest)) == ([], NO_REJECTION)


def test_mixed_json_request_with_base64_and_hex_ids() -> None:
    good = json_span(name="hex")
    bad = json_span(name="base64", traceId="W47/95gDgQPSabYzgT/GDA==", spanId="7uGbfsPBsXQ=")
    spans, rejection = decode_json(json_request(good, bad, json_span(name="hex-2", spanId="00000000000000ff")))
    assert [(span.name, span.span_id) for span in spans] == [("hex", SPAN_HEX), ("hex-2", "00000000000000ff")]
    assert rejection.message == (
        "1 span rejected; first: span 'base64': invalid trace_id (not hex): "
        "expected 16 non-zero bytes (32 hex characters in OTLP/JSON)"
    )


# --- logs and metrics ----------------------------------------------------------------------


def test_count_log_records_and_data_points() -> None:
    logs = ExportLogsServiceRequest()
    for count in (2, 3):
        records = logs.resource_logs.add().scope_logs.add().log_records
        for _ in range(count):
            records.add()
    assert count_log_records(logs) == 5

    metrics = ExportMetricsServiceRequest()
    scope = metrics.resource_metrics.add().scope_metrics.add()
    scope.metrics.add(name="gauge").gauge.data_points.add(as_int=1)
    sum_points = scope.metrics.add(name="sum").sum.data_points
    sum_points.add(as_int=1)
    sum_points.add(as_double=2.0)
    scope.metrics.add(name="histogram").histogram.data_points.add()
    scope.metrics.add(name="exponential").exponential_histogram.data_points.add()
    scope.metrics.add(name="summary").summary.data_points.add()
    scope.metrics.add(name="no data")
    assert count_data_points(metrics) == 6


# --- OTLP/JSON straight to records: the same spans as through a protobuf message -------------


def _load_bench() -> Any:
    """bench/traces.py, for its realistic agent traces."""
    return importlib.import_module("bench.traces")


def _every_value_type() -> list[KeyValue]:
    inner = AnyValue(kvlist_value={"values": [KeyValue(key="n", value=AnyValue(double_value=math.nan))]})
    array = AnyValue(array_value={"values": [AnyValue(int_value=1), AnyValue(string_value="two"), inner, AnyValue()]})
    values = {
        "string": AnyValue(string_value="text é ✓ 😀"),
        "empty-string": AnyValue(string_value=""),
        "int-min": AnyValue(int_value=-(2**63)),
        "int-max": AnyValue(int_value=2**63 - 1),
        "int-2**53+1": AnyValue(int_value=2**53 + 1),
        "double": AnyValue(double_value=0.1),
        "double-integral": AnyValue(double_value=3.0),
        "nan": AnyValue(double_value=math.nan),
        "inf": AnyValue(double_value=math.inf),
        "-inf": AnyValue(double_value=-math.inf),
        "bool": AnyValue(bool_value=False),
        "bytes": AnyValue(bytes_value=b"\x00\xff\xfe"),
        "array": array,
        "kvlist": AnyValue(kvlist_value={"values": [KeyValue(key="list", value=array)]}),
        "unset": AnyValue(),
    }
    return [KeyValue(key=key, value=value) for key, value in values.items()] + [KeyValue(key="no value")]


def _everything_request() -> ExportTraceServiceRequest:
    """Every field of a span, several resources and scopes, and spans with each kind of bad id."""
    request = ExportTraceServiceRequest()
    first = request.resource_spans.add()
    first.resource.attributes.extend(_every_value_type())
    first.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="everything")))
    scope_spans = first.scope_spans.add()
    scope_spans.scope.name, scope_spans.scope.version = "lib", "1.2"
    for kind in (0, 1, 2, 3, 4, 5, 9):
        scope_spans.spans.append(
            proto_span(
                f"kind {kind}",
                span_id=bytes([kind + 1]) * 8,
                parent_span_id=bytes.fromhex(PARENT_HEX) if kind % 2 else b"",
                trace_state="vendor=1" if kind == 1 else "",
                flags=257 * kind,
                kind=kind,
                start_time_unix_nano=2**64 - 1 - kind,
                end_time_unix_nano=kind,
                attributes=_every_value_type(),
                dropped_attributes_count=kind,
                dropped_events_count=2**32 - 1,
                dropped_links_count=kind,
                status=trace_pb2.Status(code=kind % 4, message="why" if kind else ""),
                events=[
                    trace_pb2.Span.Event(name="e", time_unix_nano=kind, attributes=_every_value_type()),
                    trace_pb2.Span.Event(dropped_attributes_count=3),
                ],
                links=[
                    trace_pb2.Span.Link(
                        trace_id=b"\x0a" * 16,
                        span_id=b"\x0b" * 8,
                        trace_state="a=b" if kind else "",
                        flags=kind,
                        attributes=_every_value_type(),
                    )
                ],
            )
        )
    first.scope_spans.add()  # an empty scope
    bad = request.resource_spans.add()  # no resource
    bad_spans = bad.scope_spans.add().spans
    bad_spans.extend(
        [
            proto_span("good"),
            proto_span("trace-15", trace_id=b"\x01" * 15),
            proto_span("span-zero", span_id=ZERO_SPAN),
            proto_span("no-ids", trace_id=b"", span_id=b""),
            proto_span("parent-4", parent_span_id=b"\x03" * 4),
            proto_span("parent-zero", parent_span_id=ZERO_SPAN),
            proto_span("link-4", links=[trace_pb2.Span.Link(trace_id=b"\x01" * 16, span_id=b"\x02" * 4)]),
        ]
    )
    request.resource_spans.add()  # an empty resource
    return request


def _corpus() -> dict[str, ExportTraceServiceRequest]:
    corpus: dict[str, ExportTraceServiceRequest] = {
        "empty": ExportTraceServiceRequest(),
        "otlp_request": otlp_request(5),
        "otlp_request-attributes": otlp_request(
            3, attributes={"s": "x", "i": -3, "f": 2.5, "b": True, "gen_ai.request.model": "gpt-4o"}
        ),
        "trace_request": trace_request(
            b"\x07" * 16,
            [
                {"span_id": b"\x01" * 8, "name": "root", "start": 1, "end": 9},
                {"span_id": b"\x02" * 8, "parent": b"\x01" * 8, "error": True, "attributes": {"n": 1}},
            ],
        ),
        "spec-example": parse_json(json.dumps(SPEC_EXAMPLE).encode(), ExportTraceServiceRequest),
        "everything": _everything_request(),
    }
    builder = _load_bench().TraceBuilder(seed=11, base_time_ns=1_700_000_000_000_000_000)
    for index in range(3):
        corpus[f"bench-{index}"] = builder.request(60)
    return corpus


CORPUS = _corpus()


def otlp_json(
    request: ExportTraceServiceRequest, *, enum_names: bool = False, int64_numbers: bool = False, upper: bool = False
) -> bytes:
    """OTLP/JSON of a request, as tests/receivers/test_otlp_http.py writes it (link ids hex too), with the
    liberties protobuf's JSON mapping allows: enum names, int64 as numbers, upper-case hex."""
    document = json_format.MessageToDict(request, use_integers_for_enums=not enum_names)

    def hex_ids(record: dict[str, Any]) -> None:
        for field in ("traceId", "spanId", "parentSpanId"):
            if field in record:
                text = base64.b64decode(record[field]).hex()
                record[field] = text.upper() if upper else text

    def numbers(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if (key.endswith("UnixNano") or key == "intValue") and isinstance(value, str):
                    node[key] = int(value)
                numbers(value)
        elif isinstance(node, list):
            for item in node:
                numbers(item)

    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                hex_ids(span)
                for link in span.get("links", []):
                    hex_ids(link)
    if int64_numbers:
        numbers(document)
    return json.dumps(document).encode()


@pytest.mark.parametrize("name", CORPUS)
@pytest.mark.parametrize(
    "liberties",
    [{}, {"enum_names": True, "int64_numbers": True, "upper": True}],
    ids=["canonical", "enum-names-int64-numbers-upper-hex"],
)
def test_json_decodes_straight_to_the_spans_of_the_protobuf(name: str, liberties: dict[str, bool]) -> None:
    request = CORPUS[name]
    body = otlp_json(request, **liberties)
    expected = decode_spans(request)
    assert decode_json_directly(body) == expected
    assert decode_spans(parse_json(body, ExportTraceServiceRequest)) == expected
    assert count_json_spans(parse_json_traces(body)) == count_spans(request)


def _span_document(**fields: Any) -> dict[str, Any]:
    return json_request(json_span(**fields))


def _nested_arrays(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"intValue": 1}
    for _ in range(levels):
        value = {"arrayValue": {"values": [value]}}
    return _span_document(attributes=[{"key": "deep", "value": value}])


# Documents read the same, valid, both ways: json_format's liberties and nulls.
SAME_BOTH_WAYS = {
    "kind-name": _span_document(kind="SPAN_KIND_CLIENT"),
    "kind-unknown-name": _span_document(kind="SPAN_KIND_BOGUS"),
    "kind-string-number": _span_document(kind="2"),
    "kind-float": _span_document(kind=2.0),
    "status-name": _span_document(status={"code": "STATUS_CODE_ERROR", "message": None}),
    "int64-exponent": _span_document(startTimeUnixNano="1e3", endTimeUnixNano=2000.0),
    "double-spellings": _span_document(
        attributes=[
            {"key": str(index), "value": {"doubleValue": value}}
            for index, value in enumerate(["NaN", "Infinity", "-Infinity", "1.5", 2, "-0"])
        ]
    ),
    "bytes-url-safe": _span_document(attributes=[{"key": "b", "value": {"bytesValue": "-_8"}}]),
    "nulls": {
        "resourceSpans": [
            {
                "resource": None,
                "scopeSpans": [
                    {
                        "scope": None,
                        "spans": [
                            json_span(
                                name=None,
                                parentSpanId=None,
                                status=None,
                                events=None,
                                links=None,
                                attributes=[
                                    {"key": "a", "value": None},
                                    {"key": "b", "value": {"stringValue": None}},
                                    {"key": "c", "value": {"stringValue": None, "intValue": 3}},
                                    {"key": None, "value": {"boolValue": True}},
                                ],
                            )
                        ],
                    }
                ],
            },
            {"scopeSpans": None},
        ]
    },
    "nested-to-the-limit": _nested_arrays(47),
}

# Documents both ways refuse with a PayloadError.
REFUSED_BOTH_WAYS = {
    "span-a-number": {"resourceSpans": [{"scopeSpans": [{"spans": [5]}]}]},
    "span-null": {"resourceSpans": [{"scopeSpans": [{"spans": [None]}]}]},
    "scope-spans-a-string": {"resourceSpans": [{"scopeSpans": "x"}]},
    "name-a-number": _span_document(name=5),
    "start-not-integral": _span_document(startTimeUnixNano=1.5),
    "start-negative": _span_document(startTimeUnixNano=-1),
    "start-with-space": _span_document(startTimeUnixNano="1 2"),
    "flags-too-big": _span_document(flags=2**32),
    "dropped-a-bool": _span_document(droppedLinksCount=True),
    "kind-a-list": _span_document(kind=[1]),
    "kind-too-big": _span_document(kind=2**31),
    "status-a-number": _span_document(status=5),
    "events-an-object": _span_document(events={"name": "e"}),
    "event-time-bad": _span_document(events=[{"timeUnixNano": "later"}]),
    "link-id-a-number": _span_document(links=[{"traceId": 1, "spanId": SPAN_HEX}]),
    "attributes-null-item": _span_document(attributes=[None]),
    "string-value-a-number": _span_document(attributes=[{"key": "k", "value": {"stringValue": 5}}]),
    "int-value-not-integral": _span_document(attributes=[{"key": "k", "value": {"intValue": "1.5"}}]),
    "int-value-too-big": _span_document(attributes=[{"key": "k", "value": {"intValue": 2**63}}]),
    # Beyond 64 bits: orjson reads these as floats, the json module as integers; out of range either way.
    "int-value-beyond-64-bits": _span_document(attributes=[{"key": "k", "value": {"intValue": 2**70}}]),
    "start-beyond-64-bits": _span_document(startTimeUnixNano=2**64),
    "int-value-just-below-int64": _span_document(attributes=[{"key": "k", "value": {"intValue": -(2**63) - 1}}]),
    "bool-value-a-string": _span_document(attributes=[{"key": "k", "value": {"boolValue": "true"}}]),
    "double-value-lower-nan": _span_document(attributes=[{"key": "k", "value": {"doubleValue": "nan"}}]),
    "double-value-a-word": _span_document(attributes=[{"key": "k", "value": {"doubleValue": "many"}}]),
    "bytes-value-bad": _span_document(attributes=[{"key": "k", "value": {"bytesValue": "a"}}]),
    "two-values": _span_document(attributes=[{"key": "k", "value": {"stringValue": "a", "intValue": 1}}]),
    "key-a-number": _span_document(attributes=[{"key": 1, "value": {"stringValue": "a"}}]),
    "array-values-a-string": _span_document(attributes=[{"key": "k", "value": {"arrayValue": {"values": "a"}}}]),
    "nested-past-the-limit": _nested_arrays(48),
    "bad-field-in-a-rejected-span": _span_document(traceId="", startTimeUnixNano="soon"),
}


@pytest.mark.parametrize("name", SAME_BOTH_WAYS)
def test_json_liberties_and_nulls_read_the_same_both_ways(name: str) -> None:
    decode_json(SAME_BOTH_WAYS[name])


@pytest.mark.parametrize("name", REFUSED_BOTH_WAYS)
def test_json_that_is_not_otlp_is_refused_both_ways(name: str) -> None:
    body = json.dumps(REFUSED_BOTH_WAYS[name]).encode()
    with pytest.raises(PayloadError):
        parse_json(body, ExportTraceServiceRequest)
    with pytest.raises(PayloadError, match=r"^body is not a valid OTLP/JSON ExportTraceServiceRequest: "):
        decode_json_directly(body)


def test_json_lone_surrogate_is_refused_both_ways() -> None:
    body = json.dumps(_span_document(name="\ud800")).encode()
    assert b"\\ud800" in body
    with pytest.raises(PayloadError):
        parse_json(body, ExportTraceServiceRequest)
    with pytest.raises(PayloadError, match="unpaired surrogate"):
        parse_json_traces(body)
    paired = json.dumps(_span_document(name="😀")).encode()  # escaped as a surrogate pair
    assert decode_json_directly(paired)[0][0].name == "😀"


def test_json_that_orjson_refuses_is_read_by_the_json_module_as_before() -> None:
    """orjson reads OTLP/JSON bodies; what it refuses and the json module takes (a NaN literal in a field
    nobody reads, UTF-16, a byte order mark) is still taken, and the same spans come out."""
    document = _span_document(attributes=[{"key": "k", "value": {"stringValue": "v"}}])
    expected = decode_json_directly(json.dumps(document).encode())
    assert expected[0] and expected[1].count == 0
    with_nan = json.dumps({**document, "unknownField": float("nan")})
    assert "NaN" in with_nan
    assert decode_json_directly(with_nan.encode()) == expected
    assert decode_json_directly(json.dumps(document).encode("utf-16")) == expected
    assert decode_json_directly(json.dumps(document).encode("utf-8-sig")) == expected
    with pytest.raises(PayloadError, match="not valid JSON"):
        parse_json_traces(b'{"resourceSpans": [}')


# --- hostile values: each costs its own span at most ---------------------------------------


@pytest.mark.parametrize("field", ["start_time_unix_nano", "end_time_unix_nano"])
def test_a_time_past_int64_rejects_its_span_alone(field: str) -> None:
    """SQLite would store 2^63 as a float and lose the nanoseconds; the other spans are kept."""
    past = proto_span(**{field: 2**63})
    good = proto_span(span_id=b"\x02" * 8)
    spans, rejection = decode_spans(proto_request(past, good))
    assert [span.span_id for span in spans] == ["02" * 8]
    assert rejection.count == 1 and "2^63" in rejection.message
    json_spans, json_rejection = decode_json(
        json_request(json_span(startTimeUnixNano=str(2**63)), json_span(spanId="02" * 8, startTimeUnixNano="5"))
    )
    assert [span.span_id for span in json_spans] == ["02" * 8] and json_rejection.count == 1


def test_the_largest_int64_time_is_kept_exactly() -> None:
    assert decode_one_proto(proto_span(end_time_unix_nano=2**63 - 1)).end_time_unix_nano == 2**63 - 1


def test_repeated_span_ids_with_other_content_keep_the_first_copy() -> None:
    first = decode_one_proto(proto_span(name="first"))
    other = first._replace(name="second")
    unrelated = first._replace(span_id="03" * 8)
    kept, conflicting = without_conflicting_duplicates([first, other, first, unrelated])
    assert kept == [first, first, unrelated] and conflicting == 1
    assert without_conflicting_duplicates([first, unrelated]) == ([first, unrelated], 0)
