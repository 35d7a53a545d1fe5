"""Every string the collector stores is redacted: PII and secrets sent by the real OpenTelemetry SDK in span
names, status messages, attributes, resource attributes, exception events, links, log bodies and prompts
must not reach a single byte of the database, its WAL or its shared-memory file; allow-listed ids and
model names must arrive unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

EMAIL = "jane.doe@example.com"
RESOURCE_EMAIL = "ops-lead@acme-corp.io"
NAME_EMAIL = "notify.bob@contoso.org"
STATUS_EMAIL = "carol.smith@example.net"
PHONE = "+1 415 555 0132"
CARD = "4111 1111 1111 1111"
DB_CARD = "5555555555554444"
IBAN = "DE89 3704 0044 0532 0130 00"
SSN = "078-05-1120"
IPV4 = "203.0.113.77"
IPV6 = "2001:db8:85a3::8a2e:370:7334"
OPENAI_KEY = "sk-proj-Ab3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5z"
ANTHROPIC_KEY = "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe-AbCdEf"
GOOGLE_KEY = "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"
GITHUB_TOKEN = "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
SLACK_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKl"
STRIPE_KEY = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
HUGGINGFACE_TOKEN = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz12345678"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
BEARER_TOKEN = "8f14e45fceea167a5a36dedd4bea2543"
URL_PASSWORD = "hunter2-Sup3r"
QUERY_KEY = "Qx7rT2mZ9vL4"
DB_PASSWORD = "correct-horse-battery"

LITERALS = [
    EMAIL,
    RESOURCE_EMAIL,
    NAME_EMAIL,
    STATUS_EMAIL,
    PHONE,
    CARD,
    DB_CARD,
    IBAN,
    SSN,
    IPV4,
    IPV6,
    OPENAI_KEY,
    ANTHROPIC_KEY,
    GOOGLE_KEY,
    GITHUB_TOKEN,
    SLACK_TOKEN,
    STRIPE_KEY,
    HUGGINGFACE_TOKEN,
    AWS_KEY_ID,
    AWS_SECRET,
    JWT,
    BEARER_TOKEN,
    URL_PASSWORD,
    QUERY_KEY,
    DB_PASSWORD,
]
MODEL = "gpt-4o-2024-08-06"
RESPONSE_ID = "chatcmpl-4111111111111111"  # allow-listed: a card-shaped id stays as it came
CONVERSATION_ID = "conv_4155550132"


def emit_spans(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("support.agent", "2.0.1")
    with tracer.start_as_current_span(f"notify {NAME_EMAIL}", kind=SpanKind.INTERNAL) as root:
        root.set_attributes(
            {
                "user.email": EMAIL,
                "client.address": IPV4,
                "network.peer.address": IPV6,
                "app.openai_key": OPENAI_KEY,
                "app.config": f"AWS_ACCESS_KEY_ID={AWS_KEY_ID} AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
                "app.jwt": JWT,
                "app.tokens": [GOOGLE_KEY, GITHUB_TOKEN, SLACK_TOKEN, STRIPE_KEY, HUGGINGFACE_TOKEN],
                "http.request.header.authorization": [f"Bearer {BEARER_TOKEN}"],
                "app.curl": f"curl -H 'Authorization: Bearer {BEARER_TOKEN}' https://api.example.com",
                "gen_ai.conversation.id": CONVERSATION_ID,
            }
        )
        root.set_status(Status(StatusCode.ERROR, f"delivery to {STATUS_EMAIL} failed"))
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as llm:
            llm.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": MODEL,
                    "gen_ai.response.id": RESPONSE_ID,
                    "gen_ai.usage.input_tokens": 812,
                    "gen_ai.usage.output_tokens": 64,
                    "gen_ai.input.messages": json.dumps(
                        [
                            {
                                "role": "user",
                                "parts": [
                                    {
                                        "type": "text",
                                        "content": f"My IBAN is {IBAN}, SSN {SSN}, call {PHONE}",
                                    }
                                ],
                            }
                        ]
                    ),
                    "http.url": f"https://api.example.com/v1/items?api_key={QUERY_KEY}&page=2",
                }
            )
            try:
                raise PermissionError(f"key {ANTHROPIC_KEY} refused for {EMAIL}, SSN {SSN}")
            except PermissionError as error:
                llm.record_exception(error)
        with tracer.start_as_current_span(
            "query orders", links=[Link(llm.get_span_context(), {"reason": f"retry for {PHONE}"})]
        ) as query:
            query.set_attributes(
                {
                    "db.statement": f"SELECT * FROM payments WHERE card = '{DB_CARD}'",
                    "db.connection_string": f"postgres://admin:{URL_PASSWORD}@db.internal:5432/app",
                    "db.password": DB_PASSWORD,
                }
            )


def emit_logs(provider: LoggerProvider) -> None:
    logger = provider.get_logger("support.agent")
    logger.emit(
        event_name="gen_ai.user.message",
        body={"content": f"Refund to {IBAN}, card {CARD}, SSN {SSN}"},
        attributes={"gen_ai.system": "openai"},
    )
    logger.emit(body=f"payment by {EMAIL} from {IPV4} with {CARD}", attributes={"client.address": IPV6})


def span_exporter(collector: Any, protocol: str) -> Any:
    if protocol == "grpc":
        return GrpcSpanExporter(endpoint=f"http://{collector.grpc_target}", insecure=True)
    return OTLPSpanExporter(endpoint=collector.http_url + "/v1/traces")


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_no_literal_reaches_the_database_files(start_collector: Any, protocol: str) -> None:
    collector = start_collector(logs={"keep_other": True})
    resource = Resource.create({"service.name": "support-bot", "owner.email": RESOURCE_EMAIL, "host.ip": IPV4})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter(collector, protocol)))
    sent = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(sent))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=collector.http_url + "/v1/logs"))
    )
    emit_spans(tracer_provider)
    emit_logs(logger_provider)
    assert tracer_provider.force_flush(10_000) and logger_provider.force_flush(10_000)
    tracer_provider.shutdown()
    logger_provider.shutdown()

    spans = collector.query("SELECT trace_id, span_id, name, status_message, request_model, attributes FROM spans")
    events = collector.query("SELECT name, body FROM events")
    assert len(spans) == 3 and len(events) == 2
    by_name = {row[2]: row for row in spans}
    assert set(by_name) == {"notify [REDACTED:email]", "chat gpt-4o", "query orders"}
    assert by_name["notify [REDACTED:email]"][3] == "delivery to [REDACTED:email] failed"
    # allow-listed ids and model names arrive as they were sent
    assert {(row[0], row[1]) for row in spans} == {
        (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}") for span in sent.get_finished_spans()
    }
    llm = by_name["chat gpt-4o"]
    assert llm[4] == MODEL
    llm_attributes = json.loads(llm[5])
    assert llm_attributes["gen_ai.request.model"] == MODEL
    assert llm_attributes["gen_ai.response.id"] == RESPONSE_ID
    assert json.loads(by_name["notify [REDACTED:email]"][5])["gen_ai.conversation.id"] == CONVERSATION_ID
    assert "[REDACTED:iban]" in llm_attributes["gen_ai.input.messages"]

    assert collector.stop()
    database = collector.settings.db
    files = [database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")]
    stored = b"".join(path.read_bytes() for path in files if path.exists())
    assert stored
    found = [literal for literal in LITERALS if literal.encode() in stored]
    assert not found, f"stored in clear: {found}"
    for literal in (MODEL, RESPONSE_ID, CONVERSATION_ID):
        assert literal.encode() in stored
