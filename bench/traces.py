"""Load generation: realistic agent traces (four instrumentation conventions, tool calls, PII to redact) and
the pre-encoded requests sent from them, each trace id ending in a nonce slot rewritten per send."""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

NONCE_BYTES = 8  # the last 8 bytes of every trace id are rewritten per send


# --- realistic agent traces ------------------------------------------------------------------

# Models in collector/data/prices.yaml, by convention (provider, request model, response model).
OTEL_MODELS = (("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"), ("openai", "gpt-4o", "gpt-4o-2024-08-06"))
OPENINFERENCE_MODELS = (("anthropic", "claude-3-5-sonnet-20241022"), ("openai", "gpt-4.1-mini"))
TRACELOOP_MODELS = (
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("anthropic", "claude-3-5-haiku-20241022", "claude-3-5-haiku-20241022"),
)
VERCEL_MODELS = (
    ("anthropic.messages", "claude-3-5-sonnet-20241022"),
    ("openai.chat", "gpt-4o-mini"),
    ("google.generative-ai", "gemini-2.0-flash"),
)
SERVICES = ("support-agent", "research-agent", "checkout-bot", "code-review-agent")
AGENTS = ("triage", "researcher", "planner", "refund-assistant")
TOOLS = ("search_orders", "get_weather", "lookup_customer", "run_sql", "fetch_url", "send_email")
WORDS = (
    "the customer asked about order status shipping delay refund policy invoice account subscription plan "
    "please summarize the following conversation and draft a reply that is polite concise and accurate "
    "context retrieved documents mention warehouse inventory backlog carrier tracking number estimated "
    "delivery window compensation voucher escalation agent handoff knowledge base article troubleshooting"
).split()
PII = ("reach me at jane.doe{n}@example.com", "call me on +1 415 555 01{n:02d}", "my email is ops{n}@acme.io")


def _text(rng: random.Random, size: int, pii: bool) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    if pii:
        words.insert(rng.randrange(len(words)), rng.choice(PII).format(n=rng.randrange(100)))
    return " ".join(words)


def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[_any(item) for item in value]))
    return AnyValue(string_value=str(value))


def _set_attributes(target: Any, attributes: dict[str, Any]) -> None:
    target.extend(KeyValue(key=key, value=_any(value)) for key, value in attributes.items())


class TraceBuilder:
    """Agent traces: an ``invoke_agent`` root, LLM spans in a mix of conventions, tool spans, ~5% errors."""

    def __init__(self, seed: int, base_time_ns: int) -> None:
        self.rng = random.Random(seed)
        self.base_time_ns = base_time_ns
        self.trace_ids: list[bytes] = []  # every trace id used, so the nonce can be written into them

    def _pii(self) -> bool:
        return self.rng.random() < 0.2  # an e-mail or phone number for the redaction to find

    def _exchange(self) -> tuple[str, str, int, int]:
        """A prompt of 1-4 KB, an answer, and their token counts."""
        rng = self.rng
        prompt = _text(rng, rng.randint(1024, 4096), self._pii())
        answer = _text(rng, rng.randint(200, 1200), False)
        return prompt, answer, rng.randint(300, 3000), rng.randint(20, 600)

    def _llm_otel(self) -> tuple[str, dict[str, Any]]:
        provider, model, response_model = self.rng.choice(OTEL_MODELS)
        prompt, answer, input_tokens, output_tokens = self._exchange()
        return f"chat {model}", {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.request.max_tokens": 1024,
            "gen_ai.response.model": response_model,
            "gen_ai.response.id": f"chatcmpl-{self.rng.getrandbits(64):016x}",
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
            "gen_ai.usage.cache_read.input_tokens": input_tokens // 4,
            "gen_ai.input.messages": json.dumps(
                [
                    {"role": "system", "parts": [{"type": "text", "content": "You are a helpful support agent."}]},
                    {"role": "user", "parts": [{"type": "text", "content": prompt}]},
                ]
            ),
            "gen_ai.output.messages": json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": "stop"}]
            ),
            "server.address": "api.openai.com",
        }

    def _llm_openinference(self) -> tuple[str, dict[str, Any]]:
        provider, model = self.rng.choice(OPENINFERENCE_MODELS)
        prompt, answer, input_tokens, output_tokens = self._exchange()
        return "ChatCompletion", {
            "openinference.span.kind": "LLM",
            "llm.provider": provider,
            "llm.system": provider,
            "llm.model_name": model,
            "llm.invocation_parameters": json.dumps({"temperature": 0.0, "max_tokens": 1024}),
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "Answer using the retrieved context only.",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": prompt,
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": answer,
            "llm.token_count.prompt": input_tokens,
            "llm.token_count.completion": output_tokens,
            "llm.token_count.total": input_tokens + output_tokens,
            "input.mime_type": "application/json",
            "input.value": json.dumps({"messages": [{"role": "user", "content": prompt[:512]}]}),
            "output.mime_type": "text/plain",
            "output.value": answer[:512],
        }

    def _llm_traceloop(self) -> tuple[str, dict[str, Any]]:
        provider, model, response_model = self.rng.choice(TRACELOOP_MODELS)
        prompt, answer, input_tokens, output_tokens = self._exchange()
        return f"{provider}.chat", {
            "llm.request.type": "chat",
            "gen_ai.system": provider,
            "gen_ai.request.model": model,
            "gen_ai.response.model": response_model,
            "gen_ai.request.temperature": 0.7,
            "gen_ai.prompt.0.role": "system",
            "gen_ai.prompt.0.content": "You plan the next step of the task.",
            "gen_ai.prompt.1.role": "user",
            "gen_ai.prompt.1.content": prompt,
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": answer,
            "gen_ai.completion.0.finish_reason": "stop",
            "gen_ai.usage.prompt_tokens": input_tokens,
            "gen_ai.usage.completion_tokens": output_tokens,
            "llm.usage.total_tokens": input_tokens + output_tokens,
            "llm.is_streaming": False,
        }

    def _llm_vercel(self) -> tuple[str, dict[str, Any]]:
        provider, model = self.rng.choice(VERCEL_MODELS)
        prompt, answer, input_tokens, output_tokens = self._exchange()
        return "ai.generateText.doGenerate", {
            "operation.name": "ai.generateText.doGenerate",
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.model.provider": provider,
            "ai.model.id": model,
            "ai.prompt.messages": json.dumps([{"role": "user", "content": [{"type": "text", "text": prompt}]}]),
            "ai.response.text": answer,
            "ai.response.finishReason": "stop",
            "ai.response.msToFirstChunk": round(self.rng.uniform(150, 900), 1),
            "ai.usage.promptTokens": input_tokens,
            "ai.usage.completionTokens": output_tokens,
            "ai.settings.maxRetries": 2,
        }

    def _tool(self) -> tuple[str, dict[str, Any]]:
        tool = self.rng.choice(TOOLS)
        return f"execute_tool {tool}", {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.call.id": f"call_{self.rng.getrandbits(48):012x}",
            "gen_ai.tool.call.arguments": json.dumps({"query": _text(self.rng, 80, self._pii())}),
            "gen_ai.tool.call.result": json.dumps({"rows": _text(self.rng, self.rng.randint(300, 1000), False)}),
        }

    def trace(self, max_spans: int) -> tuple[str, list[PbSpan]]:
        """One trace of at most ``max_spans`` spans, and its service; the root comes first."""
        rng = self.rng
        trace_id = rng.getrandbits(64).to_bytes(8, "big") + bytes(NONCE_BYTES)
        self.trace_ids.append(trace_id)
        service = rng.choice(SERVICES)
        agent = rng.choice(AGENTS)
        start = self.base_time_ns + rng.randrange(10**9)
        llm_makers = (self._llm_otel, self._llm_openinference, self._llm_traceloop, self._llm_vercel)
        children: list[tuple[str, dict[str, Any], int]] = []
        for _ in range(rng.randint(3, 6)):
            name, attributes = rng.choice(llm_makers)()
            children.append((name, attributes, 3))  # client
            if rng.random() < 0.5:
                name, attributes = self._tool()
                children.append((name, attributes, 1))  # internal
        children = children[: max(0, max_spans - 1)]
        root_id = rng.getrandbits(64).to_bytes(8, "big")
        root = PbSpan(
            trace_id=trace_id,
            span_id=root_id,
            name=f"invoke_agent {agent}",
            kind=1,
            start_time_unix_nano=start,
        )
        _set_attributes(
            root.attributes,
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent,
                "gen_ai.provider.name": "openai",
                "gen_ai.conversation.id": f"conv_{rng.getrandbits(40):010x}",
                "user.id": f"user-{rng.randrange(5000)}",
                "session.id": f"sess-{rng.getrandbits(32):08x}",
            },
        )
        spans = [root]
        clock = start + 1_000_000
        for name, attributes, kind in children:
            duration = rng.randint(5_000_000, 2_500_000_000) if kind == 3 else rng.randint(1_000_000, 200_000_000)
            span = PbSpan(
                trace_id=trace_id,
                span_id=rng.getrandbits(64).to_bytes(8, "big"),
                parent_span_id=root_id,
                name=name,
                kind=kind,
                start_time_unix_nano=clock,
                end_time_unix_nano=clock + duration,
            )
            _set_attributes(span.attributes, attributes)
            if rng.random() < 0.05:
                span.status.CopyFrom(
                    Status(code=Status.STATUS_CODE_ERROR, message="upstream returned 429: rate limited")
                )
                _set_attributes(span.attributes, {"error.type": "RateLimitError"})
                event = span.events.add(name="exception", time_unix_nano=clock + duration)
                _set_attributes(
                    event.attributes,
                    {
                        "exception.type": "openai.RateLimitError",
                        "exception.message": "Error code: 429 - rate limit reached for requests",
                        "exception.stacktrace": "Traceback (most recent call last):\n"
                        + '  File "agent.py", line 42\n' * 8,
                    },
                )
            else:
                span.status.code = (
                    Status.STATUS_CODE_OK if kind == 3 and rng.random() < 0.3 else Status.STATUS_CODE_UNSET
                )
            spans.append(span)
            clock += duration + rng.randint(100_000, 5_000_000)
        root.end_time_unix_nano = clock
        if any(span.status.code == Status.STATUS_CODE_ERROR for span in spans[1:]) and rng.random() < 0.5:
            root.status.code = Status.STATUS_CODE_ERROR
            root.status.message = "agent run failed"
        return service, spans

    def request(self, span_count: int) -> ExportTraceServiceRequest:
        """Exactly ``span_count`` spans: whole traces, the last one cut short to fit."""
        by_service: dict[str, list[PbSpan]] = {}
        remaining = span_count
        while remaining > 0:
            service, spans = self.trace(remaining)
            by_service.setdefault(service, []).extend(spans)
            remaining -= len(spans)
        request = ExportTraceServiceRequest()
        for service, spans in by_service.items():
            resource_spans = request.resource_spans.add()
            _set_attributes(
                resource_spans.resource.attributes,
                {
                    "service.name": service,
                    "service.version": "1.4.2",
                    "deployment.environment.name": "production",
                    "telemetry.sdk.language": "python",
                    "telemetry.sdk.name": "opentelemetry",
                    "telemetry.sdk.version": "1.38.0",
                    "host.name": f"{service}-7f9c{self.rng.randrange(16):x}",
                },
            )
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = "opentelemetry.instrumentation.genai"
            scope_spans.scope.version = "0.5.0"
            scope_spans.spans.extend(spans)
        return request


def request_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON: lowerCamelCase keys, integer enums, hex ids (protobuf's mapping gives base64)."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass
class Template:
    """One pre-encoded request and where its trace ids' nonces sit in the body."""

    body: bytes
    offsets: list[int]
    spans: int

    def with_nonce(self, nonce: bytes) -> bytes:
        body = bytearray(self.body)
        width = len(nonce)
        for offset in self.offsets:
            body[offset : offset + width] = nonce
        return bytes(body)


def _offsets(body: bytes, needles: Sequence[bytes], skip: int) -> list[int]:
    offsets = []
    for needle in needles:
        start = body.find(needle)
        while start != -1:
            offsets.append(start + skip)
            start = body.find(needle, start + 1)
    return offsets


def build_templates(count: int, spans_per_request: int, protocol: str, seed: int = 1) -> list[Template]:
    """``count`` distinct requests, encoded for ``protocol``; each trace id ends in a nonce slot."""
    builder = TraceBuilder(seed, time.time_ns() - 60 * 10**9)
    templates = []
    for _ in range(count):
        first = len(builder.trace_ids)
        request = builder.request(spans_per_request)
        trace_ids = builder.trace_ids[first:]
        if protocol == "http-json":
            body = request_json(request)
            offsets = _offsets(body, [f'"{t.hex()}"'.encode() for t in trace_ids], 1 + 2 * (16 - NONCE_BYTES))
        else:
            body = request.SerializeToString()
            offsets = _offsets(body, trace_ids, 16 - NONCE_BYTES)
        templates.append(Template(body, offsets, spans_per_request))
    return templates


def nonce_for(protocol: str, value: int) -> bytes:
    raw = value.to_bytes(NONCE_BYTES, "big")
    return raw.hex().encode() if protocol == "http-json" else raw
