"""What every Python driver shares: the OTLP export to the collector under test, and the scenarios.

A driver runs in its library's own virtual environment (see ``tests/libraries/environments.py``), so
it imports only that environment: the OpenTelemetry SDK and exporter, the client SDKs, the library.
It reads the addresses from its environment:

- ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``: the collector's ``/v1/traces`` URL
- ``FAKE_LLM_URL``: the fake LLM server's base URL
- ``DRIVER_SCENARIOS``: comma-separated scenario names to run (all when unset)

Each scenario runs under a root span named ``scenario <name>`` that carries no GenAI attribute, the
way an application's own span would, so that the test finds its trace.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

FAKE_LLM_URL = os.environ.get("FAKE_LLM_URL", "")
API_KEY = "sk-test-not-a-real-key-000000000000"
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-5"
QUESTION = "What is the capital of France?"
WEATHER_QUESTION = "What is the weather in Paris?"
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
ANTHROPIC_TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


def tracer_provider(service: str, *, install: bool = True) -> TracerProvider:
    """A provider exporting every span as it ends to the collector; the global one unless ``install`` is off.

    Spans are exported one by one (``SimpleSpanProcessor``), so one trace reaches the collector in
    several requests, child before parent: the collector must get the rollup right whatever the order.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    if install:
        trace.set_tracer_provider(provider)
    return provider


@contextmanager
def scenario_span(name: str) -> Iterator[None]:
    with trace.get_tracer("tests.libraries.driver").start_as_current_span(f"scenario {name}"):
        yield


def run(
    scenarios: dict[str, Callable[[], None]],
    provider: Any = None,
    root: Callable[[str], Any] = scenario_span,
) -> None:
    """Run the selected scenarios, each under its root span (``root``); then flush and shut down."""
    chosen = os.environ.get("DRIVER_SCENARIOS")
    names = chosen.split(",") if chosen else list(scenarios)
    for name in names:
        with root(name):
            scenarios[name]()
    if provider is not None:
        provider.force_flush()
        provider.shutdown()


# --- the scenarios, with the real client SDKs -------------------------------------------------


def openai_client() -> Any:
    import openai

    return openai.OpenAI(base_url=FAKE_LLM_URL + "/v1", api_key=API_KEY, max_retries=0)


def anthropic_client() -> Any:
    import anthropic

    return anthropic.Anthropic(base_url=FAKE_LLM_URL, api_key=API_KEY, max_retries=0)


def openai_chat(client: Any = None) -> None:
    client = client or openai_client()
    answer = client.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": QUESTION}])
    assert answer.choices[0].message.content


def openai_stream(client: Any = None) -> None:
    client = client or openai_client()
    stream = client.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text


def openai_tool(client: Any = None) -> None:
    """A tool call and the answer after its result: two model calls."""
    client = client or openai_client()
    messages: list[dict[str, Any]] = [{"role": "user", "content": WEATHER_QUESTION}]
    first = client.chat.completions.create(model=OPENAI_MODEL, messages=messages, tools=OPENAI_TOOLS)
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"weather": "sunny"})})
    second = client.chat.completions.create(model=OPENAI_MODEL, messages=messages, tools=OPENAI_TOOLS)
    assert second.choices[0].message.content


def anthropic_chat(client: Any = None) -> None:
    client = client or anthropic_client()
    answer = client.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=256, messages=[{"role": "user", "content": QUESTION}]
    )
    assert answer.content[0].text


def anthropic_stream(client: Any = None) -> None:
    client = client or anthropic_client()
    stream = client.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=256, messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    text = "".join(event.delta.text for event in stream if event.type == "content_block_delta")
    assert text


def anthropic_tool(client: Any = None) -> None:
    client = client or anthropic_client()
    messages: list[dict[str, Any]] = [{"role": "user", "content": WEATHER_QUESTION}]
    first = client.messages.create(model=ANTHROPIC_MODEL, max_tokens=256, messages=messages, tools=ANTHROPIC_TOOLS)
    use = next(block for block in first.content if block.type == "tool_use")
    assert use.name == "get_weather"
    messages.append({"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]})
    messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]})
    second = client.messages.create(model=ANTHROPIC_MODEL, max_tokens=256, messages=messages, tools=ANTHROPIC_TOOLS)
    assert second.content[0].text


OPENAI_SCENARIOS: dict[str, Callable[[], None]] = {
    "openai.chat": openai_chat,
    "openai.stream": openai_stream,
    "openai.tool": openai_tool,
}
ANTHROPIC_SCENARIOS: dict[str, Callable[[], None]] = {
    "anthropic.chat": anthropic_chat,
    "anthropic.stream": anthropic_stream,
    "anthropic.tool": anthropic_tool,
}
