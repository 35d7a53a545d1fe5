"""Spans and events from real instrumentation libraries, calling a local fake LLM server with the real OpenAI client.

The same chat call, instrumented by OpenTelemetry's openai-v2 and by OpenInference, must land with the
same canonical columns and the cost of what the fake server reported, and with no customer PII stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.helpers import metric_value, scrape
from tests.libraries.fake_llm import fake_llm_server, response_id

CUSTOMER_EMAIL = "jane.doe@example.com"
CUSTOMER_CARD = "4111 1111 1111 1111"
PROMPT = f"My card {CUSTOMER_CARD} was charged twice, reply to {CUSTOMER_EMAIL}"

# What the fake server (tests/libraries/fake_llm.py) answers to a chat: 1,200 prompt tokens of which
# 1,024 were cached, 85 completion tokens.
# gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per million tokens.
EXPECTED_COST = (176 * 0.15 + 1024 * 0.075 + 85 * 0.60) / 1e6


@pytest.fixture
def fake_llm() -> Iterator[str]:
    with fake_llm_server() as (url, _):
        yield url + "/v1"


def providers(collector: Any) -> tuple[TracerProvider, LoggerProvider]:
    resource = Resource.create({"service.name": "support-bot"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=collector.http_url + "/v1/traces")))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=collector.http_url + "/v1/logs"))
    )
    return tracer_provider, logger_provider


def chat(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="sk-test-not-a-real-key-000000000000")
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}])
    assert answer.usage.prompt_tokens == 1200


def stored_llm_span(collector: Any) -> dict[str, Any]:
    columns = (
        "category, provider, request_model, response_model, operation, input_tokens, output_tokens, total_tokens,"
        " cache_read_tokens, finish_reasons, response_id, cost_usd, service_name"
    )
    rows = collector.query(f"SELECT {columns} FROM spans WHERE category = 'llm'")
    assert len(rows) == 1, rows
    return dict(zip([name.strip() for name in columns.split(",")], rows[0], strict=True))


def assert_no_pii_in_database(collector: Any) -> None:
    collector.stop()  # checkpoint the WAL into the main file, then read every byte of both
    database = collector.settings.db.read_bytes()
    wal = collector.settings.db.with_name(collector.settings.db.name + "-wal")
    data = database + (wal.read_bytes() if wal.exists() else b"")
    for secret in (CUSTOMER_EMAIL, CUSTOMER_CARD, CUSTOMER_CARD.replace(" ", "")):
        assert secret.encode() not in data


def test_opentelemetry_openai_v2_spans_and_content_events(
    collector: Any, fake_llm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    tracer_provider, logger_provider = providers(collector)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
    try:
        chat(fake_llm)
    finally:
        instrumentor.uninstrument()
    assert tracer_provider.force_flush(10_000) and logger_provider.force_flush(10_000)

    span = stored_llm_span(collector)
    assert span["provider"] == "openai"
    assert span["request_model"] == "gpt-4o-mini"
    assert span["response_model"] == "gpt-4o-mini-2024-07-18"
    assert span["operation"] == "chat"
    assert (span["input_tokens"], span["output_tokens"]) == (1200, 85)
    assert json.loads(span["finish_reasons"]) == ["stop"]
    assert span["response_id"] == response_id("openai", "chat")
    assert span["service_name"] == "support-bot"
    if span["cache_read_tokens"] is not None:  # newer instrumentation versions report cached tokens
        assert span["cache_read_tokens"] == 1024
        assert span["cost_usd"] == pytest.approx(EXPECTED_COST, abs=1e-12)
    else:
        assert span["cost_usd"] == pytest.approx((1200 * 0.15 + 85 * 0.60) / 1e6, abs=1e-12)

    events = collector.query("SELECT name, trace_id, span_id, body, attributes FROM events")
    assert events, "content events from the logs API were not stored"
    span_ids = {row[0] for row in collector.query("SELECT span_id FROM spans")}
    for name, trace_id, span_id, _body, _attributes in events:
        assert name.startswith("gen_ai.")
        assert span_id in span_ids and trace_id
    stored = " ".join(str(row[3]) + str(row[4]) for row in events)
    assert "[REDACTED:email]" in stored and "[REDACTED:card]" in stored
    metrics = scrape(collector)
    assert metric_value(metrics, "genai_collector_redactions_total", rule="email") >= 2
    assert_no_pii_in_database(collector)


def test_openinference_openai_spans(collector: Any, fake_llm: str) -> None:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    tracer_provider, _ = providers(collector)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        chat(fake_llm)
    finally:
        instrumentor.uninstrument()
    assert tracer_provider.force_flush(10_000)

    span = stored_llm_span(collector)
    assert span["provider"] == "openai"
    assert span["response_model"] == "gpt-4o-mini-2024-07-18"
    assert span["operation"] == "chat"
    assert (span["input_tokens"], span["output_tokens"], span["total_tokens"]) == (1200, 85, 1285)
    assert span["cache_read_tokens"] == 1024
    assert span["cost_usd"] == pytest.approx(EXPECTED_COST, abs=1e-12)
    attributes = json.loads(collector.query("SELECT attributes FROM spans WHERE category = 'llm'")[0][0])
    assert "[REDACTED:email]" in attributes["llm.input_messages.0.message.content"]
    assert_no_pii_in_database(collector)
