"""A collector with a known set of traces, sent by the real OpenTelemetry SDK, shared by the query tests.

- ``agent``: an agent trace across two services (checkout-bot calls inventory-svc), with an LLM call (tokens,
  time to first chunk, a conversation and user id, a faithfulness evaluation of 0.6 in a span event), a tool
  span that fails with an exception event, and a 120 ms duration that breaches checkout-bot's 50 ms rule.
- ``search``: a small trace of search-svc with one Anthropic call.
- ``batch``: 40 traces of batch-svc with known durations (5, 10 ... 200 ms), each with one LLM call, for stats.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.conftest import RunningCollector, collector_settings
from tests.helpers import wait_until

MS = 1_000_000
SNAPSHOTS = {
    "settle_after": "200ms",
    "interval": "50ms",
    "rules": [
        {"metric": "latency_ms", "above": 50, "service": "checkout-bot"},
        {"metric": "cost_usd", "above": 0.05},
        {"metric": "eval:faithfulness", "below": 0.85},
    ],
}


@dataclass
class Dataset:
    base_ns: int
    agent: str = ""
    agent_spans: dict[str, str] = field(default_factory=dict)  # name -> span id
    search: str = ""
    batch: list[str] = field(default_factory=list)


class Sender:
    """One TracerProvider per service, all exporting over OTLP/gRPC to the collector."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.providers: dict[str, TracerProvider] = {}

    def tracer(self, service: str, version: str = "1.0") -> trace.Tracer:
        if service not in self.providers:
            provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": version}))
            provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=self.target, insecure=True), schedule_delay_millis=50)
            )
            self.providers[service] = provider
        return self.providers[service].get_tracer("tests.query", "0.1")

    def flush(self) -> None:
        for provider in self.providers.values():
            assert provider.force_flush(10_000)

    def shutdown(self) -> None:
        for provider in self.providers.values():
            provider.shutdown()


def hex_trace(span: Any) -> str:
    return f"{span.get_span_context().trace_id:032x}"


def hex_span(span: Any) -> str:
    return f"{span.get_span_context().span_id:016x}"


def send_dataset(sender: Sender, base_ns: int) -> Dataset:
    data = Dataset(base_ns=base_ns)
    bot = sender.tracer("checkout-bot")
    inventory = sender.tracer("inventory-svc", "2.0")

    root = bot.start_span("invoke_agent checkout", kind=SpanKind.SERVER, start_time=base_ns)
    root.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "checkout"})
    context = trace.set_span_in_context(root)
    llm = bot.start_span("chat gpt-4o", context=context, kind=SpanKind.CLIENT, start_time=base_ns + 5 * MS)
    llm.set_attributes(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 300,
            "gen_ai.response.time_to_first_chunk": 0.04,
            "gen_ai.conversation.id": "conv-1",
            "user.id": "user-1",
            "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"where is my order?"}]}]',
        }
    )
    llm.add_event(
        "gen_ai.evaluation.result",
        {"gen_ai.evaluation.name": "faithfulness", "gen_ai.evaluation.score.value": 0.6},
        timestamp=base_ns + 60 * MS,
    )
    llm.end(end_time=base_ns + 65 * MS)
    tool = inventory.start_span(
        "execute_tool lookup", context=context, kind=SpanKind.SERVER, start_time=base_ns + 70 * MS
    )
    tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup", "retry": 3})
    tool.add_event(
        "exception",
        {"exception.type": "TimeoutError", "exception.message": "inventory timed out"},
        timestamp=base_ns + 100 * MS,
    )
    tool.set_status(Status(StatusCode.ERROR, "inventory timed out"))
    tool.end(end_time=base_ns + 110 * MS)
    root.end(end_time=base_ns + 120 * MS)
    data.agent = hex_trace(root)
    data.agent_spans = {"root": hex_span(root), "llm": hex_span(llm), "tool": hex_span(tool)}

    search = sender.tracer("search-svc")
    start = base_ns + 1_000 * MS
    search_root = search.start_span("GET /search", kind=SpanKind.SERVER, start_time=start)
    call = search.start_span(
        "chat claude-3-5-haiku", context=trace.set_span_in_context(search_root), start_time=start + MS
    )
    call.set_attributes(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-3-5-haiku-20241022",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
        }
    )
    call.end(end_time=start + 9 * MS)
    search_root.end(end_time=start + 10 * MS)
    data.search = hex_trace(search_root)

    batch = sender.tracer("batch-svc")
    for index in range(40):
        start = base_ns + (2_000 + 1_000 * index) * MS
        duration = (index + 1) * 5 * MS
        batch_root = batch.start_span("batch job", start_time=start)
        child = batch.start_span("chat gpt-4o-mini", context=trace.set_span_in_context(batch_root), start_time=start)
        child.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 10 * (index + 1),
                "gen_ai.usage.output_tokens": 5,
                "gen_ai.response.time_to_first_chunk": (index % 7 + 1) / 100,
            }
        )
        child.end(end_time=start + duration // 2)
        batch_root.end(end_time=start + duration)
        data.batch.append(hex_trace(batch_root))
    sender.flush()
    return data


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningCollector, Dataset]]:
    """A running collector holding the dataset, every trace settled."""
    tmp_path: Path = tmp_path_factory.mktemp("query")
    running = RunningCollector(collector_settings(tmp_path, snapshots=SNAPSHOTS)).start()
    sender = Sender(running.grpc_target)
    try:
        base_ns = (time.time_ns() // (60 * 1_000_000_000) - 30) * 60 * 1_000_000_000  # half an hour ago, on a minute
        data = send_dataset(sender, base_ns)
        wait_until(
            lambda: running.query("SELECT count(*) FROM traces WHERE settled_at_unix_nano IS NOT NULL") == [(42,)],
            timeout=15,
            what="the 42 traces to settle",
        )
        yield running, data
    finally:
        sender.shutdown()
        running.stop()
