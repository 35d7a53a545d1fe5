"""API keys on OTLP, with the OpenTelemetry SDK's own exporters configured by environment variables only,
and the exact answers (status, body, headers, gRPC codes) read with plain clients."""

from __future__ import annotations

import hashlib
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.e2e.test_sdk_exporters import emit_agent_trace, exporter_from_environment
from tests.helpers import metric_value, otlp_request, scrape

INGEST_KEY = "ingest-key-0123456789abcdef"
READ_KEY = "read-key-0123456789abcdef"
WRONG_KEY = "wrong-key-0123456789abcdef"
API_KEYS = [
    {"name": "checkout-app", "key": INGEST_KEY, "scopes": ["ingest"]},
    {"name": "dashboard", "key_sha256": hashlib.sha256(READ_KEY.encode()).hexdigest(), "scopes": ["read"]},
]


@pytest.fixture
def guarded(start_collector: Any) -> Any:
    return start_collector(auth={"api_keys": API_KEYS})


def sdk_export(monkeypatch: pytest.MonkeyPatch, endpoint: str, protocol: str, **environment: str) -> SpanExportResult:
    """Three spans of an agent trace sent once by the SDK exporter an app gets from the environment."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    emit_agent_trace(provider)
    # requests lets these override the CA file the SDK gives it (psf/requests#3829): an app must unset them too
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    exporter = exporter_from_environment(monkeypatch, endpoint, protocol, **environment)
    try:
        return exporter.export(memory.get_finished_spans())
    finally:
        exporter.shutdown()


def endpoint_of(running: Any, protocol: str, scheme: str = "http") -> str:
    port = running.collector.ports["otlp_grpc" if protocol == "grpc" else "otlp_http"]
    return f"{scheme}://127.0.0.1:{port}"


def stored_spans(running: Any) -> int:
    return running.query("SELECT count(*) FROM spans")[0][0]


def headers_for(key: str | None) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{key}"} if key else {}


@pytest.mark.usefixtures("ingest_workers")
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize(
    "key, stored",
    [(None, False), (WRONG_KEY, False), (READ_KEY, False), (INGEST_KEY, True)],
    ids=["no-key", "wrong-key", "read-only-key", "ingest-key"],
)
def test_sdk_exporter_is_stored_only_with_an_ingest_key(
    guarded: Any, monkeypatch: pytest.MonkeyPatch, protocol: str, key: str | None, stored: bool
) -> None:
    result = sdk_export(monkeypatch, endpoint_of(guarded, protocol), protocol, **headers_for(key))
    assert result is (SpanExportResult.SUCCESS if stored else SpanExportResult.FAILURE)
    assert stored_spans(guarded) == (3 if stored else 0)


@pytest.mark.parametrize(
    "key, status, code, reason",
    [
        (None, 401, code_pb2.UNAUTHENTICATED, "missing_key"),
        (WRONG_KEY, 401, code_pb2.UNAUTHENTICATED, "unknown_key"),
        (READ_KEY, 403, code_pb2.PERMISSION_DENIED, "missing_scope"),
    ],
)
@pytest.mark.parametrize("content_type", ["application/x-protobuf", "application/json"])
def test_http_refusal_is_a_status_in_the_request_encoding(
    guarded: Any, key: str | None, status: int, code: int, reason: str, content_type: str
) -> None:
    body = otlp_request(1).SerializeToString() if content_type.endswith("protobuf") else b"{}"
    headers = {"content-type": content_type} | ({"authorization": f"Bearer {key}"} if key else {})
    response = httpx.post(f"{guarded.http_url}/v1/traces", content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == content_type
    if status == 401:
        assert response.headers["www-authenticate"].startswith('Bearer realm="genai-collector"')
    if content_type.endswith("protobuf"):
        answer = status_pb2.Status.FromString(response.content)
        assert answer.code == code
    else:
        assert response.json()["code"] == code
    exposition = scrape(guarded)
    assert metric_value(exposition, "genai_collector_auth_failures_total", listener="otlp_http", reason=reason) == 1
    for secret in (INGEST_KEY, READ_KEY, WRONG_KEY):
        assert secret not in exposition


@pytest.mark.parametrize(
    "key, code",
    [
        (None, grpc.StatusCode.UNAUTHENTICATED),
        (WRONG_KEY, grpc.StatusCode.UNAUTHENTICATED),
        ("Basic " + INGEST_KEY, grpc.StatusCode.UNAUTHENTICATED),
        (READ_KEY, grpc.StatusCode.PERMISSION_DENIED),
        (INGEST_KEY, grpc.StatusCode.OK),
    ],
)
def test_grpc_answers(guarded: Any, key: str | None, code: grpc.StatusCode) -> None:
    metadata = [] if key is None else [("authorization", key if " " in key else f"Bearer {key}")]
    with grpc.insecure_channel(guarded.grpc_target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        try:
            stub.Export(otlp_request(2), metadata=metadata, timeout=10)
            answered = grpc.StatusCode.OK
        except grpc.RpcError as error:
            answered = error.code()
    assert answered == code
    assert stored_spans(guarded) == (2 if code == grpc.StatusCode.OK else 0)


def test_grpc_health_and_admin_probes_stay_open(guarded: Any) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(guarded.grpc_target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    for path in ("/healthz", "/readyz", "/metrics"):  # /metrics: protect_metrics is off
        assert httpx.get(guarded.admin_url + path).status_code == 200


def test_wrong_keys_from_one_address_are_refused_for_the_rest_of_the_minute(start_collector: Any) -> None:
    running = start_collector(auth={"api_keys": API_KEYS, "max_failures_per_minute": 3})
    url = f"{running.http_url}/v1/traces"
    body = otlp_request(1).SerializeToString()

    def post(key: str | None) -> httpx.Response:
        headers = {"content-type": "application/x-protobuf"} | ({"authorization": f"Bearer {key}"} if key else {})
        return httpx.post(url, content=body, headers=headers)

    assert [post(None).status_code for _ in range(5)] == [401] * 5  # no key is not a guess
    assert post(INGEST_KEY).status_code == 200
    assert [post(WRONG_KEY).status_code for _ in range(3)] == [401] * 3
    limited = post(INGEST_KEY)  # from now on the address is not heard, even with the right key
    assert limited.status_code == 429
    assert 0 < int(limited.headers["retry-after"]) <= 60
    assert status_pb2.Status.FromString(limited.content).code == code_pb2.RESOURCE_EXHAUSTED
    with grpc.insecure_channel(running.grpc_target) as channel, pytest.raises(grpc.RpcError) as refused:
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(
            otlp_request(1), metadata=[("authorization", f"Bearer {INGEST_KEY}")], timeout=10
        )
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    exposition = scrape(running)
    failures = "genai_collector_auth_failures_total"
    assert metric_value(exposition, failures, listener="otlp_http", reason="rate_limited") == 1
    assert metric_value(exposition, failures, listener="otlp_grpc", reason="rate_limited") == 1
    authenticated = "genai_collector_auth_requests_total"
    assert metric_value(exposition, authenticated, listener="otlp_http", key="checkout-app") == 1


def test_protected_metrics_need_an_admin_key(start_collector: Any) -> None:
    admin_key = "admin-key-0123456789abcdef"
    running = start_collector(
        auth={
            "api_keys": [*API_KEYS, {"name": "prometheus", "key": admin_key, "scopes": ["admin"]}],
            "protect_metrics": True,
        }
    )
    assert httpx.get(f"{running.admin_url}/metrics").status_code == 401
    refused = httpx.get(f"{running.admin_url}/metrics", headers={"authorization": f"Bearer {INGEST_KEY}"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "missing_scope"
    scraped = httpx.get(f"{running.admin_url}/metrics", headers={"authorization": f"Bearer {admin_key}"})
    assert scraped.status_code == 200
    failures = "genai_collector_auth_failures_total"
    assert metric_value(scraped.text, failures, listener="admin", reason="missing_key") == 1
    assert httpx.get(f"{running.admin_url}/healthz").status_code == 200
    assert httpx.get(f"{running.admin_url}/readyz").status_code == 200
