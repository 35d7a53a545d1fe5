"""Agent traffic sent by the real OpenTelemetry SDK over OTLP/gRPC: what the dashboard tests look at.

- ``send_agent_trace``: a support agent (support-bot) that plans with gpt-4o (a conversation with a tool call,
  cached and reasoning tokens, time to first chunk, a faithfulness evaluation), looks the order up through
  inventory-svc (a retrieval subtree and a failed first attempt), and answers with gpt-4o-mini.
- ``send_history``: an hour of smaller traces of several services and models, backdated, for the charts.
- ``send_wide_trace``: one trace of 10,000 spans (an agent with 99 steps of 100 tool and LLM spans each).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

MS = 1_000_000
QUESTION = "Where is my order #4411? It was supposed to arrive yesterday."
ANSWER = "Your order #4411 left the warehouse this morning and should arrive tomorrow before noon."


def hex_trace(span: trace.Span) -> str:
    return f"{span.get_span_context().trace_id:032x}"


def hex_span(span: trace.Span) -> str:
    return f"{span.get_span_context().span_id:016x}"


class Traffic:
    """One TracerProvider per service, exporting to the collector; queues big enough for a 10,000-span trace."""

    def __init__(self, target: str, headers: dict[str, str] | None = None) -> None:
        self.target = target
        self.headers = headers  # e.g. an ingest key's authorization header
        self.providers: dict[str, TracerProvider] = {}

    def tracer(self, service: str) -> trace.Tracer:
        if service not in self.providers:
            provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": "1.4.2"}))
            provider.add_span_processor(
                BatchSpanProcessor(
                    OTLPSpanExporter(endpoint=self.target, insecure=True, headers=self.headers),
                    max_queue_size=20_000,
                    max_export_batch_size=1_000,
                    schedule_delay_millis=50,
                )
            )
            self.providers[service] = provider
        return self.providers[service].get_tracer("tests.dashboard", "0.1")

    def flush(self) -> None:
        for provider in self.providers.values():
            assert provider.force_flush(30_000)

    def shutdown(self) -> None:
        for provider in self.providers.values():
            provider.shutdown()


@dataclass
class AgentTrace:
    trace_id: str
    spans: dict[str, str] = field(default_factory=dict)  # role -> span id


def _llm(
    tracer: trace.Tracer,
    name: str,
    parent: trace.Span,
    start: int,
    end: int,
    model: str,
    usage: dict[str, int],
    messages: tuple[list[dict], list[dict]] | None = None,
    ttft_s: float | None = None,
) -> trace.Span:
    span = tracer.start_span(name, context=trace.set_span_in_context(parent), kind=SpanKind.CLIENT, start_time=start)
    attributes: dict = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.response.id": f"chatcmpl-{random.randrange(10**9)}",
        "gen_ai.usage.input_tokens": usage["input"],
        "gen_ai.usage.output_tokens": usage["output"],
        "gen_ai.conversation.id": "conv-4411",
    }
    if "cached" in usage:
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage["cached"]
    if "reasoning" in usage:
        attributes["gen_ai.usage.reasoning.output_tokens"] = usage["reasoning"]
    if ttft_s is not None:
        attributes["gen_ai.response.time_to_first_chunk"] = ttft_s
    if messages is not None:
        attributes["gen_ai.input.messages"] = json.dumps(messages[0])
        attributes["gen_ai.output.messages"] = json.dumps(messages[1])
    span.set_attributes(attributes)
    return span


def send_agent_trace(traffic: Traffic, start: int) -> AgentTrace:
    bot = traffic.tracer("support-bot")
    inventory = traffic.tracer("inventory-svc")
    root = bot.start_span("invoke_agent support", kind=SpanKind.SERVER, start_time=start)
    root.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support", "user.id": "user-17"})
    plan = _llm(
        bot,
        "chat gpt-4o",
        root,
        start + 4 * MS,
        start + 1_840 * MS,
        "gpt-4o",
        {"input": 1_850, "output": 96, "cached": 1_024, "reasoning": 40},
        (
            [
                {"role": "system", "parts": [{"type": "text", "content": "You are a support agent. Use tools."}]},
                {"role": "user", "parts": [{"type": "text", "content": QUESTION}]},
            ],
            [
                {
                    "role": "assistant",
                    "parts": [
                        {"type": "tool_call", "id": "call_1", "name": "lookup_order", "arguments": {"order": 4411}}
                    ],
                    "finish_reason": "tool_call",
                }
            ],
        ),
        ttft_s=0.42,
    )
    plan.add_event(
        "gen_ai.evaluation.result",
        {
            "gen_ai.evaluation.name": "faithfulness",
            "gen_ai.evaluation.score.value": 0.93,
            "gen_ai.evaluation.score.label": "pass",
        },
        timestamp=start + 1_850 * MS,
    )
    plan.end(end_time=start + 1_840 * MS)

    tool = bot.start_span(
        "execute_tool lookup_order", context=trace.set_span_in_context(root), start_time=start + 1_850 * MS
    )
    tool.set_attributes(
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "lookup_order",
            "gen_ai.tool.call.id": "call_1",
            "gen_ai.tool.call.arguments": '{"order": 4411}',
            "gen_ai.tool.call.result": '{"status": "shipped", "eta": "tomorrow 12:00"}',
        }
    )
    context = trace.set_span_in_context(tool)
    failed = inventory.start_span(
        "GET /orders/4411", context=context, kind=SpanKind.SERVER, start_time=start + 1_860 * MS
    )
    failed.set_status(Status(StatusCode.ERROR, "upstream timed out"))
    failed.add_event(
        "exception",
        {"exception.type": "TimeoutError", "exception.message": "upstream timed out"},
        timestamp=start + 2_360 * MS,
    )
    failed.end(end_time=start + 2_360 * MS)
    retry = inventory.start_span(
        "GET /orders/4411", context=context, kind=SpanKind.SERVER, start_time=start + 2_380 * MS
    )
    retry.set_attribute("retry", 1)
    db = inventory.start_span("SELECT orders", context=trace.set_span_in_context(retry), start_time=start + 2_390 * MS)
    db.set_attribute("db.system", "postgresql")
    db.end(end_time=start + 2_520 * MS)
    cache = inventory.start_span(
        "cache.get eta", context=trace.set_span_in_context(retry), start_time=start + 2_525 * MS
    )
    cache.end(end_time=start + 2_540 * MS)
    retry.end(end_time=start + 2_560 * MS)
    tool.end(end_time=start + 2_570 * MS)

    answer = _llm(
        bot,
        "chat gpt-4o-mini",
        root,
        start + 2_580 * MS,
        start + 3_900 * MS,
        "gpt-4o-mini",
        {"input": 2_010, "output": 58, "cached": 1_800},
        (
            [
                {"role": "user", "parts": [{"type": "text", "content": QUESTION}]},
                {
                    "role": "assistant",
                    "parts": [
                        {"type": "tool_call", "id": "call_1", "name": "lookup_order", "arguments": {"order": 4411}}
                    ],
                },
                {
                    "role": "tool",
                    "parts": [
                        {
                            "type": "tool_call_response",
                            "id": "call_1",
                            "response": {"status": "shipped", "eta": "tomorrow 12:00"},
                        }
                    ],
                },
            ],
            [{"role": "assistant", "parts": [{"type": "text", "content": ANSWER}], "finish_reason": "stop"}],
        ),
        ttft_s=0.21,
    )
    answer.end(end_time=start + 3_900 * MS)
    root.end(end_time=start + 3_920 * MS)
    return AgentTrace(
        hex_trace(root),
        {
            "root": hex_span(root),
            "plan": hex_span(plan),
            "tool": hex_span(tool),
            "retry": hex_span(retry),
            "answer": hex_span(answer),
            "failed": hex_span(failed),
        },
    )


HISTORY_SERVICES = (("search-svc", "gpt-4o-mini"), ("support-bot", "gpt-4o"), ("report-writer", "claude-3-5-haiku"))


def send_history(traffic: Traffic, end: int, count: int = 120, seed: int = 7) -> None:
    """``count`` traces spread over the hour before ``end``; latency and quality drift upward/downward."""
    rng = random.Random(seed)
    for index in range(count):
        service, model = HISTORY_SERVICES[index % len(HISTORY_SERVICES)]
        tracer = traffic.tracer(service)
        start = end - 3_600 * 1_000 * MS + index * (3_600 * 1_000 * MS // count)
        drift = 1 + index / count
        duration = int(rng.lognormvariate(6.5, 0.5) * drift) * MS
        root = tracer.start_span(f"invoke_agent {service.split('-')[0]}", kind=SpanKind.SERVER, start_time=start)
        root.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": service.split("-")[0]})
        call = tracer.start_span(
            f"chat {model}", context=trace.set_span_in_context(root), kind=SpanKind.CLIENT, start_time=start + 2 * MS
        )
        call.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "anthropic" if model.startswith("claude") else "openai",
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": rng.randrange(300, 3_000),
                "gen_ai.usage.output_tokens": rng.randrange(20, 600),
                "gen_ai.response.time_to_first_chunk": rng.uniform(0.1, 0.35) * drift,
            }
        )
        call.add_event(
            "gen_ai.evaluation.result",
            {
                "gen_ai.evaluation.name": "faithfulness",
                "gen_ai.evaluation.score.value": round(min(1.0, rng.gauss(0.95 - 0.12 * index / count, 0.04)), 3),
            },
            timestamp=start + duration,
        )
        if index % 17 == 5:
            call.set_status(Status(StatusCode.ERROR, "rate limited"))
        call.end(end_time=start + duration - MS)
        root.end(end_time=start + duration)


def send_wide_trace(traffic: Traffic, start: int, steps: int = 99, per_step: int = 100) -> tuple[str, int]:
    """One trace of ``1 + steps * (1 + per_step)`` spans (10,000 by default). Returns its id and span count."""
    tracer = traffic.tracer("batch-agent")
    root = tracer.start_span("invoke_agent bulk-triage", start_time=start)
    root.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "bulk-triage"})
    count = 1
    for step in range(steps):
        step_start = start + step * 50 * MS
        parent = tracer.start_span(f"step {step}", context=trace.set_span_in_context(root), start_time=step_start)
        context = trace.set_span_in_context(parent)
        for index in range(per_step):
            child_start = step_start + index * 500_000
            if index % 2:
                child = tracer.start_span(f"chat gpt-4o-mini #{index}", context=context, start_time=child_start)
                child.set_attributes(
                    {
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "gpt-4o-mini",
                        "gen_ai.usage.input_tokens": 120,
                        "gen_ai.usage.output_tokens": 12,
                    }
                )
            else:
                child = tracer.start_span(f"execute_tool classify #{index}", context=context, start_time=child_start)
                child.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "classify"})
            child.end(end_time=child_start + 450_000)
        parent.end(end_time=step_start + 49 * MS)
        count += 1 + per_step
    root.end(end_time=start + steps * 50 * MS)
    return hex_trace(root), count
