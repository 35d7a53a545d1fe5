"""Ingest benchmark for genai-collector (issue 5): realistic agent traces over OTLP/HTTP protobuf,
OTLP/HTTP JSON and OTLP/gRPC, against a daemon it starts itself or any OTLP endpoint.

    .venv/bin/python bench/ingest.py max                       # every protocol, 10 s each
    .venv/bin/python bench/ingest.py rate --rate 20000 -p grpc
    .venv/bin/python bench/ingest.py overload -p http-protobuf
    .venv/bin/python bench/ingest.py large-db --prefill 10000000
    .venv/bin/python bench/ingest.py --smoke                   # CI: a few seconds, stored == acknowledged
    .venv/bin/python bench/ingest.py max --endpoint http://host:4318 --grpc-target host:4317
    .venv/bin/python bench/ingest.py max --secure              # TLS and an API key on both OTLP listeners

Requests are built and encoded before the clock starts; each send only writes a fresh nonce into the
trace ids of a pre-encoded body (the collector stores a span sent twice once), so the generator costs
a memory copy per request. Clients run in worker processes (``--processes``), each with its share of
the ``--clients`` concurrent senders, so that the GIL of one client process is not the limit.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import itertools
import json
import math
import multiprocessing
import os
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import apsw
import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))  # bench/storage.py, also when this file is loaded by its path
import storage  # noqa: E402

PROTOCOLS = ("http-protobuf", "http-json", "grpc")
MODES = ("max", "rate", "overload", "large-db", "retention", "resource")
GRPC_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
NONCE_BYTES = 8  # the last 8 bytes of every trace id are rewritten per send
LISTENING = re.compile(
    r"genai-collector listening: otlp-grpc \S+:(?P<grpc>\d+), otlp-http \S+:(?P<http>\d+), admin \S+:(?P<admin>\d+)"
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


# --- senders ---------------------------------------------------------------------------------

# What one request came to; only OK and PARTIAL acknowledge spans.
OK, PARTIAL, REFUSED, REFUSED_NO_HINT, TIMEOUT = "ok", "partial", "refused", "refused without retry hint", "timeout"


class HttpSender:
    """One keep-alive HTTP/1.1 connection (http.client: a fraction of httpx's CPU per request)."""

    def __init__(
        self, url: str, content_type: str, timeout: float, ca_file: str | None = None, api_key: str | None = None
    ) -> None:
        parsed = urlsplit(url)
        self._secure = parsed.scheme == "https"
        self._tls = ssl.create_default_context(cafile=ca_file) if self._secure else None
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or (443 if self._secure else 80)
        self._path = parsed.path or "/v1/traces"
        self._headers = {"Content-Type": content_type}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._json = content_type == "application/json"
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def send(self, body: bytes, spans: int) -> tuple[str, int]:
        """(outcome, spans acknowledged)."""
        for attempt in (1, 2):
            reused = self._connection is not None
            try:
                if self._connection is None:
                    self._connection = (
                        http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._tls)
                        if self._secure
                        else http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
                    )
                    self._connection.connect()
                    # As urllib3 (the OTel SDK's HTTP exporter) does: no Nagle delay on the request's last segment.
                    self._connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._connection.request("POST", self._path, body, self._headers)
                response = self._connection.getresponse()
                payload = response.read()
            except TimeoutError:
                self.close()
                return TIMEOUT, 0
            except (http.client.HTTPException, OSError) as error:
                self.close()
                # A kept-alive connection the server closed while idle: reopen it once, as clients do.
                if (
                    attempt == 1
                    and reused
                    and isinstance(error, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))
                ):
                    continue
                return f"connection error ({type(error).__name__})", 0
            if response.will_close:
                self.close()
            return self._outcome(response.status, response.getheader("Retry-After"), payload, spans)
        raise AssertionError("unreachable")

    def _outcome(self, status: int, retry_after: str | None, payload: bytes, spans: int) -> tuple[str, int]:
        if status == 200:
            rejected = _rejected_json(payload) if self._json else _rejected_protobuf(payload)
            return (PARTIAL, spans - rejected) if rejected else (OK, spans)
        if status in (429, 503):
            return (REFUSED if retry_after else REFUSED_NO_HINT), 0
        return f"http {status}", 0

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _rejected_protobuf(payload: bytes) -> int:
    if not payload:
        return 0
    return ExportTraceServiceResponse.FromString(payload).partial_success.rejected_spans


def _rejected_json(payload: bytes) -> int:
    if not payload or payload.strip() == b"{}":
        return 0
    partial = json.loads(payload).get("partialSuccess") or {}
    return int(partial.get("rejectedSpans") or 0)


class GrpcSender:
    """A unary Export call on a channel of its own (its own HTTP/2 connection), sending raw bytes."""

    RETRY_KEYS = ("grpc-status-details-bin", "google.rpc.retryinfo-bin")

    def __init__(self, target: str, timeout: float, ca_file: str | None = None, api_key: str | None = None) -> None:
        options = [
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", -1),
        ]
        if ca_file:
            credentials = grpc.ssl_channel_credentials(Path(ca_file).read_bytes())
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._export = self._channel.unary_unary(GRPC_EXPORT)  # no serializers: bytes in, bytes out
        self._timeout = timeout
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None

    def send(self, body: bytes, spans: int) -> tuple[str, int]:
        try:
            payload = self._export(body, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return TIMEOUT, 0
            if code == grpc.StatusCode.UNAVAILABLE:  # also what an unreachable server gives: no hint then
                trailers = {key for key, _ in error.trailing_metadata() or ()}
                return (REFUSED if trailers.intersection(self.RETRY_KEYS) else REFUSED_NO_HINT), 0
            return f"grpc {code.name}", 0
        rejected = _rejected_protobuf(payload)
        return (PARTIAL, spans - rejected) if rejected else (OK, spans)

    def close(self) -> None:
        self._channel.close()


# --- the load: worker processes of sender threads --------------------------------------------


# One per request: (due or started, started, finished, outcome, spans acknowledged, spans sent).
Record = tuple[float, float, float, str, int, int]


@dataclass
class LoadPlan:
    protocol: str
    target: str  # URL for HTTP, host:port for gRPC
    clients: int
    processes: int
    start_at: float  # time.monotonic() of the first request (every process shares the clock)
    stop_at: float
    rate: float | None  # requests per second across every process; None: each client sends back to back
    timeout: float
    salt: int
    ca_file: str | None = None  # TLS: the CA that signed the collector's certificate
    api_key: str | None = None  # sent as Authorization: Bearer


def _sender(plan: LoadPlan) -> HttpSender | GrpcSender:
    if plan.protocol == "grpc":
        return GrpcSender(plan.target, plan.timeout, plan.ca_file, plan.api_key)
    content_type = "application/json" if plan.protocol == "http-json" else "application/x-protobuf"
    return HttpSender(plan.target, content_type, plan.timeout, plan.ca_file, plan.api_key)


def _client_thread(
    plan: LoadPlan,
    templates: list[Template],
    worker: int,
    client: int,
    schedule: Iterator[int],
    sequence: Iterator[int],
    out: list[Record],
) -> None:
    sender = _sender(plan)
    rng = random.Random(worker * 1000 + client)
    protocol = plan.protocol
    try:
        while True:
            if plan.rate is None:
                started = time.monotonic()
                if started >= plan.stop_at:
                    break
                scheduled = started
            else:
                # Open loop: request n is due at start_at + n / rate, whether or not earlier ones have answered.
                scheduled = plan.start_at + (next(schedule) * plan.processes + worker) / plan.rate
                if scheduled >= plan.stop_at:
                    break
                delay = scheduled - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                started = time.monotonic()
            template = templates[rng.randrange(len(templates))]
            nonce = (plan.salt << 40) | (worker << 32) | next(sequence)
            body = template.with_nonce(nonce_for(protocol, nonce))
            outcome, acknowledged = sender.send(body, template.spans)
            finished = time.monotonic()
            out.append((scheduled, started, finished, outcome, acknowledged, template.spans))
            if plan.rate is None and outcome not in (OK, PARTIAL):
                time.sleep(0.01)  # refused or failing: do not spin
    finally:
        sender.close()


def _worker_main(plan: LoadPlan, templates: list[Template], worker: int, clients: int, pipe: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the run
    schedule = itertools.count()  # next() on a count is atomic under the GIL: the threads share it
    sequence = itertools.count(1)
    outs: list[list[Record]] = [[] for _ in range(clients)]
    threads = [
        threading.Thread(
            target=_client_thread, args=(plan, templates, worker, c, schedule, sequence, outs[c]), daemon=True
        )
        for c in range(clients)
    ]
    delay = plan.start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    requests = [request for out in outs for request in out]
    pipe.send(
        (requests, usage.ru_utime + usage.ru_stime - cpu_before)
    )  # plain data: the parent may name this module otherwise
    pipe.close()


class Load:
    """The plan running in ``plan.processes`` forked workers (forked before this process starts any
    sampling thread); ``results`` waits for them and gives every request's record and their CPU."""

    def __init__(self, plan: LoadPlan, templates: list[Template]) -> None:
        context = multiprocessing.get_context("fork")  # the templates are inherited, not pickled
        shares = [
            plan.clients // plan.processes + (1 if w < plan.clients % plan.processes else 0)
            for w in range(plan.processes)
        ]
        self._workers = []
        for worker, clients in enumerate(shares):
            if not clients:
                continue
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_worker_main, args=(plan, templates, worker, clients, sender), daemon=True)
            process.start()
            sender.close()
            self._workers.append((process, receiver))

    def results(self) -> tuple[list[Record], float]:
        requests: list[Record] = []
        cpu = 0.0
        for process, receiver in self._workers:
            try:
                records, worker_cpu = receiver.recv()
            except EOFError:
                process.join()
                raise SystemExit(f"bench: a client process died (exit code {process.exitcode})") from None
            requests.extend(records)
            cpu += worker_cpu
            process.join()
        return requests, cpu


# --- the daemon and its /proc figures --------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def proc_memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def host_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class RssSampler(threading.Thread):
    """Samples a process's RSS every 200 ms so memory growth during a run shows."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.samples.append((time.monotonic(), proc_memory_kib(self.pid)["VmRSS"]))
            self._done.wait(0.2)

    def stop(self) -> None:
        self._done.set()
        self.join()


def collector_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("GENAI_COLLECTOR_")}


class Daemon:
    """``python -m collector serve`` on port 0 with a database of ours; stderr kept for the report."""

    def __init__(self, db: Path, arguments: Sequence[str]) -> None:
        self.db = db
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "collector",
                "serve",
                "--db",
                str(db),
                "--grpc-endpoint",
                "127.0.0.1:0",
                "--http-endpoint",
                "127.0.0.1:0",
                "--admin-endpoint",
                "127.0.0.1:0",
                "--query-endpoint",
                "127.0.0.1:0",
                *arguments,
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=collector_environment(),
        )
        self._listening = threading.Event()
        self.ports: dict[str, int] = {}
        self._reader = threading.Thread(target=self._read, name="daemon-stderr", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            if not self.ports and (match := LISTENING.search(line)):
                self.ports = {name: int(match.group(name)) for name in ("grpc", "http", "admin")}
                self._listening.set()
        self._listening.set()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        if not self._listening.wait(timeout) or not self.ports:
            self.kill()
            raise SystemExit("bench: the collector did not start:\n" + "\n".join(self.lines[-20:]))
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, http.client.HTTPException):
                if _status(f"http://127.0.0.1:{self.ports['admin']}/readyz") == 200:
                    return
            time.sleep(0.05)
        self.kill()
        raise SystemExit("bench: the collector never became ready:\n" + "\n".join(self.lines[-20:]))

    def targets(self, protocol: str, scheme: str = "http") -> str:
        if protocol == "grpc":
            return f"127.0.0.1:{self.ports['grpc']}"
        return f"{scheme}://127.0.0.1:{self.ports['http']}/v1/traces"

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait for the drain; the exit code, or None if it had to be killed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self._reader.join(5)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def problems(self) -> list[str]:
        """Log lines at WARNING or above (text or JSON format)."""
        return [
            line
            for line in self.lines
            if re.search(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b|\"level\": ?\"(warning|error)", line, re.I)
        ]


def _status(url: str) -> int:
    parsed = urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=2)
    try:
        connection.request("GET", parsed.path)
        return connection.getresponse().status
    finally:
        connection.close()


def count_spans(db: Path) -> int:
    connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return connection.execute("SELECT count(*) FROM spans").fetchone()[0]
    finally:
        connection.close()


# --- one measured run ------------------------------------------------------------------------


def percentile(ordered: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile of an ordered sequence."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def _ms(ordered: Sequence[float]) -> dict[str, float | None]:
    return {
        name: None if (value := percentile(ordered, share)) is None else round(value * 1000, 2)
        for name, share in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
    }


@dataclass
class Run:
    """The figures of one measured window, as printed and as written to JSON."""

    protocol: str
    phase: str
    duration_s: float
    clients: int
    spans_per_request: int
    offered_spans_per_s: float | None  # open-loop runs: the rate asked for
    sent_spans_per_s: float | None  # open-loop runs: what the clients managed to send (less when all were waiting)
    spans_per_s: float  # acknowledged spans per second in the window
    requests: int
    latency_ms: dict[str, float | None]
    latency_from_schedule_ms: dict[str, float | None] | None
    late_requests: int | None  # open-loop runs: requests sent more than 10 ms after they were due
    refused: int
    refused_without_hint: int
    errors: int
    outcomes: dict[str, int]
    daemon_cpu_s_per_10k_spans: float | None
    daemon_peak_rss_mb: float | None
    daemon_rss_mb: dict[str, float] | None  # at the window's start, its end, and the highest sample
    client_cpu_s_per_10k_spans: float | None
    host_cpu_busy_pct: float  # the whole machine, every process
    other_cpu_pct: float | None  # share of the machine busy with neither the collector nor the bench's clients
    acknowledged_spans: int  # every acknowledged span of the run, warm-up included
    unknown_outcome_spans: int  # timeouts and connection errors: stored or not, nobody knows
    notes: list[str] = field(default_factory=list)
    slowest: list[dict[str, float]] = field(
        default_factory=list
    )  # the slowest requests, and when (s into the window) they ended
    queries_ms: dict[str, dict[str, float | None]] | None = None
    storage: dict[str, Any] | None = None  # the database after the session: bytes per span (bench/storage.py)
    stored_spans: int | None = None
    stored_check: str = "not checked"


def measure(
    protocol: str,
    phase: str,
    templates: list[Template],
    target: str,
    pid: int | None,
    args: argparse.Namespace,
    *,
    clients: int,
    rate_spans: float | None = None,
    during: Callable[[float], None] | None = None,
) -> Run:
    """Send for ``args.warmup + args.duration`` seconds; the figures of the last ``args.duration``."""
    spans = templates[0].spans
    rate = rate_spans / spans if rate_spans else None
    start_at = time.monotonic() + 0.5  # let the worker processes start
    window_start = start_at + args.warmup
    stop_at = window_start + args.duration
    plan = LoadPlan(
        protocol,
        target,
        clients,
        min(args.processes, clients),
        start_at,
        stop_at,
        rate,
        args.timeout,
        random.getrandbits(16),
        args.ca_file,
        args.api_key,
    )
    samples: dict[str, Any] = {}
    sampler = RssSampler(pid) if pid else None

    def sample_window() -> None:
        for label, at in (("start", window_start), ("end", stop_at)):
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            samples[f"host_{label}"] = host_cpu_ticks()
            if pid:
                with contextlib.suppress(OSError):
                    samples[f"cpu_{label}"] = proc_cpu_seconds(pid)
                    samples[f"rss_{label}"] = proc_memory_kib(pid)["VmRSS"]

    load = Load(plan, templates)
    window = threading.Thread(target=sample_window, daemon=True)
    window.start()
    if sampler:
        sampler.start()
    watcher = threading.Thread(target=during, args=(stop_at,), daemon=True) if during else None
    if watcher:
        watcher.start()
    records, client_cpu = load.results()
    client_window_cpu = client_cpu * args.duration / (args.warmup + args.duration)  # the workers' CPU, pro rata
    window.join()
    if watcher:
        watcher.join()
    peak_kib = None
    if sampler:
        sampler.stop()
        with contextlib.suppress(OSError, KeyError):
            peak_kib = proc_memory_kib(pid)["VmHWM"]  # type: ignore[arg-type]

    in_window = [r for r in records if window_start <= r[2] < stop_at]
    acknowledged = [r for r in in_window if r[3] in (OK, PARTIAL)]
    latencies = sorted(r[2] - r[1] for r in acknowledged)
    outcomes = Counter(r[3] for r in in_window)
    acked_spans = sum(r[4] for r in acknowledged)
    busy = samples["host_end"][0] - samples["host_start"][0]
    total = samples["host_end"][1] - samples["host_start"][1]
    cpu = samples["cpu_end"] - samples["cpu_start"] if "cpu_end" in samples and "cpu_start" in samples else None
    rss = None
    if sampler and "rss_start" in samples:
        during_window = [kib for at, kib in sampler.samples if window_start <= at <= stop_at] or [samples["rss_start"]]
        rss = {
            "start": round(samples["rss_start"] / 1024, 1),
            "end": round(samples.get("rss_end", during_window[-1]) / 1024, 1),
            "max": round(max(during_window) / 1024, 1),
        }
    run = Run(
        protocol=protocol,
        phase=phase,
        duration_s=args.duration,
        clients=clients,
        spans_per_request=spans,
        offered_spans_per_s=round(rate_spans, 1) if rate_spans else None,
        sent_spans_per_s=(
            round(sum(r[5] for r in records if window_start <= r[1] < stop_at) / args.duration, 1) if rate else None
        ),
        spans_per_s=round(acked_spans / args.duration, 1),
        requests=len(in_window),
        latency_ms=_ms(latencies),
        latency_from_schedule_ms=_ms(sorted(r[2] - r[0] for r in acknowledged)) if rate else None,
        late_requests=sum(1 for r in in_window if r[1] - r[0] > 0.010) if rate else None,
        refused=outcomes[REFUSED],
        refused_without_hint=outcomes[REFUSED_NO_HINT],
        errors=sum(count for outcome, count in outcomes.items() if outcome not in (OK, PARTIAL, REFUSED)),
        outcomes=dict(outcomes),
        daemon_cpu_s_per_10k_spans=round(cpu / acked_spans * 10_000, 3) if cpu is not None and acked_spans else None,
        daemon_peak_rss_mb=round(peak_kib / 1024, 1) if peak_kib else None,
        daemon_rss_mb=rss,
        client_cpu_s_per_10k_spans=round(client_cpu / max(1, sum(r[4] for r in records)) * 10_000, 3),
        host_cpu_busy_pct=round(100 * busy / total, 1) if total else 0.0,
        other_cpu_pct=(
            round(100 * (busy - (cpu + client_window_cpu) * CLOCK_TICKS) / total, 1)
            if total and cpu is not None
            else None
        ),
        acknowledged_spans=sum(r[4] for r in records),
        unknown_outcome_spans=sum(r[5] for r in records if r[3] == TIMEOUT or r[3].startswith("connection error")),
        slowest=[
            {"ms": round((r[2] - r[1]) * 1000, 1), "at_s": round(r[2] - window_start, 2)}
            for r in sorted(acknowledged, key=lambda r: r[1] - r[2])[:3]
        ],
    )
    if outcomes[PARTIAL]:
        run.notes.append(f"{outcomes[PARTIAL]} requests were only partly accepted (partial_success)")
    if run.late_requests:
        run.notes.append(
            f"{run.late_requests} of {len(in_window)} requests left more than 10 ms late (every client was waiting for an "
            f"answer; sent {run.sent_spans_per_s:,.0f} of the {run.offered_spans_per_s:,.0f} spans/s asked)"
        )
    return run


# --- targets: the daemon we start, or any endpoint -------------------------------------------


class Session:
    """A collector to send to during one or more runs: one we start on ``db``, or the endpoints given.
    ``close`` stops ours and compares the spans stored with the spans acknowledged."""

    def __init__(self, args: argparse.Namespace, db: Path | None, extra_args: Sequence[str] = ()) -> None:
        self.args = args
        self.db = db
        self.daemon: Daemon | None = None
        self.stored_before = 0
        self.deleted_spans = 0  # by retention, during the session: stored + deleted = acknowledged
        self.runs: list[Run] = []
        self.exit_code: int | None = None
        if db is not None:
            if db.exists():
                self.stored_before = count_spans(db)
            self.daemon = Daemon(db, [*args.daemon_args, *extra_args])
            self.daemon.wait_ready()
            print(f"bench: collector pid {self.daemon.pid} ready, database {db}", file=sys.stderr)

    @property
    def pid(self) -> int | None:
        return self.daemon.pid if self.daemon else self.args.pid

    def target(self, protocol: str) -> str:
        if self.daemon:
            return self.daemon.targets(protocol, "https" if self.args.secure else "http")
        if protocol == "grpc":
            return self.args.grpc_target
        return self.args.endpoint.rstrip("/") + (
            "" if self.args.endpoint.rstrip("/").endswith("/v1/traces") else "/v1/traces"
        )

    def measure(self, protocol: str, phase: str, templates: list[Template], **options: Any) -> Run:
        run = measure(protocol, phase, templates, self.target(protocol), self.pid, self.args, **options)
        self.runs.append(run)
        print(
            f"  {protocol:<13} {phase:<12} {run.spans_per_s:>10,.0f} spans/s  p99 {run.latency_ms['p99']} ms"
            f"  refused {run.refused}  errors {run.errors}",
            file=sys.stderr,
        )
        return run

    def close(self) -> bool:
        """Stop the daemon (drain) and check stored == acknowledged; False when the check fails."""
        if self.daemon is None:
            for run in self.runs:
                run.stored_check = "not checked (external endpoint)"
            return True
        self.exit_code = self.daemon.stop()
        problems = self.daemon.problems()
        assert self.db is not None
        stored = count_spans(self.db) - self.stored_before + self.deleted_spans
        figures = storage.storage_figures(self.db)
        for run in self.runs:
            run.storage = figures
        acknowledged = sum(run.acknowledged_spans for run in self.runs)
        unknown = sum(run.unknown_outcome_spans for run in self.runs)
        ok = acknowledged <= stored <= acknowledged + unknown
        if ok and stored == acknowledged:
            verdict = "ok"
        elif ok:
            verdict = f"ok ({stored - acknowledged} spans of timed-out requests were stored too)"
        elif stored < acknowledged:
            verdict = f"FAILED: {acknowledged - stored} acknowledged spans are missing from the database"
        else:
            verdict = f"FAILED: {stored - acknowledged - unknown} more spans stored than were sent and acknowledged"
        if self.exit_code != 0:
            ok = False
            verdict += (
                "; the collector did not stop within 60 s of SIGTERM and was killed"
                if self.exit_code is None
                else f"; the collector exited with code {self.exit_code}"
            )
        for run in self.runs:
            run.stored_spans = stored
            run.stored_check = verdict
            if problems:
                run.notes.append(f"collector logged {len(problems)} warnings/errors, first: {problems[0][:300]}")
        if len(self.runs) > 1:
            for run in self.runs:
                run.notes.append(f"stored/acknowledged counted over the {len(self.runs)} runs against one collector")
        if not ok:
            print(f"bench: {verdict}", file=sys.stderr)
            if problems:
                print("\n".join(problems[-20:]), file=sys.stderr)
        return ok


# --- large database: prefill with the collector's own rows, then time queries ------------------

PREFILL_NONCE = 0xFFFF << 48  # prefilled trace ids end in ffff...; a run's nonces never start so
_TEMPLATE_RESOURCES: list[tuple[Any, ...]] = []


def _template_rows(
    spans_per_request: int, requests: int
) -> tuple[list[str], list[tuple[Any, ...]], list[str], list[tuple[Any, ...]]]:
    """Span rows exactly as the collector writes them (decode, normalize, price, redact, ``insert_spans``),
    and the ``traces`` rows its rollup makes of them, read back from a scratch in-memory database."""
    sys.path.insert(0, str(ROOT))
    from collector.config import load_settings
    from collector.genai.transform import Transform
    from collector.otlp import decode_spans
    from collector.storage.sqlite.schema import migrate
    from collector.storage.sqlite.writer import insert_spans

    transform = Transform(load_settings({}))
    builder = TraceBuilder(seed=7, base_time_ns=0)
    scratch = apsw.Connection(":memory:")
    migrate(scratch)
    with scratch:
        for _ in range(requests):
            spans, _rejection = decode_spans(builder.request(spans_per_request))
            records, _stats = transform.spans(spans)
            insert_spans(scratch, records.spans, 30 * 10**9)  # received 30 s after the start
        trace_ids = [row[0] for row in scratch.execute("SELECT DISTINCT trace_id FROM spans")]
        try:
            from collector.storage.sqlite.rollups import roll_up
        except ImportError:
            print("bench: this collector has no trace rollups; the traces table stays empty", file=sys.stderr)
        else:
            roll_up(scratch, trace_ids)
    span_columns = [row[1] for row in scratch.execute("PRAGMA table_info(spans)")]
    spans_rows = scratch.execute(
        f"SELECT {', '.join(span_columns)} FROM spans ORDER BY trace_id, start_time_unix_nano"
    ).fetchall()
    trace_columns = [row[1] for row in scratch.execute("PRAGMA table_info(traces)")]
    trace_rows = scratch.execute(f"SELECT {', '.join(trace_columns)} FROM traces").fetchall()
    if not trace_rows:
        trace_columns = []
    global _TEMPLATE_RESOURCES  # the rows the spans' resource_id point to (schema version 4 on)
    has_resources = scratch.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'resources'").fetchone()[0]
    _TEMPLATE_RESOURCES = scratch.execute("SELECT * FROM resources").fetchall() if has_resources else []
    scratch.close()
    return span_columns, spans_rows, trace_columns, trace_rows


def _copier(columns: list[str]) -> Callable[[tuple[Any, ...], str, int], tuple[Any, ...]]:
    """Copies a row under another trace id with every ``*_unix_nano`` time shifted; a settled time is set."""
    trace_index = columns.index("trace_id")
    times = [i for i, name in enumerate(columns) if name.endswith("_unix_nano")]
    settled = columns.index("settled_at_unix_nano") if "settled_at_unix_nano" in columns else None
    last = columns.index("last_span_at_unix_nano") if "last_span_at_unix_nano" in columns else None

    def copy(row: tuple[Any, ...], trace_id: str, shift: int) -> tuple[Any, ...]:
        values = list(row)
        values[trace_index] = trace_id
        for i in times:
            if values[i] is not None:
                values[i] += shift
        if settled is not None and last is not None:
            values[settled] = values[last]  # old traces have settled long ago
        return tuple(values)

    return copy


def prefill(
    db: Path, total: int, spans_per_request: int, transaction_rows: int, *, spread_s: float = 30 * 86400
) -> dict[str, Any]:
    """Write ``total`` spans and their ``traces`` rows straight into a new database, fast: the collector's
    schema, rows and INSERT, big transactions, no journal while filling; WAL at the end. The traces end an
    hour ago and go back ``spread_s`` seconds, evenly spread."""
    sys.path.insert(0, str(ROOT))
    from collector.storage.sqlite.schema import migrate

    started = time.monotonic()
    span_columns, span_template, trace_columns, trace_template = _template_rows(spans_per_request, 64)
    row_bytes = sum(len(str(value)) for row in span_template for value in row) / len(span_template)
    needed = int(total * row_bytes * 1.3)
    free = shutil.disk_usage(db.parent).free
    if needed > free * 0.9:
        raise SystemExit(
            f"bench: prefilling {total:,} spans needs about {needed / 2**30:.1f} GiB and {db.parent} has "
            f"{free / 2**30:.1f} GiB free; use a smaller --prefill or another --db-dir"
        )
    print(
        f"bench: prefilling {total:,} spans (~{row_bytes / 1024:.1f} KiB each, ~{needed / 2**30:.1f} GiB) into {db}",
        file=sys.stderr,
    )
    by_trace: dict[str, list[tuple[Any, ...]]] = {}
    for row in span_template:
        by_trace.setdefault(row[span_columns.index("trace_id")], []).append(row)
    rollups = {row[trace_columns.index("trace_id")]: row for row in trace_template}
    templates = list(by_trace.items())
    copy_span, copy_trace = _copier(span_columns), _copier(trace_columns) if trace_columns else None
    insert_span = f"INSERT INTO spans ({', '.join(span_columns)}) VALUES ({', '.join('?' * len(span_columns))})"
    insert_trace = f"INSERT INTO traces ({', '.join(trace_columns)}) VALUES ({', '.join('?' * len(trace_columns))})"
    start_index = span_columns.index("start_time_unix_nano")

    connection = apsw.Connection(str(db))
    migrate(connection)
    with connection:
        for row in _TEMPLATE_RESOURCES:
            connection.execute(f"INSERT INTO resources VALUES ({', '.join('?' * len(row))})", row)
    connection.pragma("journal_mode", "off")
    connection.pragma("synchronous", "off")
    connection.pragma("cache_size", -1_000_000)  # KiB
    now = time.time_ns()
    newest, oldest = now - 3600 * 10**9, now - 3600 * 10**9 - int(spread_s * 10**9)
    step = (newest - oldest) // max(1, math.ceil(total / (len(span_template) / len(templates))))
    written = copies = 0
    sample_ids: list[str] = []
    last_report = time.monotonic()
    while written < total:
        span_batch: list[tuple[Any, ...]] = []
        trace_batch: list[tuple[Any, ...]] = []
        while len(span_batch) < transaction_rows and written + len(span_batch) < total:
            trace_id, rows = templates[copies % len(templates)]
            new_id = trace_id[:16] + f"{PREFILL_NONCE | copies:016x}"
            shift = oldest + copies * step - rows[0][start_index]
            rows = rows[: total - written - len(span_batch)]
            span_batch.extend(copy_span(row, new_id, shift) for row in rows)
            if copy_trace and trace_id in rollups and len(rows) == len(by_trace[trace_id]):
                trace_batch.append(copy_trace(rollups[trace_id], new_id, shift))
            if copies % 997 == 0 and len(sample_ids) < 1000:
                sample_ids.append(new_id)
            copies += 1
        with connection:
            connection.executemany(insert_span, span_batch)
            if trace_batch:
                connection.executemany(insert_trace, trace_batch)
        written += len(span_batch)
        if time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            elapsed = last_report - started
            print(
                f"bench: prefilled {written:,} spans in {elapsed:.0f} s ({written / elapsed:,.0f}/s)", file=sys.stderr
            )
    connection.pragma("journal_mode", "wal")
    connection.close()
    # Written without syncs, the file is mostly dirty pages: flush them now, or the collector's first
    # fsync would wait for gigabytes of writeback and show up as a stall in the measured run.
    descriptor = os.open(db, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    elapsed = time.monotonic() - started
    print(
        f"bench: prefill done: {written:,} spans, {copies:,} traces in {elapsed:.0f} s ({written / elapsed:,.0f} spans/s)",
        file=sys.stderr,
    )
    return {
        "spans": written,
        "traces": copies,
        "seconds": round(elapsed, 1),
        "file_gib": round(db.stat().st_size / 2**30, 2),
        "sample_trace_ids": sample_ids,
    }


class QueryTimer:
    """Times a trace lookup by id and the latest-50-traces query on a read connection of its own."""

    LOOKUP = "SELECT * FROM spans WHERE trace_id = ? ORDER BY start_time_unix_nano"
    LATEST_TRACES = "SELECT * FROM traces ORDER BY start_time_unix_nano DESC LIMIT 50"
    LATEST_ROOTS = "SELECT * FROM spans WHERE parent_span_id IS NULL ORDER BY start_time_unix_nano DESC LIMIT 50"

    def __init__(self, db: Path, trace_ids: list[str]) -> None:
        self.db = db
        self.trace_ids = trace_ids
        self.timings: dict[str, list[float]] = {"trace_by_id": [], "latest_50_traces": []}
        self.latest_source = ""

    def once(self, connection: apsw.Connection, rng: random.Random) -> None:
        started = time.perf_counter()
        rows = connection.execute(self.LOOKUP, (rng.choice(self.trace_ids),)).fetchall()
        self.timings["trace_by_id"].append(time.perf_counter() - started)
        assert rows, "a prefilled trace was not found"
        has_traces = connection.execute("SELECT EXISTS (SELECT 1 FROM traces)").fetchone()[0]
        self.latest_source = "traces" if has_traces else "spans (root spans; traces is empty)"
        started = time.perf_counter()
        connection.execute(self.LATEST_TRACES if has_traces else self.LATEST_ROOTS).fetchall()
        self.timings["latest_50_traces"].append(time.perf_counter() - started)

    def run_until(self, stop_at: float, interval: float = 0.25) -> None:
        connection = apsw.Connection(str(self.db), flags=apsw.SQLITE_OPEN_READONLY)
        connection.set_busy_timeout(5000)
        rng = random.Random(3)
        try:
            while time.monotonic() < stop_at:
                self.once(connection, rng)
                time.sleep(interval)
        finally:
            connection.close()

    def summary(self) -> dict[str, dict[str, float | None]]:
        return {name: {**_ms(sorted(values)), "count": len(values)} for name, values in self.timings.items()}  # type: ignore[dict-item]


# --- modes -----------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.runs: list[Run] = []
        self.ok = True
        self.extra: dict[str, Any] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix="genai-bench-", dir=args.db_dir))
        self._templates: dict[str, list[Template]] = {}
        if args.secure:
            args.ca_file, args.api_key, config = secure_collector_config(self.workdir)
            args.daemon_args = ["--config", str(config), *args.daemon_args]

    def templates(self, protocol: str) -> list[Template]:
        if protocol not in self._templates:
            started = time.monotonic()
            self._templates[protocol] = build_templates(self.args.templates, self.args.spans_per_request, protocol)
            size = sum(len(t.body) for t in self._templates[protocol]) / len(self._templates[protocol])
            print(
                f"bench: {self.args.templates} {protocol} requests of {self.args.spans_per_request} spans pre-encoded "
                f"({size / 1024:.0f} KiB each) in {time.monotonic() - started:.1f} s",
                file=sys.stderr,
            )
        return self._templates[protocol]

    @contextlib.contextmanager
    def session(self, db: Path | None, extra_args: Sequence[str] = ()) -> Iterator[Session]:
        if self.args.external:
            db = None
        session = Session(self.args, db, extra_args)
        try:
            yield session
        except BaseException:
            if session.daemon:
                session.daemon.kill()
            raise
        self.ok &= session.close()
        self.runs.extend(session.runs)

    def fresh_db(self, name: str) -> Path:
        return self.workdir / f"{name}.db"

    def max_rate(self, session: Session, protocol: str) -> float:
        """The maximum to derive a rate from: ``--max`` if given, else a measured ``calibrate`` run."""
        if self.args.max:
            return self.args.max
        return session.measure(protocol, "calibrate", self.templates(protocol), clients=self.args.clients).spans_per_s

    def mode_max(self, protocol: str) -> None:
        with self.session(self.fresh_db(f"max-{protocol}")) as session:
            session.measure(protocol, "max", self.templates(protocol), clients=self.args.clients)

    def mode_rate(self, protocol: str) -> None:
        with self.session(self.fresh_db(f"rate-{protocol}")) as session:
            rate = self.args.rate or self.max_rate(session, protocol) / 2
            session.measure(protocol, "rate", self.templates(protocol), clients=self.args.clients, rate_spans=rate)

    def mode_overload(self, protocol: str) -> None:
        with self.session(self.fresh_db(f"overload-{protocol}")) as session:
            maximum = self.max_rate(session, protocol)
            rate = self.args.rate or 2 * maximum
            run = session.measure(
                protocol, "overload", self.templates(protocol), clients=self.args.overload_clients, rate_spans=rate
            )
            ratio = run.spans_per_s / maximum if maximum else 0
            run.notes.append(
                f"accepted {run.spans_per_s:,.0f} spans/s = {ratio:.0%} of the maximum {maximum:,.0f} spans/s"
            )
            if not run.refused and not run.refused_without_hint:
                run.notes.append("no request was refused: the load did not fill the queue (more --overload-clients?)")
            if run.refused_without_hint:
                run.notes.append(f"{run.refused_without_hint} refusals carried no retry hint (Retry-After / RetryInfo)")
            self.extra.setdefault("overload", {})[protocol] = {
                "max_spans_per_s": maximum,
                "accepted_ratio": round(ratio, 3),
            }

    def mode_large_db(self, protocol: str) -> None:
        args = self.args
        if "prefill" not in self.extra:
            db = args.prefilled_db or self.fresh_db("large")
            if args.prefilled_db and db.exists():
                print(f"bench: using the prefilled database {db}", file=sys.stderr)
                connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
                ids = [
                    row[0]
                    for row in connection.execute(
                        "SELECT trace_id FROM spans WHERE trace_id LIKE '%ffff%' AND parent_span_id IS NULL LIMIT 1000"
                    )
                ]
                connection.close()
                self.extra["prefill"] = {"db": str(db), "reused": True, "sample_trace_ids": ids}
            else:
                self.extra["prefill"] = {
                    "db": str(db),
                    **prefill(db, args.prefill, args.spans_per_request, args.prefill_transaction),
                }
        info = self.extra["prefill"]
        db = Path(info["db"])
        empty = None
        if not args.no_baseline:
            with self.session(self.fresh_db(f"empty-{protocol}")) as session:
                empty = session.measure(protocol, "empty-db", self.templates(protocol), clients=args.clients)
        timer = QueryTimer(db, info["sample_trace_ids"])
        with self.session(db, ("--retention-max-age", "0")) as session:  # the prefill goes back 30 days
            run = session.measure(
                protocol, "large-db", self.templates(protocol), clients=args.clients, during=timer.run_until
            )
            during = timer.summary()
            timer.timings = {name: [] for name in timer.timings}
            timer.run_until(time.monotonic() + 2, interval=0.05)
            run.queries_ms = {f"{name} (during ingest)": value for name, value in during.items()}
            run.queries_ms.update({f"{name} (idle)": value for name, value in timer.summary().items()})
            run.notes.append(f"latest traces read from {timer.latest_source}")
            if empty:
                ratio = run.spans_per_s / empty.spans_per_s if empty.spans_per_s else 0
                run.notes.append(f"ingest with the prefilled database = {ratio:.0%} of the empty-database rate")

    def mode_retention(self, protocol: str) -> None:
        """``max`` without retention, then ``max`` with a ``retention.max_size`` a third of what that run
        stored, so that retention deletes through most of the window: throughput with and without."""
        without_db = self.fresh_db(f"no-retention-{protocol}")
        with self.session(without_db, ("--retention-max-age", "0")) as session:
            baseline = session.measure(protocol, "max", self.templates(protocol), clients=self.args.clients)
        max_size = storage.retention_size(storage.database_bytes(without_db), self.args.retention_max_size)
        options = ("--retention-max-age", "0", "--retention-max-size", str(max_size))
        with self.session(self.fresh_db(f"retention-{protocol}"), options) as session:
            run = session.measure(protocol, "max+retention", self.templates(protocol), clients=self.args.clients)
            if session.daemon:
                session.deleted_spans = storage.settled_deletions(session.daemon.ports["admin"])
            ratio = run.spans_per_s / baseline.spans_per_s if baseline.spans_per_s else 0
            run.notes.append(
                f"retention.max_size {max_size / 2**20:,.0f} MiB; {session.deleted_spans:,} spans deleted by retention "
                f"during the run; {ratio:.0%} of the {baseline.spans_per_s:,.0f} spans/s without retention"
            )
            self.extra.setdefault("retention", {})[protocol] = {
                "max_size_bytes": max_size,
                "deleted_spans": session.deleted_spans,
                "spans_per_s_without": baseline.spans_per_s,
                "spans_per_s_with": run.spans_per_s,
                "ratio": round(ratio, 3),
            }

    def mode_resource(self, protocol: str) -> None:
        """Requests whose resource carries ``--resource-bytes`` of attributes, shared by ``-n`` spans:
        how much the database grows per byte received."""
        if protocol == "grpc":
            print("bench: resource mode sends OTLP/HTTP protobuf; skipping grpc", file=sys.stderr)
            return
        args = self.args
        db = self.fresh_db(f"resource-{protocol}")
        session = Session(args, db)
        assert session.daemon is not None
        try:
            sent = storage.send_large_resources(
                session.daemon.targets("http-protobuf"),
                args.resource_bytes,
                args.spans_per_request,
                args.resource_requests,
            )
        finally:
            session.daemon.stop()
        figures = {
            "resource_bytes": args.resource_bytes,
            "spans_per_request": args.spans_per_request,
            "requests": args.resource_requests,
            **storage.amplification(db, sent, 0),
            **storage.storage_figures(db),
        }
        self.extra.setdefault("resource", {})[protocol] = figures
        print(
            f"  resource: {args.resource_requests} requests of {args.spans_per_request} spans sharing a resource of "
            f"{args.resource_bytes / 2**20:.2f} MiB ({sent / 2**20:.1f} MiB sent) grew the database by "
            f"{figures['database_growth_bytes'] / 2**20:.1f} MiB: x{figures['amplification']}",
            file=sys.stderr,
        )

    def run(self) -> None:
        if self.args.mode == "resource":
            self.args.protocols = ["http-protobuf"]
        for protocol in self.args.protocols:
            print(f"bench: {self.args.mode} over {protocol}", file=sys.stderr)
            getattr(self, "mode_" + self.args.mode.replace("-", "_"))(protocol)

    def cleanup(self) -> None:
        if self.args.keep:
            print(f"bench: databases kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


# --- report ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
        "collector_commit": commit,
    }


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(runs: list[Run]) -> str:
    headers = (
        "protocol",
        "phase",
        "spans/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "refused",
        "errors",
        "peak RSS MB",
        "CPU s/10k",
        "stored = acked",
    )
    rows = [
        (
            run.protocol,
            run.phase + (f" @{run.offered_spans_per_s:,.0f}/s" if run.offered_spans_per_s else ""),
            _fmt(run.spans_per_s),
            _fmt(run.latency_ms["p50"], 1),
            _fmt(run.latency_ms["p95"], 1),
            _fmt(run.latency_ms["p99"], 1),
            _fmt(run.refused) + (f" (+{run.refused_without_hint} no hint)" if run.refused_without_hint else ""),
            _fmt(run.errors),
            _fmt(run.daemon_peak_rss_mb, 1),
            _fmt(run.daemon_cpu_s_per_10k_spans, 2),
            run.stored_check,
        )
        for run in runs
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in (headers, *rows)
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    for run in runs:
        details = []
        if run.latency_from_schedule_ms:
            details.append(
                f"latency from the schedule p50/p95/p99 {run.latency_from_schedule_ms['p50']}/"
                f"{run.latency_from_schedule_ms['p95']}/{run.latency_from_schedule_ms['p99']} ms"
            )
        if run.daemon_rss_mb:
            details.append(
                f"RSS during the window {run.daemon_rss_mb['start']} -> {run.daemon_rss_mb['end']} MB (max {run.daemon_rss_mb['max']})"
            )
        if run.storage and run.storage.get("bytes_per_span"):
            details.append(
                f"database {run.storage['database_bytes'] / 2**20:,.1f} MiB for {run.storage['spans']:,} spans: "
                f"{run.storage['bytes_per_span']:,.0f} bytes per span "
                f"({run.storage['used_bytes_per_span']:,.0f} in pages in use)"
            )
        if run.slowest:
            details.append("slowest " + ", ".join(f"{r['ms']:,.0f} ms at {r['at_s']} s" for r in run.slowest))
        details.append(
            f"client CPU {_fmt(run.client_cpu_s_per_10k_spans, 2)} s/10k spans, host CPU busy {run.host_cpu_busy_pct}%"
            + (f" ({run.other_cpu_pct}% by other processes)" if run.other_cpu_pct is not None else "")
        )
        if run.other_cpu_pct is not None and run.other_cpu_pct > 10:
            run.notes.append(f"other processes used {run.other_cpu_pct}% of the machine: the figures are disturbed")
        for name, timing in (run.queries_ms or {}).items():
            details.append(
                f"{name}: p50 {timing['p50']} ms, p95 {timing['p95']} ms, max {timing['max']} ms ({timing['count']} runs)"
            )
        other = {k: v for k, v in run.outcomes.items() if k not in (OK, PARTIAL, REFUSED)}
        if other:
            details.append("other outcomes: " + ", ".join(f"{k} x{v}" for k, v in other.items()))
        details.extend(run.notes)
        lines.append(f"{run.protocol} {run.phase}: " + "; ".join(details))
    return "\n".join(lines)


def secure_collector_config(directory: Path) -> tuple[str, str, Path]:
    """A CA, a server certificate for 127.0.0.1 and an ingest key made for this run, and a collector config
    serving both OTLP listeners with them (admin stays plaintext for the readiness check)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("bench CA"))
        .issuer_name(name("bench CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "server.crt").write_bytes(server.public_bytes(pem))
    (directory / "server.key").write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    api_key = base64.urlsafe_b64encode(os.urandom(24)).decode()
    config = {
        "tls": {
            "cert_file": str(directory / "server.crt"),
            "key_file": str(directory / "server.key"),
            "admin": {"enabled": False},
        },
        "auth": {"api_keys": [{"name": "bench", "key": api_key, "scopes": ["ingest"]}]},
    }
    (directory / "collector.yaml").write_text(json.dumps(config))  # JSON is YAML
    return str(directory / "ca.crt"), api_key, directory / "collector.yaml"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    argv = list(argv)
    daemon_args: list[str] = []
    if "--" in argv:
        daemon_args = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(
        prog="bench/ingest.py",
        description="Ingest benchmark: realistic agent traces over OTLP/HTTP protobuf, OTLP/HTTP JSON and OTLP/gRPC.",
        epilog="Arguments after -- go to `genai-collector serve` (as does each --daemon-arg).",
    )
    parser.add_argument(
        "mode",
        nargs="?",
        choices=MODES,
        default="max",
        help="max (default), rate, overload, large-db, retention or resource",
    )
    parser.add_argument(
        "-p",
        "--protocol",
        action="append",
        choices=PROTOCOLS,
        dest="protocols",
        help="repeatable; default: every protocol",
    )
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="seconds measured per run (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds sent before the measured window (default 1)")
    parser.add_argument("-c", "--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("-n", "--spans-per-request", type=int, default=100, help="spans per request (default 100)")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="client processes sharing the clients (default 1: the client costs about 1/20 of the collector)",
    )
    parser.add_argument("--templates", type=int, default=32, help="distinct pre-encoded requests (default 32)")
    parser.add_argument(
        "--rate",
        type=float,
        help="spans/s offered: rate mode's fixed rate (default: half the maximum); overload's rate (default: twice the maximum)",
    )
    parser.add_argument(
        "--max", type=float, help="a known maximum in spans/s, instead of measuring one first (rate and overload)"
    )
    parser.add_argument(
        "--overload-clients",
        type=int,
        default=256,
        help="concurrent requests in overload mode, enough to fill the collector's queue (default 256)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds before a request counts as timed out (default 30)"
    )
    parser.add_argument(
        "--prefill", type=int, default=10_000_000, help="large-db: spans written before the run (default 10,000,000)"
    )
    parser.add_argument(
        "--prefill-transaction", type=int, default=200_000, help="large-db: rows per prefill transaction"
    )
    parser.add_argument(
        "--prefilled-db", type=Path, help="large-db: reuse (or create and keep) this prefilled database"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="large-db: skip the empty-database run of each protocol"
    )
    parser.add_argument(
        "--retention-max-size",
        type=int,
        help="retention: retention.max_size in bytes of the run with retention (default: a third of what the run "
        "without retention stored, at least 16 MiB)",
    )
    parser.add_argument(
        "--resource-bytes",
        type=int,
        default=1024 * 1024,
        help="resource: bytes of resource attributes per request (default 1 MiB)",
    )
    parser.add_argument("--resource-requests", type=int, default=10, help="resource: requests sent (default 10)")
    parser.add_argument(
        "--endpoint", help="send OTLP/HTTP to this collector (http://host:4318) instead of starting one"
    )
    parser.add_argument("--grpc-target", help="send OTLP/gRPC to this collector (host:4317) instead of starting one")
    parser.add_argument(
        "--pid", type=int, help="with --endpoint/--grpc-target: the collector's pid, for its RSS and CPU"
    )
    parser.add_argument(
        "--daemon-arg",
        action="append",
        default=[],
        help="a flag for the collector we start, e.g. --daemon-arg=--queue-capacity=50000",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="serve both OTLP listeners of the collector we start with TLS and an API key made for the run; "
        "the clients verify the certificate and send the key",
    )
    parser.add_argument(
        "--ca-file", help="with --endpoint https://... or --grpc-target: the CA to verify the collector with (TLS)"
    )
    parser.add_argument("--api-key", help="with --endpoint/--grpc-target: send Authorization: Bearer <key>")
    parser.add_argument("--db-dir", help="where temporary databases go (default: the system temp directory)")
    parser.add_argument("--keep", action="store_true", help="keep the databases after the run")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument(
        "--json-stdout", action="store_true", help="print the JSON on stdout (the table goes to stderr)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="CI check: max mode, every protocol, ~2 s each, small load; asserts only stored == acknowledged",
    )
    args = parser.parse_args(argv)
    args.daemon_args = [*args.daemon_arg, *daemon_args]
    args.external = bool(args.endpoint or args.grpc_target)
    if args.secure and args.external:
        parser.error("--secure configures the collector the bench starts; against another give --ca-file and --api-key")
    if args.smoke:
        args.mode = "max"
        args.protocols = args.protocols or list(PROTOCOLS)
        args.duration, args.warmup, args.clients, args.spans_per_request, args.templates = 1.5, 0.3, 2, 20, 4
    args.protocols = list(dict.fromkeys(args.protocols or PROTOCOLS))
    if args.external:
        if args.mode in ("large-db", "retention", "resource"):
            parser.error(f"{args.mode} needs a collector of ours; it cannot run against --endpoint/--grpc-target")
        missing = [
            p for p in args.protocols if (p == "grpc" and not args.grpc_target) or (p != "grpc" and not args.endpoint)
        ]
        if missing and (args.protocols is None or len(missing) < len(args.protocols)):
            args.protocols = [p for p in args.protocols if p not in missing]
        elif missing:
            parser.error(f"no target for {', '.join(missing)}: give --endpoint (HTTP) and/or --grpc-target (gRPC)")
    for name in ("clients", "spans_per_request", "processes", "templates", "overload_clients"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.duration <= 0:
        parser.error("--duration must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    bench = Bench(args)
    started = time.time()
    try:
        bench.run()
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        bench.cleanup()
    report = {
        "mode": args.mode,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine(),
        "settings": {
            "protocols": args.protocols,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "clients": args.clients,
            "spans_per_request": args.spans_per_request,
            "processes": args.processes,
            "templates": args.templates,
            "overload_clients": args.overload_clients if args.mode == "overload" else None,
            "target": (
                {"endpoint": args.endpoint, "grpc_target": args.grpc_target}
                if args.external
                else "collector started by the bench"
            ),
            "daemon_args": args.daemon_args,
            "secure": args.secure or bool(args.ca_file or args.api_key),
        },
        "runs": [asdict(run) for run in bench.runs],
        **{key: {k: v for k, v in value.items() if k != "sample_trace_ids"} for key, value in bench.extra.items()},
        "ok": bench.ok,
    }
    document = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(document + "\n")
    rendered = table(bench.runs)
    if args.json_stdout:
        print(rendered, file=sys.stderr)
        print(document)
    else:
        print(rendered)
    if not bench.ok:
        print(
            "bench: FAILED: stored spans do not match acknowledged spans, or the collector did not stop cleanly",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
