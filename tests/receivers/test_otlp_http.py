"""OTLP/HTTP against a running collector: status codes, google.rpc.Status bodies, partial success, counters."""

from __future__ import annotations

import base64
import functools
import gzip
import json
import time
import zlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import httpx
import pytest
import zstandard
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.helpers import key_values, metric_value, otlp_request, scrape, span_keys

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
SMALL_LIMIT = 64 * 1024
APP_ORIGIN = "http://app.example"


# --- helpers -------------------------------------------------------------------------------


def post(
    running: Any,
    body: bytes | Iterator[bytes],
    *,
    path: str = "/v1/traces",
    content_type: str | None = PROTOBUF,
    **headers: str,
) -> httpx.Response:
    all_headers = {name.replace("_", "-"): value for name, value in headers.items()}
    if content_type is not None:
        all_headers["content-type"] = content_type
    return httpx.post(running.http_url + path, content=body, headers=all_headers, timeout=10)


def as_json(request: Message) -> bytes:
    """OTLP/JSON of a request: protobuf's JSON mapping with ids turned from base64 into hex."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for field in ("traceId", "spanId", "parentSpanId"):
                    if field in span:
                        span[field] = base64.b64decode(span[field]).hex()
    return json.dumps(document).encode()


def parse_answer(response: httpx.Response, message_type: type[Message]) -> Any:
    """The body as ``message_type``, decoded by the response's own Content-Type."""
    content_type = response.headers["content-type"]
    if content_type == JSON:
        return json_format.Parse(response.content, message_type())
    assert content_type == PROTOBUF, content_type
    return message_type.FromString(response.content)


def rpc_status(response: httpx.Response) -> status_pb2.Status:
    return parse_answer(response, status_pb2.Status)


def counter(exposition: str, name: str, **labels: str) -> float:
    """The counter ``genai_collector_<name>_total`` of the HTTP transport."""
    return metric_value(exposition, f"genai_collector_{name}_total", transport="http", **labels)


def stored_keys(running: Any) -> set[tuple[str, str]]:
    return set(running.query("SELECT trace_id, span_id FROM spans"))


def with_bad_trace_id(request: ExportTraceServiceRequest, index: int) -> ExportTraceServiceRequest:
    request.resource_spans[0].scope_spans[0].spans[index].trace_id = b"\x01" * 15
    return request


@functools.cache
def gzip_bomb() -> bytes:
    """60 MiB of zeros in one gzip member of about 60 KB: under the 64 KiB limit, a thousand times over it inflated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1024 * 1024)
    return b"".join(compressor.compress(zeros) for _ in range(60)) + compressor.flush()


@pytest.fixture
def small_collector(start_collector: Any) -> Any:
    return start_collector(max_request_size="64KiB")


# --- bad input: one table, exact status and body, and the counters that record it ----------


class BadInput(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    code: int
    message: str  # exact, or a prefix when it ends with "..."
    reason: str
    signal: str
    answer_type: str  # the Content-Type of the Status body


def _chunks(size: int) -> Iterator[bytes]:
    """A body without Content-Length (chunked transfer encoding)."""
    for _ in range(size // 8192):
        yield b"\x00" * 8192


BAD_INPUTS = {
    "get": BadInput(
        "GET",
        "/v1/traces",
        {},
        b"",
        405,
        code_pb2.UNIMPLEMENTED,
        "method GET not allowed; OTLP/HTTP export uses POST",
        "method_not_allowed",
        "traces",
        JSON,
    ),
    "put-protobuf": BadInput(
        "PUT",
        "/v1/logs",
        {"content-type": PROTOBUF},
        b"",
        405,
        code_pb2.UNIMPLEMENTED,
        "method PUT not allowed; OTLP/HTTP export uses POST",
        "method_not_allowed",
        "logs",
        PROTOBUF,
    ),
    "unknown-path": BadInput(
        "POST",
        "/v1/spans",
        {"content-type": PROTOBUF},
        b"",
        404,
        code_pb2.NOT_FOUND,
        "no such path /v1/spans; use /v1/traces, /v1/logs or /v1/metrics",
        "not_found",
        "unknown",
        PROTOBUF,
    ),
    "unknown-path-json": BadInput(
        "POST",
        "/v1/traces/extra",
        {"content-type": JSON},
        b"{}",
        404,
        code_pb2.NOT_FOUND,
        "no such path /v1/traces/extra; use /v1/traces, /v1/logs or /v1/metrics",
        "not_found",
        "unknown",
        JSON,
    ),
    "wrong-content-type": BadInput(
        "POST",
        "/v1/traces",
        {"content-type": "text/plain"},
        b"hello",
        415,
        code_pb2.INVALID_ARGUMENT,
        "unsupported Content-Type 'text/plain'; use application/x-protobuf or application/json",
        "unsupported_media_type",
        "traces",
        JSON,
    ),
    "no-content-type": BadInput(
        "POST",
        "/v1/traces",
        {},
        b"",
        415,
        code_pb2.INVALID_ARGUMENT,
        "missing Content-Type; use application/x-protobuf or application/json",
        "unsupported_media_type",
        "traces",
        JSON,
    ),
    "corrupt-protobuf": BadInput(
        "POST",
        "/v1/traces",
        {"content-type": PROTOBUF},
        b"\xff\xff\xff\xff",
        400,
        code_pb2.INVALID_ARGUMENT,
        "body is not a valid protobuf ExportTraceServiceRequest: ...",
        "malformed",
        "traces",
        PROTOBUF,
    ),
    "invalid-json": BadInput(
        "POST",
        "/v1/traces",
        {"content-type": JSON},
        b"not json",
        400,
        code_pb2.INVALID_ARGUMENT,
        "body is not valid JSON: Expecting value: line 1 column 1 (char 0)",
        "malformed",
        "traces",
        JSON,
    ),
    "json-not-otlp": BadInput(
        "POST",
        "/v1/metrics",
        {"content-type": JSON},
        b'{"resourceMetrics": 1}',
        400,
        code_pb2.INVALID_ARGUMENT,
        "body is not a valid OTLP/JSON ExportMetricsServiceRequest: ...",
        "malformed",
        "metrics",
        JSON,
    ),
    "json-traces-not-a-list": BadInput(
        "POST",
        "/v1/traces",
        {"content-type": JSON},
        b'{"resourceSpans": 1}',
        400,
        code_pb2.INVALID_ARGUMENT,
        "body is not a valid OTLP/JSON ExportTraceServiceRequest: resourceSpans: expected a list, not int",
        "malformed",
        "traces",
        JSON,
    ),
    "json-span-not-otlp": BadInput(
        "POST",
        "/v1/traces",
        {"content-type": JSON},
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
        400,
        code_pb2.INVALID_ARGUMENT,
        "body is not a valid OTLP/JSON ExportTraceServiceRequest: startTimeUnixNano: not an integer: 'soon'",
        "malformed",
        "traces",
        JSON,
    ),
    "deeply-nested-json": BadInput(
        "POST",
        "/v1/traces",
        {"content-type": JSON},
        b"[" * 20_000 + b"]" * 20_000,
        400,
        code_pb2.INVALID_ARGUMENT,
        "body is not valid OTLP/JSON: nested too deeply",
        "malformed",
        "traces",
        JSON,
    ),
    "unknown-encoding": BadInput(
        "POST",
        "/v1/traces",
        {"content-type": PROTOBUF, "content-encoding": "br"},
        b"\x0b\x00\x80",
        400,
        code_pb2.INVALID_ARGUMENT,
        "unsupported Content-Encoding 'br'; use gzip, deflate, zstd or identity",
        "unsupported_encoding",
        "traces",
        PROTOBUF,
    ),
    "truncated-gzip": BadInput(
        "POST",
        "/v1/traces",
        {"content-type": PROTOBUF, "content-encoding": "gzip"},
        gzip.compress(otlp_request(5).SerializeToString())[:-4],
        400,
        code_pb2.INVALID_ARGUMENT,
        "compressed body is truncated",
        "corrupt_body",
        "traces",
        PROTOBUF,
    ),
    "truncated-zstd": BadInput(
        "POST",
        "/v1/traces",
        {"content-type": JSON, "content-encoding": "zstd"},
        zstandard.ZstdCompressor().compress(b"{}" + b" " * 1000)[:-3],
        400,
        code_pb2.INVALID_ARGUMENT,
        "compressed body is truncated",
        "corrupt_body",
        "traces",
        JSON,
    ),
    "oversize": BadInput(
        "POST",
        "/v1/traces",
        {"content-type": PROTOBUF},
        b"\x00" * (SMALL_LIMIT + 1),
        413,
        code_pb2.RESOURCE_EXHAUSTED,
        "body of 65537 bytes is larger than the 65536-byte limit",
        "too_large",
        "traces",
        PROTOBUF,
    ),
    "oversize-json": BadInput(
        "POST",
        "/v1/traces",
        {"content-type": JSON},
        b" " * (SMALL_LIMIT + 1),
        413,
        code_pb2.RESOURCE_EXHAUSTED,
        "body of 65537 bytes is larger than the 65536-byte limit",
        "too_large",
        "traces",
        JSON,
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_its_status_a_status_body_and_a_counter(small_collector: Any, case: str) -> None:
    bad = BAD_INPUTS[case]
    response = httpx.request(
        bad.method, small_collector.http_url + bad.path, headers=bad.headers, content=bad.body, timeout=10
    )

    assert response.status_code == bad.status
    assert response.headers["content-type"] == bad.answer_type
    status = rpc_status(response)
    assert status.code == bad.code
    if bad.message.endswith("..."):
        assert status.message.startswith(bad.message[:-3]), status.message
    else:
        assert status.message == bad.message
    if bad.status == 405:
        assert response.headers["allow"] == "POST"
    assert "retry-after" not in response.headers

    exposition = scrape(small_collector)
    assert counter(exposition, "receiver_bad_requests", reason=bad.reason) == 1
    assert counter(exposition, "requests", signal=bad.signal, status=str(bad.status)) == 1
    assert counter(exposition, "receiver_accepted_spans") == 0
    assert small_collector.query("SELECT count(*) FROM spans") == [(0,)]


def test_oversize_chunked_body_without_content_length(small_collector: Any) -> None:
    response = post(small_collector, _chunks(SMALL_LIMIT + 8192))
    assert response.status_code == 413
    status = rpc_status(response)
    assert (status.code, status.message) == (
        code_pb2.RESOURCE_EXHAUSTED,
        "body is larger than the 65536-byte limit",
    )
    exposition = scrape(small_collector)
    assert counter(exposition, "receiver_bad_requests", reason="too_large") == 1


def test_gzip_bomb_is_refused_quickly(small_collector: Any) -> None:
    bomb = gzip_bomb()
    assert len(bomb) < SMALL_LIMIT
    started = time.monotonic()
    response = post(small_collector, bomb, content_encoding="gzip")
    elapsed = time.monotonic() - started

    assert response.status_code == 413
    status = rpc_status(response)
    assert (status.code, status.message) == (
        code_pb2.RESOURCE_EXHAUSTED,
        "decompressed body is larger than the 65536-byte limit",
    )
    assert elapsed < 1.0, f"a gzip bomb took {elapsed:.2f}s to refuse"
    exposition = scrape(small_collector)
    assert counter(exposition, "receiver_bad_requests", reason="too_large") == 1
    assert counter(exposition, "requests", signal="traces", status="413") == 1


# --- success -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding, compress",
    [
        ("", lambda body: body),
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("zstd", lambda body: zstandard.ZstdCompressor().compress(body)),
    ],
    ids=["identity", "gzip", "deflate", "zstd"],
)
def test_protobuf_spans_are_stored_before_the_answer(collector: Any, encoding: str, compress: Any) -> None:
    request = otlp_request(4, service="checkout")
    response = post(collector, compress(request.SerializeToString()), content_encoding=encoding)

    assert response.status_code == 200
    assert response.headers["content-type"] == PROTOBUF
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    assert stored_keys(collector) == set(span_keys(request))
    assert collector.query("SELECT DISTINCT service_name, kind FROM spans") == [("checkout", "client")]
    exposition = scrape(collector)
    assert counter(exposition, "receiver_accepted_spans") == 4
    assert counter(exposition, "requests", signal="traces", status="200") == 1


def test_json_spans_are_stored_with_hex_ids_and_answered_in_json(collector: Any) -> None:
    request = otlp_request(2)
    response = post(collector, as_json(request), content_type=JSON)

    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    assert json.loads(response.content) == {}
    assert stored_keys(collector) == set(span_keys(request))


@pytest.mark.parametrize(
    "content_type, answer_type",
    [
        ("application/json; charset=utf-8", JSON),
        ("Application/JSON;charset=UTF-8", JSON),
        ("application/x-protobuf; proto=opentelemetry", PROTOBUF),
        ("application/protobuf", PROTOBUF),
    ],
    ids=["json-charset", "json-upper-case", "protobuf-parameter", "protobuf-alias"],
)
def test_content_type_parameters_and_case_are_accepted(collector: Any, content_type: str, answer_type: str) -> None:
    request = otlp_request(1)
    body = as_json(request) if answer_type == JSON else request.SerializeToString()
    response = post(collector, body, content_type=content_type)
    assert response.status_code == 200
    assert response.headers["content-type"] == answer_type
    assert stored_keys(collector) == set(span_keys(request))


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_empty_request_is_success_without_partial_success(collector: Any, content_type: str) -> None:
    body = b"" if content_type == PROTOBUF else b"{}"
    response = post(collector, body, content_type=content_type)

    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert not parse_answer(response, ExportTraceServiceResponse).HasField("partial_success")
    exposition = scrape(collector)
    assert counter(exposition, "requests", signal="traces", status="200") == 1
    assert counter(exposition, "receiver_bad_requests") == 0


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_mixed_good_and_bad_spans_get_partial_success(collector: Any, content_type: str) -> None:
    request = with_bad_trace_id(otlp_request(3), 1)
    body = request.SerializeToString() if content_type == PROTOBUF else as_json(request)
    response = post(collector, body, content_type=content_type)

    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    answer = parse_answer(response, ExportTraceServiceResponse)
    assert answer.partial_success.rejected_spans == 1
    assert answer.partial_success.error_message == (
        "1 span rejected; first: span 'span 1': invalid trace_id '010101010101010101010101010101' (15 bytes): "
        "expected 16 non-zero bytes (32 hex characters in OTLP/JSON)"
    )
    good = [key for index, key in enumerate(span_keys(request)) if index != 1]
    assert stored_keys(collector) == set(good)

    exposition = scrape(collector)
    assert counter(exposition, "receiver_accepted_spans") == 2
    assert counter(exposition, "receiver_refused_spans", reason="invalid_span") == 1
    assert counter(exposition, "requests", signal="traces", status="200") == 1
    assert counter(exposition, "receiver_bad_requests") == 0


def test_json_base64_ids_get_partial_success_not_wrong_ids(collector: Any) -> None:
    request = otlp_request(2)
    document = json.loads(as_json(request))
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    bad_parent = base64.b64encode(request.resource_spans[0].scope_spans[0].spans[0].span_id).decode()
    spans[1]["parentSpanId"] = bad_parent  # base64, as protobuf's own JSON mapping would write it
    response = post(collector, json.dumps(document).encode(), content_type=JSON)

    assert response.status_code == 200
    answer = parse_answer(response, ExportTraceServiceResponse)
    assert answer.partial_success.rejected_spans == 1
    assert answer.partial_success.error_message == (
        "1 span rejected; first: span 'span 1': invalid parent_span_id (not hex): expected 8 bytes or none"
    )
    assert stored_keys(collector) == {span_keys(request)[0]}


def test_all_spans_bad_is_partial_success_of_all(collector: Any) -> None:
    request = with_bad_trace_id(with_bad_trace_id(otlp_request(2), 0), 1)
    response = post(collector, request.SerializeToString())
    assert response.status_code == 200
    assert ExportTraceServiceResponse.FromString(response.content).partial_success.rejected_spans == 2
    assert collector.query("SELECT count(*) FROM spans") == [(0,)]
    exposition = scrape(collector)
    assert counter(exposition, "receiver_refused_spans", reason="invalid_span") == 2


def test_resending_the_same_request_does_not_duplicate_rows(collector: Any) -> None:
    request = otlp_request(3).SerializeToString()
    for _ in range(2):
        response = post(collector, request)
        assert response.status_code == 200
        assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    assert collector.query("SELECT count(*) FROM spans") == [(3,)]
    assert metric_value(scrape(collector), "genai_collector_duplicate_spans_total") == 3


# --- logs and metrics: GenAI events stored; other records and metrics counted, not stored ----


def logs_request(count: int, event_name: str = "app.audit", body: str = "entry {}") -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for index in range(count):
        record = records.add(event_name=event_name, trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)))
        record.time_unix_nano = 1_700_000_000_000_000_000 + index
        record.body.string_value = body.format(index)
    return request


def logs_json(request_: Message) -> bytes:
    document = json_format.MessageToDict(request_, use_integers_for_enums=True)
    for resource in document.get("resourceLogs", []):  # OTLP/JSON ids are hex
        for record in resource["scopeLogs"][0]["logRecords"]:
            record["traceId"], record["spanId"] = bytes(range(1, 17)).hex(), bytes(range(1, 9)).hex()
    return json.dumps(document).encode()


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_genai_events_from_logs_are_stored_redacted_with_their_span(collector: Any, content_type: str) -> None:
    request_ = logs_request(2, event_name="gen_ai.user.message", body="call me at +1 415 555 0132, item {}")
    evaluation = (
        request_.resource_logs[0]
        .scope_logs[0]
        .log_records.add(
            event_name="gen_ai.evaluation.result", trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9))
        )
    )
    evaluation.time_unix_nano = 1_700_000_000_000_000_009
    evaluation.attributes.extend(
        key_values({"gen_ai.evaluation.name": "faithfulness", "gen_ai.evaluation.score.value": 0.62})
    )
    body = request_.SerializeToString() if content_type == PROTOBUF else logs_json(request_)
    for _ in range(2):  # a retried request stores nothing twice
        response = post(collector, body, path="/v1/logs", content_type=content_type)
        assert response.status_code == 200

    events = collector.query("SELECT name, trace_id, span_id, body FROM events ORDER BY time_unix_nano")
    assert [(name, trace_id, span_id) for name, trace_id, span_id, _ in events] == [
        ("gen_ai.user.message", bytes(range(1, 17)).hex(), bytes(range(1, 9)).hex()),
    ] * 2 + [("gen_ai.evaluation.result", bytes(range(1, 17)).hex(), bytes(range(1, 9)).hex())]
    assert json.loads(events[0][3]) == "call me at [REDACTED:phone], item 0"
    assert collector.query("SELECT name, score, trace_id FROM evaluations") == [
        ("faithfulness", 0.62, bytes(range(1, 17)).hex())
    ]
    exposition = scrape(collector)
    assert counter(exposition, "receiver_accepted_log_records", receiver="otlp") == 6
    assert metric_value(exposition, "genai_collector_redactions_total", rule="phone") == 4
    assert metric_value(exposition, "genai_collector_evaluations_total", source="log") == 2


def metrics_request(points: int) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    gauge = request.resource_metrics.add().scope_metrics.add().metrics.add(name="gen_ai.queue").gauge
    for value in range(points):
        gauge.data_points.add(as_int=value)
    return request


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
@pytest.mark.parametrize(
    "signal, request_, response_type, count",
    [
        ("logs", logs_request(3), ExportLogsServiceResponse, 3),
        ("metrics", metrics_request(4), ExportMetricsServiceResponse, 4),
    ],
    ids=["logs", "metrics"],
)
def test_logs_and_metrics_are_accepted_and_counted_as_dropped(
    collector: Any, signal: str, request_: Message, response_type: type[Message], count: int, content_type: str
) -> None:
    body = request_.SerializeToString() if content_type == PROTOBUF else logs_json(request_)
    response = post(collector, body, path=f"/v1/{signal}", content_type=content_type)

    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert not parse_answer(response, response_type).HasField("partial_success")
    exposition = scrape(collector)
    assert counter(exposition, "receiver_dropped_items", receiver="otlp", signal=signal) == count
    assert counter(exposition, "requests", signal=signal, status="200") == 1
    assert collector.query("SELECT count(*) FROM spans") == [(0,)]
    assert collector.query("SELECT count(*) FROM events") == [(0,)]


# --- CORS ----------------------------------------------------------------------------------


def preflight(running: Any, origin: str) -> httpx.Response:
    return httpx.options(
        running.http_url + "/v1/traces",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )


def test_cors_is_off_by_default(collector: Any) -> None:
    answer = preflight(collector, APP_ORIGIN)
    assert answer.status_code == 405
    assert "access-control-allow-origin" not in answer.headers
    response = post(collector, otlp_request(1).SerializeToString(), origin=APP_ORIGIN)
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_cors_for_configured_origins(start_collector: Any) -> None:
    running = start_collector(cors_origins=(APP_ORIGIN,))

    answer = preflight(running, APP_ORIGIN)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert "content-type" in answer.headers["access-control-allow-headers"].lower()

    response = post(running, as_json(otlp_request(1)), content_type=JSON, origin=APP_ORIGIN)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN

    refused = post(running, b"x", content_type="text/plain", origin=APP_ORIGIN)
    assert refused.status_code == 415
    assert refused.headers["access-control-allow-origin"] == APP_ORIGIN  # the browser app can read the error

    assert "access-control-allow-origin" not in preflight(running, "http://other.example").headers
    other = post(running, otlp_request(1).SerializeToString(), origin="http://other.example")
    assert "access-control-allow-origin" not in other.headers
